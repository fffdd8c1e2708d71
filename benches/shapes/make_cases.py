#!/usr/bin/env python
"""Generate messy real-world-style CSV test cases into target/shape-cases (or $SHAPE_CASES) plus truth.json.

truth.json: {"file": {"rows": N, "cols": M, "header": [...], "note": "..."}}
"rows" = data rows a careful human would count (titles, comments, footers, blank
lines excluded); "cols" = real columns.  Where pandas' reading is the sensible
truth (delimiter-only rows are rows of NaN, duplicate names a/a.1, an unnamed
index column is a column) it is used.
"""
import json
import os
import random
import datetime as dt

HERE = os.path.dirname(os.path.abspath(__file__))
# Generated files stay out of the source tree.
OUT = os.environ.get("SHAPE_CASES", os.path.join(HERE, "..", "..", "target", "shape-cases"))
os.makedirs(OUT, exist_ok=True)
rnd = random.Random(20240611)
TRUTH = {}

FIRST = ["Anna", "Ben", "Chloé", "David", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas",
         "Karin", "Luis", "Mia", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tariq"]
LAST = ["Müller", "Smith", "García", "Rossi", "Nowak", "Dubois", "Jensen", "O'Brien", "Kowalski", "Lee"]
CITY = ["Berlin", "Paris", "Madrid", "Rome", "Warsaw", "Lyon", "Oslo", "Dublin", "Vienna", "Prague"]
PRODUCT = ["Widget", "Gadget", "Sprocket", "Gizmo", "Doohickey", "Flange", "Bracket", "Valve"]


def date(i):
    return (dt.date(2024, 1, 1) + dt.timedelta(days=i % 365)).isoformat()


def orders(n, start=1):
    rows = []
    for i in range(n):
        rows.append([str(start + i), f"{rnd.choice(FIRST)} {rnd.choice(LAST)}", rnd.choice(CITY),
                     f"{rnd.uniform(1, 5000):.2f}", date(i)])
    return rows


ORDER_HDR = ["order_id", "customer", "city", "amount", "order_date"]


def q(v, delim, force=False):
    """Quote a field the RFC-4180 way if needed."""
    if force or any(c in v for c in (delim, '"', "\n", "\r")):
        return '"' + v.replace('"', '""') + '"'
    return v


def join(row, delim, force=False):
    return delim.join(q(v, delim, force) for v in row)


def write(name, lines, rows, cols, header, note="", eol="\n", encoding="utf-8",
          bom=False, final_eol=True):
    text = eol.join(lines) + (eol if final_eol else "")
    data = text.encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    TRUTH[name] = {"rows": rows, "cols": cols, "header": header, "note": note}


def table(header, rows, delim=",", force=False):
    return [join(header, delim, force)] + [join(r, delim, force) for r in rows]


# ---------------------------------------------------------------- clean files
r = orders(200)
write("clean_comma.csv", table(ORDER_HDR, r), 200, 5, ORDER_HDR, "plain RFC-4180")

r = orders(150)
write("clean_semicolon.csv", table(ORDER_HDR, r, ";"), 150, 5, ORDER_HDR, "plain ; file")

r = orders(300)
write("clean_tab.tsv", table(ORDER_HDR, r, "\t"), 300, 5, ORDER_HDR, "plain TSV")

r = orders(100)
write("clean_pipe.csv", table(ORDER_HDR, r, "|"), 100, 5, ORDER_HDR, "pipe-delimited")

r = orders(2000)
write("large_2000.csv", table(ORDER_HDR, r), 2000, 5, ORDER_HDR, "2000 rows")

r = orders(40)
write("no_final_newline.csv", table(ORDER_HDR, r), 40, 5, ORDER_HDR,
      "last line has no newline", final_eol=False)

# ------------------------------------------------ European decimal comma + ;
hdr = ["Artikel", "Menge", "Preis", "Umsatz", "Datum"]
rows = []
for i in range(120):
    m = rnd.randint(1, 500)
    p = rnd.uniform(0.5, 2500)
    u = m * p
    rows.append([rnd.choice(PRODUCT), str(m), f"{p:.2f}".replace(".", ","),
                 f"{u:,.2f}".replace(",", "X").replace(".", ",").replace("X", "."),
                 (dt.date(2023, 1, 1) + dt.timedelta(days=i)).strftime("%d.%m.%Y")])
write("euro_decimal_semicolon.csv", table(hdr, rows, ";"), 120, 5, hdr,
      "decimal commas, thousands dots, ; delimiter")

# German Excel export: cp1252, title with trailing ;, decimal commas
hdr = ["Kunde", "Straße", "Ort", "Betrag €", "Bemerkung"]
rows = []
for i in range(80):
    rows.append([f"{rnd.choice(LAST)} GmbH", f"Hauptstraße {i+1}", rnd.choice(["München", "Köln", "Düsseldorf", "Nürnberg"]),
                 f"{rnd.uniform(10, 9999):.2f}".replace(".", ","), rnd.choice(["", "Rückfrage", "bezahlt – ok", "Größe prüfen"])])
lines = ["Umsatzliste 2023;;;;", ";;;;"] + table(hdr, rows, ";")
write("cp1252_german_title.csv", lines, 80, 5, hdr,
      "cp1252, title 'Umsatzliste 2023;;;;' and a ';;;;' spacer row above header", eol="\r\n", encoding="cp1252")

# semicolon file whose free text contains commas
hdr = ["id", "subject", "body", "priority"]
rows = []
for i in range(90):
    rows.append([str(i + 1), rnd.choice(["Re: invoice, urgent", "Meeting", "Hello, world", "Order 12, 13"]),
                 rnd.choice(["Please check, thanks", "ok", "Dear all, see attached, regards", "n/a"]),
                 rnd.choice(["low", "high", "mid"])])
write("semicolon_text_with_commas.csv", table(hdr, rows, ";"), 90, 4, hdr,
      "; delimited, lots of commas in free text")

# ------------------------------------------------------- titles / preambles
r = orders(50)
write("title_line.csv", ["Sales Report Q3 2024"] + table(ORDER_HDR, r), 50, 5, ORDER_HDR,
      "one title line")

r = orders(60)
write("title_trailing_delims.csv", ["Sales Report,,,,", "Region: EMEA,,,,"] + table(ORDER_HDR, r), 60, 5,
      ORDER_HDR, "title lines padded with delimiters to full width (Excel)")

r = orders(45)
write("title_blank_header.csv", ["Monthly Orders Export", "Generated: 2024-07-01 08:15", "", ""] + table(ORDER_HDR, r),
      45, 5, ORDER_HDR, "title + generated line + blank lines before header")

r = orders(70)
write("title_semicolon_comma_table.csv", ["Report; generated 2024-05-02 by ERP"] + table(ORDER_HDR, r), 70, 5,
      ORDER_HDR, "title contains ';', table is ','")

hdr = ["Date", "Description", "Amount", "Balance"]
rows = []
bal = 1000.0
for i in range(35):
    a = round(rnd.uniform(-300, 300), 2)
    bal += a
    rows.append([date(i), rnd.choice(["CARD PAYMENT", "TRANSFER IN", "ATM, MAIN ST", "FEE"]), f"{a:.2f}", f"{bal:.2f}"])
lines = ["Account:,DE89 3704 0044 0532 0130 00", "Period:,2024-01-01 to 2024-02-04", "Currency:,EUR", ""] + table(hdr, rows)
write("bank_key_value_preamble.csv", lines, 35, 4, hdr, "key,value preamble (2 fields) then 4-col table")

hdr = ["time_s", "temp_C", "pressure_hPa", "humidity_pct"]
rows = [[f"{i*0.5:.1f}", f"{20+rnd.gauss(0,1):.3f}", f"{1013+rnd.gauss(0,3):.2f}", f"{45+rnd.gauss(0,5):.1f}"] for i in range(400)]
lines = ["# Instrument: WeatherLogger WL-200", "# Serial: 0x3F2A", "# Started: 2024-03-01T10:00:00Z",
         "# Sampling: 2 Hz, averaging=on"] + table(hdr, rows)
write("comment_lines.csv", lines, 400, 4, hdr, "# comment lines above header (one contains a comma)")

hdr = ["time", "voltage", "current"]
rows = [[f"{i}", f"{3.3+rnd.gauss(0,0.01):.4f}", f"{0.1+rnd.gauss(0,0.005):.5f}"] for i in range(250)]
lines = ["# device=PSU-3; channel=2", "# operator=J. Doe"] + table(hdr, rows, ";")
write("comment_lines_semicolon.csv", lines, 250, 3, hdr, "# comments (with ';' and '=') above a ; table")

# ----------------------------------------------------------------- footers
r = orders(30)
lines = table(ORDER_HDR, r) + ["", "Source: internal ERP export", "Note: amounts in EUR, excl. VAT"]
write("footer_notes.csv", lines, 30, 5, ORDER_HDR, "blank + Source/Note footer (Note has a comma)")

r = orders(12)
lines = table(ORDER_HDR, r) + ["Total rows: 12"]
write("footer_total_rows.csv", lines, 12, 5, ORDER_HDR, "'Total rows: 12' footer directly under table")

r = orders(25)
lines = ["Quarterly Export,,,,", ""] + table(ORDER_HDR, r) + [",,,,", "Source: finance dept,,,,", "Confidential,,,,"]
write("title_and_footer.csv", lines, 25, 5, ORDER_HDR,
      "padded title, padded footer lines; the ',,,,' separator before the footer belongs to the footer")

# -------------------------------------------------------------- encodings
r = orders(60)
write("bom_utf8.csv", table(ORDER_HDR, r), 60, 5, ORDER_HDR, "UTF-8 BOM", bom=True)

hdr = ["name", "city", "note", "price"]
rows = [[f"{rnd.choice(['José','Zoë','François','Jürgen','Søren'])} {rnd.choice(LAST)}", rnd.choice(["Zürich", "Malmö", "São Paulo", "Besançon"]),
         rnd.choice(["café – naïve", "€ paid", "don’t ship", "“fragile”"]), f"{rnd.uniform(1,99):.2f}"] for _ in range(75)]
write("cp1252.csv", table(hdr, rows), 75, 4, hdr, "Windows-1252 bytes (é, €, smart quotes)", encoding="cp1252", eol="\r\n")

hdr = ["Name", "Département", "Montant", "Date"]
rows = [[f"{rnd.choice(FIRST)} {rnd.choice(LAST)}", rnd.choice(["Île-de-France", "Rhône", "Gironde"]),
         f"{rnd.uniform(1,999):.2f}", date(i)] for i in range(55)]
with open(os.path.join(OUT, "utf16le_excel_unicode.tsv"), "wb") as f:
    f.write(b"\xff\xfe" + ("\r\n".join(table(hdr, rows, "\t")) + "\r\n").encode("utf-16-le"))
TRUTH["utf16le_excel_unicode.tsv"] = {"rows": 55, "cols": 4, "header": hdr, "note": "UTF-16LE BOM, tab, CRLF (Excel Unicode Text)"}

rows = [[f"{rnd.choice(FIRST)} {rnd.choice(LAST)}", rnd.choice(CITY), f"{rnd.uniform(1,999):.2f}", date(i)] for i in range(40)]
hdr2 = ["Name", "City", "Amount", "Date"]
with open(os.path.join(OUT, "utf16le_renamed.csv"), "wb") as f:
    f.write(b"\xff\xfe" + ("\r\n".join(table(hdr2, rows, "\t")) + "\r\n").encode("utf-16-le"))
TRUTH["utf16le_renamed.csv"] = {"rows": 40, "cols": 4, "header": hdr2, "note": "Excel Unicode Text saved with .csv name"}

# ------------------------------------------------------------ line endings
r = orders(80)
write("crlf.csv", table(ORDER_HDR, r), 80, 5, ORDER_HDR, "CRLF", eol="\r\n")

r = orders(65)
write("lone_cr.csv", table(ORDER_HDR, r), 65, 5, ORDER_HDR, "classic Mac CR line ends", eol="\r")

# ---------------------------------------------------------------- quoting
hdr = ["id", "name", "address", "comment"]
rows = []
for i in range(60):
    rows.append([str(i + 1), f"{rnd.choice(LAST)}, {rnd.choice(FIRST)}",
                 f"{rnd.randint(1,200)} Main St\n{rnd.choice(CITY)}" if i % 3 == 0 else f"{rnd.randint(1,200)} High St, {rnd.choice(CITY)}",
                 rnd.choice(['said "hi"', 'size 5" screen', "plain", 'a,b,"c"'])])
write("quoted_fields.csv", table(hdr, rows), 60, 4, hdr, "commas, newlines, doubled quotes inside quotes")

hdr = ["Kundennr", "Name", "Notiz"]
rows = [[str(1000 + i), f"{rnd.choice(LAST)}; {rnd.choice(FIRST)}", "Zeile 1\r\nZeile 2" if i % 4 == 0 else "ok"] for i in range(50)]
write("quoted_all_semicolon.csv", table(hdr, rows, ";", force=True), 50, 3, hdr,
      "every field quoted, ; delim, CRLF newlines inside quotes", eol="\r\n")

hdr = ["Product", "Revenue, USD", "Units (k)", "Region"]
rows = [[rnd.choice(PRODUCT), f"{rnd.uniform(100,99999):.2f}", str(rnd.randint(1, 90)), rnd.choice(["NA", "EU", "APAC"])] for _ in range(45)]
write("quoted_header_commas.csv", table(hdr, rows), 45, 4, hdr, "quoted header names containing commas")

# ------------------------------------------------------------ delimiters
r = orders(70)
lines = [join(x, ",") + "," for x in [ORDER_HDR] + r]
write("trailing_delim_every_row.csv", lines, 70, 5, ORDER_HDR,
      "header and every row end with ','; the 6th column is an unnamed, all-empty artefact")

r = orders(70)
lines = [join(ORDER_HDR, ",")] + [join(x, ",") + "," for x in r]
write("trailing_delim_rows_only.csv", lines, 70, 5, ORDER_HDR,
      "rows end with ',' but header does not (pandas makes first col the index)")

hdr = ["sku", "desc", "qty", "price"]
rows = [[f"SKU{i:04d}", rnd.choice(PRODUCT), str(rnd.randint(1, 50)), f"{rnd.uniform(1,99):.2f}"] for i in range(100)]
lines = [join(hdr, ",") + ",,,"] + [join(x, ",") + ",,," for x in rows] + [",,,,,,"] * 5
write("excel_empty_trailing_cols.csv", lines, 100, 4, hdr,
      "Excel export with 3 empty formatted columns and 5 empty formatted rows at the end")

hdr = ["id", "a", "b", "c", "d"]
rows = []
for i in range(80):
    row = [str(i + 1)] + [str(rnd.randint(0, 99)) for _ in range(4)]
    if i % 7 == 3:
        row = row[:rnd.randint(2, 4)]
    rows.append(row)
write("ragged_short_rows.csv", [join(hdr, ",")] + [join(x, ",") for x in rows], 80, 5, hdr,
      "some rows omit trailing empty values (pandas fills NaN)")

hdr = ["id", "x", "y", "z", "label"]
lines = [join(hdr, ",")]
n = 0
for i in range(60):
    if i % 10 == 5:
        lines.append(",,,,")
    else:
        lines.append(join([str(i), str(rnd.random())[:6], str(rnd.random())[:6], str(rnd.random())[:6], rnd.choice("ABC")], ","))
    n += 1
write("delimiter_only_rows.csv", lines, n, 5, hdr, "rows of ',,,,' inside the table = rows of missing values")

r = orders(50)
lines = [join(ORDER_HDR, ",")]
for i, x in enumerate(r):
    lines.append(join(x, ","))
    if i % 9 == 4:
        lines.append("")
lines += ["", "", ""]
write("blank_lines_inside.csv", lines, 50, 5, ORDER_HDR, "empty lines between rows and at the end (skipped)")

hdr = ["Name", "Revenue, USD", "City"]
rows = [[f"{rnd.choice(LAST)}, {rnd.choice(FIRST)}", f"{rnd.uniform(1,9999):.2f}", rnd.choice(CITY)] for _ in range(40)]
write("tab_header_comma.csv", ["\t".join(hdr)] + ["\t".join(x) for x in rows], 40, 3, hdr,
      "tab-separated but named .csv; header and names contain commas (one per line)")

hdr = ["Name", "Notes, misc", "Score"]
rows = [[rnd.choice(FIRST), rnd.choice(["good", "fair, ok", "bad"]), str(rnd.randint(0, 100))] for _ in range(40)]
write("tab_header_comma.tsv", ["\t".join(hdr)] + ["\t".join(x) for x in rows], 40, 3, hdr,
      "TSV whose header has a comma")

# ------------------------------------------------------------------ headers
hdr = ["date", "value", "value", "note", "note"]
rows = [[date(i), str(rnd.randint(0, 9)), str(rnd.randint(0, 9)), "x", "y"] for i in range(30)]
write("duplicate_headers.csv", table(hdr, rows), 30, 5, ["date", "value", "value.1", "note", "note.1"],
      "duplicate names -> value/value.1")

hdr = ["", "name", "score", "", "grade"]
rows = [[str(i), rnd.choice(FIRST), str(rnd.randint(0, 100)), str(rnd.random())[:5], rnd.choice("ABCDF")] for i in range(40)]
write("empty_header_cells.csv", table(hdr, rows), 40, 5, ["Unnamed: 0", "name", "score", "Unnamed: 3", "grade"],
      "empty header cells over non-empty data columns")

hdr = ["  id ", " name  ", " amount "]
rows = [[f"  {i} ", f" {rnd.choice(FIRST)}   ", f"   {rnd.uniform(1,99):.2f}"] for i in range(50)]
write("whitespace_padded.csv", table(hdr, rows), 50, 3, ["id", "name", "amount"], "padded names and values")

hdr = ["id", "score", "status", "comment"]
nas = ["NA", "N/A", "null", "NULL", "-", "", "n/a", "NaN", "#N/A", "?", "None", "."]
rows = [[str(i), rnd.choice(nas + [str(rnd.randint(0, 100))] * 3), rnd.choice(nas + ["ok", "fail"]), rnd.choice(nas + ["fine"])] for i in range(90)]
write("na_spellings.csv", table(hdr, rows), 90, 4, hdr, "many NA spellings")

hdr = ["email"]
rows = [[f"{rnd.choice(FIRST).lower()}.{rnd.choice(['a','b','c'])}{i}@example.com"] for i in range(120)]
write("single_column.csv", table(hdr, rows), 120, 1, hdr, "single column, no delimiter at all")

hdr = ["Full Name"]
rows = [[f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"] for _ in range(30)]
write("single_column_spaces.csv", table(hdr, rows), 30, 1, hdr, "single column whose values contain spaces")

write("header_only.csv", [join(ORDER_HDR, ",")], 0, 5, ORDER_HDR, "header, no rows")

rows = [[f"{rnd.uniform(0,10):.3f}" for _ in range(6)] for _ in range(150)]
write("headerless_numeric.csv", [join(x, ",") for x in rows], 150, 6, [f"column{i}" for i in range(6)],
      "no header: every line is numeric data")

hdr = ["time", "temp", "flow"]
units = ["s", "°C", "l/min"]
rows = [[str(i), f"{20+rnd.random():.2f}", f"{rnd.uniform(1,3):.2f}"] for i in range(200)]
write("units_row_under_header.csv", table(hdr, [units] + rows, ";"), 200, 3, hdr,
      "units row directly under header is header metadata, not data")

hdr = ["Date", "Open", "High", "Low", "Close", "Volume"]
rows = []
px = 100.0
for i in range(250):
    o = px; h = o + rnd.random() * 2; l = o - rnd.random() * 2; c = rnd.uniform(l, h); px = c
    rows.append([date(i), f"{o:.2f}", f"{h:.2f}", f"{l:.2f}", f"{c:.2f}", str(rnd.randint(1000, 99999))])
write("stock_prices_pipe_crlf.csv", table(hdr, rows, "|"), 250, 6, hdr, "pipe + CRLF", eol="\r\n")

hdr = ["id", "json_payload", "ok"]
rows = [[str(i), '{"a": %d, "b": [1, 2, 3], "c": "x,y"}' % i, rnd.choice(["true", "false"])] for i in range(60)]
write("embedded_json.csv", table(hdr, rows), 60, 3, hdr, "quoted JSON with commas/quotes inside")

# ------------------------------------------- what people actually export
# 1. no header, the first row typed like the rows below (text columns, US dates and times)
rows = []
for i in range(120):
    spk, take = rnd.choice(["di", "du", "ka", "mo"]), rnd.choice("ab")
    d = rnd.randint(0, 9)
    rows.append([str(i + 1), str(i // 4 + 1), f"{spk}{d}-{take}N.wav", spk, take, str(d), str(rnd.randint(1, 5)),
                 f"{rnd.random():.4f}"])
write("headerless_text_columns.csv", [join(x, ",") for x in rows], 120, 8, [str(i) for i in range(8)],
      "no header; text columns (file names, labels) typed like the rows below")

rows = []
for i in range(96):
    t = dt.datetime(2008, 2, 28) + dt.timedelta(hours=i)
    rows.append([f"{t.month}/{t.day}/{t.year}", f"{t.hour}:00:00", "NaN" if i % 11 == 0 else f"{rnd.uniform(0, 30):.2f}"])
write("headerless_us_dates.csv", [join(x, ",") for x in rows], 96, 3, ["0", "1", "2"],
      "no header; US dates, times and NaN in the first row")

# 2. instrument exports: a long preamble of `#KEY: ,value` lines, a `##` header
def instrument(name, keys, cols, n):
    lines = [f"#{k}: ,{v}" for k, v in keys]
    hdr = ["##Time"] + [f"Ch{i}" for i in range(1, cols)]
    lines.append(join(hdr, ","))
    for i in range(n):
        lines.append(join([f"{i * 0.01:.2f}"] + [f"{rnd.gauss(0, 1):.5f}" for _ in range(cols - 1)], ","))
    write(name, lines, n, cols, hdr, f"{len(keys)} '#KEY: ,value' lines, then a '##' header")

instrument("instrument_key_preamble.csv",
           [("INSTRUMENT", "DAQ-970"), ("SERIAL", "MY5800123"), ("FIRMWARE", "A.01.02"), ("DATE", "2023-05-02"),
            ("TIME", "10:15:00"), ("OPERATOR", "lab3")] + [(f"CH{i}_RANGE", f"{i % 3 + 1}0 V") for i in range(16)],
           5, 300)
instrument("instrument_key_preamble_long.csv",
           [(f"PARAM_{i:02d}", f"{rnd.uniform(0, 100):.3f}") for i in range(38)], 7, 120)

# 3. scikit-learn's bundled CSVs: a line of (samples, features, class names) above the numbers
def sklearn(name, meta, n, features, classes, decimals):
    lines = [meta]
    for _ in range(n):
        lines.append(join([f"{rnd.uniform(0, 300):.{decimals}f}" for _ in range(features)] + [str(rnd.randint(0, classes - 1))], ","))
    write(name, lines, n, features + 1, [str(i) for i in range(features + 1)], f"metadata line '{meta}' above the numbers")

sklearn("sklearn_breast_cancer.csv", "569,30,malignant,benign", 569, 30, 2, 4)
sklearn("sklearn_wine_data.csv", "178,13,class_0,class_1,class_2", 178, 13, 3, 2)
sklearn("sklearn_iris.csv", "150,4,setosa,versicolor,virginica", 150, 4, 3, 1)

# 4. a trailing delimiter and a quoted field holding only a line break, or only spaces
hdr = ["Kunde", "Ort", "Alter"]
lines = [join(hdr, ";", force=True)]
for i in range(80):
    lines.append(join([rnd.choice(LAST), rnd.choice(CITY), str(rnd.randint(18, 90))], ";", force=True) + ';"\n"')
write("semicolon_trailing_quoted_newline.csv", lines, 80, 3, hdr, "every row ends in ';\"<newline>\"'")

hdr = ["id", "name", "qty", "price"]
lines = [join(hdr, ",")] + [join([str(i), rnd.choice(PRODUCT), str(rnd.randint(1, 9)), f"{rnd.uniform(1, 50):.2f}"], ",") + ", "
                            for i in range(60)]
write("trailing_whitespace_field.csv", lines, 60, 4, hdr, "every row ends in ', '")

# 5. several tables one below another: the largest (rows x columns) is the table
lines = []
for n, w in [(200, 302), (100, 14), (100, 902)]:
    lines += [join([str(rnd.randint(0, 99)) for _ in range(w)], ",") for _ in range(n)]
write("several_tables_numeric.csv", lines, 100, 902, [str(i) for i in range(902)],
      "200 rows of 302 numbers, 100 of 14, 100 of 902; the largest is 100 x 902")

hdr = ["station", "time", "temp", "rh", "wind"]
lines = ["Section A: stations", "id,name"] + [f"{i},station {i}" for i in range(8)] + ["", "Section B: readings", join(hdr, ",")]
lines += [join([str(i % 8), f"2021-01-01 {i % 24:02d}:00", f"{rnd.uniform(-5, 30):.1f}", str(rnd.randint(20, 99)), str(rnd.randint(0, 20))], ",")
          for i in range(150)]
lines += ["", "Section C: totals", "station,readings"] + [f"{i},{150 // 8}" for i in range(8)]
write("report_sections.csv", lines, 150, 5, hdr, "three titled sections; the readings table is the largest")

# 6. spreadsheet exports ending in lines of delimiters only, or in notes among them
hdr = ["region", "product", "units", "price", "date", "rep", "note"]
rows = [[rnd.choice(["North", "South"]), rnd.choice(PRODUCT), str(rnd.randint(1, 99)), f"{rnd.uniform(1, 99):.2f}", date(i),
         rnd.choice(FIRST), ""] for i in range(40)]
write("excel_trailing_delimiter_lines.csv", table(hdr, rows) + [",,,,,,"] * 30, 40, 7, hdr,
      "40 rows, then 30 lines of ',,,,,,'")
write("excel_trailing_notes_and_delimiters.csv",
      table(hdr, rows) + [",,,,,,", "Prepared by: finance,,,,,,", ",,,,,,", "Note: units in boxes,,,,,,"] + [",,,,,,"] * 20,
      40, 7, hdr, "notes among 22 lines of ',,,,,,' at the end")

# 7. headerless numbers whose first line looks like years or ids
rows = [[str(y), f"{rnd.uniform(5, 15):.2f}", f"{rnd.uniform(300, 420):.1f}", str(rnd.randint(0, 40))] for y in range(1960, 2024)]
write("headerless_years.csv", [join(x, ",") for x in rows], 64, 4, [str(i) for i in range(4)],
      "no header; the first column is a year")
rows = [[str(100001 + i), str(rnd.randint(0, 50)), str(rnd.randint(0, 9)), f"{rnd.uniform(0, 1):.3f}"] for i in range(100)]
write("headerless_ids.csv", [join(x, ",") for x in rows], 100, 4, [str(i) for i in range(4)],
      "no header; the first column is an id, the rest counts and a fraction")

# ------------------------------------------- round two: titles, group lines, notes, decimal commas
# A. a title or metadata line that contains the delimiter, above a table with another
# delimiter or another width
rows = [[f"Café {i}", f"{rnd.randint(1, 99)},{rnd.randint(0, 9)}", date(i)] for i in range(200)]
write("title_comma_semicolon_table_cp1252.csv", ["Monthly report, généré le 2024-05-01", ""] + table(["name", "amount", "when"], rows, ";"),
      200, 3, ["name", "amount", "when"], "cp1252 title with a comma above a ; table with decimal commas",
      eol="\r\n", encoding="cp1252")
rows = [[f"{4000 - i * 0.5:.1f}", f"{rnd.uniform(40, 99):.2f}"] for i in range(3000)]
write("instrument_title_three_fields.csv", ["Exported by SpecTool,Run 14 by operator on Monday, March 3 2025"] + table(["wavenumber", "%T"], rows),
      3000, 2, ["wavenumber", "%T"], "metadata line of three comma fields above a two-column table")
rows = [[f"{rnd.choice(LAST)}", f"{rnd.randint(1, 500)}", f"{rnd.uniform(1, 99):.2f}".replace(".", ","), date(i)] for i in range(90)]
write("title_pipe_semicolon_table.csv", ["Stock list | warehouse 3 | 2024-06-01"] + table(["item", "qty", "price", "counted"], rows, ";"),
      90, 4, ["item", "qty", "price", "counted"], "a title split by | above a ; table")
r = orders(80)
write("title_two_commas_wider_table.csv", ["Orders, all regions, 2024", "Generated by ERP 7, build 12", ""] + table(ORDER_HDR, r),
      80, 5, ORDER_HDR, "two metadata lines of three comma fields above a five-column table")

# B. two-line headers: a group line above the real header
rows = [[f"{i * 0.1:.1f}", f"{rnd.gauss(0, 1):.4f}", f"{i * 0.1:.1f}", f"{rnd.gauss(5, 1):.4f}"] for i in range(150)]
write("two_line_header_groups.csv", ["run-a,,run-b,", "X,Y,X,Y"] + [join(x, ",") for x in rows], 150, 4,
      ["X", "Y", "X.1", "Y.1"], "group line over X,Y,X,Y over numbers")
rows = [[date(i), str(rnd.randint(-5, 5)), str(rnd.randint(10, 20)), f"{rnd.uniform(900, 1000):.1f}", f"{rnd.uniform(1000, 1050):.1f}"] for i in range(120)]
write("two_line_header_merged_cells.csv", ["Station report 2024", ",Temperature,,Pressure,", "day,min,max,min,max"] + [join(x, ",") for x in rows],
      120, 5, ["day", "min", "max", "min.1", "max.1"], "title, then merged group cells, then the header")
rows = [[str(1000 + i), f"{rnd.uniform(0, 10):.2f}".replace(".", ","), f"{rnd.uniform(0, 10):.2f}".replace(".", ","), str(rnd.randint(0, 9))] for i in range(100)]
write("two_line_header_semicolon.csv", [";Messung 1;Messung 1;Messung 2", "id;Wert;Fehler;Anzahl"] + [join(x, ";") for x in rows],
      100, 4, ["id", "Wert", "Fehler", "Anzahl"], "repeated group labels above a ; header with decimal commas")

# C. notes and padding below the table, a title cell with a quoted line break
hdr = ["region", "product", "units", "price", "date", "rep", "note"]
rows = [[rnd.choice(["North", "South"]), rnd.choice(PRODUCT), str(rnd.randint(1, 99)), f"{rnd.uniform(1, 99):.2f}", date(i),
         rnd.choice(FIRST), ""] for i in range(40)]
write("notes_and_few_delimiter_lines.csv",
      table(hdr, rows) + [",,,,,,", ",,,,,,", "Prepared by finance, checked by audit, approved by the board", ",,,,,,", "Figures are provisional"],
      40, 7, hdr, "three lines of ',,,,,,' and two free-text notes below the table")
write("few_delimiter_lines_at_end.csv", table(hdr, rows) + [",,,,,,"] * 3, 40, 7, hdr,
      "three lines of ',,,,,,' at the end: padding, not rows")
write("notes_without_padding.csv", table(hdr, rows) + ["Confidential", "Do not distribute, internal use only"], 40, 7, hdr,
      "two free-text notes directly below the table")
r = orders(60)
write("title_cell_quoted_line_break.csv", ['"Quarterly export\nRegion: EMEA",,,,'] + table(ORDER_HDR, r), 60, 5, ORDER_HDR,
      "a padded title cell with a quoted line break above the header")
r = orders(35)
write("title_cell_quoted_line_break_notes.csv", ['"Sales\r\nfirst half, 2024"'] + table(ORDER_HDR, r) + [",,,,", '"Source: ERP\r\nexported 2024-07-01",,,,'],
      35, 5, ORDER_HDR, "a quoted two-line title above, a spacer and a quoted two-line note below", eol="\r\n")

# D. decimal commas in ; files (pandas: object; the profile says the decimal mark is ',')
rows = [[f"P{i:03d}", f"{rnd.uniform(0, 100):.2f}".replace(".", ","), str(rnd.randint(1, 9)), f"{rnd.uniform(-5, 5):.3f}".replace(".", ",")] for i in range(150)]
write("decimal_comma_semicolon.csv", table(["code", "weight", "count", "delta"], rows, ";"), 150, 4,
      ["code", "weight", "count", "delta"], "decimal commas in a ; file")

with open(os.path.join(OUT, "truth.json"), "w") as f:
    json.dump(TRUTH, f, indent=1, ensure_ascii=False)
print(f"wrote {len(TRUTH)} cases to {OUT}")

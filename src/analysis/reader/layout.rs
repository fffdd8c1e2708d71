//! The layout of a delimited file, sniffed from its start: the delimiter, the title, note
//! or metadata lines above the table, and whether the table has a header.

use std::io::{self, Read};

use super::super::table::{self, Kind};
use super::super::Format;
use super::{is_blank, width, TABLE_RUN};

/// How far we look for the end of the first line when sniffing.
const SNIFF_LIMIT: usize = 1 << 20;
/// How much of the start of the file the sniffer reads (more if the first line is longer).
const SNIFF_BYTES: usize = 128 << 10;
/// Records of that start the sniffer looks at.
const SNIFF_RECORDS: usize = 500;
/// Title, note or metadata lines above the header are looked for among this many records.
const MAX_PREAMBLE: usize = 100;

/// Reads [`SNIFF_BYTES`] (more until the first non-blank line is complete, at most
/// [`SNIFF_LIMIT`]); `true` when that is the whole input.
pub(super) fn fill_prefix<R: Read>(inner: &mut R, prefix: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    loop {
        let enough = prefix.len() >= SNIFF_BYTES && first_line(prefix).is_some();
        if enough || prefix.len() >= SNIFF_LIMIT {
            return Ok(false);
        }
        let n = match inner.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(true);
        }
        prefix.extend_from_slice(&chunk[..n]);
    }
}

/// Where the table starts and how its fields are separated.
#[derive(Debug, PartialEq)]
pub(super) struct Layout {
    pub(super) delimiter: u8,
    pub(super) preamble: usize,
    /// The first record is data: columns are numbered, as pandas' `header=None` names them.
    pub(super) headerless: bool,
    /// The table's width when its header line is narrower than its rows; 0 otherwise.
    pub(super) columns: usize,
    /// The record right above the header (the last of the preamble) is a line of group
    /// labels over the header's columns (see [`group_line`]).
    pub(super) group_above: bool,
    /// See [`super::Input::typed_first`].
    pub(super) typed_first: bool,
}

impl Layout {
    fn plain(delimiter: u8, headerless: bool) -> Layout {
        Layout {
            delimiter,
            preamble: 0,
            headerless,
            columns: 0,
            group_above: false,
            typed_first: false,
        }
    }
}

/// The delimiter by pandas' rule plus ours (comma unless the first line has none but has
/// `;`, tab or `|`), the lines above the table, and whether it has a header.
///
/// Lines above the table are looked for only when the first line is much narrower than the
/// rows below it, or the rows have more fields than it (pandas refuses such a file). The
/// table then starts at the first record that (a) has at least two fields, (b) is wider than
/// every line above it that does not start with `#`, and (c) has its width as the most common
/// width of the sniffed records below it that have a delimiter, and at least 80% of those at
/// more than half its width and no wider; but a run of [`TABLE_RUN`] lines alike above it
/// (not `#` comments) is a table of its own and comes first. That record is the header if it
/// is one by the type rule of [`table`]; `#` lines at the table's width directly above a
/// header are skipped (`# units: s, V, A` over `time,voltage,current`). If the table starts
/// with a row, the line above is its header when it names more than half the table's columns
/// (or is padded to its width) and is one by the type rule; else the columns are numbered
/// (`569,30,malignant,benign` above rows of 31 numbers).
/// With another delimiter than the first line's, the start line must sniff to it too; of
/// several delimiters that find a table below other lines, the widest table wins.
///
/// Without lines above, the first line's delimiter is kept unless another delimiter splits
/// every sniffed record alike and the first one splits at most half of them like the header,
/// or splits them into fewer fields. Last, the type rule says whether the first line is a header.
pub(super) fn sniff_layout(prefix: &[u8], complete: bool, format: Format) -> Layout {
    let first = match format {
        Format::Tsv => b'\t',
        Format::Csv => sniff_delimiter(prefix),
    };
    let others: &[u8] = match format {
        Format::Tsv => &[],
        Format::Csv => &[b',', b';', b'\t', b'|'],
    };
    // (fields, delimiter) of the delimiter other than the first that splits every record alike
    // into the most fields.
    let mut consistent: Option<(usize, u8)> = None;
    // (table width, layout) of the widest table found below other lines.
    let mut titled: Option<(usize, Layout)> = None;
    // (cells, layout) of the largest table another delimiter finds below a first line that
    // the first delimiter reads as the header of a table (a title that contains the delimiter).
    let mut rival: Option<(usize, Layout)> = None;
    // The first delimiter's records when it splits most of them like the header.
    let mut plain: Option<Vec<Shape>> = None;
    for delimiter in std::iter::once(first).chain(others.iter().copied().filter(|d| *d != first)) {
        let records = shapes(prefix, complete, delimiter);
        let (matching, total) = consistency(&records);
        if let Some(start) = find_table(&records) {
            let header = &records[start];
            let sniffs_alike = sniff_delimiter(&prefix[header.span.clone()]) == delimiter;
            let wider = titled.as_ref().is_none_or(|(width, _)| header.width > *width);
            // Another delimiter's lines above a table only count when the first one gives no table.
            if (delimiter == first || (sniffs_alike && plain.is_none())) && wider {
                titled = Some((
                    header.width,
                    with_context(&records, layout_below(&records, start, delimiter)),
                ));
            } else if delimiter != first && sniffs_alike && plain.is_some() {
                let rows = records[start + 1..]
                    .iter()
                    .filter(|r| r.fields == header.fields)
                    .count();
                let cells = header.width * rows;
                if rival.as_ref().is_none_or(|(c, _)| cells > *c) {
                    rival = Some((cells, with_context(&records, layout_below(&records, start, delimiter))));
                }
            }
            continue;
        }
        let fields = records.first().map_or(0, |r| r.fields);
        if delimiter == first {
            if matching * 2 > total {
                plain = Some(records);
            }
        } else if fields >= 2 && total >= 3 && matching == total && consistent.is_none_or(|(f, _)| fields > f) {
            consistent = Some((fields, delimiter));
        }
    }
    if let Some((_, layout)) = titled {
        return layout;
    }
    let first_fields = plain.as_ref().and_then(|r| r.first()).map_or(0, |r| r.fields);
    // Two delimiters read consistent rows: the one with more columns over more rows wins
    // (DuckDB's rule), and the other's first line is a title.
    // Only when the first line holds its delimiter and does not name typed rows below it
    // (then it is the header), and the other table has a header of its own.
    if let (Some((cells, layout)), Some(records)) = (rival, plain.as_deref()) {
        let matching = records.iter().filter(|r| r.fields == first_fields).count();
        if first_fields >= 2
            && cells > first_fields * matching
            && !layout.headerless
            && !names_typed_rows(records, 0, first_fields)
        {
            return layout;
        }
    }
    let delimiter = match consistent {
        // Another delimiter splits every record alike: where the first line's delimiter
        // splits most rows unlike the header, or splits them alike into fewer fields (a
        // tab-separated export whose names and values hold commas), it is the delimiter.
        Some((fields, other)) if plain.is_none() || fields > first_fields => {
            return Layout::plain(other, false);
        }
        _ => first,
    };
    let headerless = plain
        .as_deref()
        .is_some_and(|records| records.len() >= 2 && !is_header_at(records, 0, records[0].fields));
    let layout = Layout::plain(delimiter, headerless);
    match plain.as_deref() {
        Some(records) if delimiter == first => with_context(records, layout),
        _ => layout,
    }
}

/// Adds what the records say about the table's header beyond where it is: a line of group
/// labels over it (see [`group_line`]), and whether its first column is typed.
fn with_context(records: &[Shape], mut layout: Layout) -> Layout {
    if layout.headerless {
        return layout;
    }
    let h = layout.preamble;
    let Some(header) = records.get(h) else {
        return layout;
    };
    let width = header.fields.max(layout.columns);
    if group_line(header, width) && h + 1 < records.len() && names_typed_rows(records, h + 1, width) {
        // The first line found is the group line: the header is the line below it.
        layout.preamble = h + 1;
        layout.group_above = true;
    } else if h >= 1 && group_line(&records[h - 1], width) && names_typed_rows(records, h, width) {
        layout.group_above = true;
    }
    let h = layout.preamble;
    let mut first = 0u16;
    // Rows that use more than half the table (not the notes that may end it).
    for r in records[h + 1..]
        .iter()
        .filter(|r| r.fields > 1 && r.width <= width && r.width * 2 > width)
    {
        if let Some(k) = r.kinds.first() {
            if !matches!(k, Kind::Empty | Kind::Missing) {
                first |= 1 << *k as u16;
            }
        }
    }
    layout.typed_first = first != 0 && first & (1 << Kind::Text as u16) == 0;
    layout
}

/// A line of group labels over a header of `width` fields (`run-a,,run-b,` over `X,Y,X,Y`, or
/// a spreadsheet's merged cells `,Temperature,,Pressure,`): as many fields as the header, at
/// least two labels, all text, and fewer distinct labels than columns (a label spans the
/// empty cells to its right, or repeats over each of its columns).
fn group_line(r: &Shape, width: usize) -> bool {
    let labels = r.kinds.iter().filter(|k| **k != Kind::Empty).count();
    !r.comment
        && r.fields == width
        && labels >= 2
        && r.kinds.iter().all(|k| matches!(k, Kind::Empty | Kind::Text))
        && r.distinct_labels < width
}

/// Whether `records[at]` names the columns of the typed rows below it (see
/// [`table::names_typed_rows`]), over the sniffed records below with a delimiter and no wider
/// than the table.
fn names_typed_rows(records: &[Shape], at: usize, width: usize) -> bool {
    let first = &records[at];
    first.fields == width && {
        let rows = records[at + 1..]
            .iter()
            .filter(|r| r.fields > 1 && r.width <= width)
            .map(|r| r.kinds.as_slice());
        table::names_typed_rows(&first.kinds, rows)
    }
}

/// The header (or first row) of a table that [`find_table`] found starting at `start`.
fn layout_below(records: &[Shape], start: usize, delimiter: u8) -> Layout {
    let width = records[start].fields;
    let mut at = start;
    while records[at].comment
        && records.get(at + 1).is_some_and(|next| next.width == records[at].width)
        && is_header_at(records, at + 1, width)
    {
        at += 1;
    }
    if is_header_at(records, at, width) {
        return Layout {
            delimiter,
            preamble: at,
            headerless: false,
            columns: 0,
            group_above: false,
            typed_first: false,
        };
    }
    if let Some(above) = at.checked_sub(1).map(|i| &records[i]) {
        // Its names cover more than half the table, or it is padded to the table's width
        // (`a,b,,` over rows of four: pandas' `Unnamed: 2`, `Unnamed: 3`).
        let fits = !above.comment
            && above.width >= 2
            && above.fields <= width
            && (above.width * 2 > width || above.fields == width);
        if fits && is_header_at(records, at - 1, width) {
            return Layout {
                delimiter,
                preamble: at - 1,
                headerless: false,
                columns: width,
                group_above: false,
                typed_first: false,
            };
        }
    }
    Layout {
        delimiter,
        preamble: at,
        headerless: true,
        columns: 0,
        group_above: false,
        typed_first: false,
    }
}

/// Whether `records[at]` is the header of the table of `width` columns below it, by the type
/// rule of [`table`] over the sniffed records below with a delimiter and no wider than the table.
fn is_header_at(records: &[Shape], at: usize, width: usize) -> bool {
    let first = &records[at];
    if first.counts_columns {
        return true;
    }
    let rows = records[at + 1..]
        .iter()
        .filter(|r| r.fields > 1 && r.width <= width)
        .map(|r| r.kinds.as_slice());
    table::is_header(&first.kinds, rows)
}

/// How many sniffed records have as many fields as the first one, of how many.
fn consistency(records: &[Shape]) -> (usize, usize) {
    let Some(first) = records.first() else {
        return (0, 0);
    };
    let matching = records.iter().filter(|r| r.fields == first.fields).count();
    (matching, records.len())
}

/// What the sniffer needs to know of one non-blank record.
#[derive(Debug)]
struct Shape {
    fields: usize,
    /// Fields up to the last non-empty one (trailing empty cells of a spreadsheet row ignored).
    width: usize,
    comment: bool,
    /// What each field is, for the header rule.
    kinds: Vec<Kind>,
    /// The fields are `0,1,2,…` or `1,2,3,…`.
    counts_columns: bool,
    /// Distinct non-empty fields, counted for the records that may be a group line above a
    /// header (near the top, all text); else the field count.
    distinct_labels: usize,
    /// The record's bytes in the prefix (with any blank lines before it).
    span: std::ops::Range<usize>,
}

fn shapes(prefix: &[u8], complete: bool, delimiter: u8) -> Vec<Shape> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(prefix);
    let mut rec = csv::ByteRecord::new();
    let mut out = Vec::new();
    let mut start = 0;
    while out.len() < SNIFF_RECORDS {
        if !matches!(rdr.read_byte_record(&mut rec), Ok(true)) {
            // The last record may be cut off where the prefix ends.
            if !complete {
                out.pop();
            }
            break;
        }
        let end = rdr.position().byte() as usize;
        if !is_blank(&rec) {
            let kinds: Vec<Kind> = rec.iter().map(table::kind).collect();
            let distinct_labels =
                if out.len() <= MAX_PREAMBLE && kinds.iter().all(|k| matches!(k, Kind::Empty | Kind::Text)) {
                    let mut labels: Vec<&[u8]> = rec.iter().map(|f| f.trim_ascii()).filter(|f| !f.is_empty()).collect();
                    labels.sort_unstable();
                    labels.dedup();
                    labels.len()
                } else {
                    rec.len()
                };
            out.push(Shape {
                fields: rec.len(),
                width: width(&rec),
                comment: rec.get(0).is_some_and(|f| f.starts_with(b"#")),
                kinds,
                counts_columns: table::counts_columns(rec.iter()),
                distinct_labels,
                span: start..end,
            });
        }
        start = end;
    }
    out
}

/// How many records precede the table, when the first record is a title (or the start of
/// metadata) rather than the table's header or first row. See [`sniff_layout`].
fn find_table(records: &[Shape]) -> Option<usize> {
    let (first, below) = records.split_first()?;
    let typical = most_common(below.iter().map(|r| r.width))?;
    // A first line of several fields whose count no line below has is a title (or metadata),
    // when the line below it names the columns of the typed rows under it and most lines
    // with a delimiter below are as wide as that line.
    let unmatched = first.fields >= 2 && !first.comment && below.iter().all(|r| r.fields != first.fields);
    if unmatched && records.len() >= 3 {
        let second = &records[1];
        let body: Vec<&Shape> = records[2..].iter().filter(|r| r.fields > 1).collect();
        let fitting = body
            .iter()
            .filter(|r| r.width <= second.fields && r.width * 2 > second.fields)
            .count();
        if second.width == typical && names_typed_rows(records, 1, second.fields) && fitting * 5 >= body.len() * 4 {
            return Some(1);
        }
    }
    let narrow = first.width * 2 <= typical;
    let overflows = below.iter().any(|r| r.width > first.fields);
    if !(narrow || overflows) {
        return None;
    }
    let start = (1..=MAX_PREAMBLE.min(records.len().saturating_sub(2))).find(|&s| {
        let start = &records[s];
        let width = start.width;
        if width < 2 {
            return false;
        }
        if records[..s].iter().any(|r| r.width >= width && !r.comment) {
            return false;
        }
        // Lines without a delimiter (notes, or rows with one value) say nothing of the width.
        let body: Vec<&Shape> = records[s + 1..].iter().filter(|r| r.fields > 1).collect();
        let fitting = body
            .iter()
            .filter(|r| r.width <= start.fields && r.width * 2 > width)
            .count();
        most_common(body.iter().map(|r| r.width)) == Some(width) && fitting * 5 >= body.len() * 4
    })?;
    // A table above it (a run of lines alike that are not `#` comments) is the first table;
    // the rest is found while reading (see `Input::read_row`).
    let alike = |a: &Shape, b: &Shape| a.fields == b.fields && b.width >= 2 && !b.comment;
    let above = (0..start).find(|&r| {
        records[r].width >= 2
            && !records[r].comment
            && (r..r + TABLE_RUN).all(|i| i < start && alike(&records[r], &records[i]))
    });
    Some(above.unwrap_or(start))
}

fn most_common(values: impl Iterator<Item = usize>) -> Option<usize> {
    let mut counts = std::collections::BTreeMap::new();
    for v in values {
        *counts.entry(v).or_insert(0usize) += 1;
    }
    counts.into_iter().max_by_key(|&(v, n)| (n, v)).map(|(v, _)| v)
}

/// The first non-blank line if it is complete, quote-aware (a newline inside quotes does not end it).
fn first_line(buf: &[u8]) -> Option<&[u8]> {
    first_line_impl(buf, false)
}

/// Like [`first_line`], but the end of `buf` also ends a line (for sniffing a short or cut-off prefix).
fn first_line_or_rest(buf: &[u8]) -> Option<&[u8]> {
    first_line_impl(buf, true)
}

fn first_line_impl(buf: &[u8], end_is_eol: bool) -> Option<&[u8]> {
    let is_blank = |l: &[u8]| l.iter().all(|c| *c == b' ' || *c == b'\t');
    let mut start = 0;
    let mut in_quotes = false;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' | b'\r' if !in_quotes => {
                let line = &buf[start..i];
                if is_blank(line) {
                    start = i + 1;
                } else {
                    return Some(line);
                }
            }
            _ => {}
        }
    }
    let rest = &buf[start.min(buf.len())..];
    (end_is_eol && !is_blank(rest)).then_some(rest)
}

/// Comma unless the first line has none and has `;`, tab or `|` (the most frequent wins).
pub(super) fn sniff_delimiter(prefix: &[u8]) -> u8 {
    let line = first_line_or_rest(prefix).unwrap_or_default();
    let mut counts = [0usize; 4];
    let cands = [b',', b';', b'\t', b'|'];
    let mut in_quotes = false;
    for &b in line {
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            if let Some(k) = cands.iter().position(|c| *c == b) {
                counts[k] += 1;
            }
        }
    }
    if counts[0] > 0 {
        return b',';
    }
    let mut best = b',';
    let mut best_n = 0;
    for k in 1..4 {
        if counts[k] > best_n {
            best_n = counts[k];
            best = cands[k];
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_semicolon_tab_pipe_and_prefers_comma() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1;2;3\n"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc\n"), b'\t');
        assert_eq!(sniff_delimiter(b"a|b|c"), b'|');
        assert_eq!(sniff_delimiter(b"a,b;c\n"), b',');
        assert_eq!(sniff_delimiter(b"single\n1\n"), b',');
        // Delimiters inside quotes do not count.
        assert_eq!(sniff_delimiter(b"\"a;b\"|c\n"), b'|');
        // Leading blank lines are skipped.
        assert_eq!(sniff_delimiter(b"\n  \na;b\n"), b';');
        // Whitespace-only lines never decide the delimiter.
        assert_eq!(sniff_delimiter(b"\r\n  \n\t\n"), b',');
        assert_eq!(sniff_delimiter(b"x;y"), b';');
    }
}

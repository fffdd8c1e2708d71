#!/usr/bin/env python
"""Compare table-shape detection of our engine, pandas, pandas-sniff and DuckDB against truth.json.

Run make_cases.py first. Needs pandas and duckdb (`pip install pandas duckdb`) and a built
`file-service` (FILE_SERVICE_BIN, default target/release/file-service). Writes the per-case
table to stdout and to report.md beside the cases.
"""
import json
import os
import subprocess
import sys
import warnings

import duckdb
import pandas as pd

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.environ.get("SHAPE_CASES", os.path.join(HERE, "..", "..", "target", "shape-cases"))
ENGINE = os.environ.get("FILE_SERVICE_BIN", os.path.join(HERE, "..", "..", "target", "release", "file-service"))
TRUTH = json.load(open(os.path.join(CASES, "truth.json"), encoding="utf-8"))


def short(e):
    s = str(e).strip().splitlines()
    s = s[0] if s else type(e).__name__
    return s[:90]


def run_ours(path):
    try:
        p = subprocess.run([ENGINE, "summarize", path, "--json"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "timeout", {}
    if p.returncode != 0:
        return None, short(p.stderr or f"exit {p.returncode}"), {}
    j = json.loads(p.stdout)
    extra = {k: j.get(k) for k in ("delimiter", "encoding", "header_line", "footer_lines", "skipped_lines", "other_tables",
                                   "header_groups", "decimal")}
    extra["names"] = [c["name"] for c in j.get("columns", [])]
    return (j["row_count"], j["column_count"]), None, extra


def run_pandas(path):
    try:
        df = pd.read_csv(path, sep="\t") if path.endswith(".tsv") else pd.read_csv(path)
        return df.shape, None, {"names": list(map(str, df.columns))}
    except Exception as e:
        return None, short(e), {}


def run_pandas_sniff(path):
    try:
        df = pd.read_csv(path, sep=None, engine="python")
        return df.shape, None, {"names": list(map(str, df.columns))}
    except Exception as e:
        return None, short(e), {}


def run_duckdb(path):
    con = duckdb.connect()
    try:
        rel = con.sql(f"select * from read_csv('{path}')")
        cols = len(rel.columns)
        n = con.sql(f"select count(*) from read_csv('{path}')").fetchall()[0][0]
        return (n, cols), None, {"names": list(rel.columns)}
    except Exception as e:
        return None, short(e), {}
    finally:
        con.close()


TOOLS = [("ours", run_ours), ("pandas", run_pandas), ("pandas-sniff", run_pandas_sniff), ("duckdb", run_duckdb)]


def cell(shape, err, truth):
    if shape is None:
        return f"FAIL: {err}".replace("|", "\\|")
    r, c = shape
    mark = "✅" if (r, c) == truth else ("◐" if c == truth[1] else "❌")
    return f"{mark} {r}×{c}"


def main():
    out = []
    score = {t: {"exact": 0, "cols": 0, "names": 0, "fail": 0} for t, _ in TOOLS}
    results = {}
    out.append("# CSV shape-detection evaluation\n")
    out.append("✅ = rows and cols exact, ◐ = cols right / rows wrong, ❌ = cols wrong, FAIL = error\n")
    out.append("| case | truth | ours | pandas | pandas-sniff | duckdb |")
    out.append("|---|---|---|---|---|---|")
    for name in sorted(TRUTH):
        t = TRUTH[name]
        truth = (t["rows"], t["cols"])
        path = os.path.join(CASES, name)
        row = [name, f"{truth[0]}×{truth[1]}"]
        results[name] = {}
        for tool, fn in TOOLS:
            shape, err, extra = fn(path)
            shape = tuple(shape) if shape is not None else None
            results[name][tool] = {"shape": shape, "err": err, **extra}
            if shape is None:
                score[tool]["fail"] += 1
            else:
                score[tool]["exact"] += shape == truth
                score[tool]["cols"] += shape[1] == truth[1]
                score[tool]["names"] += [str(x).strip() for x in extra.get("names", [])] == [str(x).strip() for x in t["header"]]
            row.append(cell(shape, err, truth))
        out.append("| " + " | ".join(row) + " |")
    n = len(TRUTH)
    out.append("\n## Totals\n")
    out.append("| tool | shape exact | cols right | names exact | failures |")
    out.append("|---|---|---|---|---|")
    for tool, _ in TOOLS:
        s = score[tool]
        out.append(f"| {tool} | {s['exact']}/{n} | {s['cols']}/{n} | {s['names']}/{n} | {s['fail']}/{n} |")
    out.append("")
    for tool, _ in TOOLS:
        s = score[tool]
        out.append(f"- **{tool}**: exact {s['exact']}/{n}, cols right {s['cols']}/{n}, names exact {s['names']}/{n}, failures {s['fail']}/{n}")
    text = "\n".join(out) + "\n"
    print(text)
    with open(os.path.join(CASES, "report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(CASES, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, ensure_ascii=False, default=str)


if __name__ == "__main__":
    main()

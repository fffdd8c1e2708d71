"""DuckDB on the files the load benchmark's `queries` section gives file-service.

Run by benches/load/queries.rs (embedded with include_str!) with the Python of a cached
virtualenv that has the pinned duckdb; also runnable by hand:

    python duckdb_queries.py '{"data": "orders.csv", "format": "csv", "regions": "regions.csv",
                               "runs": 3, "queries": [{"name": "count", "sql": "SELECT ..."}],
                               "convert_to": null}'

`data` is read with read_csv(...) or read_parquet(...) (`format`) as the view `data`, and
`regions` (a CSV) as the view `regions`: views, so every query reads the file again, which
is DuckDB's normal mode on a file (nothing is cached between queries). Each query runs
`runs` times in this one process, after `import duckdb`; the wall time of each run includes
fetching all of its rows into Python. `convert_to`: also time COPY of the whole CSV to that
Parquet file (after the queries). Prints one JSON object on stdout.
"""

import datetime
import decimal
import json
import os
import resource
import sys
import time


def literal(path):
    return "'" + path.replace("'", "''") + "'"


def plain(value):
    """A result value as JSON: numbers stay numbers, dates become ISO text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    return str(value)


def main():
    spec = json.loads(sys.argv[1])
    started = time.perf_counter()
    import duckdb

    out = {"version": duckdb.__version__, "import_s": time.perf_counter() - started, "queries": []}
    con = duckdb.connect()
    out["threads"] = con.execute("SELECT current_setting('threads')").fetchone()[0]
    reader = "read_csv" if spec["format"] == "csv" else "read_parquet"
    con.execute(f"CREATE VIEW data AS SELECT * FROM {reader}({literal(spec['data'])})")
    con.execute(f"CREATE VIEW regions AS SELECT * FROM read_csv({literal(spec['regions'])})")
    # What DuckDB made of the file's columns (its CSV sniffer's types, or the Parquet's).
    out["data_types"] = [[r[0], r[1]] for r in con.execute("DESCRIBE data").fetchall()]
    for query in spec["queries"]:
        entry = {"name": query["name"], "runs_ms": []}
        try:
            for _ in range(spec["runs"]):
                t = time.perf_counter()
                cursor = con.execute(query["sql"])
                rows = cursor.fetchall()
                entry["runs_ms"].append((time.perf_counter() - t) * 1000.0)
            entry["columns"] = [d[0] for d in cursor.description]
            entry["rows"] = [[plain(v) for v in row] for row in rows]
        except Exception as e:  # reported per query; the others still run
            entry["error"] = f"{type(e).__name__}: {e}"
        out["queries"].append(entry)
    if spec.get("convert_to"):
        try:
            t = time.perf_counter()
            con.execute(
                f"COPY (SELECT * FROM read_csv({literal(spec['data'])})) "
                f"TO {literal(spec['convert_to'])} (FORMAT parquet)"
            )
            out["convert_s"] = time.perf_counter() - t
            out["convert_bytes"] = os.path.getsize(spec["convert_to"])
        except Exception as e:
            out["convert_error"] = f"{type(e).__name__}: {e}"
    out["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

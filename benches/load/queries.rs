//! The `queries` section (opt-in: `--sections queries`): SQL over stored files,
//! timed over HTTP and set beside DuckDB on the same files in the same run.
//!
//! Per size, on a fresh SQLite server: the generated CSV is uploaded as `orders` and a small
//! city → region CSV as `regions`. The first query on `orders` builds its columnar copy and
//! is timed on its own; then every query runs [`RUNS`] times warm. `orders` is then
//! downloaded as Parquet (`content?format=parquet`), uploaded again as `orders_parquet`
//! (scanned as stored, no copy) and queried the same way; its join reads the CSV `regions`.
//! Once the server has stopped, DuckDB (a pinned version in a cached virtualenv) runs the
//! same SQL on the same CSV and on that same Parquet file. Results are compared
//! (file-service vs DuckDB, CSV vs Parquet); a difference is reported, never hidden.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::multipart::{Form, Part};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

use crate::server::{self, Server};
use crate::upload::client;

/// The section's own user (each section's server is fresh anyway).
pub(crate) const QUERY_USER: i64 = 4;
/// Warm runs of each query, file-service and DuckDB alike; the median is reported.
const RUNS: usize = 3;
/// The DuckDB the comparison runs, from PyPI, in `${XDG_CACHE_HOME:-~/.cache}/file-service/duckdb-venv`.
const DUCKDB_VERSION: &str = "2.0.1";
/// The DuckDB side (embedded, so the bench binary runs from anywhere).
const DUCKDB_SCRIPT: &str = include_str!("duckdb_queries.py");
/// Bound on one DuckDB process (all queries on one file) and on the virtualenv's install.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The server's query deadline (default 30 s): the first query on 1 GB builds a copy of it.
const QUERY_TIMEOUT_SECONDS: &str = "1800";
const CHUNK: usize = 256 * 1024;

/// How a query's result is compared with another engine's.
#[derive(Clone, Copy)]
enum Shape {
    /// Row by row, in order (the ORDER BY is total).
    Ordered,
    /// As a map from the first column (the order of NULL keys differs between engines).
    Keyed,
}

struct QuerySpec {
    name: &'static str,
    sql: &'static str,
    /// The answer's `limit`: enough for the whole result.
    limit: usize,
    shape: Shape,
}

/// Standard SQL, the same text for file-service (polars) and DuckDB. The file is `data`,
/// the city → region file `"regions"`. `is_member` has empty cells, so the service's profile
/// (pandas' dtypes) types it `object` (text "true"/"false") where DuckDB's CSV sniffer says
/// BOOLEAN: `is_member = 'true'` means the same on both, `AND is_member` would not.
/// `quantity` has empty cells too: float64 in the service, BIGINT in DuckDB's CSV reading.
const QUERIES: &[QuerySpec] = &[
    QuerySpec {
        name: "filtered count",
        sql: "SELECT COUNT(*) AS n FROM data WHERE quantity > 5 AND is_member = 'true'",
        limit: 1000,
        shape: Shape::Ordered,
    },
    QuerySpec {
        name: "group by (~70k customers)",
        sql: "SELECT customer, SUM(quantity) AS qty, AVG(unit_price) AS avg_price, COUNT(*) AS n \
              FROM data GROUP BY customer ORDER BY customer",
        // 14 names × 5,000 numbers, plus the empty cells' NULL group.
        limit: 100_000,
        shape: Shape::Keyed,
    },
    QuerySpec {
        name: "top 10",
        sql: "SELECT id, ref, unit_price FROM data ORDER BY unit_price DESC, id LIMIT 10",
        limit: 1000,
        shape: Shape::Ordered,
    },
    QuerySpec {
        name: "join regions",
        sql: "SELECT r.region, SUM(d.quantity) AS qty FROM data d JOIN \"regions\" r ON d.city = r.city \
              GROUP BY r.region ORDER BY r.region",
        limit: 1000,
        shape: Shape::Keyed,
    },
    QuerySpec {
        name: "count distinct",
        sql: "SELECT COUNT(DISTINCT customer) AS n FROM data",
        limit: 1000,
        shape: Shape::Ordered,
    },
    QuerySpec {
        name: "group by year",
        sql: "SELECT yr, COUNT(*) AS n FROM (SELECT EXTRACT(YEAR FROM order_date) AS yr FROM data) t \
              GROUP BY yr ORDER BY yr",
        // A few years, plus the empty cells' NULL group.
        limit: 1000,
        shape: Shape::Keyed,
    },
];

/// data.rs's CITIES, as written in the CSV (quoted where they hold a comma), each with a
/// region. Kept in step by hand: a city missing here drops out of the join on both sides.
const REGIONS: &[(&str, &str)] = &[
    ("Paris", "Europe"),
    ("Berlin", "Europe"),
    ("\"Portland, OR\"", "North America"),
    ("Tokyo", "Asia"),
    ("São Paulo", "South America"),
    ("Lagos", "Africa"),
    ("\"Austin, TX\"", "North America"),
    ("Oslo", "Europe"),
];

/// One timed HTTP exchange.
#[derive(Debug, Clone, Serialize)]
pub struct Timed {
    pub seconds: f64,
    pub bytes: Option<u64>,
    pub error: Option<String>,
}

/// Runs of one query on one engine and file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Runs {
    /// Wall time of each run, as the client saw it (HTTP round trip, or DuckDB's execute +
    /// fetchall in Python).
    pub runs_ms: Vec<f64>,
    pub median_ms: Option<f64>,
    /// file-service's own `elapsed_ms` of each run (no HTTP, no JSON writing).
    pub server_ms: Vec<f64>,
    pub server_median_ms: Option<f64>,
    pub row_count: Option<usize>,
    pub truncated: Option<bool>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub name: String,
    pub sql: String,
    /// The first query on the CSV, which builds its columnar copy (only the first query has one).
    pub csv_first: Option<Runs>,
    pub csv_warm: Runs,
    pub parquet: Runs,
    pub duckdb_csv: Runs,
    pub duckdb_parquet: Runs,
    /// file-service CSV warm / DuckDB CSV, medians.
    pub csv_ratio: Option<f64>,
    /// file-service Parquet / DuckDB Parquet, medians.
    pub parquet_ratio: Option<f64>,
    /// The first rows file-service gave on the CSV (at most 3).
    pub sample: Vec<Vec<Value>>,
    /// The pairs of results compared ("file-service CSV vs DuckDB CSV", …).
    pub compared: Vec<String>,
    /// Every difference found between the results (empty: all agree).
    pub mismatches: Vec<String>,
}

/// Everything the section measured on one size.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QuerySizeReport {
    pub size_mb: u64,
    pub csv_bytes: u64,
    pub skipped: Option<String>,
    pub load_avg: String,
    pub upload: Option<Timed>,
    pub rows: Option<u64>,
    /// Size of the CSV's columnar copy in the server's `DATA_DIR/query-tables/`.
    pub copy_bytes: Option<u64>,
    /// Server CPU time (all threads) of the first query, which builds the copy (unless
    /// the server made it ahead).
    pub first_query_server_cpu_s: Option<f64>,
    /// Seconds from the CSV upload's answer until the server had made its table ahead of
    /// the first query (`None`: the server does not make tables ahead).
    pub tables_ready_s: Option<f64>,
    /// `GET /files/orders/content?format=parquet`, written to disk by the client.
    pub parquet_download: Option<Timed>,
    pub parquet_upload: Option<Timed>,
    pub queries: Vec<QueryResult>,
    /// VmHWM after the CSV queries (copy included) and at the end.
    pub server_peak_rss_after_csv_mib: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub duckdb: Option<DuckdbInfo>,
    /// Failed requests, as sent and as answered.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DuckdbInfo {
    pub version: Option<String>,
    pub threads: Option<Value>,
    /// How DuckDB typed the CSV's columns (its sniffer).
    pub csv_types: Vec<(String, String)>,
    pub csv_peak_rss_mib: Option<f64>,
    pub parquet_peak_rss_mib: Option<f64>,
    /// COPY (SELECT * FROM read_csv(…)) TO '….parquet'.
    pub csv_to_parquet_s: Option<f64>,
    pub csv_to_parquet_bytes: Option<u64>,
    pub notes: Vec<String>,
}

/// The section on every CSV; notes (DuckDB skipped, mismatches) go to `notes`.
pub fn run(
    rt: &Runtime,
    bin: &Path,
    csvs: &[(u64, PathBuf)],
    cache: &Path,
    notes: &mut Vec<String>,
) -> Vec<QuerySizeReport> {
    let regions = match write_regions(cache) {
        Ok(path) => path,
        Err(e) => {
            notes.push(format!("queries: skipped, cannot write the regions CSV: {e}"));
            return Vec::new();
        }
    };
    let duckdb = duckdb_python();
    if let Err(e) = &duckdb {
        eprintln!("load: queries: DuckDB skipped: {e}");
        notes.push(format!("queries: DuckDB skipped: {e}"));
    }
    let mut out = Vec::new();
    for (mb, csv) in csvs {
        eprintln!("load: queries on the {mb} MB CSV");
        let report = run_size(rt, bin, *mb, csv, &regions, cache, duckdb.as_deref().ok());
        for q in &report.queries {
            for m in &q.mismatches {
                notes.push(format!("queries {mb} MB, {}: MISMATCH: {m}", q.name));
            }
        }
        for e in &report.errors {
            notes.push(format!("queries {mb} MB: ERROR: {}", truncate(e, 400)));
        }
        out.push(report);
    }
    out
}

fn write_regions(cache: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    let path = cache.join("load-regions.csv");
    let mut text = String::from("city,region\n");
    for (city, region) in REGIONS {
        let _ = writeln!(text, "{city},{region}");
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

fn run_size(
    rt: &Runtime,
    bin: &Path,
    mb: u64,
    csv: &Path,
    regions: &Path,
    cache: &Path,
    duckdb: Option<&Path>,
) -> QuerySizeReport {
    let mut report = QuerySizeReport {
        size_mb: mb,
        csv_bytes: std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0),
        load_avg: crate::load_avg(),
        queries: QUERIES
            .iter()
            .map(|q| QueryResult {
                name: q.name.into(),
                sql: q.sql.into(),
                csv_first: None,
                csv_warm: Runs::default(),
                parquet: Runs::default(),
                duckdb_csv: Runs::default(),
                duckdb_parquet: Runs::default(),
                csv_ratio: None,
                parquet_ratio: None,
                sample: Vec::new(),
                compared: Vec::new(),
                mismatches: Vec::new(),
            })
            .collect(),
        ..QuerySizeReport::default()
    };
    // The downloaded Parquet (and DuckDB's own conversion) beside the CSVs, removed at the end.
    let work = match tempfile::Builder::new().prefix("queries-").tempdir_in(cache) {
        Ok(dir) => dir,
        Err(e) => {
            report.skipped = Some(format!("cannot create a work folder in {}: {e}", cache.display()));
            return report;
        }
    };
    let parquet = work.path().join("orders.parquet");
    let mut results: Results = BTreeMap::new();
    let downloaded = serve_phase(rt, bin, csv, regions, &parquet, &mut report, &mut results);
    if report.skipped.is_none() {
        if let Some(python) = duckdb {
            let parquet = downloaded.then_some(parquet.as_path());
            duckdb_phase(python, csv, regions, parquet, work.path(), &mut report, &mut results);
        }
    }
    compare_all(&mut report, &results);
    report
}

/// Results kept for comparison: (query index, engine) → (columns, rows).
type Results = BTreeMap<(usize, Engine), Table>;
type Table = (Vec<String>, Vec<Vec<Value>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    ServiceCsv,
    ServiceParquet,
    DuckdbCsv,
    DuckdbParquet,
}

impl Engine {
    fn label(self) -> &'static str {
        match self {
            Engine::ServiceCsv => "file-service CSV",
            Engine::ServiceParquet => "file-service Parquet",
            Engine::DuckdbCsv => "DuckDB CSV",
            Engine::DuckdbParquet => "DuckDB Parquet",
        }
    }
}

/// The server's part; true when the Parquet download landed in `parquet`.
fn serve_phase(
    rt: &Runtime,
    bin: &Path,
    csv: &Path,
    regions: &Path,
    parquet: &Path,
    report: &mut QuerySizeReport,
    results: &mut Results,
) -> bool {
    // Our own DATA_DIR (Server::start lets `env` override its own), so the copies' folder
    // can be measured.
    let data = match tempfile::Builder::new().prefix("file-service-queries-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            report.skipped = Some(format!("cannot create a data folder: {e}"));
            return false;
        }
    };
    let data_dir = data.path().join("data");
    let env = vec![
        crate::upload_limit(csv),
        ("QUERY_TIMEOUT_SECONDS".to_string(), QUERY_TIMEOUT_SECONDS.to_string()),
        ("DATA_DIR".to_string(), data_dir.display().to_string()),
    ];
    let server = match Server::start(bin, &env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("load: queries skipped: the server refused to start: {e}");
            report.skipped = Some(format!("the server refused to start: {e}"));
            return false;
        }
    };
    let copies = data_dir.join("query-tables");
    let downloaded = rt.block_on(serve_steps(&server, csv, regions, parquet, &copies, report, results));
    report.server_peak_rss_mib = Some(server.peak_rss_mib());
    server.stop();
    drop(data);
    downloaded
}

async fn serve_steps(
    server: &Server,
    csv: &Path,
    regions: &Path,
    parquet: &Path,
    copies: &Path,
    report: &mut QuerySizeReport,
    results: &mut Results,
) -> bool {
    let http = client();
    eprintln!("load: queries: uploading {}", csv.display());
    let (upload, rows) = upload_file(&http, server, csv, "orders", "orders.csv", "text/csv").await;
    let uploaded_at = Instant::now();
    report.rows = rows;
    let failed = upload.error.clone();
    report.upload = Some(upload);
    if let Some(e) = failed {
        report.errors.push(format!("upload of orders: {e}"));
        return false;
    }
    let (upload, _) = upload_file(&http, server, regions, "regions", "regions.csv", "text/csv").await;
    if let Some(e) = upload.error {
        report.errors.push(format!("upload of regions: {e}"));
    }
    // regions' own copy, built before anything is timed (it is 8 rows).
    if let Err(e) = query(&http, server, "regions", "SELECT COUNT(*) AS n FROM data", 1000).await {
        report.errors.push(e);
    }
    let copies_before = dir_bytes(copies);
    // A server that makes tables ahead is given the time it says it needs (the first
    // query then finds the copy made); any other makes it at the first query.
    report.tables_ready_s = tables_ready(&http, server, uploaded_at, 1, &mut report.errors).await;

    // The first query on the CSV: builds the columnar copy, or finds it made ahead.
    eprintln!("load: queries: first query on orders");
    let cpu_before = server.cpu_seconds();
    let first = query(&http, server, "orders", QUERIES[0].sql, QUERIES[0].limit).await;
    report.first_query_server_cpu_s = Some(server.cpu_seconds() - cpu_before);
    report.copy_bytes = dir_bytes(copies).map(|after| after.saturating_sub(copies_before.unwrap_or(0)));
    let mut first_runs = Runs::default();
    record(&mut first_runs, first, &mut report.errors);
    report.queries[0].csv_first = Some(first_runs);

    eprintln!("load: queries: warm queries on orders");
    for (i, q) in QUERIES.iter().enumerate() {
        let (runs, table) = timed_runs(&http, server, "orders", q, &mut report.errors).await;
        report.queries[i].sample = table
            .as_ref()
            .map(|t| t.1.iter().take(3).cloned().collect())
            .unwrap_or_default();
        report.queries[i].csv_warm = runs;
        if let Some(t) = table {
            results.insert((i, Engine::ServiceCsv), t);
        }
    }
    report.server_peak_rss_after_csv_mib = Some(server.peak_rss_mib());

    eprintln!("load: queries: downloading orders as Parquet");
    let download = download_parquet(&http, server, "orders", parquet).await;
    let downloaded = download.error.is_none();
    if let Some(e) = &download.error {
        report.errors.push(e.clone());
    }
    report.parquet_download = Some(download);
    if !downloaded {
        return false;
    }
    let (upload, _) = upload_file(
        &http,
        server,
        parquet,
        "orders_parquet",
        "orders_parquet.parquet",
        "application/vnd.apache.parquet",
    )
    .await;
    let failed = upload.error.clone();
    report.parquet_upload = Some(upload);
    if let Some(e) = failed {
        report.errors.push(format!("upload of orders_parquet: {e}"));
        return true;
    }
    // Its row file is made in the background: timed queries start once it is.
    tables_ready(&http, server, Instant::now(), 3, &mut report.errors).await;
    eprintln!("load: queries: queries on orders_parquet");
    for (i, q) in QUERIES.iter().enumerate() {
        let (runs, table) = timed_runs(&http, server, "orders_parquet", q, &mut report.errors).await;
        report.queries[i].parquet = runs;
        if let Some(t) = table {
            results.insert((i, Engine::ServiceParquet), t);
        }
    }
    true
}

/// Waits until the server has made the tables of the first `files` uploaded files ahead
/// (its metric counts them made or failed; it makes them in upload order): the seconds
/// since `since`, or `None` when the server does not make tables ahead (no such metric).
pub(crate) async fn tables_ready(
    http: &reqwest::Client,
    server: &Server,
    since: Instant,
    files: u32,
    errors: &mut Vec<String>,
) -> Option<f64> {
    const METRIC: &str = "file_service_tables_ahead_total";
    let deadline = since + Duration::from_secs(30 * 60);
    loop {
        let text = match http.get(format!("{}/metrics", server.base)).send().await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(e) => {
                errors.push(format!("GET /metrics: {e}"));
                return None;
            }
        };
        if !text.contains(METRIC) {
            return None;
        }
        let done: f64 = text
            .lines()
            .filter(|l| l.starts_with(METRIC) && (l.contains("\"made\"") || l.contains("\"failed\"")))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        if done >= f64::from(files) {
            return Some(since.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            errors.push("the table made ahead was not ready within 30 min".into());
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`RUNS`] runs of `q` on `file`; the last run's result.
async fn timed_runs(
    http: &reqwest::Client,
    server: &Server,
    file: &str,
    q: &QuerySpec,
    errors: &mut Vec<String>,
) -> (Runs, Option<Table>) {
    let mut runs = Runs::default();
    let mut table = None;
    for _ in 0..RUNS {
        let answer = query(http, server, file, q.sql, q.limit).await;
        if let Ok(a) = &answer {
            table = Some((a.columns.clone(), a.rows.clone()));
        }
        let failed = answer.is_err();
        record(&mut runs, answer, errors);
        if failed {
            // The same request again would fail the same way.
            table = None;
            break;
        }
    }
    runs.median_ms = median(&runs.runs_ms);
    runs.server_median_ms = median(&runs.server_ms);
    (runs, table)
}

fn record(runs: &mut Runs, answer: Result<Answer, String>, errors: &mut Vec<String>) {
    match answer {
        Ok(a) => {
            runs.runs_ms.push(a.client_ms);
            if let Some(ms) = a.server_ms {
                runs.server_ms.push(ms);
            }
            runs.row_count = Some(a.rows.len());
            runs.truncated = Some(a.truncated);
        }
        Err(e) => {
            eprintln!("load: queries: {}", truncate(&e, 400));
            runs.error = Some(e.clone());
            errors.push(e);
        }
    }
    runs.median_ms = median(&runs.runs_ms);
    runs.server_median_ms = median(&runs.server_ms);
}

struct Answer {
    client_ms: f64,
    server_ms: Option<f64>,
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    truncated: bool,
}

/// One `POST /files/{file}/query`, timed from sending to the whole body received (the JSON
/// is parsed after the clock stops). `Err` holds the request and the response.
async fn query(http: &reqwest::Client, server: &Server, file: &str, sql: &str, limit: usize) -> Result<Answer, String> {
    let body = json!({ "sql": sql, "limit": limit });
    let path = format!("/files/{file}/query");
    let request = format!("POST /api/v1{path} {body}");
    let started = Instant::now();
    let resp = http
        .post(server.url(&path))
        .bearer_auth(server::token(QUERY_USER))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{request} → no response: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("{request} → {status}, body unreadable: {e}"))?;
    let client_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status != 200 {
        return Err(format!("{request} → {status} {}", truncate(&text, 2000)));
    }
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{request} → 200 but not JSON ({e}): {}", truncate(&text, 300)))?;
    let columns = json["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let rows = json["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .ok_or_else(|| format!("{request} → 200 without `rows`: {}", truncate(&text, 300)))?;
    if json["row_count"].as_u64() != Some(rows.len() as u64) {
        return Err(format!(
            "{request} → 200 with row_count {} but {} rows",
            json["row_count"],
            rows.len()
        ));
    }
    Ok(Answer {
        client_ms,
        server_ms: json["elapsed_ms"].as_f64(),
        columns,
        rows,
        truncated: json["truncated"].as_bool().unwrap_or(false),
    })
}

/// Uploads `path` as `file_name` (`filename` gives the format), streamed from disk.
/// Returns the timing and the stored row count.
pub(crate) async fn upload_file(
    http: &reqwest::Client,
    server: &Server,
    path: &Path,
    file_name: &str,
    filename: &str,
    mime: &str,
) -> (Timed, Option<u64>) {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    let outcome: Result<Option<u64>, String> = async {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let part = Part::stream_with_length(reqwest::Body::wrap_stream(file_chunks(file)), bytes)
            .file_name(filename.to_string())
            .mime_str(mime)
            .map_err(|e| e.to_string())?;
        let form = Form::new()
            .text("file_name", file_name.to_string())
            .text("session_id", uuid::Uuid::new_v4().to_string())
            .text("description", "load benchmark, queries section")
            .part("file", part);
        let resp = http
            .post(server.url("/files/"))
            .bearer_auth(server::token(QUERY_USER))
            .multipart(form)
            .send()
            .await
            .map_err(|e| format!("POST /api/v1/files/ ({filename} as {file_name}) → no response: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status != 201 {
            return Err(format!(
                "POST /api/v1/files/ ({filename} as {file_name}, {bytes} bytes) → {status} {}",
                truncate(&text, 1000)
            ));
        }
        Ok(serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|j| j["row_count"].as_u64()))
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(rows) => (
            Timed {
                seconds,
                bytes: Some(bytes),
                error: None,
            },
            rows,
        ),
        Err(e) => (
            Timed {
                seconds,
                bytes: Some(bytes),
                error: Some(e),
            },
            None,
        ),
    }
}

fn file_chunks(file: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

/// `GET /files/{file}/content?format=parquet` into `dest`, timed to the last byte written.
async fn download_parquet(http: &reqwest::Client, server: &Server, file: &str, dest: &Path) -> Timed {
    let request = format!("GET /api/v1/files/{file}/content?format=parquet");
    let started = Instant::now();
    let outcome: Result<u64, String> = async {
        let resp = http
            .get(server.url(&format!("/files/{file}/content?format=parquet")))
            .bearer_auth(server::token(QUERY_USER))
            .send()
            .await
            .map_err(|e| format!("{request} → no response: {e}"))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("{request} → {status} {}", truncate(&text, 1000)));
        }
        let mut out = tokio::fs::File::create(dest)
            .await
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        let mut body = resp.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("{request} → 200, body cut after {written} bytes: {e}"))?;
            out.write_all(&chunk)
                .await
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            written += chunk.len() as u64;
        }
        out.flush().await.map_err(|e| format!("{}: {e}", dest.display()))?;
        Ok(written)
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let outcome = outcome.and_then(|bytes| {
        if parquet_magic(dest) {
            Ok(bytes)
        } else {
            Err(format!(
                "{request} → 200, but the {bytes} bytes are not a Parquet file (no PAR1 at both ends)"
            ))
        }
    });
    match outcome {
        Ok(bytes) => Timed {
            seconds,
            bytes: Some(bytes),
            error: None,
        },
        Err(e) => Timed {
            seconds,
            bytes: std::fs::metadata(dest).ok().map(|m| m.len()),
            error: Some(e),
        },
    }
}

fn parquet_magic(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let (mut head, mut tail) = ([0u8; 4], [0u8; 4]);
    f.read_exact(&mut head).is_ok()
        && f.seek(SeekFrom::End(-4)).is_ok()
        && f.read_exact(&mut tail).is_ok()
        && &head == b"PAR1"
        && &tail == b"PAR1"
}

/// Bytes of the finished files in `dir` (copies being built are left out).
fn dir_bytes(dir: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".building-"))
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum(),
    )
}

// ----- DuckDB -----

/// The virtualenv's Python with duckdb==DUCKDB_VERSION, installing it the first time.
fn duckdb_python() -> Result<PathBuf, String> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let venv = cache.join("file-service").join("duckdb-venv");
    let python = venv.join("bin").join("python");
    if has_duckdb(&python) {
        return Ok(python);
    }
    eprintln!(
        "load: installing duckdb=={DUCKDB_VERSION} into {} (once; cached for later runs)",
        venv.display()
    );
    if !python.is_file() {
        run_tool(Command::new("python3").arg("-m").arg("venv").arg(&venv), PYTHON_TIMEOUT)
            .map_err(|e| format!("python3 -m venv {}: {e}", venv.display()))?;
    }
    run_tool(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
            .arg(format!("duckdb=={DUCKDB_VERSION}")),
        PYTHON_TIMEOUT,
    )
    .map_err(|e| format!("pip install duckdb=={DUCKDB_VERSION} into {}: {e}", venv.display()))?;
    if has_duckdb(&python) {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import duckdb {DUCKDB_VERSION} after installing it",
            python.display()
        ))
    }
}

fn has_duckdb(python: &Path) -> bool {
    python.is_file()
        && Command::new(python)
            .arg("-c")
            .arg(format!(
                "import duckdb, sys; sys.exit(duckdb.__version__ != '{DUCKDB_VERSION}')"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn duckdb_phase(
    python: &Path,
    csv: &Path,
    regions: &Path,
    parquet: Option<&Path>,
    work: &Path,
    report: &mut QuerySizeReport,
    results: &mut Results,
) {
    let mut info = DuckdbInfo::default();
    eprintln!("load: queries: DuckDB on the CSV");
    let converted = work.join("duckdb-orders.parquet");
    match run_duckdb(python, csv, "csv", regions, Some(&converted)) {
        Ok(out) => {
            info.version = out["version"].as_str().map(str::to_string);
            info.threads = Some(out["threads"].clone());
            info.csv_types = out["data_types"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .map(|p| (p[0].as_str().unwrap_or("").into(), p[1].as_str().unwrap_or("").into()))
                        .collect()
                })
                .unwrap_or_default();
            info.csv_peak_rss_mib = out["peak_rss_kib"].as_f64().map(|k| k / 1024.0);
            info.csv_to_parquet_s = out["convert_s"].as_f64();
            info.csv_to_parquet_bytes = out["convert_bytes"].as_u64();
            if let Some(e) = out["convert_error"].as_str() {
                info.notes.push(format!("CSV → Parquet failed: {e}"));
            }
            take_duckdb(&out, Engine::DuckdbCsv, report, results);
        }
        Err(e) => info.notes.push(format!("DuckDB on the CSV failed: {e}")),
    }
    let _ = std::fs::remove_file(&converted);
    match parquet {
        Some(parquet) => {
            eprintln!("load: queries: DuckDB on the Parquet download");
            match run_duckdb(python, parquet, "parquet", regions, None) {
                Ok(out) => {
                    info.parquet_peak_rss_mib = out["peak_rss_kib"].as_f64().map(|k| k / 1024.0);
                    take_duckdb(&out, Engine::DuckdbParquet, report, results);
                }
                Err(e) => info.notes.push(format!("DuckDB on the Parquet failed: {e}")),
            }
        }
        None => info.notes.push("DuckDB Parquet: skipped (no Parquet download)".into()),
    }
    for n in &info.notes {
        eprintln!("load: queries: {n}");
    }
    report.duckdb = Some(info);
}

fn take_duckdb(out: &Value, engine: Engine, report: &mut QuerySizeReport, results: &mut Results) {
    let empty = Vec::new();
    let queries = out["queries"].as_array().unwrap_or(&empty);
    for (i, q) in report.queries.iter_mut().enumerate() {
        let Some(entry) = queries.get(i) else { continue };
        let mut runs = Runs {
            runs_ms: entry["runs_ms"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default(),
            error: entry["error"].as_str().map(str::to_string),
            ..Runs::default()
        };
        runs.median_ms = median(&runs.runs_ms);
        if let Some(rows) = entry["rows"].as_array() {
            let rows: Vec<Vec<Value>> = rows.iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect();
            runs.row_count = Some(rows.len());
            let columns = entry["columns"]
                .as_array()
                .map(|c| c.iter().map(|c| c.as_str().unwrap_or_default().to_string()).collect())
                .unwrap_or_default();
            results.insert((i, engine), (columns, rows));
        }
        if let Some(e) = &runs.error {
            eprintln!("load: queries: {} {}: {e}", engine.label(), q.name);
        }
        match engine {
            Engine::DuckdbCsv => q.duckdb_csv = runs,
            _ => q.duckdb_parquet = runs,
        }
    }
}

/// One DuckDB process on one file: all queries, RUNS times each; its JSON output.
fn run_duckdb(
    python: &Path,
    data: &Path,
    format: &str,
    regions: &Path,
    convert_to: Option<&Path>,
) -> Result<Value, String> {
    let spec = json!({
        "data": data.display().to_string(),
        "format": format,
        "regions": regions.display().to_string(),
        "runs": RUNS,
        "queries": QUERIES.iter().map(|q| json!({"name": q.name, "sql": q.sql})).collect::<Vec<_>>(),
        "convert_to": convert_to.map(|p| p.display().to_string()),
    });
    let stdout = run_tool(
        Command::new(python).arg("-c").arg(DUCKDB_SCRIPT).arg(spec.to_string()),
        PYTHON_TIMEOUT,
    )?;
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("unexpected output ({e}): {}", truncate(&stdout, 300)))
}

/// Runs a command to completion (killed after `timeout`); its stdout, or why it failed.
fn run_tool(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    crate::ceilings::run_timed(cmd.stdout(Stdio::piped()), timeout).map(|(_, stdout)| stdout)
}

// ----- results -----

/// Sanity of each result, and every pair compared: file-service vs DuckDB on each file
/// kind, and file-service's CSV vs its Parquet.
fn compare_all(report: &mut QuerySizeReport, results: &Results) {
    for (i, spec) in QUERIES.iter().enumerate() {
        let mut found = Vec::new();
        let mut compared = Vec::new();
        for engine in [
            Engine::ServiceCsv,
            Engine::ServiceParquet,
            Engine::DuckdbCsv,
            Engine::DuckdbParquet,
        ] {
            if let Some(table) = results.get(&(i, engine)) {
                if let Some(problem) = insensible(i, table) {
                    found.push(format!("{}: {problem}", engine.label()));
                }
            }
        }
        for (a, b) in [
            (Engine::ServiceCsv, Engine::DuckdbCsv),
            (Engine::ServiceParquet, Engine::DuckdbParquet),
            (Engine::ServiceCsv, Engine::ServiceParquet),
        ] {
            if let (Some(x), Some(y)) = (results.get(&(i, a)), results.get(&(i, b))) {
                compared.push(format!("{} vs {}", a.label(), b.label()));
                found.extend(
                    compare(spec.shape, x, y)
                        .into_iter()
                        .map(|m| format!("{} vs {}: {m}", a.label(), b.label())),
                );
            }
        }
        let q = &mut report.queries[i];
        if q.csv_warm.truncated == Some(true) || q.parquet.truncated == Some(true) {
            found.push(format!("file-service truncated the answer at limit {}", spec.limit));
        }
        for m in &found {
            eprintln!("load: queries: *** MISMATCH *** {}: {m}", q.name);
        }
        q.mismatches = found;
        q.compared = compared;
        q.csv_ratio = ratio(q.csv_warm.median_ms, q.duckdb_csv.median_ms);
        q.parquet_ratio = ratio(q.parquet.median_ms, q.duckdb_parquet.median_ms);
    }
}

/// Why a result does not look like an answer to query `i`, if it does not.
fn insensible(i: usize, (_, rows): &Table) -> Option<String> {
    if rows.is_empty() {
        return Some("empty result".into());
    }
    match i {
        0 if rows[0].first().and_then(Value::as_f64).is_none_or(|n| n <= 0.0) => {
            Some(format!("count is {:?}", rows[0].first()))
        }
        2 if rows.len() != 10 => Some(format!("{} rows, not 10", rows.len())),
        _ => None,
    }
}

/// Differences between two results of the same query (at most a few examples each).
fn compare(shape: Shape, (ca, ra): &Table, (cb, rb): &Table) -> Vec<String> {
    let mut out = Vec::new();
    if ca.len() != cb.len() {
        out.push(format!("columns {ca:?} vs {cb:?}"));
        return out;
    }
    if ra.len() != rb.len() {
        out.push(format!("{} rows vs {} rows", ra.len(), rb.len()));
    }
    let names = ca;
    let mut differ = 0usize;
    let mut null_vs_zero = 0usize;
    let mut examples = Vec::new();
    let mut check = |label: String, x: &[Value], y: &[Value]| {
        let mut row_differs = false;
        for (c, (a, b)) in x.iter().zip(y).enumerate() {
            if !same(a, b) {
                row_differs = true;
                if is_null_zero(a, b) {
                    null_vs_zero += 1;
                }
                if examples.len() < 3 {
                    examples.push(format!("{label}: {} {a} vs {b}", names[c]));
                }
            }
        }
        if row_differs {
            differ += 1;
        }
    };
    match shape {
        Shape::Ordered => {
            for (n, (x, y)) in ra.iter().zip(rb).enumerate() {
                check(format!("row {n}"), x, y);
            }
        }
        Shape::Keyed => {
            let map = |rows: &[Vec<Value>]| -> BTreeMap<String, Vec<Value>> {
                rows.iter()
                    .map(|r| (r.first().map(Value::to_string).unwrap_or_default(), r.clone()))
                    .collect()
            };
            let (ma, mb) = (map(ra), map(rb));
            let only_a: Vec<&String> = ma.keys().filter(|k| !mb.contains_key(*k)).collect();
            let only_b: Vec<&String> = mb.keys().filter(|k| !ma.contains_key(*k)).collect();
            if !only_a.is_empty() || !only_b.is_empty() {
                out.push(format!(
                    "keys only on the left: {} (e.g. {:?}); only on the right: {} (e.g. {:?})",
                    only_a.len(),
                    only_a.iter().take(3).collect::<Vec<_>>(),
                    only_b.len(),
                    only_b.iter().take(3).collect::<Vec<_>>()
                ));
            }
            for (key, x) in &ma {
                if let Some(y) = mb.get(key) {
                    check(format!("{} {key}", names[0]), x, y);
                }
            }
            // The order of the non-NULL keys (where NULL sorts is the engines' choice).
            let order = |rows: &[Vec<Value>]| -> Vec<String> {
                rows.iter()
                    .filter_map(|r| r.first().filter(|v| !v.is_null()).map(Value::to_string))
                    .collect()
            };
            if ma.len() == mb.len() && only_a.is_empty() && order(ra) != order(rb) {
                out.push("same rows in another order (ORDER BY not honoured the same way)".into());
            }
        }
    }
    if differ > 0 {
        let mut m = format!(
            "{differ} of {} rows differ, e.g. {}",
            ra.len().max(rb.len()),
            examples.join("; ")
        );
        if null_vs_zero > 0 {
            let _ = write!(
                m,
                " ({null_vs_zero} values are 0 on one side and NULL on the other: SQL's SUM over only NULLs is NULL)"
            );
        }
        out.push(m);
    }
    out
}

/// Equal values: numbers within a relative 1e-9 (sums in another order), else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

fn is_null_zero(a: &Value, b: &Value) -> bool {
    (a.is_null() && b.as_f64() == Some(0.0)) || (b.is_null() && a.as_f64() == Some(0.0))
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

// ----- Markdown -----

/// One table per size, with the figures around it and every mismatch spelled out.
pub fn markdown(reports: &[QuerySizeReport], out: &mut String) {
    for r in reports {
        let rows = r.rows.map(|n| format!(", {n} rows")).unwrap_or_default();
        let _ = writeln!(
            out,
            "Queries on the {} MB CSV ({:.0} MB{rows}), median of {RUNS} runs, ms as the client saw them (file-service's own `elapsed_ms` in brackets); load average {}:\n",
            r.size_mb,
            r.csv_bytes as f64 / 1e6,
            r.load_avg
        );
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "- skipped: {why}\n");
            continue;
        }
        out.push_str(
            "| query | file-service CSV, first query | file-service CSV, warm | file-service Parquet | DuckDB CSV (re-reads the CSV each query) | DuckDB Parquet | CSV warm / DuckDB CSV | Parquet / DuckDB Parquet | rows | results agree |\n",
        );
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
        for q in &r.queries {
            let rows = q
                .csv_warm
                .row_count
                .or(q.duckdb_csv.row_count)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "—".into());
            let agree = if !q.mismatches.is_empty() {
                format!("**NO** ({})", q.mismatches.len())
            } else if q.compared.is_empty() {
                "not compared".to_string()
            } else {
                format!("yes ({} pairs)", q.compared.len())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                q.name,
                q.csv_first.as_ref().map(cell).unwrap_or_else(|| "—".into()),
                cell(&q.csv_warm),
                cell(&q.parquet),
                cell(&q.duckdb_csv),
                cell(&q.duckdb_parquet),
                times(q.csv_ratio),
                times(q.parquet_ratio),
                rows,
                agree
            );
        }
        out.push('\n');
        let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
        let timed = |t: &Option<Timed>| match t {
            Some(Timed {
                error: None,
                seconds,
                bytes,
            }) => {
                format!(
                    "{seconds:.2} s{}",
                    bytes.map(|b| format!(", {}", mb(b))).unwrap_or_default()
                )
            }
            Some(Timed { error: Some(e), .. }) => format!("failed: {}", truncate(e, 200)),
            None => "not run".into(),
        };
        let _ = writeln!(out, "- upload of the CSV as `orders`: {}", timed(&r.upload));
        match r.tables_ready_s {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "- the server made the copy and row file of `orders` ahead of its first query, {s:.2} s after the upload's answer; the first query came after that"
                );
            }
            None => out.push_str("- the server does not make tables ahead: the first query makes the copy\n"),
        }
        if let Some(first) = r.queries.first().and_then(|q| q.csv_first.as_ref()) {
            let _ = writeln!(
                out,
                "- first query on `orders` (filtered count): {} ms (server: {} ms), server CPU {}; `query-tables/` grew by {} (the copy, and the row file when made ahead)",
                first.median_ms.map(ms_text).unwrap_or_else(|| "—".into()),
                first.server_median_ms.map(ms_text).unwrap_or_else(|| "—".into()),
                r.first_query_server_cpu_s.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "—".into()),
                r.copy_bytes.map(mb).unwrap_or_else(|| "—".into())
            );
        }
        let _ = writeln!(
            out,
            "- `GET /files/orders/content?format=parquet` (from the copy): {}",
            timed(&r.parquet_download)
        );
        let _ = writeln!(
            out,
            "- upload of that Parquet as `orders_parquet` (scanned as stored, no copy): {}; its join reads the CSV `regions` (8 rows, copy built before timing)",
            timed(&r.parquet_upload)
        );
        let rss = |v: Option<f64>| v.map(|v| format!("{v:.0} MiB")).unwrap_or_else(|| "—".into());
        let _ = writeln!(
            out,
            "- file-service peak RSS (VmHWM): {} after the CSV queries, {} at the end",
            rss(r.server_peak_rss_after_csv_mib),
            rss(r.server_peak_rss_mib)
        );
        match &r.duckdb {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "- DuckDB {} ({} threads), run after the server stopped, one process per file, views over read_csv/read_parquet (the join reads the same regions CSV); peak RSS {} (CSV), {} (Parquet); CSV → Parquet with COPY: {}",
                    d.version.as_deref().unwrap_or("?"),
                    d.threads.as_ref().map(Value::to_string).unwrap_or_else(|| "?".into()),
                    rss(d.csv_peak_rss_mib),
                    rss(d.parquet_peak_rss_mib),
                    match (d.csv_to_parquet_s, d.csv_to_parquet_bytes) {
                        (Some(s), Some(b)) => format!("{s:.2} s, {}", mb(b)),
                        _ => "—".into(),
                    }
                );
                if !d.csv_types.is_empty() {
                    let types: Vec<String> = d.csv_types.iter().map(|(n, t)| format!("{n} {t}")).collect();
                    let _ = writeln!(out, "- DuckDB's CSV types: {}", types.join(", "));
                }
                for n in &d.notes {
                    let _ = writeln!(out, "- DuckDB: {n}");
                }
            }
            None => {
                let _ = writeln!(out, "- DuckDB: not run (see the notes)");
            }
        }
        for q in &r.queries {
            for m in &q.mismatches {
                let _ = writeln!(out, "- **MISMATCH** {}: {m}", q.name);
            }
        }
        for e in &r.errors {
            let _ = writeln!(out, "- **ERROR** {}", truncate(e, 600));
        }
        out.push('\n');
    }
}

/// "123.4 (120.1)": median client ms (server ms), or why there is none.
fn cell(r: &Runs) -> String {
    match (r.median_ms, &r.error) {
        (Some(ms), _) => match r.server_median_ms {
            Some(s) => format!("{} ({})", ms_text(ms), ms_text(s)),
            None => ms_text(ms),
        },
        (None, Some(_)) => "error".into(),
        (None, None) => "—".into(),
    }
}

fn ms_text(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

fn times(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into())
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

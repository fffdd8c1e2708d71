//! The `explore` section (opt-in: `--sections explore`): pages of rows and facets of the
//! generated CSV, as the page's Data tab asks for them, over HTTP.
//!
//! Per size, on a fresh SQLite server: the CSV is uploaded as `orders`; the first look
//! (`rows?limit=100`) builds the columnar copy and is timed on its own; then each request
//! below runs [`RUNS`] times and the median is reported beside its target (pages under
//! 300 ms, facets under 1 s; reported, never asserted).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::load_avg;
use crate::queries::{upload_file, QUERY_USER};
use crate::server::{self, Server};
use crate::upload::client;

/// Timed runs of each request; the median is reported.
const RUNS: usize = 3;
const PAGE_TARGET_MS: f64 = 300.0;
const FACETS_TARGET_MS: f64 = 1000.0;
/// The first look builds the columnar copy of a 1 GB CSV: well past the default 30 s.
const QUERY_TIMEOUT_SECONDS: &str = "1800";
const FILTER: &str = "city = 'Tokyo' AND quantity > 5";

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExploreCase {
    pub name: String,
    /// The request, as sent (path and query).
    pub request: String,
    pub target_ms: f64,
    pub runs_ms: Vec<f64>,
    pub median_ms: Option<f64>,
    /// `total_rows` of the answer: rows that match the view.
    pub total_rows: Option<u64>,
    pub bytes: Option<usize>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExploreSizeReport {
    pub size_mb: u64,
    pub csv_bytes: u64,
    pub rows: Option<u64>,
    pub upload_s: Option<f64>,
    /// Seconds from the upload's answer until the server had made the table ahead of its
    /// first use (`None`: the server does not make tables ahead).
    pub tables_ready_s: Option<f64>,
    /// The first `rows` request: builds the columnar copy (unless made ahead).
    pub first_look_ms: Option<f64>,
    pub first_look_server_cpu_s: Option<f64>,
    pub cases: Vec<ExploreCase>,
    pub server_peak_rss_mib: Option<f64>,
    pub load_avg: String,
    pub skipped: Option<String>,
    pub errors: Vec<String>,
}

pub fn run(
    rt: &Runtime,
    bin: &Path,
    csvs: &[(u64, std::path::PathBuf)],
    notes: &mut Vec<String>,
) -> Vec<ExploreSizeReport> {
    let mut out = Vec::new();
    for (mb, csv) in csvs {
        eprintln!("load: explore on the {mb} MB CSV");
        let report = run_size(rt, bin, *mb, csv);
        for e in &report.errors {
            notes.push(format!("explore {mb} MB: ERROR: {}", truncate(e, 400)));
        }
        out.push(report);
    }
    out
}

fn run_size(rt: &Runtime, bin: &Path, mb: u64, csv: &Path) -> ExploreSizeReport {
    let mut report = ExploreSizeReport {
        size_mb: mb,
        csv_bytes: std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0),
        load_avg: load_avg(),
        ..ExploreSizeReport::default()
    };
    let env = vec![
        crate::upload_limit(csv),
        ("QUERY_TIMEOUT_SECONDS".to_string(), QUERY_TIMEOUT_SECONDS.to_string()),
    ];
    let server = match Server::start(bin, &env) {
        Ok(s) => s,
        Err(e) => {
            report.skipped = Some(format!("the server refused to start: {e}"));
            return report;
        }
    };
    rt.block_on(steps(&server, csv, &mut report));
    report.server_peak_rss_mib = Some(server.peak_rss_mib());
    server.stop();
    report
}

async fn steps(server: &Server, csv: &Path, report: &mut ExploreSizeReport) {
    let http = client();
    eprintln!("load: explore: uploading {}", csv.display());
    let (upload, rows) = upload_file(&http, server, csv, "orders", "orders.csv", "text/csv").await;
    let uploaded_at = std::time::Instant::now();
    report.upload_s = Some(upload.seconds);
    report.rows = rows;
    if let Some(e) = upload.error {
        report.errors.push(format!("upload of orders: {e}"));
        return;
    }
    report.tables_ready_s = crate::queries::tables_ready(&http, server, uploaded_at, 1, &mut report.errors).await;
    eprintln!("load: explore: first look");
    let cpu_before = server.cpu_seconds();
    match get(&http, server, "/files/orders/rows?limit=100").await {
        Ok((ms, _)) => report.first_look_ms = Some(ms),
        Err(e) => {
            report.errors.push(e);
            return;
        }
    }
    report.first_look_server_cpu_s = Some(server.cpu_seconds() - cpu_before);
    let total = report.rows.unwrap_or(0);
    let filtered_total = match get(
        &http,
        server,
        &format!("/files/orders/rows?limit=1&where={}", enc(FILTER)),
    )
    .await
    {
        Ok((_, body)) => body["total_rows"].as_u64().unwrap_or(0),
        Err(e) => {
            report.errors.push(e);
            0
        }
    };
    let page = |offset: u64, extra: &str| format!("/files/orders/rows?offset={offset}&limit=100{extra}");
    let sort = format!("&orderby={}", enc("unit_price DESC"));
    let filter = format!("&where={}", enc(FILTER));
    let cases: Vec<(&str, String, f64)> = vec![
        ("first page", page(0, ""), PAGE_TARGET_MS),
        ("middle page", page(total / 2, ""), PAGE_TARGET_MS),
        ("last page", page(total.saturating_sub(100), ""), PAGE_TARGET_MS),
        ("sorted (unit_price DESC), first page", page(0, &sort), PAGE_TARGET_MS),
        (
            "sorted (unit_price DESC), middle page",
            page(total / 2, &sort),
            PAGE_TARGET_MS,
        ),
        (
            "filtered (city, quantity), first page",
            page(0, &filter),
            PAGE_TARGET_MS,
        ),
        (
            "filtered (city, quantity), middle page",
            page(filtered_total / 2, &filter),
            PAGE_TARGET_MS,
        ),
        (
            "searched (q=damaged), first page",
            page(0, "&q=damaged"),
            PAGE_TARGET_MS,
        ),
        (
            "facets of a text column (customer)",
            "/files/orders/facets?columns=customer".into(),
            FACETS_TARGET_MS,
        ),
        (
            "facets of text, date, number (city, order_date, unit_price)",
            format!("/files/orders/facets?columns={}", enc("city,order_date,unit_price")),
            FACETS_TARGET_MS,
        ),
        (
            "facets of a text column, filtered",
            format!("/files/orders/facets?columns=customer&where={}", enc(FILTER)),
            FACETS_TARGET_MS,
        ),
    ];
    for (name, request, target_ms) in cases {
        eprintln!("load: explore: {name}");
        let mut case = ExploreCase {
            name: name.into(),
            request: request.clone(),
            target_ms,
            ..ExploreCase::default()
        };
        for _ in 0..RUNS {
            match get(&http, server, &request).await {
                Ok((ms, body)) => {
                    case.runs_ms.push(ms);
                    case.total_rows = body["total_rows"].as_u64();
                    case.bytes = Some(body.to_string().len());
                }
                Err(e) => {
                    report.errors.push(e.clone());
                    case.error = Some(e);
                    break;
                }
            }
        }
        case.median_ms = median(&case.runs_ms);
        report.cases.push(case);
    }
}

/// One GET, timed from sending to the whole body received; the parsed JSON body.
async fn get(http: &reqwest::Client, server: &Server, path: &str) -> Result<(f64, Value), String> {
    let started = Instant::now();
    let resp = http
        .get(server.url(path))
        .bearer_auth(server::token(QUERY_USER))
        .send()
        .await
        .map_err(|e| format!("GET {path} → no response: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("GET {path} → {status}, body unreadable: {e}"))?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status != 200 {
        return Err(format!("GET {path} → {status} {}", truncate(&text, 1000)));
    }
    let body = serde_json::from_str(&text).map_err(|e| format!("GET {path} → 200 but not JSON: {e}"))?;
    Ok((ms, body))
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

pub fn markdown(reports: &[ExploreSizeReport], out: &mut String) {
    for r in reports {
        let rows = r.rows.map(|n| format!(", {n} rows")).unwrap_or_default();
        let _ = writeln!(
            out,
            "Explore (pages of rows, facets) on the {} MB CSV ({:.0} MB{rows}), median of {RUNS} runs, ms as the client saw them; load average {}:\n",
            r.size_mb,
            r.csv_bytes as f64 / 1e6,
            r.load_avg
        );
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "- skipped: {why}\n");
            continue;
        }
        if let Some(s) = r.upload_s {
            let _ = writeln!(out, "- upload + summary: {s:.1} s");
        }
        if let Some(s) = r.tables_ready_s {
            let _ = writeln!(
                out,
                "- copy and row file made ahead by the server, ready {s:.1} s after the upload's answer"
            );
        }
        if let Some(ms) = r.first_look_ms {
            let cpu = r
                .first_look_server_cpu_s
                .map(|c| format!(", {c:.1} s of server CPU"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- first look (`rows?limit=100`; builds the columnar copy unless made ahead): {:.1} s{cpu}\n",
                ms / 1000.0
            );
        }
        out.push_str("| request | median (ms) | runs (ms) | target | met | rows matching |\n");
        out.push_str("| --- | ---: | --- | ---: | --- | ---: |\n");
        for c in &r.cases {
            let runs = c
                .runs_ms
                .iter()
                .map(|ms| format!("{ms:.0}"))
                .collect::<Vec<_>>()
                .join(", ");
            let (median, met) = match (c.median_ms, &c.error) {
                (Some(ms), _) => (format!("{ms:.0}"), if ms < c.target_ms { "yes" } else { "no" }),
                (None, Some(_)) => ("error".into(), "no"),
                (None, None) => ("—".into(), "—"),
            };
            let total = c.total_rows.map(|n| n.to_string()).unwrap_or_else(|| "—".into());
            let _ = writeln!(
                out,
                "| {} | {median} | {runs} | < {:.0} ms | {met} | {total} |",
                c.name, c.target_ms
            );
        }
        if let Some(peak) = r.server_peak_rss_mib {
            let _ = writeln!(out, "\nServer peak RSS (VmHWM): {peak:.0} MiB\n");
        }
    }
}

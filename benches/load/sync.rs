//! The opt-in `sync` section: `file-service sync --to HUB` of N small files from an edge to
//! an empty hub, run as its own process (wall time, its peak RSS from `/usr/bin/time`, each
//! server's peak during it), then a second sync with nothing new. The edge gets its files
//! through the API, several uploads in flight (`list::populate`); each hub is fresh, on
//! SQLite and, with TEST_DATABASE_URL, on PostgreSQL.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::ceilings::run_timed;
use crate::options::Options;
use crate::server::{self, Server};
use crate::services::Services;

/// The user whose files the edge holds.
const SYNC_USER: i64 = 4;
/// Bound on one sync process, whatever the count.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// GNU time, for the sync process's peak RSS (`%M`, KiB); without it that column is empty.
const GNU_TIME: &str = "/usr/bin/time";

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncResult {
    pub files: usize,
    /// The hub's catalog (and cache).
    pub hub: String,
    /// Uploading the files to the edge, and the uploads refused.
    pub populate_s: f64,
    pub populate_errors: u64,
    /// Wall time of the first sync process, start to exit.
    pub first_s: Option<f64>,
    /// Files on the hub afterwards, per second of the first sync.
    pub files_per_s: Option<f64>,
    /// Peak RSS of the first sync process.
    pub sync_peak_rss_mib: Option<f64>,
    /// Each server's peak (VmHWM) during the first sync, counted from just before it.
    pub edge_peak_rss_mib: Option<f64>,
    pub hub_peak_rss_mib: Option<f64>,
    /// Wall time of the second sync (nothing new) and its peak RSS.
    pub second_s: Option<f64>,
    pub second_sync_peak_rss_mib: Option<f64>,
    pub files_on_hub: usize,
    /// Each sync's own `--json` report.
    pub first_report: Option<Value>,
    pub second_report: Option<Value>,
    pub error: Option<String>,
}

/// One edge per file count, synced to a fresh hub on each catalog.
pub fn run(rt: &Runtime, opts: &Options, bin: &Path, notes: &mut Vec<String>) -> Vec<SyncResult> {
    let mut hubs: Vec<(String, Option<Services>)> = vec![("SQLite + moka".into(), None)];
    match Services::from_env() {
        Some(services) => hubs.push((services.label.clone(), Some(services))),
        None => notes.push("sync: hub on PostgreSQL skipped (set TEST_DATABASE_URL to run it)".into()),
    }
    if !Path::new(GNU_TIME).is_file() {
        notes.push(format!("sync: no {GNU_TIME}, so no peak RSS of the sync process"));
    }
    let mut results = Vec::new();
    for files in opts.sync_file_counts() {
        eprintln!("load: sync: populating an edge with {files} files");
        let edge = match Server::start(bin, &[]) {
            Ok(edge) => edge,
            Err(e) => {
                notes.push(format!("sync {files} files: the edge refused to start: {e}"));
                continue;
            }
        };
        let started = Instant::now();
        let (_, populate_errors, populate_error) = rt.block_on(crate::list::populate(
            &edge,
            SYNC_USER,
            0,
            files,
            opts.populate_concurrency,
        ));
        let populate_s = started.elapsed().as_secs_f64();
        if let Some(e) = populate_error {
            notes.push(format!(
                "sync {files} files: {populate_errors} uploads failed, the first: {e}"
            ));
        }
        for (label, services) in hubs.iter_mut() {
            let mut result = SyncResult {
                files,
                hub: label.clone(),
                populate_s,
                populate_errors,
                ..SyncResult::default()
            };
            let env = services.as_mut().map_or(Ok(Vec::new()), |s| s.fresh_env());
            match env.and_then(|env| Server::start(bin, &env)) {
                Ok(hub) => {
                    eprintln!("load: sync: {files} files to an empty hub on {label}");
                    measure(rt, bin, &edge, &hub, &mut result);
                    hub.stop();
                }
                Err(e) => result.error = Some(format!("the hub refused to start: {e}")),
            }
            results.push(result);
        }
        edge.stop();
    }
    for services in hubs.iter_mut().filter_map(|(_, s)| s.as_mut()) {
        services.cleanup();
    }
    results
}

fn measure(rt: &Runtime, bin: &Path, edge: &Server, hub: &Server, r: &mut SyncResult) {
    edge.reset_peak_rss();
    hub.reset_peak_rss();
    let first = sync(bin, edge, hub);
    r.edge_peak_rss_mib = Some(edge.peak_rss_mib());
    r.hub_peak_rss_mib = Some(hub.peak_rss_mib());
    r.files_on_hub = rt.block_on(crate::list::count(hub, SYNC_USER));
    match first {
        Ok(run) => {
            r.first_s = Some(run.seconds);
            r.files_per_s = Some(r.files_on_hub as f64 / run.seconds);
            r.sync_peak_rss_mib = run.peak_rss_mib;
            r.first_report = run.report;
        }
        Err(e) => {
            r.error = Some(format!("first sync: {e}"));
            return;
        }
    }
    match sync(bin, edge, hub) {
        Ok(run) => {
            r.second_s = Some(run.seconds);
            r.second_sync_peak_rss_mib = run.peak_rss_mib;
            r.second_report = run.report;
        }
        Err(e) => r.error = Some(format!("second sync: {e}")),
    }
}

struct SyncRun {
    seconds: f64,
    peak_rss_mib: Option<f64>,
    report: Option<Value>,
}

/// `file-service sync --to HUB --local EDGE --json`, under GNU time when it is there.
fn sync(bin: &Path, edge: &Server, hub: &Server) -> Result<SyncRun, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rss_file = dir.path().join("peak-rss-kib");
    let timed = Path::new(GNU_TIME).is_file();
    let mut cmd: Command = if timed {
        let mut cmd = server::command(Path::new(GNU_TIME), dir.path());
        cmd.args(["-f", "%M", "-o"]).arg(&rss_file).arg(bin);
        cmd
    } else {
        server::command(bin, dir.path())
    };
    let token = server::replicate_token();
    cmd.args([
        "sync", "--to", &hub.base, "--token", &token, "--local", &edge.base, "--json",
    ]);
    let (seconds, stdout) = run_timed(cmd.stdout(Stdio::piped()), SYNC_TIMEOUT)?;
    let peak_rss_mib = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|text| text.lines().last()?.trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0);
    let report = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok());
    Ok(SyncRun {
        seconds,
        peak_rss_mib,
        report,
    })
}

pub fn markdown(results: &[SyncResult], out: &mut String) {
    if results.is_empty() {
        return;
    }
    out.push_str("| hub | files | first sync (s) | files/s | sync peak RSS (MiB) | edge peak (MiB) | hub peak (MiB) | second sync (s) | on the hub | edge populated in (s) | error |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    let num = |v: Option<f64>, digits: usize| v.map_or("—".into(), |v| format!("{v:.digits$}"));
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            r.hub,
            r.files,
            num(r.first_s, 2),
            num(r.files_per_s, 0),
            num(r.sync_peak_rss_mib, 1),
            num(r.edge_peak_rss_mib, 1),
            num(r.hub_peak_rss_mib, 1),
            num(r.second_s, 2),
            r.files_on_hub,
            r.populate_s,
            r.error.as_deref().unwrap_or("")
        );
    }
    out.push('\n');
}

//! `cargo bench --bench load -- [--quick] [...]`: runs the sections of a load benchmark
//! against the real `file-service` binary on 127.0.0.1 and prints Markdown tables plus JSON
//! (also written to TARGET/load-report.json).

mod ceilings;
mod data;
mod explore;
mod hammer;
mod list;
mod options;
mod queries;
mod report;
mod server;
mod services;
mod sync;
mod upload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::runtime::Runtime;

use options::{Options, Section};
use report::{BackendReport, Report};
use server::Server;

/// Users of one server: separate users keep each section's files apart.
const UPLOAD_USER: i64 = 1;
const ACTIVE_USER: i64 = 2;
const LIST_USER: i64 = 3;
/// Settling time before "idle" RSS is read, so start-up work has finished.
const IDLE_SETTLE: Duration = Duration::from_millis(500);

/// Environment for each fresh server of a backend (a new database for PostgreSQL).
type EnvSource<'a> = &'a mut dyn FnMut() -> Result<Vec<(String, String)>, String>;

fn main() -> ExitCode {
    let opts = Options::parse();
    if !opts.bench {
        eprintln!("load: not run (no --bench flag); use `cargo bench --bench load -- [OPTIONS]`");
        return ExitCode::SUCCESS;
    }
    let bin = server::resolve_bin(opts.server_bin.as_deref());
    if !bin.is_file() {
        eprintln!(
            "load: no server binary at {} (build it, or pass --server-bin)",
            bin.display()
        );
        return ExitCode::FAILURE;
    }
    let target = target_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut report = Report::new(&bin);
    let all_csvs = match generate_csvs(&opts, &target) {
        Ok(csvs) => csvs,
        Err(e) => {
            eprintln!("load: generating CSVs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let csvs = sized(&all_csvs, &opts.sizes_mb());
    report
        .backends
        .push(run_backend(&rt, &opts, &bin, &csvs, "SQLite + moka", &mut || {
            Ok(Vec::new())
        }));
    if opts.runs(Section::Services) {
        run_services(&rt, &opts, &bin, &csvs, &mut report);
    }
    if opts.runs(Section::Ceilings) {
        for (mb, csv) in &csvs {
            eprintln!("load: reference tools on the {mb} MB CSV");
            report.ceilings.extend(ceilings::measure(csv, *mb, &bin));
        }
    }
    if opts.runs(Section::Queries) {
        let csvs = sized(&all_csvs, &opts.query_sizes_mb());
        report.queries = queries::run(&rt, &bin, &csvs, &data_cache(&opts, &target), &mut report.notes);
    }
    if opts.runs(Section::Explore) {
        let csvs = sized(&all_csvs, &opts.query_sizes_mb());
        report.explore = explore::run(&rt, &bin, &csvs, &mut report.notes);
    }
    if opts.runs(Section::Sync) {
        report.sync = sync::run(&rt, &opts, &bin, &mut report.notes);
    }
    report.machine.load_avg_end = load_avg();
    write_report(&report, &opts, &target)
}

/// The generated CSVs the upload, ceiling and query sections need, as (MB, path).
fn generate_csvs(opts: &Options, target: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut sizes = Vec::new();
    if opts.runs(Section::Upload) || opts.runs(Section::Ceilings) {
        sizes.extend(opts.sizes_mb());
    }
    if opts.runs(Section::Queries) || opts.runs(Section::Explore) {
        sizes.extend(opts.query_sizes_mb());
    }
    let mut seen = std::collections::HashSet::new();
    sizes.retain(|mb| seen.insert(*mb));
    let cache = data_cache(opts, target);
    sizes
        .into_iter()
        .map(|mb| Ok((mb, data::ensure_csv(&cache, mb)?)))
        .collect()
}

/// The CSVs of `sizes`, in that order.
fn sized(csvs: &[(u64, PathBuf)], sizes: &[u64]) -> Vec<(u64, PathBuf)> {
    sizes
        .iter()
        .filter_map(|mb| csvs.iter().find(|(m, _)| m == mb).cloned())
        .collect()
}

/// Folder of the generated CSVs, kept between runs.
fn data_cache(opts: &Options, target: &Path) -> PathBuf {
    opts.data_cache.clone().unwrap_or_else(|| target.join("load-data"))
}

fn run_services(rt: &Runtime, opts: &Options, bin: &Path, csvs: &[(u64, PathBuf)], report: &mut Report) {
    // PostgreSQL/Redis, then once more with the bytes in S3 when an S3 server is given.
    let variants = [
        (
            services::Services::from_env(),
            "PostgreSQL/Redis: skipped (set TEST_DATABASE_URL and/or TEST_REDIS_URL to run them)",
        ),
        (
            services::Services::with_s3_from_env(),
            "S3: skipped (start one with `eval \"$(tests/s3/start)\"` to run it)",
        ),
    ];
    for (services, skipped) in variants {
        let Some(mut services) = services else {
            report.notes.push(skipped.into());
            return;
        };
        let label = services.label.clone();
        let backend = run_backend(rt, opts, bin, csvs, &label, &mut || services.fresh_env());
        services.cleanup();
        report.backends.push(backend);
    }
}

/// Upload, active and list sections on one backend; stops at the first refused start.
fn run_backend(
    rt: &Runtime,
    opts: &Options,
    bin: &Path,
    csvs: &[(u64, PathBuf)],
    name: &str,
    env: EnvSource,
) -> BackendReport {
    let mut backend = BackendReport {
        name: name.into(),
        ..BackendReport::default()
    };
    if opts.runs(Section::Upload) {
        for (mb, csv) in csvs {
            eprintln!("load: [{name}] upload + summary of {mb} MB");
            backend.load_avg.push((format!("upload {mb} MB"), load_avg()));
            let Some(server) = start(bin, env, &[upload_limit(csv)], &mut backend) else {
                return backend;
            };
            let idle = settle_and_read_rss(&server);
            backend
                .uploads
                .push(rt.block_on(upload::upload(&server, UPLOAD_USER, csv, *mb, idle)));
            server.stop();
        }
    }
    if opts.runs(Section::Active) || opts.runs(Section::List) {
        let Some(server) = start(bin, env, &[], &mut backend) else {
            return backend;
        };
        backend.idle_rss_mib = Some(settle_and_read_rss(&server));
        if opts.runs(Section::Active) {
            backend.load_avg.push(("active".into(), load_avg()));
            backend.active = rt.block_on(active_section(&server, opts));
        }
        if opts.runs(Section::List) {
            backend.load_avg.push(("list".into(), load_avg()));
            backend.list = rt.block_on(list_section(&server, opts));
        }
        backend.peak_rss_after_loads_mib = Some(server.peak_rss_mib());
        server.stop();
    }
    backend
}

/// Starts a server with a fresh environment; a refusal marks the backend skipped.
fn start(bin: &Path, env: EnvSource, extra: &[(String, String)], backend: &mut BackendReport) -> Option<Server> {
    let mut vars = match env() {
        Ok(vars) => vars,
        Err(e) => {
            backend.skipped = Some(e);
            return None;
        }
    };
    // These sections time uploads, lookups and listings alone: nothing made in the
    // background after each upload (the queries section measures that).
    vars.push(("QUERY_TABLES_AHEAD".into(), "false".into()));
    vars.extend(extra.iter().cloned());
    match Server::start(bin, &vars) {
        Ok(server) => Some(server),
        Err(e) => {
            eprintln!("load: [{}] skipped: the server refused to start: {e}", backend.name);
            backend.skipped = Some(format!("the server refused to start: {e}"));
            None
        }
    }
}

fn settle_and_read_rss(server: &Server) -> f64 {
    std::thread::sleep(IDLE_SETTLE);
    server.rss_mib()
}

/// "1.23 0.98 0.70": the 1, 5 and 15-minute load averages.
fn load_avg() -> String {
    let raw = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    raw.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// MAX_UPLOAD_BYTES (default 1 GiB) raised only when a requested size would exceed it.
fn upload_limit(csv: &Path) -> (String, String) {
    let bytes = std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0);
    ("MAX_UPLOAD_BYTES".into(), (bytes + (1 << 20)).max(1 << 30).to_string())
}

/// One small file made active for a session, then each connection count in turn.
async fn active_section(server: &Server, opts: &Options) -> Vec<hammer::LoadResult> {
    let session = uuid::Uuid::new_v4().to_string();
    if let Err(e) = list::upload_one(server, ACTIVE_USER, &session).await {
        eprintln!("load: could not create the active file: {e}");
    }
    let target = hammer::Target {
        addr: server.addr,
        path: format!("/api/v1/files/active/{session}"),
        bearer: format!("Bearer {}", server::token(ACTIVE_USER)),
    };
    let mut results = Vec::new();
    for &connections in &opts.connections {
        eprintln!("load: active lookups, {connections} connections, {:?}", opts.duration());
        hammer::run(&target, connections, opts.warmup(), opts.max_requests).await;
        let (server_before, client_before) = (server.cpu_seconds(), server::cpu_seconds(std::process::id()));
        let mut result = hammer::run(&target, connections, opts.duration(), opts.max_requests).await;
        result.server_cpu_percent = Some(100.0 * (server.cpu_seconds() - server_before) / result.seconds);
        result.client_cpu_percent =
            Some(100.0 * (server::cpu_seconds(std::process::id()) - client_before) / result.seconds);
        results.push(result);
    }
    results
}

/// Grows one user's file list through each requested count and times the listing at each.
async fn list_section(server: &Server, opts: &Options) -> Vec<list::ListResult> {
    let mut results = Vec::new();
    let mut have = 0;
    for files in opts.file_counts() {
        eprintln!("load: populating {files} files");
        let started = std::time::Instant::now();
        let (_, populate_errors, populate_error) =
            list::populate(server, LIST_USER, have, files, opts.populate_concurrency).await;
        let populate_s = started.elapsed().as_secs_f64();
        have = files;
        if let Some(url) = server.database_url.clone() {
            // This machine's PostgreSQL runs with autovacuum off; a default server would
            // have vacuumed and analyzed the files table within a minute of these inserts.
            let vacuumed = tokio::task::spawn_blocking(move || services::vacuum_analyze(&url)).await;
            if let Ok(Err(e)) | Err(e) = vacuumed.map_err(|e| e.to_string()) {
                eprintln!("load: VACUUM ANALYZE after populating: {e}");
            }
        }
        let files_present = list::count(server, LIST_USER).await;
        let r = list::measure(server, LIST_USER, opts.list_samples(files), opts.duration()).await;
        let (after_change, change_errors) = list::after_change(server, LIST_USER).await;
        results.push(list::ListResult {
            files,
            files_present,
            populate_s,
            populate_errors,
            samples: r.requests,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            response_bytes: r.response_bytes,
            after_change_p50_ms: hammer::percentile_ms(&after_change, 0.50),
            after_change_p99_ms: hammer::percentile_ms(&after_change, 0.99),
            errors: r.errors + change_errors,
            first_error: r.first_error.or(populate_error),
        });
    }
    results
}

fn write_report(report: &Report, opts: &Options, target: &Path) -> ExitCode {
    let json = serde_json::to_string_pretty(report).expect("report serializes");
    println!("{}", report.markdown());
    println!("{json}");
    let path = opts.report.clone().unwrap_or_else(|| target.join("load-report.json"));
    match std::fs::write(&path, &json) {
        Ok(()) => {
            eprintln!("load: report written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Cargo's target folder, where the bench's own build of the server lives (TARGET/release).
fn target_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_BIN_EXE_file-service"));
    built
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

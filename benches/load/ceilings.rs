//! Reference speeds on the same CSVs: `cat` with a warm page cache, polars (Python) scans,
//! pandas.read_csv, and `file-service summarize` without HTTP. Tools that are missing are
//! skipped with a note.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Bound on any one reference run (pandas on 1 GB is the slow one).
const TOOL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Times the operation alone (after imports) and reports rows and the process's peak RSS.
const PY_SCRIPT: &str = r#"
import resource, sys, time
mode, path = sys.argv[1], sys.argv[2]
if mode.startswith("polars"):
    import polars as pl
else:
    import pandas as pd
t = time.perf_counter()
if mode == "polars_len":
    rows = pl.scan_csv(path).select(pl.len()).collect().item()
elif mode == "polars_strings":
    rows = pl.read_csv(path, infer_schema=False).height
elif mode == "polars_typed":
    rows = pl.read_csv(path, infer_schema_length=None).height
else:
    rows = len(pd.read_csv(path))
elapsed = time.perf_counter() - t
print(elapsed, rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;

/// One reference tool on one file.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub tool: String,
    pub size_mb: u64,
    pub seconds: Option<f64>,
    pub mb_per_s: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub note: Option<String>,
}

/// Every reference tool on `csv`, in order: cat, polars ×3, pandas, summarize.
pub fn measure(csv: &Path, size_mb: u64, server_bin: &Path) -> Vec<Ceiling> {
    let bytes = std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0);
    let mut out = vec![cat(csv, size_mb, bytes)];
    for (tool, module) in [
        ("polars_len", "polars"),
        ("polars_strings", "polars"),
        ("polars_typed", "polars"),
        ("pandas", "pandas"),
    ] {
        out.push(python(tool, module, csv, size_mb, bytes));
    }
    out.push(summarize_cli(server_bin, csv, size_mb, bytes));
    out
}

/// `cat FILE > /dev/null`, run twice; the second, with a warm page cache, is timed.
fn cat(csv: &Path, size_mb: u64, bytes: u64) -> Ceiling {
    // Straight to /dev/null: a pipe into the benchmark would measure the benchmark.
    let run = || timed(Command::new("cat").arg(csv).stdout(Stdio::null()));
    let _ = run();
    match run() {
        Ok((seconds, _)) => ok("cat (warm cache)", size_mb, bytes, seconds, None),
        Err(e) => skipped("cat (warm cache)", size_mb, e),
    }
}

fn python(tool: &str, module: &str, csv: &Path, size_mb: u64, bytes: u64) -> Ceiling {
    if !python_has(module) {
        return skipped(
            tool,
            size_mb,
            format!("python3 cannot import {module} (pip install {module})"),
        );
    }
    let output = timed(
        Command::new("python3")
            .stdout(Stdio::piped())
            .arg("-c")
            .arg(PY_SCRIPT)
            .arg(tool)
            .arg(csv),
    );
    match output.map(|(_, stdout)| parse_python(&stdout)) {
        Ok(Some((seconds, rows, rss_kib))) => {
            let mut c = ok(tool, size_mb, bytes, seconds, Some(rss_kib / 1024.0));
            c.note = Some(format!("{rows} rows"));
            c
        }
        Ok(None) => skipped(tool, size_mb, "unexpected output".into()),
        Err(e) => skipped(tool, size_mb, e),
    }
}

/// `file-service summarize FILE`: the analysis alone, no HTTP, no storage.
fn summarize_cli(bin: &Path, csv: &Path, size_mb: u64, bytes: u64) -> Ceiling {
    match timed(
        Command::new(bin)
            .stdout(Stdio::piped())
            .arg("summarize")
            .arg(csv)
            .env("RUST_LOG", "warn"),
    ) {
        Ok((seconds, _)) => ok("file-service summarize", size_mb, bytes, seconds, None),
        Err(e) => skipped("file-service summarize", size_mb, e),
    }
}

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .arg("-c")
        .arg(format!("import {module}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// "seconds rows maxrss_kib" from the script.
fn parse_python(stdout: &str) -> Option<(f64, u64, f64)> {
    let mut it = stdout.split_whitespace();
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// Runs a command to completion (killed after TOOL_TIMEOUT); wall seconds and stdout
/// (captured unless the caller redirected it).
fn timed(cmd: &mut Command) -> Result<(f64, String), String> {
    run_timed(cmd, TOOL_TIMEOUT)
}

/// Runs `cmd` to completion, killed after `timeout`: its wall time and its stdout (captured
/// unless the caller redirected it), or why it failed (the last line of its stderr).
pub fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<(f64, String), String> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Output is read on threads so a chatty tool never blocks on a full pipe.
    let stdout = read_on_thread(child.stdout.take());
    let stderr = read_on_thread(child.stderr.take());
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = started.elapsed().as_secs_f64();
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    if !status.success() {
        return Err(format!("{status}: {}", stderr.lines().last().unwrap_or_default()));
    }
    Ok((seconds, stdout))
}

fn read_on_thread<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

fn ok(tool: &str, size_mb: u64, bytes: u64, seconds: f64, peak_rss_mib: Option<f64>) -> Ceiling {
    Ceiling {
        tool: tool.into(),
        size_mb,
        seconds: Some(seconds),
        mb_per_s: Some(bytes as f64 / 1e6 / seconds),
        peak_rss_mib,
        note: None,
    }
}

fn skipped(tool: &str, size_mb: u64, note: String) -> Ceiling {
    Ceiling {
        tool: tool.into(),
        size_mb,
        seconds: None,
        mb_per_s: None,
        peak_rss_mib: None,
        note: Some(format!("skipped: {note}")),
    }
}

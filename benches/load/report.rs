//! The run's results: the JSON document and its Markdown tables (ready for the README),
//! including how each figure compares with the targets (reported, never asserted).

use std::fmt::Write as _;

use serde::Serialize;

use crate::ceilings::Ceiling;
use crate::explore::ExploreSizeReport;
use crate::hammer::LoadResult;
use crate::list::ListResult;
use crate::queries::QuerySizeReport;
use crate::sync::SyncResult;
use crate::upload::UploadResult;

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub server_bin: String,
    pub machine: Machine,
    pub backends: Vec<BackendReport>,
    pub ceilings: Vec<Ceiling>,
    /// The opt-in `queries` section, one entry per CSV size.
    pub queries: Vec<QuerySizeReport>,
    /// The opt-in `explore` section, one entry per CSV size.
    pub explore: Vec<ExploreSizeReport>,
    /// The opt-in `sync` section, one entry per file count and hub.
    pub sync: Vec<SyncResult>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_mib: u64,
    pub kernel: String,
    pub load_avg_start: String,
    pub load_avg_end: String,
}

/// Everything measured on one catalog + cache combination.
#[derive(Debug, Default, Serialize)]
pub struct BackendReport {
    pub name: String,
    /// Why nothing was measured (e.g. the server refused the configuration).
    pub skipped: Option<String>,
    pub uploads: Vec<UploadResult>,
    /// RSS of the server used for the active and list loads, right after start.
    pub idle_rss_mib: Option<f64>,
    pub active: Vec<LoadResult>,
    pub list: Vec<ListResult>,
    /// VmHWM of that server after the active and list loads.
    pub peak_rss_after_loads_mib: Option<f64>,
    /// 1/5/15-minute load average when each section started (other builds share the machine).
    pub load_avg: Vec<(String, String)>,
}

impl Report {
    pub fn new(server_bin: &std::path::Path) -> Report {
        Report {
            command: command_line(),
            server_bin: server_bin.display().to_string(),
            machine: Machine::probe(),
            backends: Vec::new(),
            ceilings: Vec::new(),
            queries: Vec::new(),
            explore: Vec::new(),
            sync: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), {} MiB RAM, Linux {}",
            m.cores, m.cpu, m.memory_mib, m.kernel
        );
        let _ = writeln!(
            out,
            "Load average: {} at start, {} at end",
            m.load_avg_start, m.load_avg_end
        );
        let _ = writeln!(out, "Command: `{}`\n", self.command);
        self.uploads_table(&mut out);
        self.active_table(&mut out);
        self.list_table(&mut out);
        for b in self
            .backends
            .iter()
            .filter_map(|b| Some((b, b.idle_rss_mib?, b.peak_rss_after_loads_mib?)))
        {
            let (b, idle, peak) = b;
            let _ = writeln!(
                out,
                "{}: server for lookups and listings: {idle:.1} MiB idle, {peak:.1} MiB peak (VmHWM) after them\n",
                b.name
            );
        }
        self.ceilings_table(&mut out);
        crate::queries::markdown(&self.queries, &mut out);
        crate::explore::markdown(&self.explore, &mut out);
        crate::sync::markdown(&self.sync, &mut out);
        self.targets_table(&mut out);
        for b in self.backends.iter().filter(|b| b.skipped.is_some()) {
            let _ = writeln!(
                out,
                "- {}: skipped — {}",
                b.name,
                b.skipped.as_deref().unwrap_or_default()
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    fn uploads_table(&self, out: &mut String) {
        let rows: Vec<_> = self
            .backends
            .iter()
            .flat_map(|b| b.uploads.iter().map(move |u| (b, u)))
            .collect();
        if rows.is_empty() {
            return;
        }
        out.push_str("| backend | CSV | upload + summary (s) | MB/s | body sent at (s) | server CPU (s) | idle RSS (MiB) | peak RSS (MiB) | download (s) | peak RSS after download (MiB) | tus, one PATCH (s) | tus, 8 MiB PATCHes (s) | rows | status |\n");
        out.push_str(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
        );
        for (b, u) in rows {
            let status = match &u.error {
                None => u.status.to_string(),
                Some(e) => format!("{} {}", u.status, truncate(e, 80)),
            };
            let rows = u.row_count.map(|r| r.to_string()).unwrap_or_else(|| "—".into());
            let sent = u.body_sent_s.map(|s| format!("{s:.3}")).unwrap_or_else(|| "—".into());
            let download = u.download_s.map(|s| format!("{s:.3}")).unwrap_or_else(|| "—".into());
            let after = u
                .peak_rss_after_download_mib
                .map(|m| format!("{m:.1}"))
                .unwrap_or_else(|| "—".into());
            let tus = u.tus_s.map(|s| format!("{s:.3}")).unwrap_or_else(|| "—".into());
            let tus_chunked = u.tus_chunked_s.map(|s| format!("{s:.3}")).unwrap_or_else(|| "—".into());
            let _ = writeln!(
                out,
                "| {} | {} MB | {:.3} | {:.0} | {} | {:.2} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |",
                b.name,
                u.size_mb,
                u.seconds,
                u.mb_per_s,
                sent,
                u.server_cpu_s,
                u.idle_rss_mib,
                u.peak_rss_mib,
                download,
                after,
                tus,
                tus_chunked,
                rows,
                status
            );
        }
        out.push('\n');
    }

    fn active_table(&self, out: &mut String) {
        let rows: Vec<_> = self
            .backends
            .iter()
            .flat_map(|b| b.active.iter().map(move |r| (b, r)))
            .collect();
        if rows.is_empty() {
            return;
        }
        out.push_str("| backend | GET /files/active/{session} | req/s | p50 (ms) | p99 (ms) | max (ms) | requests | errors | server CPU | client CPU |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (b, r) in rows {
            let _ = writeln!(
                out,
                "| {} | {} connections, {:.0} s | {:.0} | {:.2} | {:.2} | {:.1} | {} | {}{} | {} | {} |",
                b.name,
                r.connections,
                r.seconds,
                r.requests_per_s,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.requests,
                r.errors,
                error_suffix(&r.first_error),
                percent(r.server_cpu_percent),
                percent(r.client_cpu_percent)
            );
        }
        out.push('\n');
    }

    fn list_table(&self, out: &mut String) {
        let rows: Vec<_> = self
            .backends
            .iter()
            .flat_map(|b| b.list.iter().map(move |r| (b, r)))
            .collect();
        if rows.is_empty() {
            return;
        }
        out.push_str(
            "| backend | GET /files/ | p50 (ms) | p99 (ms) | right after a change, p50 / p99 (ms) | samples | response (KB) | populated in (s) | errors |\n",
        );
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (b, r) in rows {
            let _ = writeln!(
                out,
                "| {} | {} files | {:.2} | {:.2} | {:.2} / {:.2} | {} | {:.0} | {:.1} | {}{} |",
                b.name,
                r.files_present,
                r.p50_ms,
                r.p99_ms,
                r.after_change_p50_ms,
                r.after_change_p99_ms,
                r.samples,
                r.response_bytes as f64 / 1000.0,
                r.populate_s,
                r.errors + r.populate_errors,
                error_suffix(&r.first_error)
            );
        }
        out.push('\n');
    }

    /// Each reference tool beside our embedded upload + summary of the same file.
    fn ceilings_table(&self, out: &mut String) {
        if self.ceilings.is_empty() {
            return;
        }
        out.push_str(
            "| CSV | reference | seconds | MB/s | peak RSS (MiB) | our upload + summary as a fraction of it |\n",
        );
        out.push_str("| ---: | --- | ---: | ---: | ---: | ---: |\n");
        for c in &self.ceilings {
            let ours = self.embedded_upload(c.size_mb).map(|u| u.mb_per_s);
            let fraction = match (ours, c.mb_per_s) {
                (Some(ours), Some(theirs)) => format!("{:.2}", ours / theirs),
                _ => "—".into(),
            };
            let (secs, rate) = match (c.seconds, c.mb_per_s) {
                (Some(s), Some(r)) => (format!("{s:.3}"), format!("{r:.0}")),
                _ => ("—".into(), "—".into()),
            };
            let rss = c.peak_rss_mib.map(|r| format!("{r:.0}")).unwrap_or_else(|| "—".into());
            let tool = match &c.note {
                Some(n) if n.starts_with("skipped") => format!("{} ({})", c.tool, n),
                _ => c.tool.clone(),
            };
            let _ = writeln!(
                out,
                "| {} MB | {} | {} | {} | {} | {} |",
                c.size_mb, tool, secs, rate, rss, fraction
            );
        }
        out.push('\n');
    }

    fn targets_table(&self, out: &mut String) {
        let targets = self.targets();
        if targets.is_empty() {
            return;
        }
        out.push_str("| target (embedded stack) | measured | met |\n| --- | ---: | --- |\n");
        for (name, measured, met) in targets {
            let _ = writeln!(out, "| {name} | {measured} | {} |", if met { "yes" } else { "**no**" });
        }
        out.push('\n');
    }

    /// (target, measured, met) for every target this run has a figure for.
    fn targets(&self) -> Vec<(String, String, bool)> {
        let mut t = Vec::new();
        let Some(b) = self.backends.first().filter(|b| b.skipped.is_none()) else {
            return t;
        };
        for (mb, limit) in [(200, 2.5), (1000, 12.0)] {
            if let Some(u) = b.uploads.iter().find(|u| u.size_mb == mb) {
                t.push((
                    format!("{mb} MB upload + summary < {limit} s"),
                    format!("{:.2} s", u.seconds),
                    u.error.is_none() && u.seconds < limit,
                ));
            }
        }
        if let Some(peak) = b.uploads.iter().map(|u| u.peak_rss_mib).reduce(f64::max) {
            t.push((
                "peak RSS < 300 MB, any size".into(),
                format!("{peak:.1} MiB"),
                peak < 300.0,
            ));
        }
        if let Some(idle) = b
            .uploads
            .iter()
            .map(|u| u.idle_rss_mib)
            .chain(b.idle_rss_mib)
            .reduce(f64::max)
        {
            t.push(("idle RSS < 30 MB".into(), format!("{idle:.1} MiB"), idle < 30.0));
        }
        if let Some(r) = b.active.iter().find(|r| r.connections == 16) {
            t.push((
                "active lookups at 16 connections > 20,000 req/s".into(),
                format!("{:.0} req/s", r.requests_per_s),
                r.requests_per_s > 20_000.0,
            ));
            t.push((
                "… with p99 < 5 ms".into(),
                format!("{:.2} ms", r.p99_ms),
                r.p99_ms < 5.0,
            ));
        }
        for (files, limit) in [(1000, 5.0), (10000, 30.0)] {
            if let Some(r) = b.list.iter().find(|r| r.files == files) {
                t.push((
                    format!("list {files} files p50 < {limit} ms"),
                    format!("{:.2} ms", r.p50_ms),
                    r.p50_ms < limit && r.files_present == files,
                ));
            }
        }
        t
    }

    fn embedded_upload(&self, size_mb: u64) -> Option<&UploadResult> {
        self.backends
            .first()?
            .uploads
            .iter()
            .find(|u| u.size_mb == size_mb && u.error.is_none())
    }
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".into()),
            memory_mib: field(&meminfo, "MemTotal")
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kb| kb / 1024)
                .unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            load_avg_start: crate::load_avg(),
            load_avg_end: String::new(),
        }
    }
}

fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// How the run was invoked, as the user would type it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.is_empty() {
        "cargo bench --bench load".into()
    } else {
        format!("cargo bench --bench load -- {}", args.join(" "))
    }
}

fn percent(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.0}%")).unwrap_or_else(|| "—".into())
}

fn error_suffix(first: &Option<String>) -> String {
    first
        .as_ref()
        .map(|e| format!(" ({})", truncate(e, 60)))
        .unwrap_or_default()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

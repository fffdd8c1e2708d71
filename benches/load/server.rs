//! One `file-service serve` process on 127.0.0.1:0 with a fresh data folder: start, tokens, memory, stop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use file_service::auth::Auth;
use jsonwebtoken::Algorithm;

const SECRET: &str = "load-benchmark-secret-0123456789abcdef";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// USER_HZ: the unit of /proc/PID/stat CPU times; 100 on every Linux this runs on.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// A running server. Killed on drop, so a failing benchmark leaves no process behind.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub base: String,
    logs: Arc<Mutex<Vec<String>>>,
    /// The catalog's PostgreSQL database, when the server has one.
    pub database_url: Option<String>,
    // Removed (with every stored upload) when the server is dropped.
    _data: tempfile::TempDir,
}

impl Server {
    /// Starts `bin serve` with `env` on top of the benchmark's settings. `Err` carries the
    /// server's own last log lines when it exits before listening (e.g. a refused backend).
    pub fn start(bin: &Path, env: &[(String, String)]) -> Result<Server, String> {
        let data = tempfile::Builder::new()
            .prefix("file-service-load-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut cmd = command(bin, data.path());
        cmd.arg("serve").stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let listening = drain_log(&mut child, logs.clone());
        match listening.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => Ok(Server {
                child: Some(child),
                addr,
                base: format!("http://{addr}"),
                logs,
                database_url: env.iter().find(|(k, _)| k == "DATABASE_URL").map(|(_, v)| v.clone()),
                _data: data,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = logs
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take(3)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ");
                Err(if tail.is_empty() {
                    "server exited without a log line".into()
                } else {
                    tail
                })
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        proc_status_kb(self.pid(), "VmHWM").map(kb_to_mib).unwrap_or(f64::NAN)
    }

    /// Current resident memory (VmRSS), in MiB.
    pub fn rss_mib(&self) -> f64 {
        proc_status_kb(self.pid(), "VmRSS").map(kb_to_mib).unwrap_or(f64::NAN)
    }

    /// Starts the peak (VmHWM) again from the current RSS (`clear_refs` 5), so the next
    /// reading is the peak of what happens from now on.
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// CPU time (user + system, all threads) the server has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }

    #[allow(dead_code)]
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// SIGTERM, then a kill if it has not exited within 10 s.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A bearer token for `user`, signed with the secret the benchmark gives the server.
pub fn token(user: i64) -> String {
    Auth::new(SECRET.as_bytes(), Algorithm::HS256).mint(user, 24 * 3600)
}

/// A token with the replicate scope (what `file-service token --scope replicate` mints).
pub fn replicate_token() -> String {
    Auth::new(SECRET.as_bytes(), Algorithm::HS256).mint_with_scope(1, 24 * 3600, true)
}

/// `program` run in `dir` with the benchmark's configuration: `dir/data` as its data
/// folder, the benchmark's secret, nothing inherited that could point elsewhere.
pub fn command(program: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env_remove("FILE_SERVICE_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("DB_HOST")
        .env("DATA_DIR", dir.join("data"))
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("SECRET_KEY", SECRET)
        .env("RUST_LOG", "info");
    cmd
}

/// Reads the server's stderr on a thread (so it never blocks on a full pipe) and sends the
/// address from its `listening on http://ADDR` line. The sender is dropped at EOF, so an
/// early exit ends the wait at once instead of at the timeout.
fn drain_log(child: &mut Child, logs: Arc<Mutex<Vec<String>>>) -> mpsc::Receiver<SocketAddr> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                if let Ok(addr) = rest.split_whitespace().next().unwrap_or_default().parse() {
                    let _ = tx.send(addr);
                }
            }
            logs.lock().unwrap().push(line);
        }
    });
    rx
}

/// A `kB` field of /proc/PID/status (VmHWM, VmRSS, …).
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system, all threads) of any process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    proc_cpu_ticks(pid)
        .map(|t| t as f64 / CLOCK_TICKS_PER_S)
        .unwrap_or(f64::NAN)
}

/// utime + stime from /proc/PID/stat (fields 14 and 15, counted after the `(comm)` field,
/// which may itself contain spaces).
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

fn kb_to_mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The server binary: `--server-bin`/`FILE_SERVICE_BIN`, else the one cargo built for this bench.
pub fn resolve_bin(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_file-service")))
}

//! Starts the real `file-service` binary on a fresh data folder and talks to it over HTTP.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use file_service::auth::Auth;
use jsonwebtoken::Algorithm;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

pub const SECRET: &str = "integration-test-secret-0123456789";

/// The backends a server runs on. The whole suite runs on the stack named by
/// `TEST_STACK` (`sqlite`, the default; `postgres-redis`; `postgres`), so `.ci/run` runs
/// it once per stack; backend-specific tests pick their stack explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// SQLite file and in-process cache in the server's data folder.
    Sqlite,
    /// A fresh PostgreSQL database and the Redis at `TEST_REDIS_URL`.
    PostgresRedis,
    /// A fresh PostgreSQL database, no Redis (the service caches nothing then).
    Postgres,
}

impl Stack {
    pub fn from_env() -> Stack {
        match std::env::var("TEST_STACK").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => Stack::Sqlite,
            Ok("postgres-redis") => Stack::PostgresRedis,
            Ok("postgres") => Stack::Postgres,
            Ok(other) => panic!("TEST_STACK={other:?}: use sqlite, postgres-redis or postgres"),
        }
    }
}

/// The URL in `var` (`TEST_DATABASE_URL` / `TEST_REDIS_URL`); panics unless it is set and
/// its server answers. Tests that need a service are `#[ignore = "needs …"]`, so a plain
/// `cargo test` lists them as ignored; `--include-ignored` (what `.ci/run` passes) runs
/// them, and then a missing service is a failure, never a silent pass.
pub fn require_service(var: &str, test: &str) -> String {
    let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) else {
        panic!("{test} needs {var} (it runs only when ignored tests are included)");
    };
    if let Err(e) = reachable(var, &url) {
        panic!("{test}: {var}={url} does not answer: {e}");
    }
    url
}

fn reachable(var: &str, url: &str) -> Result<(), String> {
    if var == "TEST_REDIS_URL" {
        redis::Client::open(url)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(3)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        let admin = url.to_string();
        off_runtime(move || {
            postgres::Client::connect(&admin, postgres::NoTls)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Panics unless `redis-server` can be started (the Redis fault tests run their own).
pub fn require_redis_server(test: &str) {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(installed, "{test} needs redis-server on PATH");
}

/// Runs blocking client code (the sync postgres client starts its own runtime) on a
/// plain thread, outside the test's tokio runtime.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("helper thread"))
}

/// A PostgreSQL database made for one server (and its replicas), dropped with it.
pub struct TestDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create(admin_url: &str) -> TestDatabase {
        let name = format!("fs_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url.to_string();
        let sql = format!("CREATE DATABASE {name}");
        off_runtime(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to TEST_DATABASE_URL");
            c.batch_execute(&sql).expect("CREATE DATABASE");
        });
        let url = with_database(admin_url, &name);
        TestDatabase {
            admin_url: admin_url.to_string(),
            name,
            url,
        }
    }

    /// A client on this database (use inside `off_runtime`).
    pub fn connect(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }

    /// Drops the database now, cutting off every connection to it (as an outage would).
    pub fn drop_now(&self) {
        let (admin, sql) = (
            self.admin_url.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        off_runtime(move || {
            if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
                let _ = c.batch_execute(&sql);
            }
        });
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.drop_now();
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (authority, query) = match rest.split_once('/') {
        Some((auth, path)) => (auth, path.split_once('?').map(|(_, q)| q)),
        None => (
            rest.split_once('?').map_or(rest, |(a, _)| a),
            rest.split_once('?').map(|(_, q)| q),
        ),
    };
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// A running server process and the folder it keeps its data in.
pub struct TestServer {
    child: Option<Child>,
    /// Receives the listening address of a process launched but not yet waited for.
    listening: Mutex<Option<mpsc::Receiver<String>>>,
    pub base: String,
    pub data: tempfile::TempDir,
    env: Vec<(String, String)>,
    logs: Arc<Mutex<Vec<String>>>,
    pub client: reqwest::Client,
    pub stack: Stack,
    /// The PostgreSQL database of this server and its replicas; dropped after them.
    pub db: Option<Arc<TestDatabase>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra environment variables (e.g. `MAX_UPLOAD_BYTES`) on the
    /// stack named by `TEST_STACK`.
    pub async fn start_with(env: &[(&str, &str)]) -> TestServer {
        let stack = Stack::from_env();
        // The suite was asked to run on this stack: its services must be there.
        let need = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| panic!("TEST_STACK={stack:?} needs {var}"))
        };
        let (db, redis) = match stack {
            Stack::Sqlite => (None, None),
            Stack::Postgres => (Some(need("TEST_DATABASE_URL")), None),
            Stack::PostgresRedis => (Some(need("TEST_DATABASE_URL")), Some(need("TEST_REDIS_URL"))),
        };
        Self::start_on(stack, db.as_deref(), redis.as_deref(), env).await
    }

    /// Starts a server on `stack`, given the admin URL of PostgreSQL (a fresh database
    /// is created on it) and the Redis URL as the stack needs them.
    pub async fn start_on(
        stack: Stack,
        database_admin_url: Option<&str>,
        redis_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut server = Self::prepare_on(stack, database_admin_url, redis_url, env);
        server.spawn();
        server
    }

    /// A server on `stack` (its database created) whose process is not started yet:
    /// [`TestServer::launch`] starts it.
    pub fn prepare_on(
        stack: Stack,
        database_admin_url: Option<&str>,
        redis_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> TestServer {
        let data = tempfile::tempdir().expect("temp dir");
        let mut vars: Vec<(String, String)> = Vec::new();
        let db = match stack {
            Stack::Sqlite => None,
            Stack::Postgres | Stack::PostgresRedis => {
                let db = TestDatabase::create(database_admin_url.expect("a PostgreSQL stack needs TEST_DATABASE_URL"));
                vars.push(("DATABASE_URL".into(), db.url.clone()));
                Some(Arc::new(db))
            }
        };
        if stack == Stack::PostgresRedis {
            vars.push((
                "REDIS_URL".into(),
                redis_url.expect("this stack needs TEST_REDIS_URL").to_string(),
            ));
        }
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TestServer {
            child: None,
            listening: Mutex::new(None),
            base: String::new(),
            data,
            env: vars,
            logs: Arc::new(Mutex::new(Vec::new())),
            client: reqwest::Client::new(),
            stack,
            db,
        }
    }

    /// Another server process on the same catalog, cache and storage folder (a replica),
    /// with `env` added (later entries win).
    pub async fn replica(&self, env: &[(&str, &str)]) -> TestServer {
        let mut server = self.replica_prepared(env);
        server.spawn();
        server
    }

    /// A replica (as [`TestServer::replica`]) whose process is not started yet.
    pub fn replica_prepared(&self, env: &[(&str, &str)]) -> TestServer {
        assert!(self.stack != Stack::Sqlite, "replicas share a PostgreSQL catalog");
        let mut vars = self.env.clone();
        vars.push(("DATA_DIR".into(), self.data.path().join("data").display().to_string()));
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TestServer {
            child: None,
            listening: Mutex::new(None),
            base: String::new(),
            data: tempfile::tempdir().expect("temp dir"),
            env: vars,
            logs: Arc::new(Mutex::new(Vec::new())),
            client: reqwest::Client::new(),
            stack: self.stack,
            db: self.db.clone(),
        }
    }

    /// `file-service` with this server's configuration: its data folder as working
    /// directory and environment, nothing inherited that could point elsewhere.
    fn base_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_file-service"));
        cmd.current_dir(self.data.path())
            .env_remove("FILE_SERVICE_CONFIG")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("DB_HOST")
            .env("DATA_DIR", self.data.path().join("data"))
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("SECRET_KEY", SECRET)
            .env("RUST_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_listening();
    }

    /// Starts the process without waiting for it to listen (several can then start at
    /// once); [`TestServer::wait_listening`] waits.
    pub fn launch(&mut self) {
        let mut cmd = self.base_command();
        // The storage watcher takes files once unchanged this long; short keeps tests
        // quick. A test's own WATCH_SETTLE_MS wins.
        if !self.env.iter().any(|(k, _)| k == "WATCH_SETTLE_MS") {
            cmd.env("WATCH_SETTLE_MS", "300");
        }
        cmd.arg("serve").stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start file-service");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let logs = self.logs.clone();
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
                logs.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
        self.listening = Mutex::new(Some(rx));
    }

    /// Waits (at most 30 s) until a launched process listens.
    pub fn wait_listening(&mut self) {
        let rx = self.listening.lock().unwrap().take().expect("launched");
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => self.base = format!("http://{addr}"),
            Err(_) => {
                self.kill();
                panic!("server did not start; log:\n{}", self.logs.lock().unwrap().join("\n"));
            }
        }
    }

    /// Sends SIGTERM and returns at once (see [`TestServer::wait_exit`]).
    pub fn sigterm(&self) {
        sigterm(self.pid());
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it did not
    /// (it is then killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Waits (at most 10 s) until the server's log has a line containing `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.logs().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        self.terminate();
    }

    /// Sends SIGTERM and returns how the process exited (`None`: it had to be killed
    /// after 20 s, or was not running).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        sigterm(self.child.as_ref()?.id());
        self.wait_exit(Duration::from_secs(20))
    }

    /// Kills the server without letting it clean up, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts the server on the same data folder (a new port).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The extra environment this server runs with (its catalog and cache URLs, …).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.data.path().join("data").join("storage")
    }

    /// Names of the entries in the storage folder, sorted.
    pub fn stored_files(&self) -> Vec<String> {
        list_dir(&self.storage_dir())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub fn token(&self, user: i64) -> String {
        Auth::new(SECRET.as_bytes(), Algorithm::HS256).mint(user, 3600)
    }

    pub async fn get(&self, user: i64, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(self.token(user))
            .send()
            .await
            .expect("GET");
        status_json(resp).await
    }

    pub async fn delete(&self, user: i64, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .delete(self.url(path))
            .bearer_auth(self.token(user))
            .send()
            .await
            .expect("DELETE");
        status_json(resp).await
    }

    pub async fn activate(&self, user: i64, session: &str, file_name: &str) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(&format!("/files/active/{session}")))
            .bearer_auth(self.token(user))
            .json(&serde_json::json!({ "file_name": file_name }))
            .send()
            .await
            .expect("POST active");
        status_json(resp).await
    }

    /// Uploads `body` as `filename` with the original's four form fields.
    pub async fn upload(
        &self,
        user: i64,
        file_name: &str,
        session: &str,
        filename: &str,
        body: impl Into<Vec<u8>>,
    ) -> (u16, Value) {
        let form = Form::new()
            .text("file_name", file_name.to_string())
            .text("session_id", session.to_string())
            .text("description", format!("about {file_name}"))
            .part("file", Part::bytes(body.into()).file_name(filename.to_string()));
        self.upload_form(user, form).await
    }

    pub async fn upload_form(&self, user: i64, form: Form) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url("/files/"))
            .bearer_auth(self.token(user))
            .multipart(form)
            .send()
            .await
            .expect("POST upload");
        status_json(resp).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The `file_name`s of a listing, in order.
pub fn file_names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| f["file_name"].as_str().unwrap())
        .collect()
}

/// Polls `check` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn new_session() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A small CSV with an int, a float, a date and a text column.
pub fn sales_csv() -> &'static str {
    "date,product,sales,quantity\n2024-01-01,apple,1.5,3\n2024-01-02,pear,2.25,4\n2024-01-03,fig,3.0,5\n"
}

fn sigterm(pid: u32) {
    // No libc dependency for one call: the `kill` command is everywhere tests run.
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// A token with `"scope": "replicate"` (user 1), signed with the suite's secret: what
/// `file-service token --scope replicate` mints, for the sync routes and `--token`.
pub fn replicate_token() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": "1", "exp": exp, "scope": "replicate"});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("mint a replicate token")
}

impl TestServer {
    /// `file-service <args>` with this server's configuration: the environment, data
    /// folder and working directory it was started with (as `spawn` sets them).
    pub fn cli(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(self.base_command());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `file-service <args>` with this server's configuration to completion (at most
    /// `timeout`); panics with its output and this server's log unless it exits 0.
    /// Returns the last line it printed on stdout, parsed as JSON.
    pub async fn run_cli_json(&self, args: &[&str], timeout: Duration) -> Value {
        let child = self.cli(args).spawn().expect("start file-service");
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("file-service {args:?} did not finish within {timeout:?}"))
            .expect("wait for file-service");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "file-service {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nlocal server log:\n{}",
            out.status,
            self.logs()
        );
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("last stdout line of {args:?} is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
    }
}

impl TestServer {
    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }
}

/// The value of the one series named `name` with exactly `labels` in Prometheus text
/// `metrics`; `None` when there is no such series (never read as 0).
pub fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    want.sort();
    let mut found = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line is `series value`");
        let (series_name, mut have) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let have: Vec<(String, String)> = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n, have)
            }
            None => (series, Vec::new()),
        };
        if series_name != name {
            continue;
        }
        have.sort();
        if have == want {
            assert!(found.is_none(), "{name}{labels:?} appears twice in\n{metrics}");
            found = Some(value.parse::<f64>().unwrap_or_else(|e| panic!("{line}: {e}")));
        }
    }
    found
}

/// Like [`metric`], but the series must be there.
pub fn metric_present(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(metrics, name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?} in\n{metrics}"))
}

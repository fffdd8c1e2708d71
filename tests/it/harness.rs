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
/// `TEST_STACK` (`sqlite`, the default; `postgres-redis`; `postgres`; `postgres-redis-s3`),
/// so `.ci/run` runs it once per stack; backend-specific tests pick their stack explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// SQLite file and in-process cache in the server's data folder.
    Sqlite,
    /// A fresh PostgreSQL database and the Redis at `TEST_REDIS_URL`.
    PostgresRedis,
    /// A fresh PostgreSQL database, no Redis (the service caches nothing then).
    Postgres,
    /// As `PostgresRedis`, with the bytes in a fresh prefix of the bucket `TEST_S3_BUCKET`
    /// on the S3 server at `TEST_S3_ENDPOINT` (the local folder keeps uploads in progress).
    PostgresRedisS3,
}

impl Stack {
    pub fn from_env() -> Stack {
        match std::env::var("TEST_STACK").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => Stack::Sqlite,
            Ok("postgres-redis") => Stack::PostgresRedis,
            Ok("postgres") => Stack::Postgres,
            Ok("postgres-redis-s3") => Stack::PostgresRedisS3,
            Ok(other) => panic!("TEST_STACK={other:?}: use sqlite, postgres-redis, postgres or postgres-redis-s3"),
        }
    }
}

/// Whether the suite runs on a stack with a local storage folder. Tests of the folder's
/// watcher (files written into the folder) say so and return on the S3 stack, whose bucket
/// has no folder to write into; the bucket's periodic pass has its own tests (`s3`).
pub fn local_folder_stack(test: &str) -> bool {
    let s3 = Stack::from_env() == Stack::PostgresRedisS3;
    if s3 {
        eprintln!("{test}: not run on the S3 stack (it writes into the local storage folder)");
    }
    !s3
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
    if var == "TEST_S3_ENDPOINT" {
        // Any HTTP answer will do: the bucket itself is checked by the server at start.
        let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
        std::net::TcpStream::connect_timeout(
            &addr.parse().map_err(|e| format!("{addr} is not host:port ({e})"))?,
            Duration::from_secs(3),
        )
        .map(drop)
        .map_err(|e| e.to_string())
    } else if var == "TEST_REDIS_URL" {
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
    /// Where the bytes are on the S3 stack (shared with replicas).
    pub bucket: Option<Bucket>,
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
            Stack::PostgresRedis | Stack::PostgresRedisS3 => {
                (Some(need("TEST_DATABASE_URL")), Some(need("TEST_REDIS_URL")))
            }
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
            Stack::Postgres | Stack::PostgresRedis | Stack::PostgresRedisS3 => {
                let db = TestDatabase::create(database_admin_url.expect("a PostgreSQL stack needs TEST_DATABASE_URL"));
                vars.push(("DATABASE_URL".into(), db.url.clone()));
                Some(Arc::new(db))
            }
        };
        let bucket = (stack == Stack::PostgresRedisS3).then(|| {
            let place = Bucket::fresh(&format!("TEST_STACK={stack:?}"));
            vars.extend(place.server_env());
            // A bucket sends no events: its periodic pass must come round quickly in tests.
            vars.push(("WATCH_INTERVAL_SECONDS".into(), "1".into()));
            place
        });
        if matches!(stack, Stack::PostgresRedis | Stack::PostgresRedisS3) {
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
            bucket,
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
            bucket: self.bucket.clone(),
        }
    }

    /// `file-service` with this server's configuration: its data folder as working
    /// directory and environment, nothing inherited that could point elsewhere.
    fn base_command(&self) -> Command {
        let mut cmd = Command::new(crate::harness::server_bin());
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

    /// Names of the entries in the storage folder, sorted; on the S3 stack, the keys under
    /// the server's prefix (temporary ones included) and the uploads in progress in the
    /// local folder.
    pub fn stored_files(&self) -> Vec<String> {
        let mut names = list_dir(&self.storage_dir());
        if let Some(bucket) = &self.bucket {
            names.extend(bucket.list());
            names.sort();
        }
        names
    }

    /// Puts `bytes` where the server keeps file `name`, as another tool would (into the
    /// storage folder, or the bucket on the S3 stack).
    pub fn put_stored(&self, name: &str, bytes: impl Into<Vec<u8>>) {
        match &self.bucket {
            Some(bucket) => bucket.put(name, bytes.into()),
            None => std::fs::write(self.storage_dir().join(name), bytes.into()).expect("write into the storage folder"),
        }
    }

    /// The stored bytes of `name`.
    pub fn read_stored(&self, name: &str) -> Vec<u8> {
        match &self.bucket {
            Some(bucket) => bucket
                .get(name)
                .unwrap_or_else(|| panic!("{name} is not in the bucket")),
            None => std::fs::read(self.storage_dir().join(name)).expect("read from the storage folder"),
        }
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
    /// Whether an upload's bytes are arriving: on a folder, its temporary file is there;
    /// on a bucket (the bytes stream there, and nothing is listed before the upload is
    /// accepted), the server has an upload in progress and has counted bytes received.
    pub async fn upload_arriving(&self) -> bool {
        match &self.bucket {
            None => self.stored_files().iter().any(|f| f.starts_with(".upload-")),
            Some(_) => {
                let metrics = self.metrics().await;
                metric(&metrics, "file_service_uploaded_bytes_total", &[]).unwrap_or(0.0) > 0.0
                    && metric(&metrics, "file_service_uploads_in_progress", &[]).unwrap_or(0.0) > 0.0
            }
        }
    }

    /// Waits until [`TestServer::upload_arriving`]; panics after 10 s.
    pub async fn wait_for_upload_arriving(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.upload_arriving().await {
            assert!(
                Instant::now() < deadline,
                "the upload never started; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

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

/// A fresh prefix in the test bucket (`TEST_S3_BUCKET` on the S3 server at
/// `TEST_S3_ENDPOINT`), read and written here as another tool would.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
}

impl Bucket {
    /// A new prefix; panics unless the S3 server is configured and answers.
    pub fn fresh(test: &str) -> Bucket {
        let endpoint = require_service("TEST_S3_ENDPOINT", test);
        let bucket = std::env::var("TEST_S3_BUCKET").unwrap_or_else(|_| panic!("{test} needs TEST_S3_BUCKET"));
        Bucket {
            endpoint,
            bucket,
            prefix: format!("fs-test-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The environment that points a server at this prefix.
    pub fn server_env(&self) -> Vec<(String, String)> {
        vec![
            ("STORAGE_URL".into(), format!("s3://{}/{}", self.bucket, self.prefix)),
            ("S3_ENDPOINT".into(), self.endpoint.clone()),
            ("S3_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ]
    }

    fn store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("an S3 client for the test bucket")
    }

    /// The key `{prefix}/{name}`, exactly as written (never percent-encoded).
    fn path(&self, name: &str) -> object_store::path::Path {
        object_store::path::Path::parse(format!("{}/{name}", self.prefix)).expect("a legal key")
    }

    /// Runs `f` on a runtime of its own, off the test's runtime.
    fn run<T: Send, F: std::future::Future<Output = T>>(
        &self,
        f: impl FnOnce(object_store::aws::AmazonS3) -> F + Send,
    ) -> T {
        let store = self.store();
        off_runtime(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(f(store))
        })
    }

    /// Every key under the prefix (relative to it), exactly as the bucket has it; the
    /// server's readiness probe and key-layout marker aside.
    pub fn list(&self) -> Vec<String> {
        use futures_util::TryStreamExt;
        use object_store::ObjectStore;
        let prefix = object_store::path::Path::parse(self.prefix.as_str()).expect("a legal prefix");
        let depth = prefix.parts().count();
        let metas: Vec<object_store::ObjectMeta> =
            self.run(move |s| async move { s.list(Some(&prefix)).try_collect().await.expect("list the bucket") });
        let mut names: Vec<String> = metas
            .iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(depth)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .filter(|n| n != ".readyz" && n != ".keys-utf8")
            .collect();
        names.sort();
        names
    }

    pub fn put(&self, name: &str, bytes: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let path = self.path(name);
        self.run(move |s| async move { s.put(&path, bytes.into()).await.expect("put into the bucket") });
    }

    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        use object_store::ObjectStoreExt;
        let path = self.path(name);
        self.run(move |s| async move {
            match s.get(&path).await {
                Ok(r) => Some(r.bytes().await.expect("read from the bucket").to_vec()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("get from the bucket: {e}"),
            }
        })
    }

    pub fn delete(&self, name: &str) {
        use object_store::ObjectStoreExt;
        let path = self.path(name);
        self.run(move |s| async move { s.delete(&path).await.expect("delete from the bucket") });
    }
}

/// The server binary the tests start: `FILE_SERVICE_BIN` when set (a copy that no other
/// build replaces while the tests run), else the one cargo built for this test binary.
pub fn server_bin() -> String {
    std::env::var("FILE_SERVICE_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_file-service").to_string())
}

/// A file name as a path segment: percent-encoded.
pub fn enc(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The SHA-256 of `bytes` as lowercase hex, as records carry it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// A file read in 256 KiB chunks as a stream (what tokio-util's ReaderStream does), for
/// request bodies too large to hold.
pub fn file_stream(file: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

/// `GET /files/{name}/content` as `user`, with `headers` (a `Range`, for example).
pub async fn get_content(server: &TestServer, user: i64, name: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server
        .client
        .get(server.url(&format!("/files/{}/content", enc(name))))
        .bearer_auth(server.token(user));
    for (key, value) in headers {
        request = request.header(*key, *value);
    }
    request.send().await.expect("GET content")
}

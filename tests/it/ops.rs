//! Operability: health and readiness, metrics, the OpenAPI document, request ids, limits, CORS, shutdown and startup errors.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{metric, metric_present, new_session, sales_csv, status_json, TestServer};

async fn get_raw(server: &TestServer, path: &str) -> reqwest::Response {
    server
        .client
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let resp = get_raw(&server, "/healthz").await;
    assert_eq!(resp.status(), 200);
    let resp = get_raw(&server, "/readyz").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    for part in ["catalog", "storage", "cache"] {
        assert_eq!(body["checks"][part]["ok"], true, "{body}");
    }

    // The storage folder stops being writable (root ignores permissions: replace it by a file).
    let storage = server.storage_dir();
    let moved = storage.with_extension("moved");
    std::fs::rename(&storage, &moved).unwrap();
    std::fs::write(&storage, "not a folder").unwrap();
    let resp = get_raw(&server, "/readyz").await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["storage"]["ok"], false, "{body}");
    assert!(
        body["checks"]["storage"]["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(body["checks"]["catalog"]["ok"], true);

    std::fs::remove_file(&storage).unwrap();
    std::fs::rename(&moved, &storage).unwrap();
    assert_eq!(get_raw(&server, "/readyz").await.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_bytes_and_cache_lookups() {
    let server = TestServer::start().await;
    let session = new_session();
    let requests = "file_service_http_requests_total";
    let labels = [
        ("method", "GET"),
        ("route", "/api/v1/files/active/{session}"),
        ("status", "200"),
    ];
    let before = server.metrics().await;
    // Not requested yet: the series does not exist (a counter starting at 0 would do too).
    assert_eq!(metric(&before, requests, &labels).unwrap_or(0.0), 0.0);
    let hits_before = metric(&before, "file_service_active_cache_hits_total", &[]);
    server.upload(1, "m", &session, "m.csv", sales_csv()).await;
    for _ in 0..3 {
        assert_eq!(server.get(1, &format!("/files/active/{session}")).await.0, 200);
    }
    let resp = get_raw(&server, "/metrics").await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let after = resp.text().await.unwrap();
    assert_eq!(metric_present(&after, requests, &labels), 3.0, "{after}");
    assert_eq!(
        metric_present(&after, "file_service_uploaded_bytes_total", &[]),
        sales_csv().len() as f64
    );
    // PostgreSQL without Redis caches nothing (replicas would disagree): no hits there.
    let hits = if server.stack == crate::harness::Stack::Postgres {
        0.0
    } else {
        3.0
    };
    let hits_after = metric_present(&after, "file_service_active_cache_hits_total", &[]);
    assert_eq!(hits_after - hits_before.unwrap_or(0.0), hits, "{after}");
    assert_eq!(
        metric_present(&after, "file_service_analysis_duration_seconds_count", &[]),
        1.0
    );
    let buckets = after
        .lines()
        .filter(|l| l.starts_with("file_service_http_request_duration_seconds_bucket{"))
        .count();
    assert!(buckets > 0, "{after}");
}

/// Every (method, path) the running router answers, found by asking it: each method on
/// each path template known to the documentation or `ROUTES` (and a few that no one
/// documents), with a real file, session and a replicate token so no route hides behind
/// a 404 of its own. A route is served unless the answer is the router's own 404
/// (`route_not_found`) or 405.
async fn routes_the_router_serves(server: &TestServer, templates: &BTreeSet<String>) -> BTreeSet<(String, String)> {
    let session = new_session();
    let token = crate::harness::replicate_token();
    let ensure_file = || async {
        if server.get(1, "/files/x").await.0 == 404 {
            assert_eq!(server.upload(1, "x", &session, "x.csv", sales_csv()).await.0, 201);
        }
    };
    let id = {
        ensure_file().await;
        server.get(1, "/files/x").await.1["id"].as_str().unwrap().to_string()
    };
    let mut served = BTreeSet::new();
    for template in templates {
        // A share link's address is its secret: one of file x's, made just before use.
        let secret = if template.contains("{secret}") {
            ensure_file().await;
            let resp = server
                .client
                .post(server.url("/files/x/links"))
                .bearer_auth(server.token(1))
                .json(&serde_json::json!({ "expires_in": 600 }))
                .send()
                .await
                .unwrap();
            let (status, link) = status_json(resp).await;
            assert_eq!(status, 201, "{link}");
            link["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
        } else {
            String::new()
        };
        let path = template
            .replace("{secret}", &secret)
            .replace("{file_name}", "x")
            .replace("{session}", &session)
            .replace("{id}", &id)
            .replace("{source}", &new_session())
            .replace("{sha256}", &"0".repeat(64))
            .replace("{asset}", "app.js");
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            ensure_file().await;
            let resp = server
                .client
                .request(method.parse().unwrap(), format!("{}{path}", server.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let code = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string));
            let unrouted = status == 405
                || code.as_deref() == Some("route_not_found")
                // A HEAD answer has no body to tell the router's 404 from a handler's;
                // every handler's resource exists here, so a 404 is the router's.
                || (method == "HEAD" && status == 404);
            if !unrouted {
                served.insert((method.to_string(), template.clone()));
            }
        }
    }
    served
}

#[tokio::test]
async fn openapi_documents_exactly_the_served_routes() {
    let doc: serde_json::Value = serde_json::from_str(file_service::http::OPENAPI).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| !m.starts_with("parameters"))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let listed: BTreeSet<(String, String)> = file_service::http::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, listed,
        "openapi.json and http::ROUTES (the metric route labels) differ"
    );

    // What the router really answers, asked over HTTP: an undocumented method on a known
    // path, or a documented route the router lost, fails here.
    let server = TestServer::start().await;
    let mut templates: BTreeSet<String> = documented.iter().chain(&listed).map(|(_, p)| p.clone()).collect();
    // The web page's routes: served, but not API routes (not in openapi.json).
    let pages: BTreeSet<(String, String)> = file_service::http::web::PAGE_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    templates.extend(pages.iter().map(|(_, p)| p.clone()));
    // Paths no one documents, which must stay unrouted.
    for extra in [
        "/api/v1",
        "/api/v1/files/{file_name}/extra",
        "/api/v1/sync",
        "/api/v1/sync/files/{id}",
    ] {
        templates.insert(extra.to_string());
    }
    let served = routes_the_router_serves(&server, &templates).await;
    let expected: BTreeSet<(String, String)> = documented.union(&pages).cloned().collect();
    assert_eq!(
        served, expected,
        "routes served (left) vs documented and page routes (right)"
    );
    let served_doc: serde_json::Value = get_raw(&server, "/openapi.json").await.json().await.unwrap();
    assert_eq!(served_doc, doc);
    let docs = get_raw(&server, "/docs").await;
    assert!(docs.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = docs.text().await.unwrap();
    assert!(
        html.contains("openapi.json") && !html.contains("https://"),
        "the docs page must work offline"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_logged() {
    let server = TestServer::start_with(&[("LOG_FORMAT", "json")]).await;
    let resp = server
        .client
        .get(server.url("/files/"))
        .bearer_auth(server.token(7))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");
    let resp = get_raw(&server, "/healthz").await;
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&generated).unwrap().get_version_num(), 4);
    // One JSON line per request with method, route, status, latency, user and id.
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let logs = server.logs();
        if let Some(l) = logs.lines().find(|l| l.contains("trace-abc-123")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no request line in\n{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let f = &v["fields"];
    assert_eq!(
        (f["method"].as_str(), f["route"].as_str(), f["status"].as_u64()),
        (Some("GET"), Some("/api/v1/files/"), Some(200)),
        "{line}"
    );
    assert_eq!(f["user"], 7, "{line}");
    assert!(f["latency_ms"].as_f64().is_some(), "{line}");
}

/// An upload whose body is fed by the test, so it stays in progress as long as needed.
fn slow_upload(
    server: &TestServer,
    name: &str,
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<Option<u16>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let form = reqwest::multipart::Form::new()
        .text("file_name", name.to_string())
        .text("session_id", new_session())
        .text("description", "slow")
        .part("file", reqwest::multipart::Part::stream(body).file_name("slow.csv"));
    let request = server
        .client
        .post(server.url("/files/"))
        .bearer_auth(server.token(1))
        .multipart(form);
    let handle = tokio::spawn(async move { request.send().await.ok().map(|r| r.status().as_u16()) });
    (tx, handle)
}

async fn wait_for_temp_file(server: &TestServer) {
    server.wait_for_upload_arriving().await;
}

#[tokio::test]
async fn uploads_past_the_cap_get_503_with_retry_after() {
    let server = TestServer::start_with(&[("MAX_CONCURRENT_UPLOADS", "1")]).await;
    let (tx, first) = slow_upload(&server, "first");
    tx.send(Ok(b"a,b\n1,2\n".to_vec())).await.unwrap();
    wait_for_temp_file(&server).await;
    let form = reqwest::multipart::Form::new()
        .text("file_name", "second")
        .text("session_id", new_session())
        .text("description", "d")
        .part(
            "file",
            reqwest::multipart::Part::bytes(sales_csv().as_bytes()).file_name("s.csv"),
        );
    let resp = server
        .client
        .post(server.url("/files/"))
        .bearer_auth(server.token(1))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "busy");
    drop(tx);
    assert_eq!(first.await.unwrap(), Some(201));
}

#[tokio::test]
async fn an_idle_upload_is_cut_off_and_leaves_nothing() {
    let server = TestServer::start_with(&[("UPLOAD_IDLE_TIMEOUT_SECONDS", "1")]).await;
    let (tx, upload) = slow_upload(&server, "idle");
    tx.send(Ok(b"a,b\n1,2\n".to_vec())).await.unwrap();
    wait_for_temp_file(&server).await;
    // Send nothing more; the server answers 408 and removes the partial file.
    assert_eq!(upload.await.unwrap(), Some(408));
    drop(tx);
    assert!(server.stored_files().is_empty(), "{:?}", server.stored_files());
    // The cut-off connection may still sit in the client's pool: ask on a new one.
    let fresh = reqwest::Client::new();
    let listing = fresh
        .get(server.url("/files/"))
        .bearer_auth(server.token(1))
        .send()
        .await
        .expect("GET on a new connection");
    assert_eq!(status_json(listing).await.1, serde_json::json!([]));
}

#[tokio::test]
async fn sigterm_during_an_upload_exits_zero_and_leaves_no_temporary_file() {
    let mut server = TestServer::start_with(&[("SHUTDOWN_GRACE_SECONDS", "1")]).await;
    let (tx, upload) = slow_upload(&server, "big");
    // Keep feeding 1 MiB chunks (bounded: at most 200 MB) while the server shuts down.
    let feeder = tokio::spawn(async move {
        let chunk = b"1234567,abcdefg\n".repeat(65536);
        for _ in 0..200 {
            if tx.send(Ok(chunk.clone())).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    wait_for_temp_file(&server).await;
    let started = Instant::now();
    let status = server.terminate().expect("the server exits by itself");
    assert!(status.success(), "exit status {status:?}\n{}", server.logs());
    assert!(started.elapsed() < Duration::from_secs(15));
    feeder.abort();
    let _ = upload.await;
    assert!(server.stored_files().is_empty(), "{:?}", server.stored_files());
}

#[tokio::test]
async fn a_client_sending_headers_byte_by_byte_is_cut_off() {
    let server = TestServer::start_with(&[("HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let started = Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .chain(b"a".repeat(100).iter())
        .copied()
        .collect::<Vec<u8>>();
    let mut closed = false;
    for byte in request {
        if stream.write_all(&[byte]).await.is_err() {
            closed = true;
            break;
        }
        // Is the connection already closed (with or without a 408)?
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                closed = true;
                break;
            }
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never cut off");
    }
    assert!(closed, "the slow client was served");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_origin_list() {
    let server = TestServer::start().await;
    let resp = server
        .client
        .get(server.url("/files/"))
        .bearer_auth(server.token(1))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));

    let server =
        TestServer::start_with(&[("CORS_ALLOWED_ORIGINS", "https://app.example, https://other.example")]).await;
    let preflight = server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/files/"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let from = |origin: &'static str| {
        server
            .client
            .get(server.url("/files/"))
            .bearer_auth(server.token(1))
            .header("origin", origin)
            .send()
    };
    let resp = from("https://app.example").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(from("https://evil.example").await.unwrap().status(), 403);
}

fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(crate::harness::server_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("DB_HOST")
        .env("SECRET_KEY", crate::harness::SECRET);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn bad_settings_stop_startup_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), "x").unwrap();
    let cases = [
        ("BIND_ADDR", "localhost-ish"),
        ("DATABASE_URL", "mysql://db/files"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("ALGORITHM", "RS256"),
        ("SECRET_KEY", "short"),
        ("ACTIVE_FILE_TTL_SECONDS", "soon"),
        ("MAX_UPLOAD_BYTES", "-5"),
        ("LOCAL_STORAGE_PATH", "a-file/storage"),
        ("CORS_ALLOWED_ORIGINS", "app.example"),
    ];
    for (key, value) in cases {
        let out = run(
            dir.path(),
            &["serve"],
            &[
                (key, value),
                ("BIND_ADDR", if key == "BIND_ADDR" { value } else { "127.0.0.1:0" }),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(key), "{key}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{key}: {stderr}");
    }
    // A listen address that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(dir.path(), &["serve"], &[("BIND_ADDR", &addr)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BIND_ADDR"));
}

#[test]
fn check_reports_the_backends_and_fails_when_one_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["check"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for part in ["catalog: ok", "storage: ok", "cache: ok", "sqlite"] {
        assert!(stdout.contains(part), "{stdout}");
    }
    std::fs::write(dir.path().join("a-file"), "x").unwrap();
    let out = run(dir.path(), &["check"], &[("DATABASE_URL", "sqlite://a-file/files.db")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn summarize_prints_the_summary_or_profile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.csv");
    std::fs::write(&file, sales_csv()).unwrap();
    let out = run(dir.path(), &["summarize", file.to_str().unwrap()], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("The dataset has **3 rows** and **4 columns**."));
    let out = run(dir.path(), &["summarize", "--json", file.to_str().unwrap()], &[]);
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(profile["columns"][3]["dtype"], "int64");
    let out = run(dir.path(), &["summarize", "missing.csv"], &[]);
    assert!(!out.status.success());
}

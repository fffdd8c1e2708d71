//! Per-user quotas (`QUOTA_BYTES`, `QUOTA_FILES`, `file-service quota set/show`): uploads,
//! resumable uploads and files dropped in storage count; a refusal is a 413
//! `quota_exceeded` that keeps nothing; renames are never refused; and concurrent uploads
//! on two replicas sharing PostgreSQL never pass a limit together.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::harness::{eventually, local_folder_stack, new_session, require_service, sales_csv, Stack, TestServer};

/// The stored files that are not hidden (temporary files of uploads in progress are).
fn visible_stored(server: &TestServer) -> Vec<String> {
    let mut files: Vec<String> = server
        .stored_files()
        .into_iter()
        .filter(|f| !f.starts_with('.'))
        .collect();
    files.sort();
    files
}

async fn listed(server: &TestServer, user: i64) -> usize {
    let (status, list) = server.get(user, "/files/").await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().len()
}

fn assert_quota_refusal(status: u16, body: &Value) {
    assert_eq!((status, body["code"].as_str()), (413, Some("quota_exceeded")), "{body}");
    assert!(
        body["detail"].as_str().unwrap_or_default().contains("quota"),
        "the detail says why: {body}"
    );
}

/// Waits until no upload's temporary file is left in the storage folder.
async fn nothing_half_stored(server: &TestServer) {
    if server.bucket.is_some() {
        return;
    }
    eventually(10, "no temporary file left", || async {
        (!server.stored_files().iter().any(|f| f.starts_with(".upload-"))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn uploads_past_the_file_quota_are_refused_and_keep_nothing() {
    let server = TestServer::start_with(&[("QUOTA_FILES", "2")]).await;
    let session = new_session();
    for name in ["one", "two"] {
        let (status, body) = server
            .upload(1, name, &session, &format!("{name}.csv"), sales_csv())
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let stored = visible_stored(&server);
    let (status, body) = server.upload(1, "three", &session, "three.csv", sales_csv()).await;
    assert_quota_refusal(status, &body);
    assert_eq!(server.get(1, "/files/three").await.0, 404);
    assert_eq!(listed(&server, 1).await, 2);
    nothing_half_stored(&server).await;
    assert_eq!(visible_stored(&server), stored, "a refused upload leaves no bytes");
    // The quota is per user.
    assert_eq!(
        server.upload(2, "three", &session, "three.csv", sales_csv()).await.0,
        201
    );
    // Deleting a file makes room again.
    assert_eq!(server.delete(1, "/files/one").await.0, 200);
    let (status, body) = server.upload(1, "three", &session, "three.csv", sales_csv()).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn uploads_past_the_byte_quota_are_refused_and_keep_nothing() {
    let size = sales_csv().len();
    // Room for two files and a half.
    let quota = (size * 5 / 2).to_string();
    let server = TestServer::start_with(&[("QUOTA_BYTES", quota.as_str())]).await;
    let session = new_session();
    for name in ["one", "two"] {
        assert_eq!(
            server
                .upload(1, name, &session, &format!("{name}.csv"), sales_csv())
                .await
                .0,
            201
        );
    }
    // The length of a multipart file is not known up front: it is cut off once it passes
    // what is left of the quota, and what arrived is removed.
    let (status, body) = server.upload(1, "three", &session, "three.csv", sales_csv()).await;
    assert_quota_refusal(status, &body);
    assert!(body["detail"].as_str().unwrap().contains(&quota), "{body}");
    assert_eq!(listed(&server, 1).await, 2);
    nothing_half_stored(&server).await;
    assert_eq!(visible_stored(&server).len(), 2, "{:?}", visible_stored(&server));
    // A smaller file still fits.
    let small = "a,b\n1,2\n";
    assert_eq!(server.upload(1, "small", &session, "small.csv", small).await.0, 201);
}

/// Sends a multipart upload's head and `sent` bytes of a file declared much larger, over a
/// raw socket, then waits for the answer without sending the rest.
async fn answer_to_a_partial_upload(server: &TestServer, sent: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let boundary = "XBOUNDARYX";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file_name\"\r\n\r\nbig\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\na,b\r\n"
    );
    let request = format!(
        "POST /api/v1/files/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        server.token(1),
        head.len() + 50_000_000
    );
    // Writes may fail once the server has refused and closed: the answer is what counts.
    let _ = stream.write_all(request.as_bytes()).await;
    let _ = stream.write_all(&b"1,2\r\n".repeat(sent / 5)).await;
    let _ = stream.flush().await;
    // Well inside the server's idle timeout (60 s): an answer only comes this soon if the
    // server refused the upload itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "no whole answer while the rest of the body was still due: {:?}",
                String::from_utf8_lossy(&answer)
            ),
        }
        let text = String::from_utf8_lossy(&answer);
        if text.split_once("\r\n\r\n").is_some_and(|(_, body)| body.contains('}')) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    // A chunked body: the JSON is the line that starts with `{`.
    let json = body.lines().find(|l| l.starts_with('{')).unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_upload_is_cut_off_once_it_passes_what_is_left_of_the_byte_quota() {
    let server = TestServer::start_with(&[("QUOTA_BYTES", "100000")]).await;
    let (status, body) = answer_to_a_partial_upload(&server, 300_000).await;
    assert_quota_refusal(status, &body);
    assert!(body["detail"].as_str().unwrap().contains("100000"), "{body}");
    assert_eq!(listed(&server, 1).await, 0);
    nothing_half_stored(&server).await;
    assert!(visible_stored(&server).is_empty(), "{:?}", visible_stored(&server));
    // The name is free and the quota untouched.
    let (status, body) = server.upload(1, "big", &new_session(), "big.csv", sales_csv()).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_rename_is_never_refused() {
    // A rename never replaces a file (a taken name is a 409) and never changes bytes or
    // count: a user at both limits may still rename.
    let size = sales_csv().len().to_string();
    let server = TestServer::start_with(&[("QUOTA_FILES", "1"), ("QUOTA_BYTES", size.as_str())]).await;
    assert_eq!(
        server.upload(1, "old", &new_session(), "old.csv", sales_csv()).await.0,
        201
    );
    let resp = server
        .client
        .patch(server.url("/files/old"))
        .bearer_auth(server.token(1))
        .json(&serde_json::json!({"file_name": "new", "description": "renamed at the limit"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(server.get(1, "/files/new").await.0, 200);
    assert_eq!(listed(&server, 1).await, 1);
}

#[tokio::test]
async fn quota_set_overrides_the_default_and_quota_show_reports_usage() {
    let server = TestServer::start_with(&[("QUOTA_FILES", "5")]).await;
    let session = new_session();
    assert_eq!(server.upload(7, "one", &session, "one.csv", sales_csv()).await.0, 201);
    let shown = server
        .run_cli_json(&["quota", "show", "--user", "7"], Duration::from_secs(30))
        .await;
    assert_eq!(shown["user"], 7);
    assert_eq!(
        shown["limits"],
        serde_json::json!({"bytes": null, "files": 5}),
        "{shown}"
    );
    assert_eq!(
        shown["override"],
        serde_json::json!({"bytes": "default", "files": "default"})
    );
    assert_eq!(
        shown["usage"],
        serde_json::json!({"bytes": sales_csv().len(), "files": 1}),
        "{shown}"
    );

    // Lowered below the usage: the file stays, the next upload is refused.
    let set = server
        .run_cli_json(
            &["quota", "set", "--user", "7", "--files", "1", "--bytes", "unlimited"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(set["limits"], serde_json::json!({"bytes": null, "files": 1}), "{set}");
    assert_eq!(set["override"], serde_json::json!({"bytes": "unlimited", "files": 1}));
    let (status, body) = server.upload(7, "two", &session, "two.csv", sales_csv()).await;
    assert_quota_refusal(status, &body);
    // Other users keep the default.
    assert_eq!(server.upload(8, "two", &session, "two.csv", sales_csv()).await.0, 201);

    // Back to the configured default, one limit at a time.
    let set = server
        .run_cli_json(
            &["quota", "set", "--user", "7", "--files", "default"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        set["override"],
        serde_json::json!({"bytes": "unlimited", "files": "default"})
    );
    assert_eq!(server.upload(7, "two", &session, "two.csv", sales_csv()).await.0, 201);

    // Bad values are refused by the command line.
    let out = server
        .cli(&["quota", "set", "--user", "7", "--bytes", "1GB"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("whole number"));
}

// ----- resumable uploads -----

fn tus(server: &TestServer, method: reqwest::Method, path: &str, user: i64) -> reqwest::RequestBuilder {
    // A connection per request: a refusal before the body is read ends the connection.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .request(method, format!("{}{path}", server.base))
        .header("Tus-Resumable", "1.0.0")
        .bearer_auth(server.token(user))
}

fn tus_meta(file_name: &str, session: &str) -> String {
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    format!(
        "file_name {},session_id {},description {},filename {}",
        b64(file_name),
        b64(session),
        b64("resumable"),
        b64(&format!("{file_name}.csv"))
    )
}

async fn tus_create(server: &TestServer, user: i64, name: &str, length: usize) -> (u16, Value, Option<String>) {
    let resp = tus(server, reqwest::Method::POST, "/api/v1/uploads/", user)
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", tus_meta(name, &new_session()))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), location)
}

async fn tus_send(server: &TestServer, user: i64, path: &str, bytes: &[u8]) -> (u16, Value) {
    let resp = tus(server, reqwest::Method::PATCH, path, user)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_resumable_upload_is_refused_at_creation_and_checked_again_at_completion() {
    let size = sales_csv().len();
    let quota = (size * 3 / 2).to_string();
    let server = TestServer::start_with(&[("QUOTA_BYTES", quota.as_str())]).await;

    // Upload-Length past the quota: refused before any byte is sent.
    let (status, body, location) = tus_create(&server, 1, "huge", size * 2).await;
    assert_quota_refusal(status, &body);
    assert!(location.is_none());

    // Two uploads that each fit, but not both: the second to complete is refused.
    let (status, _, first) = tus_create(&server, 1, "first", size).await;
    assert_eq!(status, 201);
    let (status, _, second) = tus_create(&server, 1, "second", size).await;
    assert_eq!(status, 201);
    let (status, body) = tus_send(&server, 1, &first.unwrap(), sales_csv().as_bytes()).await;
    assert!(status == 204, "{status} {body}");
    let second = second.unwrap();
    let (status, body) = tus_send(&server, 1, &second, sales_csv().as_bytes()).await;
    assert_quota_refusal(status, &body);
    let (status, state) = {
        let resp = tus(&server, reqwest::Method::GET, &second, 1).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(
        (state["state"].as_str(), state["error"]["code"].as_str()),
        (Some("failed"), Some("quota_exceeded")),
        "{state}"
    );
    assert_eq!(server.get(1, "/files/second").await.0, 404);
    assert_eq!(listed(&server, 1).await, 1);
    nothing_half_stored(&server).await;
    assert_eq!(visible_stored(&server).len(), 1, "{:?}", visible_stored(&server));
}

// ----- the storage watcher -----

#[tokio::test]
async fn files_dropped_in_storage_are_catalogued_past_the_quota_and_block_the_next_upload() {
    if !local_folder_stack("files_dropped_in_storage_are_catalogued_past_the_quota") {
        return;
    }
    let server = TestServer::start_with(&[("QUOTA_FILES", "1"), ("WATCH_SETTLE_MS", "200")]).await;
    let session = new_session();
    assert_eq!(
        server
            .upload(1, "uploaded", &session, "uploaded.csv", sales_csv())
            .await
            .0,
        201
    );
    // Dropped in: catalogued anyway, over the limit.
    std::fs::write(server.storage_dir().join("1_dropped.csv"), sales_csv()).unwrap();
    eventually(15, "the dropped file catalogued", || async {
        (server.get(1, "/files/dropped").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(listed(&server, 1).await, 2);
    // Over the limit: the next upload is refused before its bytes are read…
    let (status, body) = server.upload(1, "next", &session, "next.csv", sales_csv()).await;
    assert_quota_refusal(status, &body);
    assert!(body["detail"].as_str().unwrap().contains("2 of 1 files"), "{body}");
    // …until the user is under it again.
    assert_eq!(server.delete(1, "/files/dropped").await.0, 200);
    assert_eq!(server.delete(1, "/files/uploaded").await.0, 200);
    assert_eq!(server.upload(1, "next", &session, "next.csv", sales_csv()).await.0, 201);
}

// ----- races -----

/// Uploads raced on `servers` (in turn) for one user: exactly `allowed` pass, the others
/// are quota refusals, and every server lists the same files.
async fn race_on(servers: &[&TestServer], uploads: usize, allowed: usize) {
    let user = rand::random::<u32>() as i64 + 1_000_000;
    let session = new_session();
    let answers = futures_util::future::join_all((0..uploads).map(|i| {
        let (server, session) = (servers[i % servers.len()], session.clone());
        async move {
            let name = format!("race{i}");
            server
                .upload(user, &name, &session, &format!("{name}.csv"), sales_csv())
                .await
        }
    }))
    .await;
    let passed = answers.iter().filter(|(status, _)| *status == 201).count();
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_quota_refusal(*status, body);
    }
    assert_eq!(passed, allowed, "{answers:?}");
    for server in servers {
        assert_eq!(listed(server, user).await, allowed);
    }
    nothing_half_stored(servers[0]).await;
    assert_eq!(
        visible_stored(servers[0]).len(),
        allowed,
        "{:?}",
        visible_stored(servers[0])
    );
}

#[tokio::test]
async fn parallel_uploads_on_one_server_never_pass_the_quota() {
    let server = TestServer::start_with(&[("QUOTA_FILES", "3")]).await;
    race_on(&[&server], 10, 3).await;
}

/// Uploads raced on two replicas sharing PostgreSQL (and Redis): exactly as many as the
/// quota allows pass, whichever replica takes them.
async fn race(env: &[(&str, &str)], uploads: usize, allowed: usize) {
    let test = "quotas raced across two replicas";
    let admin = require_service("TEST_DATABASE_URL", test);
    let redis = require_service("TEST_REDIS_URL", test);
    let a = TestServer::start_on(Stack::PostgresRedis, Some(&admin), Some(&redis), env).await;
    let b = a.replica(&[]).await;
    race_on(&[&a, &b], uploads, allowed).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn parallel_uploads_on_two_replicas_never_pass_the_file_quota() {
    race(&[("QUOTA_FILES", "3")], 10, 3).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn parallel_uploads_on_two_replicas_never_pass_the_byte_quota() {
    let quota = (sales_csv().len() * 7 / 2).to_string();
    race(&[("QUOTA_BYTES", quota.as_str())], 10, 3).await;
}

// ----- sync -----

#[tokio::test]
async fn a_hub_refuses_synced_files_past_a_quota_and_the_report_says_why() {
    let edge = TestServer::start_on(Stack::Sqlite, None, None, &[]).await;
    let hub = TestServer::start_with(&[("QUOTA_FILES", "2")]).await;
    let user = crate::sync::random_user();
    let session = new_session();
    for name in ["one", "two", "three"] {
        assert_eq!(
            edge.upload(user, name, &session, &format!("{name}.csv"), sales_csv())
                .await
                .0,
            201
        );
    }
    let args = crate::sync::sync_args(&edge, &hub, false, true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = edge.run_cli_json(&args, crate::sync::SYNC_TIMEOUT).await;
    let pushed = &report["pushed"];
    assert_eq!(
        (pushed["applied"].as_u64(), pushed["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    let reasons = pushed["rejections"]
        .as_array()
        .unwrap_or_else(|| panic!("reasons in {report}"));
    assert_eq!(reasons.len(), 1, "{report}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.contains("quota_exceeded") && reason.contains("files"),
        "{reason}"
    );
    assert_eq!(listed(&hub, user).await, 2);
    assert_eq!(listed(&edge, user).await, 3, "the edge keeps its files");
    nothing_half_stored(&hub).await;
}

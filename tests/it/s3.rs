//! The S3 backend against a real S3 server (`TEST_S3_ENDPOINT`, `TEST_S3_BUCKET`): replicas
//! on separate machines' folders sharing one bucket, uploads cut off or killed half-way
//! leaving no object (and the periodic pass aborting the multipart upload a killed server
//! left, never a live one's), objects written by other tools catalogued, a bad bucket at
//! startup, keys that are the names as written, and a bucket of an earlier release upgraded.
//!
//! The whole HTTP suite also runs on this backend (`TEST_STACK=postgres-redis-s3`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    enc, get_content, new_session, require_service, sales_csv, sha256_hex, Bucket, Stack, TestServer,
};

/// A server on PostgreSQL + Redis + a fresh prefix of the test bucket.
async fn s3_server(env: &[(&str, &str)]) -> TestServer {
    let db = require_service("TEST_DATABASE_URL", "the S3 tests");
    let redis = require_service("TEST_REDIS_URL", "the S3 tests");
    TestServer::start_on(Stack::PostgresRedisS3, Some(&db), Some(&redis), env).await
}

/// A server on SQLite (it owns its storage: leftovers are swept as it starts) with its
/// bytes in a fresh prefix of the test bucket.
async fn sqlite_s3_server(bucket: &Bucket, env: &[(&str, &str)]) -> TestServer {
    let mut vars: Vec<(String, String)> = bucket.server_env();
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = TestServer::start_on(Stack::Sqlite, None, None, &vars).await;
    server.bucket = Some(bucket.clone());
    server
}

async fn download(server: &TestServer, user: i64, name: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let range: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
    let resp = get_content(server, user, name, &range).await;
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// A CSV of about `bytes` bytes (larger than one part of a multipart upload when asked).
fn big_csv(bytes: usize) -> Vec<u8> {
    let mut csv = b"id,name,value\n".to_vec();
    let mut i = 0u64;
    while csv.len() < bytes {
        csv.extend_from_slice(format!("{i},name {i},{}\n", i * 7 % 1000).as_bytes());
        i += 1;
    }
    csv
}

/// Multipart uploads in progress under `bucket`'s prefix, as (key, upload id), asked of
/// the server directly (object_store has no call for it); the test server does not check
/// signatures.
async fn pending_multiparts(bucket: &Bucket) -> Vec<(String, String)> {
    let url = format!(
        "{}/{}?uploads&prefix={}/",
        bucket.endpoint, bucket.bucket, bucket.prefix
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let field = |upload: &str, tag: &str| {
        let start = upload.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = upload[start..].find(&format!("</{tag}>"))?;
        Some(upload[start..start + end].to_string())
    };
    body.split("<Upload>")
        .skip(1)
        .map(|upload| (field(upload, "Key").unwrap(), field(upload, "UploadId").unwrap()))
        .collect()
}

async fn pending_multipart_uploads(bucket: &Bucket) -> usize {
    pending_multiparts(bucket).await.len()
}

/// How many parts the multipart upload `upload_id` of `key` has in the bucket (none once
/// it is aborted).
async fn parts_of(bucket: &Bucket, key: &str, upload_id: &str) -> usize {
    let url = format!(
        "{}/{}/{key}?uploadId={}",
        bucket.endpoint,
        bucket.bucket,
        enc(upload_id)
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    body.matches("<PartNumber>").count()
}

/// Waits until the bucket has a multipart upload not in `known` with at least `parts`
/// parts; returns it as (key, upload id).
async fn wait_for_new_multipart(
    server: &TestServer,
    bucket: &Bucket,
    known: &[(String, String)],
    parts: usize,
) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for upload in pending_multiparts(bucket).await {
            if !known.contains(&upload) && parts_of(bucket, &upload.0, &upload.1).await >= parts {
                return upload;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new multipart upload with {parts} parts; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn two_replicas_on_separate_folders_share_one_bucket() {
    let a = s3_server(&[]).await;
    // Another machine: its own data and spool folders; the same catalog, cache and bucket.
    let other_machine = tempfile::tempdir().unwrap();
    let data = other_machine.path().join("data");
    let b = a
        .replica(&[
            ("DATA_DIR", data.to_str().unwrap()),
            ("LOCAL_STORAGE_PATH", data.join("spool").to_str().unwrap()),
        ])
        .await;
    let session = new_session();
    let big = big_csv(12 << 20); // more than one 8 MiB part: a multipart upload
    let (status, on_a) = a.upload(1, "from a", &session, "a.csv", big.clone()).await;
    assert_eq!(status, 201, "{on_a}");
    let uri = format!("s3://{}/{}/1_from a.csv", b_bucket(&a).bucket, b_bucket(&a).prefix);
    assert_eq!(on_a["storage_uri"], uri);
    let (status, on_b) = b.upload(2, "from b", &session, "b.csv", sales_csv()).await;
    assert_eq!(status, 201, "{on_b}");

    // Each serves the other's file: bytes, ranges, ETag, preview and profile.
    assert_eq!(download(&b, 1, "from a", None).await, (200, big.clone()));
    assert_eq!(
        download(&b, 1, "from a", Some("bytes=100-199")).await,
        (206, big[100..200].to_vec())
    );
    assert_eq!(
        download(&a, 2, "from b", None).await,
        (200, sales_csv().as_bytes().to_vec())
    );
    let etag = format!("\"{}\"", on_a["sha256"].as_str().unwrap());
    let resp = b
        .client
        .get(b.url("/files/from a/content"))
        .bearer_auth(b.token(1))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);
    let (status, preview) = b.get(1, "/files/from a/preview?rows=2").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["rows"].as_array().unwrap().len(), 2, "{preview}");
    assert_eq!(a.get(2, "/files/from b/profile").await.0, 200);

    // A rename on one and a delete on the other keep catalog and bucket in step.
    let resp = b
        .client
        .patch(b.url("/files/from a"))
        .bearer_auth(b.token(1))
        .json(&serde_json::json!({"file_name": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(download(&a, 1, "renamed", None).await, (200, big));
    assert_eq!(a.delete(2, "/files/from b").await.0, 200);
    assert_eq!(a.bucket.as_ref().unwrap().list(), ["1_renamed.csv"]);
    // Neither machine keeps bytes of its own: both spool folders are empty.
    assert_eq!(crate::harness::list_dir(&a.storage_dir()), Vec::<String>::new());
    assert_eq!(crate::harness::list_dir(&data.join("spool")), Vec::<String>::new());
    // A name taken on one is taken on the other.
    assert_eq!(b.upload(1, "renamed", &session, "r.csv", sales_csv()).await.0, 409);
    // The catalog says where the bytes are.
    let db = a.db.clone().unwrap();
    let stored: Vec<(String, String)> = crate::harness::off_runtime(move || {
        let rows = db
            .connect()
            .query("SELECT storage_type::text, storage_uri FROM files", &[])
            .unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    });
    assert_eq!(stored, [("s3".to_string(), uri.replace("from a", "renamed"))]);
}

fn b_bucket(server: &TestServer) -> &Bucket {
    server.bucket.as_ref().expect("a server on the S3 stack")
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn an_object_written_by_another_tool_is_catalogued() {
    let server = s3_server(&[("WATCH_DEFAULT_USER_ID", "7")]).await;
    let bucket = server.bucket.clone().unwrap();
    bucket.put("3_written elsewhere.csv", sales_csv().as_bytes().to_vec());
    bucket.put("no prefix.csv", b"a,b\n1,2\n".to_vec());
    bucket.put("3_notes.txt", b"not a dataset".to_vec());
    let deadline = Instant::now() + Duration::from_secs(30);
    let record: Value = loop {
        let (status, body) = server.get(3, "/files/written elsewhere").await;
        if status == 200 && server.get(7, "/files/no prefix").await.0 == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "not catalogued; log:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(record["storage_uri"].as_str().unwrap().starts_with("s3://"), "{record}");
    assert_eq!(record["row_count"], 3);
    // Moved into the layout for the default user; the unsupported file is left alone.
    assert_eq!(
        bucket.list(),
        ["3_notes.txt", "3_written elsewhere.csv", "7_no prefix.csv"]
    );
    assert_eq!(
        download(&server, 7, "no prefix", None).await,
        (200, b"a,b\n1,2\n".to_vec())
    );
    // Removed by the other tool: forgotten by the next pass.
    bucket.delete("3_written elsewhere.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get(3, "/files/written elsewhere").await.0 != 404 {
        assert!(Instant::now() < deadline, "not forgotten; log:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts uploading `bytes` of CSV as `big` for user 1, in the background: the tests kill
/// the server while it is in flight, so the answer is never awaited.
fn spawn_big_upload(
    server: &TestServer,
    session: &str,
    description: &str,
    bytes: usize,
) -> tokio::task::JoinHandle<()> {
    let (url, token) = (server.url("/files/"), server.token(1));
    let form = reqwest::multipart::Form::new()
        .text("file_name", "big")
        .text("session_id", session.to_string())
        .text("description", description.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(big_csv(bytes)).file_name("big.csv"),
        );
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await;
    })
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn a_multipart_upload_cut_off_by_a_kill_leaves_no_object() {
    let _ = require_service("TEST_S3_ENDPOINT", "a cut-off multipart upload");
    let bucket = Bucket::fresh("a cut-off multipart upload");
    // The upload stops after its first part has gone to the bucket, until killed.
    let mut server = sqlite_s3_server(&bucket, &[("FILE_SERVICE_FAULT_STALL", "upload-part:big.csv")]).await;
    let session = new_session();
    let upload = spawn_big_upload(&server, &session, "cut off", 12 << 20);
    server.wait_for_log("FILE_SERVICE_FAULT_STALL").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending_multipart_uploads(&bucket).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no multipart upload started; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill();
    upload.abort();
    // Parts were sent, yet the bucket lists no object: an unfinished multipart upload is
    // invisible.
    assert_eq!(bucket.list(), Vec::<String>::new());

    // At start the SQLite server owns the storage: its pass aborts the parts.
    server.restart();
    assert_eq!(pending_multipart_uploads(&bucket).await, 0, "log:\n{}", server.logs());
    assert_eq!(bucket.list(), Vec::<String>::new());
    assert_eq!(server.get(1, "/files/").await.1, serde_json::json!([]));
    assert_eq!(server.get(1, &format!("/files/active/{session}")).await.0, 404);
    assert_eq!(server.upload(1, "big", &session, "big.csv", sales_csv()).await.0, 201);
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn a_server_killed_before_its_upload_is_visible_leaves_no_object_after_restart() {
    let _ = require_service("TEST_S3_ENDPOINT", "a kill mid-upload");
    let bucket = Bucket::fresh("a kill mid-upload");
    // The bytes are complete under their temporary key; the copy to the name never comes.
    let mut server = sqlite_s3_server(&bucket, &[("FILE_SERVICE_FAULT_STALL", "persist-copy:1_big.csv")]).await;
    let session = new_session();
    let upload = spawn_big_upload(&server, &session, "killed", 10 << 20);
    server.wait_for_log("FILE_SERVICE_FAULT_STALL").await;
    let temporary = bucket.list();
    assert!(
        temporary.len() == 1 && temporary[0].starts_with(".upload-"),
        "{temporary:?}"
    );
    server.kill();
    upload.abort();

    // At start the SQLite server owns the storage: it sweeps the temporary key and
    // discards the reservation; nothing becomes visible, the name is free.
    server.restart();
    assert_eq!(bucket.list(), Vec::<String>::new(), "log:\n{}", server.logs());
    assert_eq!(server.get(1, "/files/big").await.0, 404);
    assert_eq!(server.upload(1, "big", &session, "big.csv", sales_csv()).await.0, 201);
    assert_eq!(bucket.list(), ["1_big.csv"]);
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn a_bad_bucket_stops_startup_with_one_line_naming_the_key() {
    let endpoint = require_service("TEST_S3_ENDPOINT", "a bad bucket");
    let server = TestServer::prepare_on(Stack::Sqlite, None, None, &[]);
    for (url, endpoint) in [
        ("s3://no-such-bucket-here", endpoint.as_str()),
        ("s3://file-service-test", "http://127.0.0.1:9"), // nothing listens on port 9
    ] {
        let started = Instant::now();
        let out = server
            .cli(&["serve"])
            .env("STORAGE_URL", url)
            .env("S3_ENDPOINT", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url} at {endpoint}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
        let line = stderr
            .lines()
            .find(|l| l.contains("configuration error"))
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!(line.contains("STORAGE_URL"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// ----- uploads streamed to the bucket while they arrive -----

/// An upload of a CSV named `name` for user 1 whose bytes the test feeds (the returned
/// sender; dropping it ends the file). With `file_first`, the `file` part comes before
/// `file_name`, so the name is only known (and checked) once the bytes have arrived.
fn fed_upload(
    server: &TestServer,
    name: &str,
    file_first: bool,
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<(u16, Value)>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut file = Some(reqwest::multipart::Part::stream(body).file_name(format!("{name}.csv")));
    let mut form = reqwest::multipart::Form::new();
    if file_first {
        form = form.part("file", file.take().unwrap());
    }
    form = form
        .text("file_name", name.to_string())
        .text("session_id", new_session())
        .text("description", "streamed");
    if let Some(file) = file {
        form = form.part("file", file);
    }
    let request = server
        .client
        .post(server.url("/files/"))
        .bearer_auth(server.token(1))
        .multipart(form);
    let answer = tokio::spawn(async move {
        let resp = request.send().await.expect("an answer");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    });
    (tx, answer)
}

/// Sends `bytes` in chunks of 1 MiB.
async fn feed(tx: &tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>, bytes: &[u8]) {
    for chunk in bytes.chunks(1 << 20) {
        tx.send(Ok(chunk.to_vec()))
            .await
            .expect("the upload is still being read");
    }
}

/// Waits until the server has parts of a multipart upload in the bucket.
async fn wait_for_parts_in_flight(server: &TestServer, bucket: &Bucket) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pending_multipart_uploads(bucket).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no multipart upload started; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no multipart upload is pending under the prefix (an abort may finish just
/// after the answer when the client hung up first).
async fn wait_for_no_parts(server: &TestServer, bucket: &Bucket) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending_multipart_uploads(bucket).await != 0 {
        assert!(
            Instant::now() < deadline,
            "a multipart upload was left pending; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn a_large_upload_streams_to_the_bucket_while_it_arrives() {
    let server = s3_server(&[]).await;
    let bucket = b_bucket(&server).clone();
    let csv = big_csv(30 << 20); // four parts of 8 MiB
    let (tx, answer) = fed_upload(&server, "big", false);
    feed(&tx, &csv[..20 << 20]).await;
    // Parts are in the bucket before the upload has finished arriving; nothing is visible
    // yet, and the CSV (analyzed as it arrives) has no copy in the local folder.
    wait_for_parts_in_flight(&server, &bucket).await;
    assert_eq!(bucket.list(), Vec::<String>::new());
    assert_eq!(crate::harness::list_dir(&server.storage_dir()), Vec::<String>::new());
    feed(&tx, &csv[20 << 20..]).await;
    drop(tx);
    let (status, record) = answer.await.unwrap();
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["size_bytes"], csv.len() as u64);
    assert_eq!(record["sha256"], sha256_hex(&csv));
    // One object under its name with exactly the bytes; no temporary key, no parts left.
    assert_eq!(bucket.list(), ["1_big.csv"]);
    let stored = bucket.get("1_big.csv").unwrap();
    assert!(stored == csv, "the stored object differs ({} bytes)", stored.len());
    assert_eq!(pending_multipart_uploads(&bucket).await, 0);
    assert_eq!(
        download(&server, 1, "big", Some("bytes=25000000-25000099")).await,
        (206, csv[25_000_000..25_000_100].to_vec())
    );
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn the_periodic_pass_aborts_the_multipart_upload_a_killed_server_left_never_a_live_one() {
    // The pass every second (LEASE_SECONDS / 3); another process's multipart upload is
    // abandoned once 4 s old. On PostgreSQL the pass is never exclusive: the age decides.
    let age = Duration::from_secs(4);
    let mut server = s3_server(&[("LEASE_SECONDS", "3"), ("S3_ABANDONED_UPLOAD_SECONDS", "4")]).await;
    let bucket = b_bucket(&server).clone();
    let csv = big_csv(30 << 20);
    // Killed (SIGKILL) mid-upload, with more than two parts of 8 MiB in the bucket.
    let (tx, answer) = fed_upload(&server, "killed", false);
    feed(&tx, &csv[..20 << 20]).await;
    let left = wait_for_new_multipart(&server, &bucket, &[], 2).await;
    server.kill();
    answer.abort();
    drop(tx);
    assert_eq!(pending_multiparts(&bucket).await, [left.clone()]);
    assert_eq!(bucket.list(), Vec::<String>::new());

    server.restart();
    // An upload in progress on the restarted server: its multipart upload is this
    // process's own, never aborted however long it lasts.
    let (tx, answer) = fed_upload(&server, "live", false);
    feed(&tx, &csv[..20 << 20]).await;
    let live = wait_for_new_multipart(&server, &bucket, std::slice::from_ref(&left), 1).await;
    let live_started = Instant::now();
    // The killed server's parts are aborted by the pass.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pending_multiparts(&bucket).await.contains(&left) {
        assert!(
            Instant::now() < deadline,
            "the killed server's multipart upload was never aborted; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(parts_of(&bucket, &left.0, &left.1).await, 0);
    assert!(
        server
            .logs()
            .contains("aborted a multipart upload a stopped process left"),
        "log:\n{}",
        server.logs()
    );
    // The live one outlives the age by several passes, and completes.
    tokio::time::sleep((age + Duration::from_secs(3)).saturating_sub(live_started.elapsed())).await;
    assert_eq!(pending_multiparts(&bucket).await, [live], "log:\n{}", server.logs());
    feed(&tx, &csv[20 << 20..]).await;
    drop(tx);
    let (status, record) = answer.await.unwrap();
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["sha256"], sha256_hex(&csv));
    assert_eq!(bucket.list(), ["1_live.csv"]);
    assert_eq!(pending_multiparts(&bucket).await, Vec::<(String, String)>::new());
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn a_replicas_upload_in_progress_is_not_taken_for_abandoned() {
    // Both run the pass every second, with the default age. The test server dates every
    // multipart upload in 2010: only the start the key carries keeps a young one young.
    let a = s3_server(&[("LEASE_SECONDS", "3")]).await;
    let other_machine = tempfile::tempdir().unwrap();
    let data = other_machine.path().join("data");
    let b = a
        .replica(&[
            ("DATA_DIR", data.to_str().unwrap()),
            ("LOCAL_STORAGE_PATH", data.join("spool").to_str().unwrap()),
        ])
        .await;
    let bucket = b_bucket(&a).clone();
    let csv = big_csv(20 << 20);
    let (tx, answer) = fed_upload(&b, "on b", false);
    feed(&tx, &csv[..17 << 20]).await;
    let live = wait_for_new_multipart(&b, &bucket, &[], 2).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        pending_multiparts(&bucket).await,
        [live],
        "log of a:\n{}\nlog of b:\n{}",
        a.logs(),
        b.logs()
    );
    feed(&tx, &csv[17 << 20..]).await;
    drop(tx);
    let (status, record) = answer.await.unwrap();
    assert_eq!(status, 201, "{record}");
    assert_eq!(bucket.list(), ["1_on b.csv"]);
    assert_eq!(pending_multiparts(&bucket).await, Vec::<(String, String)>::new());
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn an_upload_cut_off_midway_leaves_no_object_and_no_multipart_upload() {
    let server = s3_server(&[]).await;
    let bucket = b_bucket(&server).clone();
    let csv = big_csv(30 << 20);
    let (tx, answer) = fed_upload(&server, "cut", false);
    feed(&tx, &csv[..20 << 20]).await;
    wait_for_parts_in_flight(&server, &bucket).await;
    // The client goes away: its connection closes mid-file.
    answer.abort();
    drop(tx);
    wait_for_no_parts(&server, &bucket).await;
    assert_eq!(bucket.list(), Vec::<String>::new());
    assert_eq!(crate::harness::list_dir(&server.storage_dir()), Vec::<String>::new());
    assert_eq!(server.get(1, "/files/").await.1, serde_json::json!([]));
    // Nothing was reserved: the name is free.
    let session = new_session();
    assert_eq!(server.upload(1, "cut", &session, "cut.csv", sales_csv()).await.0, 201);
    assert_eq!(bucket.list(), ["1_cut.csv"]);
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn a_streamed_upload_refused_with_409_leaves_nothing() {
    // The periodic pass would catalogue the other tool's object below: not in this test.
    let server = s3_server(&[("WATCH_INTERVAL_SECONDS", "3600")]).await;
    let bucket = b_bucket(&server).clone();
    let csv = big_csv(20 << 20);

    // The name is free in the catalog but another tool's object holds it: the bytes all
    // reach the bucket, and the conditional copy to the name refuses them.
    bucket.put("1_taken.csv", b"a,b\n1,2\n".to_vec());
    let (tx, answer) = fed_upload(&server, "taken", false);
    feed(&tx, &csv).await;
    drop(tx);
    let (status, body) = answer.await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("never overwritten"),
        "{body}"
    );
    assert_eq!(bucket.list(), ["1_taken.csv"]);
    assert_eq!(bucket.get("1_taken.csv").unwrap(), b"a,b\n1,2\n");

    // The name is taken in the catalog, but the form names the file after its bytes: the
    // reservation refuses it once they have all been sent.
    let session = new_session();
    assert_eq!(server.upload(1, "mine", &session, "mine.csv", sales_csv()).await.0, 201);
    let (tx, answer) = fed_upload(&server, "mine", true);
    feed(&tx, &csv).await;
    drop(tx);
    let (status, body) = answer.await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(bucket.list(), ["1_mine.csv", "1_taken.csv"]);
    assert_eq!(bucket.get("1_mine.csv").unwrap(), sales_csv().as_bytes());
    assert_eq!(pending_multipart_uploads(&bucket).await, 0, "log:\n{}", server.logs());
    assert_eq!(crate::harness::list_dir(&server.storage_dir()), Vec::<String>::new());
}

// ----- keys are the names as written -----

/// A small CSV whose bytes say which file it is.
fn csv_of(name: &str) -> Vec<u8> {
    format!("id,name\n1,{name}\n2,{name} again\n").into_bytes()
}

/// Waits (at most 30 s) until user `user` has a file `name`; returns its record.
async fn wait_for_file(server: &TestServer, user: i64, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get(user, &format!("/files/{}", enc(name))).await;
        if status == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{name:?} not catalogued; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn uri(bucket: &Bucket, key: &str) -> String {
    format!("s3://{}/{}/{key}", bucket.bucket, bucket.prefix)
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn keys_are_the_names_as_written_and_other_tools_keys_are_read_as_they_are() {
    let server = s3_server(&[]).await;
    let bucket = b_bucket(&server).clone();
    let session = new_session();
    for name in ["données été", "数据 表", "with some spaces"] {
        let (status, record) = server.upload(1, name, &session, "f.csv", csv_of(name)).await;
        assert_eq!(status, 201, "{record}");
        // The URI names the real key.
        assert_eq!(
            record["storage_uri"],
            uri(&bucket, &format!("1_{name}.csv")),
            "{record}"
        );
        assert_eq!(download(&server, 1, name, None).await, (200, csv_of(name)));
    }
    // `%` is not a character of file names: it only comes from other tools' keys.
    let (status, body) = server.upload(1, "100% sure", &session, "f.csv", sales_csv()).await;
    assert_eq!(status, 422, "{body}");
    // The keys are the names in UTF-8, nothing percent-encoded.
    assert_eq!(
        bucket.list(),
        ["1_données été.csv", "1_with some spaces.csv", "1_数据 表.csv"]
    );
    // A rename gives the object its new name as written too.
    let resp = server
        .client
        .patch(server.url(&format!("/files/{}", enc("données été"))))
        .bearer_auth(server.token(1))
        .json(&serde_json::json!({"file_name": "été 2024"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, record) = server.get(1, &format!("/files/{}", enc("été 2024"))).await;
    assert_eq!(record["storage_uri"], uri(&bucket, "1_été 2024.csv"), "{record}");
    assert_eq!(bucket.get("1_été 2024.csv"), Some(csv_of("données été")));
    assert_eq!(
        download(&server, 1, "été 2024", None).await,
        (200, csv_of("données été"))
    );

    // Another tool's objects under any key: found under their real keys. A valid name is
    // catalogued as it is written; keys with `%` are left alone as they are (no key is
    // taken for its percent-decoded form).
    for key in ["2_résumé 年.csv", "2_100% sure.csv", "2_a%C3b.csv", "2_a%C3%A9.csv"] {
        bucket.put(key, csv_of(key));
    }
    let record = wait_for_file(&server, 2, "résumé 年").await;
    assert_eq!(record["storage_uri"], uri(&bucket, "2_résumé 年.csv"), "{record}");
    assert_eq!(
        download(&server, 2, "résumé 年", None).await,
        (200, csv_of("2_résumé 年.csv"))
    );
    assert_eq!(server.get(2, &format!("/files/{}", enc("aé"))).await.0, 404);
    let (_, listed) = server.get(2, "/files/").await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["résumé 年"], "{listed}");
    let out = server
        .cli(&["reconcile", "--dry-run"])
        .env("WATCH_SETTLE_MS", "0")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in ["2_100% sure.csv", "2_a%C3b.csv", "2_a%C3%A9.csv"] {
        assert!(stdout.contains(&format!("ignored: {key}: ")), "{key}:\n{stdout}");
        assert_eq!(bucket.get(key), Some(csv_of(key)));
    }
    assert!(!stdout.contains("would"), "{stdout}");
    let mut keys = bucket.list();
    keys.retain(|k| k.starts_with("2_"));
    assert_eq!(
        keys,
        ["2_100% sure.csv", "2_a%C3%A9.csv", "2_a%C3b.csv", "2_résumé 年.csv"]
    );
}

/// Files as an earlier release stored them: uploaded, then each object moved to the key
/// that release gave it (its name percent-encoded), and the marker of the upgrade
/// removed. With `half_way`, the first file is left under both keys, as an upgrade killed
/// between its copy and its delete leaves it.
fn as_an_earlier_release_left_it(bucket: &Bucket, files: &[(&str, &str)], half_way: bool) {
    for (i, (name, old)) in files.iter().enumerate() {
        let new = format!("1_{name}.csv");
        if new == *old {
            continue;
        }
        let bytes = bucket.get(&new).unwrap_or_else(|| panic!("{new} is not in the bucket"));
        bucket.put(old, bytes);
        if !(half_way && i == 0) {
            bucket.delete(&new);
        }
    }
    bucket.delete(".keys-utf8");
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn a_bucket_of_an_earlier_release_keeps_working_after_the_upgrade() {
    let _ = require_service("TEST_S3_ENDPOINT", "an upgrade");
    let bucket = Bucket::fresh("an upgrade");
    let mut server = sqlite_s3_server(&bucket, &[]).await;
    let session = new_session();
    let files = [
        ("数据 表", "1_%E6%95%B0%E6%8D%AE %E8%A1%A8.csv"),
        ("données été", "1_donn%C3%A9es %C3%A9t%C3%A9.csv"),
        ("plain", "1_plain.csv"),
    ];
    for (name, _) in files {
        let (status, record) = server.upload(1, name, &session, "f.csv", csv_of(name)).await;
        assert_eq!(status, 201, "{record}");
    }
    server.stop();
    as_an_earlier_release_left_it(&bucket, &files, true);
    // Other tools' keys with `%` in them that are no catalogued name's encoded form.
    bucket.put("1_x%C3%A9.csv", csv_of("x"));
    bucket.put("1_donn%C3%A9es.txt", b"notes".to_vec());
    let mut before = vec![
        "1_%E6%95%B0%E6%8D%AE %E8%A1%A8.csv",
        "1_donn%C3%A9es %C3%A9t%C3%A9.csv",
        "1_donn%C3%A9es.txt",
        "1_plain.csv",
        "1_x%C3%A9.csv",
        "1_数据 表.csv",
    ];
    before.sort();
    assert_eq!(bucket.list(), before);

    // A dry run cannot say what a pass would do before the objects have moved.
    let out = server.cli(&["reconcile", "--dry-run"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 objects are still under the percent-encoded keys"),
        "{stderr}"
    );

    // The upgrade moves the earlier release's objects to their names, finishing the one
    // cut off half-way; other tools' keys stay as they are.
    server.restart();
    let mut after = vec![
        "1_donn%C3%A9es.txt",
        "1_données été.csv",
        "1_plain.csv",
        "1_x%C3%A9.csv",
        "1_数据 表.csv",
    ];
    after.sort();
    assert_eq!(bucket.list(), after, "log:\n{}", server.logs());
    assert!(bucket.get(".keys-utf8").is_some());
    for (name, _) in files {
        assert_eq!(download(&server, 1, name, None).await, (200, csv_of(name)), "{name}");
        let (_, record) = server.get(1, &format!("/files/{}", enc(name))).await;
        assert_eq!(
            record["storage_uri"],
            uri(&bucket, &format!("1_{name}.csv")),
            "{record}"
        );
    }
    assert!(
        server.logs().contains("objects of an earlier release moved"),
        "{}",
        server.logs()
    );

    // Once: after the upgrade an encoded form is another tool's object, never moved.
    bucket.put("1_donn%C3%A9es %C3%A9t%C3%A9.csv", csv_of("another tool's"));
    server.restart();
    assert_eq!(server.logs().matches("objects of an earlier release moved").count(), 1);
    assert_eq!(
        bucket.get("1_donn%C3%A9es %C3%A9t%C3%A9.csv"),
        Some(csv_of("another tool's"))
    );
    assert_eq!(
        download(&server, 1, "données été", None).await,
        (200, csv_of("données été"))
    );
    // Nothing lost in all this: every file still there, nothing else catalogued.
    let (_, listed) = server.get(1, "/files/").await;
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
}

#[tokio::test]
#[ignore = "needs TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn two_replicas_upgrading_one_bucket_at_once_lose_nothing() {
    let mut a = s3_server(&[]).await;
    let bucket = b_bucket(&a).clone();
    let session = new_session();
    let names: Vec<String> = (0..8).map(|i| format!("été {i}")).collect();
    let olds: Vec<String> = (0..8).map(|i| format!("1_%C3%A9t%C3%A9 {i}.csv")).collect();
    for name in &names {
        let (status, record) = a.upload(1, name, &session, "f.csv", csv_of(name)).await;
        assert_eq!(status, 201, "{record}");
    }
    a.stop();
    let files: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(olds.iter().map(String::as_str))
        .collect();
    as_an_earlier_release_left_it(&bucket, &files, false);
    let mut before = olds.clone();
    before.sort();
    assert_eq!(bucket.list(), before);

    // Another machine (its own folders), starting at the same moment.
    let other_machine = tempfile::tempdir().unwrap();
    let data = other_machine.path().join("data");
    let mut b = a.replica_prepared(&[
        ("DATA_DIR", data.to_str().unwrap()),
        ("LOCAL_STORAGE_PATH", data.join("spool").to_str().unwrap()),
    ]);
    a.launch();
    b.launch();
    a.wait_listening();
    b.wait_listening();
    let mut after: Vec<String> = names.iter().map(|n| format!("1_{n}.csv")).collect();
    after.sort();
    assert_eq!(bucket.list(), after, "log a:\n{}\nlog b:\n{}", a.logs(), b.logs());
    for name in &names {
        assert_eq!(download(&a, 1, name, None).await, (200, csv_of(name)), "{name}");
        assert_eq!(download(&b, 1, name, None).await, (200, csv_of(name)), "{name}");
    }
    for log in [a.logs(), b.logs()] {
        assert!(!log.contains("both are kept"), "{log}");
    }
    let (_, listed) = b.get(1, "/files/").await;
    assert_eq!(listed.as_array().unwrap().len(), names.len(), "{listed}");
}

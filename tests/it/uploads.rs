//! Upload edge cases: races on one name, size limit, cut-off streams, restarts and crashes.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::harness::{new_session, sales_csv, sha256_hex, TestServer};

#[tokio::test]
async fn sixteen_concurrent_uploads_of_one_name_one_wins() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let session = new_session();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let server = server.clone();
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("id,value\n{i},{}\n", "x".repeat(1000 * i));
            let (status, resp) = server.upload(1, "same", &session, "same.csv", body.clone()).await;
            (status, resp, body)
        }));
    }
    let mut created = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (status, resp, body) = t.await.unwrap();
        match status {
            201 => created.push((resp, body)),
            409 => conflicts += 1,
            other => panic!("unexpected {other}: {resp}"),
        }
    }
    assert_eq!((created.len(), conflicts), (1, 15));
    let (winner, body) = &created[0];
    assert_eq!(server.stored_files(), ["1_same.csv"]);
    let on_disk = server.read_stored("1_same.csv");
    assert_eq!(on_disk, body.as_bytes(), "the stored bytes are the winner's");
    assert_eq!(winner["sha256"], sha256_hex(&on_disk));
    assert_eq!(server.get(1, &format!("/files/active/{session}")).await.1, *winner);
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_and_leave_nothing() {
    let server = TestServer::start_with(&[("MAX_UPLOAD_BYTES", "1000")]).await;
    let session = new_session();
    let exact = format!("a\n{}\n", "1".repeat(997));
    assert_eq!(exact.len(), 1000);
    let (status, body) = server.upload(1, "exact", &session, "e.csv", exact).await;
    assert_eq!(status, 201, "{body}");
    let big = format!("a\n{}\n", "1".repeat(4000));
    let (status, body) = server.upload(1, "big", &session, "b.csv", big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    assert!(body["detail"].as_str().unwrap().contains("MAX_UPLOAD_BYTES"), "{body}");
    assert_eq!(server.stored_files(), ["1_exact.csv"]);
    assert_eq!(server.get(1, "/files/").await.1.as_array().unwrap().len(), 1);
    assert_eq!(
        server.get(1, &format!("/files/active/{session}")).await.1["file_name"],
        "exact"
    );
}

/// Sends the head of a multipart upload over a raw socket, then hangs up mid-file.
async fn cut_off_upload(server: &TestServer, session: &str, declared: usize, sent: usize) {
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let boundary = "XBOUNDARYX";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file_name\"\r\n\r\ncut\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n{session}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\nd\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.csv\"\r\n\r\na,b\r\n"
    );
    let request = format!(
        "POST /api/v1/files/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        server.token(1),
        head.len() + declared
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let row = b"1,2\r\n".repeat(sent / 5);
    stream.write_all(&row).await.unwrap();
    stream.flush().await.unwrap();
    // Hang up only once the server is writing the upload to storage.
    server.wait_for_upload_arriving().await;
    drop(stream);
}

async fn wait_until_storage_is(server: &TestServer, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stored_files() != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.stored_files(), expected);
}

#[tokio::test]
async fn an_upload_cut_off_mid_stream_leaves_nothing() {
    let server = TestServer::start().await;
    let session = new_session();
    cut_off_upload(&server, &session, 50_000_000, 2_000_000).await;
    wait_until_storage_is(&server, &[]).await;
    assert_eq!(server.get(1, "/files/").await.1, serde_json::json!([]));
    assert_eq!(server.get(1, &format!("/files/active/{session}")).await.0, 404);
    // The name is free: nothing was reserved.
    assert_eq!(server.upload(1, "cut", &session, "cut.csv", sales_csv()).await.0, 201);
}

#[tokio::test]
async fn a_restart_keeps_files_and_active_entries() {
    let mut server = TestServer::start().await;
    let (s1, s2) = (new_session(), new_session());
    let (_, sales) = server.upload(1, "sales", &s1, "s.csv", sales_csv()).await;
    assert_eq!(server.upload(1, "other", &s2, "o.csv", "a\n1\n").await.0, 201);
    assert_eq!(server.activate(1, &s2, "sales").await.0, 200);

    server.restart();
    assert_eq!(server.get(1, "/files/").await.1.as_array().unwrap().len(), 2);
    assert_eq!(server.get(1, &format!("/files/active/{s1}")).await.1, sales);
    assert_eq!(server.get(1, &format!("/files/active/{s2}")).await.1, sales);

    // A crash with writes in flight: see `crash.rs`.
}

#[tokio::test]
async fn a_crash_mid_upload_leaves_nothing_after_restart() {
    let mut server = TestServer::start().await;
    let session = new_session();
    let addr = server.base.clone();
    // Start an upload that will never finish, then kill the server while it is receiving.
    let pending = {
        let token = server.token(1);
        let session = session.clone();
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
            tx.send(Ok(b"a,b\n".repeat(100_000))).await.unwrap();
            let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
            let form = reqwest::multipart::Form::new()
                .text("file_name", "crash")
                .text("session_id", session)
                .text("description", "d")
                .part("file", reqwest::multipart::Part::stream(body).file_name("c.csv"));
            let _ = reqwest::Client::new()
                .post(format!("{addr}/api/v1/files/"))
                .bearer_auth(token)
                .multipart(form)
                .send()
                .await;
            drop(tx);
        })
    };
    server.wait_for_upload_arriving().await;
    server.kill();
    pending.abort();
    // On a folder the temporary file stays; to a bucket the bytes were streaming, and an
    // unfinished upload is never listed (`s3.rs` kills one with parts sent).
    let on_folder = server.bucket.is_none();
    if on_folder {
        assert!(!server.stored_files().is_empty(), "a SIGKILLed server cannot clean up");
    }

    server.restart();
    // SQLite sweeps at start; on PostgreSQL replicas may share the folder, so a temporary
    // file no process holds is swept by the periodic pass once it is a minute old.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !server.stored_files().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.stored_files().is_empty(), "{:?}", server.stored_files());
    assert_eq!(server.get(1, "/files/").await.1, serde_json::json!([]));
    assert_eq!(server.get(1, &format!("/files/active/{session}")).await.0, 404);
    if on_folder {
        assert!(server.logs().contains("removed temporary files"), "{}", server.logs());
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_binary_file_is_refused_before_it_finishes_arriving() {
    let server = TestServer::start().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let form = reqwest::multipart::Form::new()
        .text("file_name", "bad")
        .text("session_id", new_session())
        .text("description", "d")
        .part("file", reqwest::multipart::Part::stream(body).file_name("bad.csv"));
    let request = server
        .client
        .post(server.url("/files/"))
        .bearer_auth(server.token(1))
        .multipart(form)
        .send();
    // An image named .csv: binary from its first bytes (no table to find); then the client
    // keeps the body open and sends no more.
    tx.send(Ok(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec())).await.unwrap();
    tx.send(Ok(vec![7u8; 400_000])).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("answered while the body is still open")
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "unreadable_file");
    assert!(body["detail"].as_str().unwrap().contains("binary"), "{body}");
    drop(tx);
    wait_until_storage_is(&server, &[]).await;
}

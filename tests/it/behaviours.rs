//! Promised behaviours no other module covers: the upload form's and JSON bodies' error codes, If-Range with a current ETag, the active-file cache's TTL, and a request finishing within the shutdown grace.

use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::harness::{metric, new_session, sales_csv, status_json, Stack, TestServer};

/// The four fields of a good upload of `name`.
fn good_form(name: &str) -> Form {
    Form::new()
        .text("file_name", name.to_string())
        .text("session_id", new_session())
        .text("description", "d")
}

fn csv_part() -> Part {
    Part::bytes(sales_csv().as_bytes()).file_name("s.csv")
}

async fn assert_nothing_kept(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stored_files().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left in storage: {:?}",
            server.stored_files()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.get(1, "/files/").await.1, json!([]));
}

#[tokio::test]
async fn bad_upload_forms_get_422_with_their_code_and_keep_nothing() {
    let server = TestServer::start().await;
    // Past the raw limit of a text part (the longest description in 4-byte characters).
    let long = "x".repeat(4 * 64 * 1024 + 1);
    let cases: Vec<(&str, Form)> = vec![
        (
            "duplicate_field",
            good_form("f").part("file", csv_part()).part("file", csv_part()),
        ),
        (
            "missing_filename",
            good_form("f").part("file", Part::bytes(sales_csv().as_bytes())),
        ),
        (
            "field_too_long",
            Form::new()
                .text("file_name", "f")
                .text("session_id", new_session())
                .text("description", long.clone())
                .part("file", csv_part()),
        ),
        (
            "invalid_field",
            Form::new()
                .part("file_name", Part::bytes(vec![b'f', 0xff, 0xfe]))
                .text("session_id", new_session())
                .text("description", "d")
                .part("file", csv_part()),
        ),
        ("missing_field", good_form("f")),
    ];
    for (code, form) in cases {
        let (status, body) = server.upload_form(1, form).await;
        assert_eq!((status, body["code"].as_str()), (422, Some(code)), "{body}");
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
        assert_nothing_kept(&server).await;
    }
    // Not multipart at all. (415 is never answered: every route reads its body itself,
    // and an upload that is not multipart/form-data is a 422, as documented.)
    let resp = server
        .client
        .post(server.url("/files/"))
        .bearer_auth(server.token(1))
        .header("content-type", "text/plain")
        .body("file_name=f")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_body")), "{body}");
    assert_nothing_kept(&server).await;
    // The name was never blocked.
    let (status, body) = server.upload_form(1, good_form("f").part("file", csv_part())).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn json_bodies_need_a_length_and_a_bounded_size() {
    let server = TestServer::start().await;
    let session = new_session();
    assert_eq!(server.upload(1, "f", &session, "f.csv", sales_csv()).await.0, 201);
    let patch = |body: reqwest::Body| {
        server
            .client
            .patch(server.url("/files/f"))
            .bearer_auth(server.token(1))
            .header("content-type", "application/json")
            .body(body)
    };

    // Chunked, without Content-Length: 411.
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(br#"{"file_name": "g"}"#.to_vec())]);
    let resp = server
        .client
        .post(server.url(&format!("/files/active/{session}")))
        .bearer_auth(server.token(1))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (411, Some("length_required")),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");

    // A description of the largest allowed size is accepted, even when JSON escaping
    // doubles its size on the wire.
    let max = "\"".repeat(64 * 1024);
    let resp = patch(json!({ "description": max }).to_string().into())
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(
        status,
        200,
        "{}",
        body.to_string().chars().take(300).collect::<String>()
    );
    assert_eq!(
        server.get(1, "/files/f").await.1["description"].as_str().map(str::len),
        Some(64 * 1024)
    );

    // One byte more: 422 with its code, and nothing changed.
    let over = "x".repeat(64 * 1024 + 1);
    let resp = patch(json!({ "description": over }).to_string().into())
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("description_too_long")),
        "{body}"
    );

    // A body past the JSON limit: 413, whatever it holds.
    let huge = json!({ "description": "y".repeat(1100 * 1024) }).to_string();
    let resp = patch(huge.into()).send().await.unwrap();
    let (status, body) = status_json(resp).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    // The server closed that connection without reading the body: ask on a new one.
    let resp = reqwest::Client::new()
        .get(server.url("/files/f"))
        .bearer_auth(server.token(1))
        .send()
        .await
        .unwrap();
    let (_, record) = status_json(resp).await;
    assert_eq!(record["description"].as_str().map(str::len), Some(64 * 1024));
}

#[tokio::test]
async fn if_range_with_the_current_etag_serves_the_range() {
    let server = TestServer::start().await;
    assert_eq!(server.upload(1, "f", &new_session(), "f.csv", sales_csv()).await.0, 201);
    let get = |headers: Vec<(&'static str, String)>| {
        let mut request = server
            .client
            .get(server.url("/files/f/content"))
            .bearer_auth(server.token(1));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request.send()
    };
    let etag = get(vec![]).await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let resp = get(vec![("range", "bytes=5-9".into()), ("if-range", etag.clone())])
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    let total = sales_csv().len();
    assert_eq!(resp.headers()["content-range"], format!("bytes 5-9/{total}").as_str());
    assert_eq!(resp.bytes().await.unwrap(), sales_csv().as_bytes()[5..10]);
    // A weak validator never matches If-Range (strong comparison): the whole body.
    let resp = get(vec![("range", "bytes=5-9".into()), ("if-range", format!("W/{etag}"))])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), sales_csv().as_bytes());
}

/// After `ACTIVE_FILE_TTL_SECONDS` without a read the cache entry is gone; the active
/// file is not (the catalog keeps it), and the next read caches it again.
#[tokio::test]
async fn an_expired_cache_entry_falls_back_to_the_catalog() {
    let server = TestServer::start_with(&[("ACTIVE_FILE_TTL_SECONDS", "1")]).await;
    let user = rand::random::<u32>() as i64 + 2_000_000;
    let session = new_session();
    let active = format!("/files/active/{session}");
    let (status, record) = server.upload(user, "f", &session, "f.csv", sales_csv()).await;
    assert_eq!(status, 201, "{record}");
    let count = |metrics: &str, name: &str| metric(metrics, name, &[]).unwrap_or(0.0);
    match server.stack {
        Stack::Sqlite => {
            assert_eq!(server.get(user, &active).await.1, record);
            let before = server.metrics().await;
            // Longer than the TTL with no read: a lower bound the clock guarantees.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(
                server.get(user, &active).await.1,
                record,
                "the active file outlives its cache entry"
            );
            let after = server.metrics().await;
            let delta = |name| count(&after, name) - count(&before, name);
            assert_eq!(
                (
                    delta("file_service_active_cache_hits_total"),
                    delta("file_service_active_cache_misses_total")
                ),
                (0.0, 1.0),
                "{after}"
            );
            assert_eq!(server.get(user, &active).await.1, record);
            let again = server.metrics().await;
            assert_eq!(
                count(&again, "file_service_active_cache_hits_total")
                    - count(&after, "file_service_active_cache_hits_total"),
                1.0,
                "cached again after the miss"
            );
        }
        Stack::PostgresRedis | Stack::PostgresRedisS3 => {
            let url = server
                .env()
                .iter()
                .find(|(k, _)| k == "REDIS_URL")
                .map(|(_, v)| v.clone())
                .unwrap();
            let key = format!("active_file:user{user}:session:{session}");
            let exists = || -> bool {
                let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
                redis::cmd("EXISTS").arg(&key).query::<i64>(&mut c).unwrap() == 1
            };
            assert!(exists(), "the upload cached the active file");
            let deadline = Instant::now() + Duration::from_secs(10);
            while exists() {
                assert!(Instant::now() < deadline, "{key} never expired");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                server.get(user, &active).await.1,
                record,
                "the active file outlives its cache entry"
            );
            assert!(exists(), "the read cached it again");
        }
        Stack::Postgres => {
            // Nothing is cached on this stack; the active file is the catalog's.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(server.get(user, &active).await.1, record);
        }
    }
}

#[tokio::test]
async fn a_request_in_flight_at_sigterm_completes_within_the_grace() {
    let mut server = TestServer::start_with(&[("SHUTDOWN_GRACE_SECONDS", "30")]).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let session = new_session();
    let form = Form::new()
        .text("file_name", "late")
        .text("session_id", session.clone())
        .text("description", "sent across the shutdown")
        .part("file", Part::stream(body).file_name("late.csv"));
    let request = server
        .client
        .post(server.url("/files/"))
        .bearer_auth(server.token(1))
        .multipart(form);
    let upload = tokio::spawn(async move {
        let resp = request.send().await.expect("the in-flight upload is answered");
        status_json(resp).await
    });
    tx.send(Ok(b"a,b\n1,2\n".to_vec())).await.unwrap();
    server.wait_for_upload_arriving().await;

    server.sigterm();
    server.wait_for_log("shutting down").await;
    // New connections are refused once the server stops accepting...
    let addr = server.base.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the request already running finishes.
    tx.send(Ok(b"3,4\n".to_vec())).await.unwrap();
    drop(tx);
    let (status, record) = upload.await.unwrap();
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["row_count"], 2);
    let exit = server.wait_exit(Duration::from_secs(20)).expect("exits by itself");
    assert!(exit.success(), "{exit:?}\n{}", server.logs());

    server.restart();
    let (status, active) = server.get(1, &format!("/files/active/{session}")).await;
    assert_eq!((status, &active), (200, &record));
    assert_eq!(server.stored_files(), ["1_late.csv"]);
}

//! Resumable uploads (tus 1.0.0) at `/api/v1/uploads/`: raw requests against the real
//! server, one protocol rule at a time — discovery, creation (with and without a first
//! chunk), offsets, checksums, the commit of the last chunk, cut-off and killed requests,
//! termination, expiry, restarts and the lock replicas share.

use std::time::Duration;

use base64::Engine;
use chrono::{NaiveDateTime, Utc};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::harness::{enc, eventually, get_content, new_session, sales_csv, sha256_hex, Stack, TestServer};

const TUS: &str = "1.0.0";
const OCTET: &str = "application/offset+octet-stream";
const BASE: &str = "/api/v1/uploads/";

// ----- requests and answers -----

/// An answer of the tus routes. Building one checks the rule every answer follows: it
/// carries `Tus-Resumable: 1.0.0` (errors and 401 included).
#[derive(Debug)]
struct Answer {
    what: String,
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    async fn of(what: &str, resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the answer: {e}"));
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        let answer = Answer {
            what: what.to_string(),
            status,
            headers,
            body,
        };
        assert_eq!(
            answer.header("tus-resumable"),
            Some(TUS),
            "{what}: every answer carries Tus-Resumable: 1.0.0; got {answer:?}"
        );
        answer
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or_else(|_| panic!("{}: header {name} is not ASCII", self.what))
        })
    }

    fn offset(&self) -> u64 {
        let raw = self
            .header("upload-offset")
            .unwrap_or_else(|| panic!("{}: no Upload-Offset in {self:?}", self.what));
        raw.parse()
            .unwrap_or_else(|_| panic!("{}: Upload-Offset {raw:?} is not a number", self.what))
    }

    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status and the JSON error code (and that the error says why).
    fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{}: expected {status} {code:?}; got {self:?}",
            self.what
        );
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}: an error says why in `detail`: {self:?}",
            self.what
        );
        self
    }

    /// Asserts the status of an answer without a body to check (HEAD, 201, 204).
    fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{}: expected {status}; got {self:?}", self.what);
        self
    }

    /// Seconds from now to `Upload-Expires`, which must be an HTTP date.
    fn expires_in(&self) -> i64 {
        let raw = self
            .header("upload-expires")
            .unwrap_or_else(|| panic!("{}: no Upload-Expires in {self:?}", self.what));
        let at = NaiveDateTime::parse_from_str(raw, "%a, %d %b %Y %H:%M:%S GMT")
            .unwrap_or_else(|e| panic!("{}: Upload-Expires {raw:?} is not an HTTP date: {e}", self.what))
            .and_utc();
        (at - Utc::now()).num_seconds()
    }
}

/// A request to `path` (an absolute path on the server) with `Tus-Resumable: 1.0.0` and,
/// when `user` is given, that user's token.
///
/// Each request has a connection of its own: a refusal answered before its body was read
/// ends the connection (as hyper does, without `Connection: close`), and a pooled client
/// could send the next request into it.
fn request(server: &TestServer, method: Method, path: &str, user: Option<i64>) -> reqwest::RequestBuilder {
    let mut r = fresh_client()
        .request(method, format!("{}{path}", server.base))
        .header("Tus-Resumable", TUS);
    if let Some(user) = user {
        r = r.bearer_auth(server.token(user));
    }
    r
}

/// A client that keeps no connection for a next request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

async fn send(what: &str, r: reqwest::RequestBuilder) -> Answer {
    let resp = r.send().await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
    Answer::of(what, resp).await
}

/// Standard base64 with padding (what `Upload-Metadata` and `Upload-Checksum` carry).
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `Upload-Metadata` of `pairs` (values base64-encoded).
fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", b64(v.as_bytes())))
        .collect::<Vec<_>>()
        .join(",")
}

/// The four fields an upload needs (and a `filetype`, which is ignored).
fn meta(file_name: &str, session: &str, filename: &str) -> String {
    metadata(&[
        ("file_name", file_name),
        ("session_id", session),
        ("description", &format!("about {file_name}")),
        ("filename", filename),
        ("filetype", "text/csv"),
    ])
}

/// `POST /api/v1/uploads/` with `headers` (and a first chunk when `body` is given).
async fn post(server: &TestServer, user: i64, headers: &[(&str, String)], body: Option<Vec<u8>>) -> Answer {
    let mut r = request(server, Method::POST, BASE, Some(user));
    for (k, v) in headers {
        r = r.header(*k, v.as_str());
    }
    if let Some(body) = body {
        r = r.header("Content-Type", OCTET).body(body);
    }
    send("POST /api/v1/uploads/", r).await
}

async fn create(server: &TestServer, user: i64, length: u64, meta: &str) -> Answer {
    post(
        server,
        user,
        &[
            ("Upload-Length", length.to_string()),
            ("Upload-Metadata", meta.to_string()),
        ],
        None,
    )
    .await
}

/// An upload: its URL path (the relative `Location`) and id.
#[derive(Debug, Clone)]
struct Upload {
    path: String,
    id: uuid::Uuid,
}

impl Upload {
    fn of(created: &Answer) -> Upload {
        let location = created
            .header("location")
            .unwrap_or_else(|| panic!("a created upload has a Location: {created:?}"));
        let id = location
            .strip_prefix(BASE)
            .unwrap_or_else(|| panic!("Location {location:?} is not the relative path {BASE}{{id}}"));
        Upload {
            path: location.to_string(),
            id: uuid::Uuid::parse_str(id)
                .unwrap_or_else(|e| panic!("Location {location:?}: the id is not a UUID: {e}")),
        }
    }
}

async fn create_ok(server: &TestServer, user: i64, length: u64, meta: &str) -> Upload {
    let created = create(server, user, length, meta).await;
    created.expect_status(201);
    assert_eq!(created.offset(), 0, "{created:?}");
    Upload::of(&created)
}

async fn head(server: &TestServer, user: i64, path: &str) -> Answer {
    send(&format!("HEAD {path}"), request(server, Method::HEAD, path, Some(user))).await
}

/// `GET` of the upload's JSON state.
async fn state(server: &TestServer, user: i64, path: &str) -> Answer {
    send(&format!("GET {path}"), request(server, Method::GET, path, Some(user))).await
}

async fn terminate(server: &TestServer, user: i64, path: &str) -> Answer {
    send(
        &format!("DELETE {path}"),
        request(server, Method::DELETE, path, Some(user)),
    )
    .await
}

/// A PATCH of `body` at `offset`, with `headers` besides the usual ones.
async fn patch_with(
    server: &TestServer,
    user: i64,
    path: &str,
    offset: u64,
    headers: &[(&str, String)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut r = request(server, Method::PATCH, path, Some(user))
        .header("Content-Type", OCTET)
        .header("Upload-Offset", offset.to_string());
    for (k, v) in headers {
        r = r.header(*k, v.as_str());
    }
    send(&format!("PATCH {path} at {offset}"), r.body(body)).await
}

async fn patch(server: &TestServer, user: i64, path: &str, offset: u64, body: &[u8]) -> Answer {
    patch_with(server, user, path, offset, &[], body.to_vec()).await
}

/// A PATCH that must be accepted: 204 with the new offset.
async fn patch_ok(server: &TestServer, user: i64, path: &str, offset: u64, body: &[u8]) -> Answer {
    let answer = patch(server, user, path, offset, body).await;
    answer.expect_status(204);
    assert_eq!(answer.offset(), offset + body.len() as u64, "{answer:?}");
    answer
}

/// A table of `rows` rows as CSV: an int, a text and a float column.
fn table(rows: usize) -> Vec<u8> {
    let mut s = String::from("id,name,value\n");
    for i in 0..rows {
        s.push_str(&format!("{i},row {i},{}.25\n", i * 7));
    }
    s.into_bytes()
}

/// The stored objects that hold upload `id`'s bytes: hidden from listings (named with a
/// leading dot) and named with the upload's id (in the folder, or the bucket and the
/// local folder on the S3 stack).
fn parts_of(server: &TestServer, id: &uuid::Uuid) -> Vec<String> {
    let (simple, hyphenated) = (id.simple().to_string(), id.hyphenated().to_string());
    hidden(server)
        .into_iter()
        .filter(|n| n.contains(&simple) || n.contains(&hyphenated))
        .collect()
}

/// Every hidden stored object (parts of uploads, temporary files).
fn hidden(server: &TestServer) -> Vec<String> {
    server
        .stored_files()
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

async fn wait_no_parts(server: &TestServer, id: &uuid::Uuid, secs: u64, what: &str) {
    eventually(secs, &format!("{what}: no part of upload {id} left"), || async {
        parts_of(server, id).is_empty().then_some(())
    })
    .await;
}

async fn wait_nothing_hidden(server: &TestServer, secs: u64, what: &str) {
    eventually(secs, &format!("{what}: no hidden object left"), || async {
        hidden(server).is_empty().then_some(())
    })
    .await;
}

/// The name is free: no file has it, and a new upload may claim it (then forgotten).
async fn assert_name_free(server: &TestServer, user: i64, name: &str) {
    let (status, body) = server.get(user, &format!("/files/{}", enc(name))).await;
    assert_eq!(status, 404, "{name}: a file record is left: {body}");
    let created = create(server, user, 10, &meta(name, &new_session(), "free.csv")).await;
    assert_eq!(created.status, 201, "the name {name:?} is still taken: {created:?}");
    terminate(server, user, &Upload::of(&created).path)
        .await
        .expect_status(204);
}

async fn content(server: &TestServer, user: i64, name: &str) -> Vec<u8> {
    let resp = get_content(server, user, name, &[]).await;
    assert_eq!(resp.status(), 200, "GET content of {name}");
    resp.bytes().await.expect("content").to_vec()
}

/// The committed file `name` has exactly `bytes`, and its record says so.
async fn assert_file_is(server: &TestServer, user: i64, name: &str, bytes: &[u8]) -> Value {
    let (status, record) = server.get(user, &format!("/files/{}", enc(name))).await;
    assert_eq!(status, 200, "the file {name} is committed: {record}");
    assert_eq!(record["sha256"], sha256_hex(bytes), "{record}");
    assert_eq!(record["size_bytes"], bytes.len() as u64, "{record}");
    assert!(
        content(server, user, name).await == bytes,
        "{name}: the stored bytes differ from those sent"
    );
    record
}

fn sha1_b64(bytes: &[u8]) -> String {
    use sha1::Digest;
    b64(&sha1::Sha1::digest(bytes))
}

fn sha256_b64(bytes: &[u8]) -> String {
    use sha2::Digest;
    b64(&sha2::Sha256::digest(bytes))
}

/// A request body that sends what is put into the sender, and ends when it is dropped.
fn held_body() -> (mpsc::Sender<std::io::Result<Vec<u8>>>, reqwest::Body) {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (tx, body)
}

/// A PATCH in progress: its body's sender and the request (`None` once it failed to get
/// an answer, as when its server is killed).
struct HeldPatch {
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
    answer: tokio::task::JoinHandle<Option<Answer>>,
}

/// Starts a PATCH at `offset` on `server` that sends `first` and then keeps its body
/// open, and waits until it holds the upload: an empty PATCH at the same offset through
/// `observer` is refused with 423. An empty probe that came first is harmless (it moves
/// nothing); if it made the held PATCH lose the race, the PATCH is started again.
async fn start_held_patch(
    server: &TestServer,
    observer: &TestServer,
    user: i64,
    path: &str,
    offset: u64,
    first: &[u8],
) -> HeldPatch {
    for attempt in 0..8u32 {
        let (tx, body) = held_body();
        tx.send(Ok(first.to_vec())).await.unwrap();
        let r = request(server, Method::PATCH, path, Some(user))
            .header("Content-Type", OCTET)
            .header("Upload-Offset", offset.to_string())
            .body(body);
        let answer = tokio::spawn(async move {
            match r.send().await {
                Ok(resp) => Some(Answer::of("the held PATCH", resp).await),
                Err(_) => None,
            }
        });
        // A head start before the first probe, longer after each lost race: on a busy
        // machine the held PATCH may reach the server only after a probe took the lock.
        tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
        let probe = eventually(20, "a PATCH through the observer refused with 423", || {
            let answer = &answer;
            async move {
                if answer.is_finished() {
                    return Some(None);
                }
                let probe = patch(observer, user, path, offset, b"").await;
                match probe.status {
                    423 => Some(Some(probe)),
                    204 => None,
                    _ => panic!("while a PATCH is receiving, another one is refused with 423: {probe:?}"),
                }
            }
        })
        .await;
        match probe {
            Some(probe) => {
                probe.expect(423, "upload_locked");
                return HeldPatch { tx, answer };
            }
            None => {
                // The held PATCH answered before any probe saw it hold the upload: it may
                // only have lost the lock to a probe.
                let lost = answer.await.unwrap().expect("an answer");
                lost.expect(423, "upload_locked");
            }
        }
    }
    panic!("the held PATCH lost the upload to a probe eight times");
}

/// Sends a PATCH over a raw socket: its headers (declaring `declared` bytes), then only
/// `sent`, then ends the connection, as a client whose network drops would.
async fn cut_patch(
    server: &TestServer,
    user: i64,
    path: &str,
    offset: u64,
    declared: usize,
    sent: &[u8],
    extra: &[(&str, String)],
) {
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut request_head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nTus-Resumable: {TUS}\r\n\
         Content-Type: {OCTET}\r\nUpload-Offset: {offset}\r\nContent-Length: {declared}\r\n",
        server.token(user)
    );
    for (k, v) in extra {
        request_head.push_str(&format!("{k}: {v}\r\n"));
    }
    request_head.push_str("\r\n");
    stream.write_all(request_head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.flush().await.unwrap();
    // Every byte sent is on its way before the end of the stream.
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
}

// ----- discovery and the protocol version -----

#[test]
fn checksums_are_encoded_as_the_protocol_says() {
    assert_eq!(b64(b"fo"), "Zm8=");
    // The SHA-1 of "abc" (FIPS 180), base64 of its 20 bytes.
    assert_eq!(sha1_b64(b"abc"), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
}

#[tokio::test]
async fn discovery_needs_no_token_and_every_answer_names_the_protocol() {
    let server = TestServer::start_with(&[("MAX_UPLOAD_BYTES", "123456")]).await;
    for base in [BASE, "/api/v1/uploads"] {
        // No token, no Tus-Resumable: a client asks before it knows the version.
        let resp = fresh_client()
            .request(Method::OPTIONS, format!("{}{base}", server.base))
            .send()
            .await
            .unwrap();
        let options = Answer::of(&format!("OPTIONS {base}"), resp).await;
        options.expect_status(204);
        assert_eq!(options.header("tus-version"), Some(TUS), "{options:?}");
        let list = |name: &str| {
            let mut items: Vec<String> = options
                .header(name)
                .unwrap_or_else(|| panic!("OPTIONS answers {name}: {options:?}"))
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
            items.sort();
            items
        };
        assert_eq!(
            list("tus-extension"),
            [
                "checksum",
                "creation",
                "creation-with-upload",
                "expiration",
                "termination"
            ]
        );
        assert_eq!(list("tus-checksum-algorithm"), ["sha1", "sha256"]);
        assert_eq!(options.header("tus-max-size"), Some("123456"), "{options:?}");
    }

    let session = new_session();
    let up = create_ok(&server, 1, 100, &meta("versioned", &session, "v.csv")).await;
    let unknown = format!("{BASE}{}", uuid::Uuid::new_v4());
    let with_body = |method: &Method| *method == Method::POST || *method == Method::PATCH;

    // No token, or a token that is not one: 401, with the protocol header.
    for auth in [None, Some("Bearer not-a-token")] {
        for (method, path) in [
            (Method::POST, BASE),
            (Method::HEAD, up.path.as_str()),
            (Method::PATCH, up.path.as_str()),
            (Method::DELETE, up.path.as_str()),
            (Method::GET, up.path.as_str()),
        ] {
            let mut r = request(&server, method.clone(), path, None)
                .header("Upload-Length", "10")
                .header("Upload-Metadata", meta("unauthorized", &session, "u.csv"))
                .header("Upload-Offset", "0");
            if let Some(auth) = auth {
                r = r.header("Authorization", auth);
            }
            if with_body(&method) {
                r = r.header("Content-Type", OCTET).body(b"id\n".to_vec());
            }
            let what = format!("{method} {path} with authorization {auth:?}");
            let answer = send(&what, r).await;
            if method == Method::HEAD {
                answer.expect_status(401);
            } else {
                answer.expect(401, "unauthorized");
            }
        }
    }

    // Without Tus-Resumable (or with another version): 412 naming the version spoken.
    for version in [None, Some("0.2.2")] {
        for (method, path) in [
            (Method::POST, BASE),
            (Method::HEAD, up.path.as_str()),
            (Method::PATCH, up.path.as_str()),
            (Method::DELETE, up.path.as_str()),
        ] {
            let mut r = fresh_client()
                .request(method.clone(), format!("{}{path}", server.base))
                .bearer_auth(server.token(1))
                .header("Upload-Length", "10")
                .header("Upload-Metadata", meta("unversioned", &session, "u.csv"))
                .header("Upload-Offset", "0");
            if let Some(version) = version {
                r = r.header("Tus-Resumable", version);
            }
            if with_body(&method) {
                r = r.header("Content-Type", OCTET).body(b"id\n".to_vec());
            }
            let what = format!("{method} {path} with Tus-Resumable {version:?}");
            let answer = send(&what, r).await;
            if method == Method::HEAD {
                answer.expect_status(412);
            } else {
                answer.expect(412, "unsupported_tus_version");
            }
            assert_eq!(answer.header("tus-version"), Some(TUS), "{answer:?}");
        }
    }
    // None of those did anything: the upload is there at offset 0, no other was made.
    let h = head(&server, 1, &up.path).await;
    h.expect_status(200);
    assert_eq!(h.offset(), 0);
    assert_name_free(&server, 1, "unversioned").await;
    assert_name_free(&server, 1, "unauthorized").await;

    // GET of the upload's state needs no Tus-Resumable (and still answers with it).
    let resp = fresh_client()
        .get(format!("{}{}", server.base, up.path))
        .bearer_auth(server.token(1))
        .send()
        .await
        .unwrap();
    let got = Answer::of("GET without Tus-Resumable", resp).await;
    got.expect_status(200);
    assert_eq!(got.body["state"], "receiving", "{got:?}");

    // An unknown id: 404 on every method, with the protocol header.
    head(&server, 1, &unknown).await.expect_status(404);
    state(&server, 1, &unknown).await.expect(404, "not_found");
    patch(&server, 1, &unknown, 0, b"id\n").await.expect(404, "not_found");
    terminate(&server, 1, &unknown).await.expect(404, "not_found");
}

// ----- creation -----

#[tokio::test]
async fn an_upload_sent_in_chunks_is_committed_by_its_last_patch() {
    let server = TestServer::start_with(&[("UPLOAD_EXPIRES_SECONDS", "3600")]).await;
    let session = new_session();
    let bytes = table(5000);
    let len = bytes.len() as u64;
    let sent_meta = meta("chunked", &session, "chunked.csv");
    let about_an_hour = 3600 - 120..=3601;

    let created = create(&server, 1, len, &sent_meta).await;
    created.expect_status(201);
    assert_eq!(created.offset(), 0);
    let expires = created.expires_in();
    assert!(
        about_an_hour.contains(&expires),
        "Upload-Expires is {expires} s ahead, not ~3600"
    );
    let up = Upload::of(&created);

    let h = head(&server, 1, &up.path).await;
    h.expect_status(200);
    assert_eq!(h.offset(), 0);
    assert_eq!(h.header("upload-length"), Some(len.to_string().as_str()), "{h:?}");
    assert_eq!(h.header("upload-metadata"), Some(sent_meta.as_str()), "{h:?}");
    assert!(
        h.header("cache-control").is_some_and(|c| c.contains("no-store")),
        "{h:?}"
    );
    assert!(about_an_hour.contains(&h.expires_in()), "{h:?}");
    // The id in either spelling names the upload.
    for path in [
        format!("{BASE}{}", up.id.simple()),
        format!("{BASE}{}", up.id.hyphenated()),
    ] {
        let h = head(&server, 1, &path).await;
        h.expect_status(200);
        assert_eq!(h.header("upload-length"), Some(len.to_string().as_str()), "{h:?}");
    }

    let s = state(&server, 1, &up.path).await;
    s.expect_status(200);
    assert_eq!(s.body["state"], "receiving", "{s:?}");
    assert_eq!(
        (s.body["offset"].as_u64(), s.body["length"].as_u64()),
        (Some(0), Some(len)),
        "{s:?}"
    );
    assert_eq!(
        (s.body["file_name"].as_str(), s.body["session_id"].as_str()),
        (Some("chunked"), Some(session.as_str())),
        "{s:?}"
    );
    assert_eq!(
        uuid::Uuid::parse_str(s.body["id"].as_str().unwrap()).unwrap(),
        up.id,
        "{s:?}"
    );
    assert!(
        s.body["expires_at"].is_string() && s.body["created_at"].is_string(),
        "{s:?}"
    );
    assert!(
        s.body.get("file").is_none_or(Value::is_null),
        "no file before the end: {s:?}"
    );

    // Chunks of very different sizes; the one from 1000 sent as a POST with the override.
    let cuts = [0usize, 1, 1000, 40_000, bytes.len() - 7, bytes.len()];
    for w in cuts.windows(2).take(cuts.len() - 2) {
        let (from, to) = (w[0], w[1]);
        if from == 1000 {
            let r = request(&server, Method::POST, &up.path, Some(1))
                .header("X-HTTP-Method-Override", "PATCH")
                .header("Content-Type", OCTET)
                .header("Upload-Offset", from.to_string())
                .body(bytes[from..to].to_vec());
            let a = send("POST with X-HTTP-Method-Override: PATCH", r).await;
            a.expect_status(204);
            assert_eq!(a.offset(), to as u64);
        } else {
            let a = patch_ok(&server, 1, &up.path, from as u64, &bytes[from..to]).await;
            assert!(about_an_hour.contains(&a.expires_in()), "{a:?}");
        }
        let h = head(&server, 1, &up.path).await;
        assert_eq!(h.offset(), to as u64, "HEAD after the chunk {from}..{to}");
        assert!(
            !parts_of(&server, &up.id).is_empty(),
            "the received bytes are stored: {:?}",
            server.stored_files()
        );
        assert_eq!(
            server.get(1, "/files/chunked").await.0,
            404,
            "no file before the last byte"
        );
    }

    // The last PATCH answers once the file is committed: everything is visible at once.
    let from = cuts[cuts.len() - 2];
    patch_ok(&server, 1, &up.path, from as u64, &bytes[from..]).await;
    let record = assert_file_is(&server, 1, "chunked", &bytes).await;
    assert_eq!(
        uuid::Uuid::parse_str(record["id"].as_str().unwrap()).unwrap(),
        up.id,
        "the file's id is the upload's: {record}"
    );
    let (status, active) = server.get(1, &format!("/files/active/{session}")).await;
    assert_eq!((status, &active), (200, &record), "the file is active for its session");
    let s = state(&server, 1, &up.path).await;
    s.expect_status(200);
    assert_eq!(s.body["state"], "done", "{s:?}");
    assert_eq!(s.body["offset"].as_u64(), Some(len), "{s:?}");
    assert_eq!(s.body["file"], record, "the done upload shows the file's record");
    let h = head(&server, 1, &up.path).await;
    h.expect_status(200);
    assert_eq!(h.offset(), len, "a complete upload's offset is its length");
    patch(&server, 1, &up.path, 0, b"more")
        .await
        .expect(409, "offset_mismatch");
    wait_no_parts(&server, &up.id, 10, "after the commit").await;
    assert!(
        server.stored_files().iter().any(|f| f == "1_chunked.csv"),
        "{:?}",
        server.stored_files()
    );

    // Terminating a done upload forgets it, never the file.
    terminate(&server, 1, &up.path).await.expect_status(204);
    state(&server, 1, &up.path).await.expect(404, "not_found");
    head(&server, 1, &up.path).await.expect_status(404);
    assert_file_is(&server, 1, "chunked", &bytes).await;
}

#[tokio::test]
async fn creation_with_upload_takes_the_body_as_the_first_chunk() {
    let server = TestServer::start().await;
    let session = new_session();
    let bytes = table(3000);
    let len = bytes.len() as u64;

    // Part of the upload in the POST.
    let created = post(
        &server,
        1,
        &[
            ("Upload-Length", len.to_string()),
            ("Upload-Metadata", meta("with body", &session, "wb.csv")),
        ],
        Some(bytes[..5000].to_vec()),
    )
    .await;
    created.expect_status(201);
    assert_eq!(created.offset(), 5000);
    created.expires_in();
    let up = Upload::of(&created);
    assert_eq!(head(&server, 1, &up.path).await.offset(), 5000);
    assert_eq!(server.get(1, "/files/with%20body").await.0, 404);
    patch_ok(&server, 1, &up.path, 5000, &bytes[5000..]).await;
    assert_file_is(&server, 1, "with body", &bytes).await;

    // The whole upload in the POST: the 201 comes once the file is committed.
    let created = post(
        &server,
        1,
        &[
            ("Upload-Length", len.to_string()),
            ("Upload-Metadata", meta("in one", &session, "one.csv")),
        ],
        Some(bytes.clone()),
    )
    .await;
    created.expect_status(201);
    assert_eq!(created.offset(), len);
    let up = Upload::of(&created);
    let record = assert_file_is(&server, 1, "in one", &bytes).await;
    assert_eq!(server.get(1, &format!("/files/active/{session}")).await.1, record);
    let s = state(&server, 1, &up.path).await;
    assert_eq!(s.body["state"], "done", "{s:?}");
    assert_eq!(s.body["file"], record);
    wait_nothing_hidden(&server, 10, "after the commits").await;
}

#[tokio::test]
async fn refused_creations_leave_no_upload_and_no_name_taken() {
    let server = TestServer::start_with(&[("MAX_UPLOAD_BYTES", "1000")]).await;
    let session = new_session();
    assert_eq!(server.upload(1, "taken", &session, "t.csv", sales_csv()).await.0, 201);
    let pending = create_ok(&server, 1, 500, &meta("pending", &session, "p.csv")).await;
    let len = |n: &str| ("Upload-Length", n.to_string());
    let md = |m: String| ("Upload-Metadata", m);
    let full = |name: &str| meta(name, &session, &format!("{name}.csv"));
    let without = |name: &str, key: &str| {
        let pairs = [
            ("file_name", name.to_string()),
            ("session_id", session.clone()),
            ("description", "d".to_string()),
            ("filename", format!("{name}.csv")),
        ];
        let kept: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        metadata(&kept)
    };
    // (what, headers, status, code or codes separated by |)
    let cases: Vec<(&str, Vec<(&str, String)>, u16, &str)> = vec![
        ("no Upload-Length", vec![md(full("r01"))], 400, "invalid_upload_length"),
        (
            "Upload-Length not a number",
            vec![len("ten"), md(full("r02"))],
            400,
            "invalid_upload_length",
        ),
        (
            "Upload-Length negative",
            vec![len("-5"), md(full("r03"))],
            400,
            "invalid_upload_length",
        ),
        (
            "Upload-Defer-Length",
            vec![("Upload-Defer-Length", "1".into()), md(full("r04"))],
            400,
            "invalid_upload_length",
        ),
        (
            "over MAX_UPLOAD_BYTES",
            vec![len("1001"), md(full("r05"))],
            413,
            "payload_too_large",
        ),
        (
            "a value not base64",
            vec![
                len("10"),
                md(format!("file_name !!!,session_id {}", b64(session.as_bytes()))),
            ],
            400,
            "invalid_metadata",
        ),
        (
            "a pair of three parts",
            vec![len("10"), md(format!("{},description a b", full("r06")))],
            400,
            "invalid_metadata",
        ),
        ("no Upload-Metadata", vec![len("10")], 422, "missing_field"),
        (
            "session_id not a UUID",
            vec![
                len("10"),
                md(metadata(&[
                    ("file_name", "r07"),
                    ("session_id", "not-a-uuid"),
                    ("description", "d"),
                    ("filename", "r07.csv"),
                ])),
            ],
            422,
            "invalid_session_id",
        ),
        (
            "an unsupported extension",
            vec![len("10"), md(meta("r08", &session, "r08.exe"))],
            422,
            "unsupported_extension",
        ),
        (
            "no file_name",
            vec![len("10"), md(without("r09", "file_name"))],
            422,
            "missing_field",
        ),
        (
            "no session_id",
            vec![len("10"), md(without("r10", "session_id"))],
            422,
            "missing_field",
        ),
        (
            "no description",
            vec![len("10"), md(without("r11", "description"))],
            422,
            "missing_field",
        ),
        (
            "no filename",
            vec![len("10"), md(without("r12", "filename"))],
            422,
            "missing_filename|missing_field",
        ),
        (
            "a file_name not allowed",
            vec![len("10"), md(meta("r13/x", &session, "r13.csv"))],
            422,
            "invalid_file_name",
        ),
        ("a name a file has", vec![len("10"), md(full("taken"))], 409, "conflict"),
        (
            "a name an unfinished upload has",
            vec![len("10"), md(full("pending"))],
            409,
            "upload_in_progress",
        ),
    ];
    let stored_before = server.stored_files();
    for (what, headers, status, codes) in cases {
        let answer = post(&server, 1, &headers, None).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert!(
            codes.split('|').any(|c| c == answer.code()),
            "{what}: code {:?}, expected {codes:?}: {answer:?}",
            answer.code()
        );
        if answer.code() == "upload_in_progress" {
            // Which upload holds the name, to go on with it or terminate it.
            assert_eq!(answer.body["upload"], pending.path.as_str(), "{what}: {answer:?}");
        }
        assert!(
            answer.header("location").is_none(),
            "{what}: no upload is made: {answer:?}"
        );
        assert_eq!(server.stored_files(), stored_before, "{what}: nothing stored");
    }
    // The refused names are free; the others still taken as they were.
    for name in [
        "r01", "r02", "r03", "r04", "r05", "r06", "r07", "r08", "r09", "r10", "r11", "r12",
    ] {
        assert_name_free(&server, 1, name).await;
    }
    assert_eq!(head(&server, 1, &pending.path).await.offset(), 0);
    let (_, files) = server.get(1, "/files/").await;
    assert_eq!(crate::harness::file_names(&files), ["taken"]);

    // At the limit, and with an empty description: accepted.
    let exact = create_ok(&server, 1, 1000, &full("exact")).await;
    terminate(&server, 1, &exact.path).await.expect_status(204);
    let empty_description = metadata(&[
        ("file_name", "nodesc"),
        ("session_id", &session),
        ("description", ""),
        ("filename", "n.csv"),
    ]);
    let up = create_ok(&server, 1, 10, &empty_description).await;
    terminate(&server, 1, &up.path).await.expect_status(204);
    // Another user may use the names this one has.
    let other = create_ok(&server, 2, 10, &full("pending")).await;
    terminate(&server, 2, &other.path).await.expect_status(204);
}

// ----- PATCH -----

#[tokio::test]
async fn refused_patches_leave_the_offset_where_it_was() {
    let server = TestServer::start().await;
    let bytes = table(3000);
    let up = create_ok(
        &server,
        1,
        bytes.len() as u64,
        &meta("patched", &new_session(), "p.csv"),
    )
    .await;
    patch_ok(&server, 1, &up.path, 0, &bytes[..1000]).await;
    let still_1000 = |what: String| {
        let server = &server;
        let path = up.path.clone();
        async move {
            let h = head(server, 1, &path).await;
            h.expect_status(200);
            assert_eq!(h.offset(), 1000, "after {what}");
        }
    };

    patch(&server, 1, &up.path, 0, &bytes[..100])
        .await
        .expect(409, "offset_mismatch");
    still_1000("a PATCH at 0".into()).await;
    patch(&server, 1, &up.path, 2000, &bytes[2000..2100])
        .await
        .expect(409, "offset_mismatch");
    still_1000("a PATCH past the offset".into()).await;

    for content_type in [Some("application/octet-stream"), Some("text/csv"), None] {
        let mut r = request(&server, Method::PATCH, &up.path, Some(1)).header("Upload-Offset", "1000");
        if let Some(ct) = content_type {
            r = r.header("Content-Type", ct);
        }
        let what = format!("PATCH with Content-Type {content_type:?}");
        send(&what, r.body(bytes[1000..1100].to_vec()))
            .await
            .expect(415, "unsupported_media_type");
        still_1000(what).await;
    }

    for offset in [None, Some("abc"), Some("-1")] {
        let mut r = request(&server, Method::PATCH, &up.path, Some(1)).header("Content-Type", OCTET);
        if let Some(o) = offset {
            r = r.header("Upload-Offset", o);
        }
        let what = format!("PATCH with Upload-Offset {offset:?}");
        send(&what, r.body(bytes[1000..1100].to_vec()))
            .await
            .expect(400, "invalid_upload_offset");
        still_1000(what).await;
    }

    // One byte past Upload-Length, with a Content-Length, then as a stream without one.
    let mut too_long = bytes[1000..].to_vec();
    too_long.push(b'\n');
    patch(&server, 1, &up.path, 1000, &too_long)
        .await
        .expect(413, "payload_too_large");
    still_1000("a PATCH past Upload-Length".into()).await;
    let stream = futures_util::stream::iter(
        too_long
            .chunks(7000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    patch_with(&server, 1, &up.path, 1000, &[], reqwest::Body::wrap_stream(stream))
        .await
        .expect(413, "payload_too_large");
    still_1000("a streamed PATCH past Upload-Length".into()).await;

    // Nothing of the refused chunks was kept: the rest completes the exact bytes.
    patch_ok(&server, 1, &up.path, 1000, &bytes[1000..]).await;
    assert_file_is(&server, 1, "patched", &bytes).await;
}

#[tokio::test]
async fn checksums_are_checked_before_a_chunk_is_kept() {
    let server = TestServer::start().await;
    let bytes = table(3000);
    let up = create_ok(&server, 1, bytes.len() as u64, &meta("summed", &new_session(), "s.csv")).await;
    let checked = |algorithm: &str, value: String| vec![("Upload-Checksum", format!("{algorithm} {value}"))];

    let a = patch_with(
        &server,
        1,
        &up.path,
        0,
        &checked("sha1", sha1_b64(&bytes[..1000])),
        bytes[..1000].to_vec(),
    )
    .await;
    a.expect_status(204);
    assert_eq!(a.offset(), 1000);
    let a = patch_with(
        &server,
        1,
        &up.path,
        1000,
        &checked("sha256", sha256_b64(&bytes[1000..2000])),
        bytes[1000..2000].to_vec(),
    )
    .await;
    a.expect_status(204);
    assert_eq!(a.offset(), 2000);

    let chunk = bytes[2000..3000].to_vec();
    let refusals: Vec<(&str, Vec<(&str, String)>, u16, &str)> = vec![
        (
            "a wrong sha1",
            checked("sha1", sha1_b64(&bytes[..1000])),
            460,
            "checksum_mismatch",
        ),
        (
            "a wrong sha256",
            checked("sha256", sha256_b64(b"other bytes")),
            460,
            "checksum_mismatch",
        ),
        ("md5", checked("md5", b64(&[0u8; 16])), 400, "unsupported_checksum"),
        (
            "an algorithm alone",
            vec![("Upload-Checksum", "sha256".to_string())],
            400,
            "unsupported_checksum",
        ),
        (
            "a value not base64",
            checked("sha1", "%%%%".into()),
            400,
            "unsupported_checksum",
        ),
    ];
    for (what, headers, status, code) in refusals {
        let answer = patch_with(&server, 1, &up.path, 2000, &headers, chunk.clone()).await;
        answer.expect(status, code);
        let h = head(&server, 1, &up.path).await;
        assert_eq!(h.offset(), 2000, "after a PATCH with {what}: the chunk is dropped");
    }

    let last = patch_with(
        &server,
        1,
        &up.path,
        2000,
        &checked("sha256", sha256_b64(&bytes[2000..])),
        bytes[2000..].to_vec(),
    )
    .await;
    last.expect_status(204);
    assert_eq!(last.offset(), bytes.len() as u64);
    assert_file_is(&server, 1, "summed", &bytes).await;
}

#[tokio::test]
async fn a_last_patch_of_unreadable_bytes_fails_as_the_multipart_route_does() {
    let server = TestServer::start().await;
    let csv = table(2000);
    // What the multipart route says of these bytes under a Parquet name.
    let (reference_status, reference) = server
        .upload(1, "reference", &new_session(), "reference.parquet", csv.clone())
        .await;
    assert_eq!(reference_status, 422, "{reference}");
    let code = reference["code"].as_str().unwrap().to_string();

    let session = new_session();
    let up = create_ok(&server, 1, csv.len() as u64, &meta("bad", &session, "bad.parquet")).await;
    patch_ok(&server, 1, &up.path, 0, &csv[..20_000]).await;
    let last = patch(&server, 1, &up.path, 20_000, &csv[20_000..]).await;
    last.expect(422, &code);

    let s = state(&server, 1, &up.path).await;
    s.expect_status(200);
    assert_eq!(s.body["state"], "failed", "{s:?}");
    assert_eq!(s.body["error"]["code"], code.as_str(), "{s:?}");
    assert_eq!(s.body["error"]["detail"], last.body["detail"], "{s:?}");
    assert!(s.body.get("file").is_none_or(Value::is_null), "{s:?}");
    assert_eq!(server.get(1, "/files/bad").await.0, 404);
    assert_eq!(server.get(1, &format!("/files/active/{session}")).await.0, 404);
    wait_no_parts(&server, &up.id, 10, "after a failed commit").await;
    assert!(
        server.stored_files().is_empty(),
        "no bytes left: {:?}",
        server.stored_files()
    );
    // A failed upload takes no more bytes, and holds no name.
    patch(&server, 1, &up.path, 0, b"id\n")
        .await
        .expect(409, "offset_mismatch");
    assert_name_free(&server, 1, "bad").await;
    terminate(&server, 1, &up.path).await.expect_status(204);
    state(&server, 1, &up.path).await.expect(404, "not_found");

    // An empty upload is committed at creation: the same answer as an empty multipart file.
    let (empty_status, empty) = server
        .upload(1, "empty reference", &new_session(), "e.csv", Vec::new())
        .await;
    let created = create(&server, 1, 0, &meta("empty", &new_session(), "e.csv")).await;
    assert_eq!(
        (created.status, created.code()),
        (empty_status, empty["code"].as_str().unwrap_or_default()),
        "an empty upload: the multipart route said {empty_status} {empty}; got {created:?}"
    );
    if empty_status == 201 {
        assert_file_is(&server, 1, "empty", b"").await;
    } else {
        assert_name_free(&server, 1, "empty").await;
    }
    wait_nothing_hidden(&server, 10, "after an empty upload").await;
}

#[tokio::test]
async fn a_patch_cut_mid_body_keeps_the_bytes_that_arrived() {
    let server = TestServer::start().await;
    let bytes = table(20_000);
    let up = create_ok(&server, 1, bytes.len() as u64, &meta("cut", &new_session(), "cut.csv")).await;
    patch_ok(&server, 1, &up.path, 0, &bytes[..100_000]).await;

    // Cut while carrying a checksum: the bytes cannot be checked, so none are kept.
    let declared = &bytes[100_000..];
    cut_patch(
        &server,
        1,
        &up.path,
        100_000,
        declared.len(),
        &declared[..120_000],
        &[("Upload-Checksum", format!("sha256 {}", sha256_b64(declared)))],
    )
    .await;
    eventually(10, "the upload free again at 100000", || async {
        let probe = patch(&server, 1, &up.path, 100_000, b"").await;
        match probe.status {
            204 => Some(assert_eq!(probe.offset(), 100_000)),
            423 => None,
            _ => panic!("a cut PATCH with a checksum keeps nothing: {probe:?}"),
        }
    })
    .await;

    // Cut without one: what arrived is kept.
    cut_patch(&server, 1, &up.path, 100_000, declared.len(), &declared[..120_000], &[]).await;
    let kept = eventually(10, "the 120000 bytes that arrived counted", || async {
        let h = head(&server, 1, &up.path).await;
        h.expect_status(200);
        (h.offset() == 220_000).then_some(h.offset())
    })
    .await;
    patch_ok(&server, 1, &up.path, kept, &bytes[kept as usize..]).await;
    assert_file_is(&server, 1, "cut", &bytes).await;
    wait_nothing_hidden(&server, 10, "after the commit").await;
}

// ----- termination and owners -----

#[tokio::test]
async fn termination_removes_every_byte_and_only_the_owner_sees_an_upload() {
    let server = TestServer::start().await;
    let bytes = table(3000);
    let up = create_ok(&server, 1, bytes.len() as u64, &meta("gone", &new_session(), "g.csv")).await;
    patch_ok(&server, 1, &up.path, 0, &bytes[..2000]).await;
    assert!(!parts_of(&server, &up.id).is_empty(), "{:?}", server.stored_files());

    // Another user: the upload does not exist for them.
    head(&server, 2, &up.path).await.expect_status(404);
    state(&server, 2, &up.path).await.expect(404, "not_found");
    patch(&server, 2, &up.path, 2000, &bytes[2000..])
        .await
        .expect(404, "not_found");
    terminate(&server, 2, &up.path).await.expect(404, "not_found");
    // No token: 401.
    for method in [Method::HEAD, Method::GET, Method::PATCH, Method::DELETE] {
        let mut r = request(&server, method.clone(), &up.path, None);
        if method == Method::PATCH {
            r = r
                .header("Content-Type", OCTET)
                .header("Upload-Offset", "2000")
                .body(bytes[2000..].to_vec());
        }
        let answer = send(&format!("{method} without a token"), r).await;
        if method == Method::HEAD {
            answer.expect_status(401);
        } else {
            answer.expect(401, "unauthorized");
        }
    }
    let h = head(&server, 1, &up.path).await;
    h.expect_status(200);
    assert_eq!(h.offset(), 2000, "untouched by the refused requests");

    terminate(&server, 1, &up.path).await.expect_status(204);
    head(&server, 1, &up.path).await.expect_status(404);
    state(&server, 1, &up.path).await.expect(404, "not_found");
    patch(&server, 1, &up.path, 2000, &bytes[2000..])
        .await
        .expect(404, "not_found");
    terminate(&server, 1, &up.path).await.expect(404, "not_found");
    assert_eq!(
        parts_of(&server, &up.id),
        Vec::<String>::new(),
        "every stored byte is gone"
    );
    assert_name_free(&server, 1, "gone").await;
}

// ----- expiry, restarts, replicas, crashes -----

#[tokio::test]
async fn an_expired_upload_is_removed_with_its_bytes() {
    let server = TestServer::start_with(&[("UPLOAD_EXPIRES_SECONDS", "2"), ("LEASE_SECONDS", "3")]).await;
    let bytes = table(3000);
    let up = create_ok(&server, 1, bytes.len() as u64, &meta("stale", &new_session(), "s.csv")).await;
    patch_ok(&server, 1, &up.path, 0, &bytes[..2000]).await;
    assert!(!parts_of(&server, &up.id).is_empty(), "{:?}", server.stored_files());

    // The statuses HEAD gave, each change once: never back to an earlier one.
    let seen = std::cell::RefCell::new(Vec::new());
    eventually(30, "HEAD 404 once the upload expired", || async {
        let h = head(&server, 1, &up.path).await;
        assert!(
            matches!(h.status, 200 | 404 | 410),
            "an upload expiring is there (200), expired (410) or removed (404): {h:?}"
        );
        let mut seen = seen.borrow_mut();
        if seen.last() != Some(&h.status) {
            seen.push(h.status);
        }
        (h.status == 404).then_some(())
    })
    .await;
    let rank = |s: u16| match s {
        200 => 0,
        410 => 1,
        _ => 2,
    };
    let seen = seen.into_inner();
    assert!(seen.windows(2).all(|w| rank(w[0]) < rank(w[1])), "HEAD went {seen:?}");
    state(&server, 1, &up.path).await.expect(404, "not_found");
    patch(&server, 1, &up.path, 2000, &bytes[2000..])
        .await
        .expect(404, "not_found");
    wait_no_parts(&server, &up.id, 10, "after expiry").await;
    assert_name_free(&server, 1, "stale").await;
}

#[tokio::test]
async fn an_upload_continues_after_a_restart() {
    let mut server = TestServer::start().await;
    let bytes = table(5000);
    let session = new_session();
    let up = create_ok(&server, 1, bytes.len() as u64, &meta("restarted", &session, "r.csv")).await;
    patch_ok(&server, 1, &up.path, 0, &bytes[..30_000]).await;

    server.restart();
    let h = head(&server, 1, &up.path).await;
    h.expect_status(200);
    assert_eq!(h.offset(), 30_000);
    patch_ok(&server, 1, &up.path, 30_000, &bytes[30_000..]).await;
    let record = assert_file_is(&server, 1, "restarted", &bytes).await;
    assert_eq!(server.get(1, &format!("/files/active/{session}")).await.1, record);
}

#[tokio::test]
async fn a_patch_on_one_replica_locks_the_upload_on_the_other() {
    if Stack::from_env() == Stack::Sqlite {
        eprintln!("a_patch_on_one_replica_locks_the_upload_on_the_other: replicas need a PostgreSQL stack");
        return;
    }
    let a = TestServer::start().await;
    let b = a.replica(&[]).await;
    let bytes = table(20_000);
    let up = create_ok(&a, 1, bytes.len() as u64, &meta("shared", &new_session(), "sh.csv")).await;

    let held = start_held_patch(&a, &b, 1, &up.path, 0, &bytes[..100_000]).await;
    // Any PATCH, on either replica, with bytes or without, waits for A's to end.
    patch(&b, 1, &up.path, 0, &bytes[..10])
        .await
        .expect(423, "upload_locked");
    patch(&a, 1, &up.path, 0, &bytes[..10])
        .await
        .expect(423, "upload_locked");
    assert_eq!(
        head(&b, 1, &up.path).await.status,
        200,
        "HEAD answers while a PATCH holds the upload"
    );

    held.tx.send(Ok(bytes[100_000..150_000].to_vec())).await.unwrap();
    drop(held.tx);
    let done = held.answer.await.unwrap().expect("A's PATCH answered");
    done.expect_status(204);
    assert_eq!(done.offset(), 150_000);

    let h = head(&b, 1, &up.path).await;
    assert_eq!(h.offset(), 150_000, "B sees A's offset");
    patch_ok(&b, 1, &up.path, 150_000, &bytes[150_000..]).await;
    assert_file_is(&b, 1, "shared", &bytes).await;
    assert_file_is(&a, 1, "shared", &bytes).await;
    assert_eq!(state(&a, 1, &up.path).await.body["state"], "done");
    wait_no_parts(&a, &up.id, 10, "after the commit").await;
}

#[tokio::test]
async fn an_upload_a_killed_server_was_receiving_resumes_after_its_lease() {
    let mut server = TestServer::start_with(&[("LEASE_SECONDS", "3")]).await;
    // On PostgreSQL a live replica takes over; on SQLite the server restarts.
    let replica = match Stack::from_env() {
        Stack::Sqlite => None,
        _ => Some(server.replica(&[]).await),
    };
    let bytes = table(20_000);
    let up = create_ok(&server, 1, bytes.len() as u64, &meta("killed", &new_session(), "k.csv")).await;
    patch_ok(&server, 1, &up.path, 0, &bytes[..100_000]).await;

    let held = start_held_patch(&server, &server, 1, &up.path, 100_000, &bytes[100_000..160_000]).await;
    server.kill();
    held.answer.abort();
    drop(held.tx);

    let resumer: &TestServer = match &replica {
        Some(replica) => replica,
        None => {
            server.restart();
            &server
        }
    };
    // Free again once the dead process's lease is over, at its last recorded offset.
    let at = eventually(60, "the upload free again after the lease", || async {
        let h = head(resumer, 1, &up.path).await;
        h.expect_status(200);
        let at = h.offset();
        assert!((100_000..=160_000).contains(&at), "offset {at} after the kill");
        let probe = patch(resumer, 1, &up.path, at, b"").await;
        match probe.status {
            204 => Some(at),
            423 => None,
            _ => panic!("the killed PATCH's upload: {probe:?}"),
        }
    })
    .await;
    patch_ok(resumer, 1, &up.path, at, &bytes[at as usize..]).await;
    assert_file_is(resumer, 1, "killed", &bytes).await;
    // What the killed PATCH was writing goes too (a minute-old leftover at the latest).
    wait_nothing_hidden(&server, 90, "after the commit").await;
}

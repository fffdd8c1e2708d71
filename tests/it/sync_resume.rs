//! Sync over connections that are cut mid-file: the content of a large file moves in
//! pieces that go on from where the cut left them, pushing (the upload cut) and pulling
//! (the download cut); a proxy counts the bytes that cross it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::*;
use crate::sync::{list, n, random_user, upload, SYNC_TIMEOUT};

/// Which way the proxy counts and cuts.
#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// What clients send (a push's uploads).
    Up,
    /// What the server answers (a pull's downloads).
    Down,
}

/// A TCP proxy to `target` that counts the bytes going `direction` and, each time the
/// count crosses one of `cuts`, closes the connection carrying them (both ways).
struct CuttingProxy {
    url: String,
    moved: Arc<AtomicU64>,
    cut: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(target: &str, direction: Direction, cuts: Vec<u64>) -> CuttingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (moved, cut) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
        let cuts = Arc::new(cuts);
        let (target, counted, done) = (target.to_string(), moved.clone(), cut.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (upstream_read, upstream_write) = upstream.into_split();
                // One task per connection pumps both ways; it ends (closing both sockets)
                // when either side closes or a cut falls in the counted direction.
                let (moved, cut, cuts) = (counted.clone(), done.clone(), cuts.clone());
                tokio::spawn(async move {
                    let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                                mut to: tokio::net::tcp::OwnedWriteHalf,
                                counts: bool| {
                        let (moved, cut, cuts) = (moved.clone(), cut.clone(), cuts.clone());
                        async move {
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                let n = match from.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                if counts {
                                    let before = moved.fetch_add(n as u64, Ordering::SeqCst);
                                    let next = cuts.get(cut.load(Ordering::SeqCst)).copied();
                                    if let Some(at) = next.filter(|at| before + n as u64 >= *at) {
                                        // Forward up to the cut, then drop the connection.
                                        let keep = (at - before) as usize;
                                        let _ = to.write_all(&buf[..keep]).await;
                                        cut.fetch_add(1, Ordering::SeqCst);
                                        moved.fetch_sub((n - keep) as u64, Ordering::SeqCst);
                                        return;
                                    }
                                }
                                if to.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    };
                    let up = pump(client_read, upstream_write, direction == Direction::Up);
                    let down = pump(upstream_read, client_write, direction == Direction::Down);
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        CuttingProxy {
            url,
            moved,
            cut,
            accept,
        }
    }

    fn moved(&self) -> u64 {
        self.moved.load(Ordering::SeqCst)
    }

    fn cuts(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A CSV of about `size` bytes and its SHA-256.
fn big_csv(size: usize) -> (Vec<u8>, String) {
    let mut out = b"id,value,label\n".to_vec();
    let mut i = 0u64;
    while out.len() < size {
        out.extend_from_slice(format!("{i},{},row{}\n", i % 9973, i % 97).as_bytes());
        i += 1;
    }
    let sha = format!("{:x}", Sha256::digest(&out));
    (out, sha)
}

/// Runs `file-service sync` on `edge` with `--to` or `--from` the proxy.
async fn sync_through(edge: &TestServer, proxy: &CuttingProxy, push: bool) -> Value {
    let token = replicate_token();
    let way = if push { "--to" } else { "--from" };
    let args = [
        "sync",
        way,
        proxy.url.as_str(),
        "--token",
        token.as_str(),
        "--local",
        edge.base.as_str(),
        "--json",
    ];
    let started = Instant::now();
    let report = edge.run_cli_json(&args, SYNC_TIMEOUT).await;
    eprintln!(
        "sync {way}: {:.2}s, {} cuts, {} bytes through the proxy, report {report}",
        started.elapsed().as_secs_f64(),
        proxy.cuts(),
        proxy.moved()
    );
    report
}

/// No piece of a content is left once it is staged and used.
fn pieces_left(server: &TestServer) -> Vec<String> {
    if Stack::from_env() == Stack::PostgresRedisS3 {
        return Vec::new(); // the bucket's parts: the sweep's tests cover them
    }
    list_dir(&server.storage_dir())
        .into_iter()
        .filter(|n| n.starts_with(".part-") || n.starts_with(".blob-"))
        .collect()
}

async fn resumes_through_cuts(push: bool) {
    let edge = TestServer::start_on(Stack::Sqlite, None, None, &[]).await;
    let hub = TestServer::start().await;
    let u = random_user();
    let size = 24 << 20;
    let (bytes, sha) = big_csv(size);
    let (from, to) = if push { (&edge, &hub) } else { (&hub, &edge) };
    let made = upload(from, u, "big", bytes.clone()).await;
    assert_eq!(made["sha256"], sha.as_str(), "{made}");
    let size = bytes.len() as u64;
    // Four cuts in the middle of the content's bytes.
    let cuts: Vec<u64> = [0.2, 0.4, 0.6, 0.8].iter().map(|f| (size as f64 * f) as u64).collect();
    let direction = if push { Direction::Up } else { Direction::Down };
    let proxy = CuttingProxy::start(hub.base.trim_start_matches("http://"), direction, cuts).await;

    let report = sync_through(&edge, &proxy, push).await;
    let dir = if push { "pushed" } else { "pulled" };
    assert_eq!(n(&report, dir, "applied"), 1, "{report}");
    assert_eq!(proxy.cuts(), 4, "every cut fell inside the transfer");
    let arrived = list(to, u).await;
    assert_eq!(arrived.len(), 1, "{arrived:?}");
    assert_eq!(arrived[0]["sha256"], sha.as_str());
    assert_eq!(crate::sync::content(to, u, "big").await, bytes);
    // Each byte about once: the whole content, plus what was in flight at each cut and
    // the requests around it, not a new start per cut (that would be 1 + 0.2 + 0.4 + …).
    let moved = proxy.moved();
    assert!(
        moved < size + size / 10,
        "{moved} bytes crossed the proxy for a {size}-byte content"
    );
    assert!(pieces_left(to).is_empty(), "{:?}", pieces_left(to));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_cut_four_times_moves_each_byte_about_once() {
    resumes_through_cuts(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_cut_four_times_moves_each_byte_about_once() {
    resumes_through_cuts(false).await;
}

/// The pieces' own rules, over HTTP: a piece that does not start where the kept bytes end
/// is refused, the progress says where they end, a last piece that does not hash to the
/// content's SHA-256 leaves nothing.
#[tokio::test]
async fn pieces_of_a_content_go_on_only_from_where_they_stopped() {
    let server = TestServer::start().await;
    let token = replicate_token();
    let (bytes, sha) = big_csv(300_000);
    let total = bytes.len() as u64;
    let put = |start: usize, end: usize, body: Vec<u8>| {
        let request = server
            .client
            .put(server.url(&format!("/sync/blobs/{sha}")))
            .bearer_auth(&token)
            .header("content-range", format!("bytes {start}-{}/{total}", end - 1))
            .body(body);
        async move { request.send().await.unwrap() }
    };
    let progress = || async {
        let resp = server
            .client
            .get(server.url(&format!("/sync/blobs/{sha}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()
    };
    assert_eq!(progress().await, serde_json::json!({"staged": false, "offset": 0}));
    let resp = put(0, 100_000, bytes[..100_000].to_vec()).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["upload-offset"], "100000");
    assert_eq!(progress().await["offset"], 100_000);
    // Not where the kept bytes end: refused, nothing changes.
    let resp = put(50_000, 150_000, bytes[50_000..150_000].to_vec()).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "offset_mismatch");
    assert_eq!(progress().await["offset"], 100_000);
    let resp = server
        .client
        .put(server.url(&format!("/sync/blobs/{sha}")))
        .bearer_auth(&token)
        .header("content-range", "bytes 10-5/3")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    // The rest, but wrong bytes: the whole does not hash to the content's SHA-256.
    let mut wrong = bytes[100_000..].to_vec();
    wrong[0] ^= 1;
    let resp = put(100_000, total as usize, wrong).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(progress().await, serde_json::json!({"staged": false, "offset": 0}));
    assert!(pieces_left(&server).is_empty(), "{:?}", pieces_left(&server));
    // Right bytes in two pieces: staged.
    assert_eq!(put(0, 200_000, bytes[..200_000].to_vec()).await.status(), 204);
    assert_eq!(
        put(200_000, total as usize, bytes[200_000..].to_vec()).await.status(),
        204
    );
    assert_eq!(progress().await, serde_json::json!({"staged": true, "offset": 0}));
    assert!(
        pieces_left(&server).iter().all(|n| n.starts_with(".blob-")),
        "{:?}",
        pieces_left(&server)
    );
}

//! A closed-loop GET load: N tasks, each on its own keep-alive HTTP/1 connection, bounded by
//! time and by a total request budget; latencies are kept per request for percentiles.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// What one load produced.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub connections: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub response_bytes: u64,
    pub first_error: Option<String>,
    /// Server CPU time over the load as a share of one core (200% = both cores of two);
    /// filled in by callers that know the server's pid.
    pub server_cpu_percent: Option<f64>,
    /// The same for this benchmark process (the client shares the machine with the server).
    pub client_cpu_percent: Option<f64>,
}

/// The request every task repeats.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub bearer: String,
}

/// Per-task tallies, merged at the end so the hot loop shares nothing but the budget counter.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    response_bytes: u64,
    first_error: Option<String>,
}

/// Runs `connections` tasks until `duration` has passed or `max_requests` were started.
pub async fn run(target: &Target, connections: usize, duration: Duration, max_requests: u64) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let budget = Arc::new(AtomicU64::new(max_requests));
    let tasks: Vec<_> = (0..connections.max(1))
        .map(|_| tokio::spawn(worker(target.clone(), deadline, budget.clone())))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await.unwrap_or_else(|e| Tally {
            errors: 1,
            first_error: Some(e.to_string()),
            ..Tally::default()
        });
        merge(&mut all, tally);
    }
    summarize(connections, started.elapsed(), all)
}

async fn worker(target: Target, deadline: Instant, budget: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    // Each pass opens one connection and keeps it until the end or an error.
    while Instant::now() < deadline && has_budget(&budget) {
        let mut sender = match connect(target.addr).await {
            Ok(sender) => sender,
            Err(e) => {
                note_error(&mut tally, e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while Instant::now() < deadline && take_one(&budget) {
            let t0 = Instant::now();
            match send(&mut sender, &target).await {
                Ok(len) => {
                    tally
                        .latencies_us
                        .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    tally.response_bytes = len;
                }
                Err(e) => {
                    note_error(&mut tally, e);
                    break; // reconnect
                }
            }
        }
    }
    tally
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request; `Ok` only for a 200, with the body length.
async fn send(sender: &mut http1::SendRequest<Empty<Bytes>>, target: &Target) -> Result<u64, String> {
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let req = Request::get(target.path.as_str())
        .header(header::HOST, target.addr.to_string())
        .header(header::AUTHORIZATION, target.bearer.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(body.len() as u64)
}

fn has_budget(budget: &AtomicU64) -> bool {
    budget.load(Ordering::Relaxed) > 0
}

/// Claims one request from the shared budget; false once it is spent.
fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
        .is_ok()
}

fn note_error(tally: &mut Tally, error: String) {
    tally.errors += 1;
    tally.first_error.get_or_insert(error);
}

fn merge(all: &mut Tally, part: Tally) {
    all.latencies_us.extend(part.latencies_us);
    all.errors += part.errors;
    all.response_bytes = all.response_bytes.max(part.response_bytes);
    if all.first_error.is_none() {
        all.first_error = part.first_error;
    }
}

fn summarize(connections: usize, elapsed: Duration, mut all: Tally) -> LoadResult {
    all.latencies_us.sort_unstable();
    let seconds = elapsed.as_secs_f64();
    let requests = all.latencies_us.len() as u64;
    LoadResult {
        connections,
        seconds,
        requests,
        errors: all.errors,
        requests_per_s: requests as f64 / seconds,
        p50_ms: percentile_ms(&all.latencies_us, 0.50),
        p99_ms: percentile_ms(&all.latencies_us, 0.99),
        max_ms: all
            .latencies_us
            .last()
            .map(|&us| us as f64 / 1000.0)
            .unwrap_or(f64::NAN),
        response_bytes: all.response_bytes,
        first_error: all.first_error,
        server_cpu_percent: None,
        client_cpu_percent: None,
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

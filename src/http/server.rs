//! The HTTP/1.1 connection loop: accepts connections, applies timeouts, streams file downloads, and shuts down gracefully.
//!
//! Routing, auth and errors are warp's ([`super::routes`]), except `/mcp`, which goes to the
//! MCP endpoint ([`crate::mcp::Endpoint`]) with the same log line and metrics. warp 0.4 has no public way to
//! build a streaming response body, so a download handler returns its headers with an
//! empty body and a [`StreamFile`] extension, and this layer swaps in the file's bytes.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

use crate::storage::Content;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

tokio::task_local! {
    /// What the logging layer learns from inside the request's handler.
    static REQUEST: RequestContext;
}

#[derive(Default)]
struct RequestContext {
    user: std::cell::Cell<Option<i64>>,
}

/// Notes the authenticated user of the current request, for its log line.
pub fn record_user(user: i64) {
    let _ = REQUEST.try_with(|c| c.user.set(Some(user)));
}

/// Connection settings from the configuration.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// After shutdown is requested, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
}
/// Download chunk size: large enough for throughput, small enough to keep memory flat.
const CHUNK: usize = 256 * 1024;

/// Bytes of an open stored object to send as a response body (`len` bytes from `start`).
#[derive(Clone)]
pub struct StreamFile(Arc<Mutex<Option<(Content, u64, u64)>>>);

impl StreamFile {
    pub fn new(content: Content, start: u64, len: u64) -> StreamFile {
        StreamFile(Arc::new(Mutex::new(Some((content, start, len)))))
    }

    fn take(&self) -> Option<(Content, u64, u64)> {
        self.0.lock().ok()?.take()
    }
}

/// Bytes written while the response is sent (a query's result, a conversion): the first
/// piece, then the rest from a queue; an `Err` cuts the body short, so the client sees an
/// incomplete response rather than a complete-looking wrong one.
#[derive(Clone)]
pub struct StreamPieces(Arc<Mutex<Option<crate::service::Download>>>);

impl StreamPieces {
    pub fn new(download: crate::service::Download) -> StreamPieces {
        StreamPieces(Arc::new(Mutex::new(Some(download))))
    }

    fn take(&self) -> Option<crate::service::Download> {
        self.0.lock().ok()?.take()
    }
}

/// Serves `filter` (and `mcp` at `/mcp`) on `listener` until `shutdown` completes, then
/// ends MCP sessions and lets open connections finish their current request.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    mcp: Option<Arc<crate::mcp::Endpoint>>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) where
    F: warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
{
    let service = warp::service(filter);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let mcp = mcp.clone();
        let hyper_service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let service = service.clone();
            handle(service, mcp.clone(), req)
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .serve_connection(TokioIo::new(stream), hyper_service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    // MCP sessions keep a stream open (GET) for as long as the client likes: end them first,
    // or they would hold the grace period to its end.
    if let Some(mcp) = &mcp {
        mcp.shutdown();
    }
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = options.shutdown_grace.as_secs(),
            "grace period over: cutting off the requests still running"
        );
    }
}

/// One request: runs the warp filter (or the MCP endpoint for `/mcp`), fills in file
/// bodies, logs one line and counts it.
async fn handle<S>(
    mut service: S,
    mcp: Option<Arc<crate::mcp::Endpoint>>,
    req: http::Request<Incoming>,
) -> Result<http::Response<ResponseBody>, Infallible>
where
    S: tower_service::Service<http::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>,
{
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = super::route_template(req.uri().path());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mcp = mcp.filter(|_| req.uri().path() == "/mcp");
    // A refusal may come before the body is read; the connection then cannot carry
    // another request, and the client must be told so rather than find out by a reset.
    let sends_body = req.headers().get(http::header::TRANSFER_ENCODING).is_some()
        || req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let context = RequestContext::default();
    let (response, context) = REQUEST
        .scope(context, async move {
            let response = match mcp {
                Some(mcp) => match mcp.handle(req).await {
                    Ok(response) => response.map(|body| {
                        body.map_err(|never: Infallible| -> BoxError { match never {} })
                            .boxed_unsync()
                    }),
                    Err(e) => with_file_body(super::error_response(&e)).await,
                },
                None => {
                    let Ok(response) = service.call(req).await;
                    with_file_body(response).await
                }
            };
            (response, REQUEST.with(|c| c.user.get()))
        })
        .await;
    let mut response = response;
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if response.status() == http::StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110: a 405 lists the methods the resource does take.
        if let Ok(value) = http::HeaderValue::from_str(&super::allowed_methods(route).join(", ")) {
            response.headers_mut().insert(http::header::ALLOW, value);
        }
    }
    if sends_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let m = crate::metrics::metrics();
    m.requests
        .with_label_values(&[route, method.as_str(), &status.to_string()])
        .inc();
    m.request_seconds
        .with_label_values(&[route, method.as_str()])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "file_service::request",
        method = %method,
        route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        user = context,
        request_id = %request_id,
    );
    Ok(response)
}

/// Replaces the body of a response that carries a [`StreamFile`] with the file's bytes.
async fn with_file_body(response: warp::reply::Response) -> http::Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    if let Some(download) = parts.extensions.remove::<StreamPieces>().and_then(|p| p.take()) {
        let first = futures_util::stream::iter((!download.first.is_empty()).then(|| Ok(Frame::data(download.first))));
        let rest = futures_util::stream::unfold(download.rest, |mut rest| async move {
            let item = rest.recv().await?;
            Some((item.map(Frame::data).map_err(BoxError::from), rest))
        });
        return http::Response::from_parts(parts, StreamBody::new(first.chain(rest)).boxed_unsync());
    }
    let Some((content, start, len)) = parts.extensions.remove::<StreamFile>().and_then(|f| f.take()) else {
        return http::Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
    };
    let file = match content {
        Content::File(file) => file,
        Content::Remote(object) => {
            // Chunks as the bucket sends them, through a short queue: memory stays flat.
            let chunks = object.stream(start, len).map(|chunk| match chunk {
                Ok(bytes) => {
                    crate::metrics::metrics().downloaded_bytes.inc_by(bytes.len() as u64);
                    Ok(Frame::data(bytes))
                }
                Err(e) => Err(BoxError::from(e.to_string())),
            });
            return http::Response::from_parts(parts, StreamBody::new(chunks).boxed_unsync());
        }
    };
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
            tracing::error!(error = %e, "cannot seek in a stored file");
            parts.status = http::StatusCode::INTERNAL_SERVER_ERROR;
            return http::Response::from_parts(
                parts,
                http_body_util::Empty::new().map_err(|e| match e {}).boxed_unsync(),
            );
        }
    }
    let chunks = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; CHUNK.min(left as usize)];
        match file.read(&mut buf).await {
            // The file shrank under us: end the body early; the client sees a short read
            // against Content-Length rather than wrong bytes.
            Ok(0) => Some((Err(BoxError::from("stored file ended early")), (file, 0))),
            Ok(n) => {
                buf.truncate(n);
                crate::metrics::metrics().downloaded_bytes.inc_by(n as u64);
                Some((Ok(Frame::data(Bytes::from(buf))), (file, left - n as u64)))
            }
            Err(e) => Some((Err(BoxError::from(e)), (file, 0))),
        }
    });
    http::Response::from_parts(parts, StreamBody::new(chunks).boxed_unsync())
}

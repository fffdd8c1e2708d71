//! The HTTP API (warp): routes and the authentication filter; `error` is the one place
//! errors become responses.
//!
//! Handlers are thin: they parse the request, call [`FileService`], and serialize.

mod download;
mod error;
mod explore;
mod files;
mod links;
mod ops;
mod query;
pub mod server;
mod sync;
mod tus;
mod upload;
pub mod web;

use std::sync::Arc;

use bytes::Buf;
use futures_util::StreamExt;
use warp::filters::BoxedFilter;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::{Auth, Principal};
use crate::error::Error;
use crate::service::FileService;
pub use error::error_response;
use error::{recover, MapErrReject};
pub use ops::OPENAPI;

/// Largest JSON body accepted on small JSON routes: room for the longest description
/// even with every character escaped (`\uXXXX\uXXXX` for one outside the BMP), so an
/// over-long description gets its own 422 rather than a 413.
const MAX_JSON_BODY: u64 = 1024 * 1024;

/// Every API and operations route served, as (method, path template): the source for
/// request metrics' route labels, and checked against `openapi.json` by the tests. The
/// web page's routes are in [`web::PAGE_ROUTES`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/files/"),
    ("POST", "/api/v1/files/"),
    ("GET", "/api/v1/files/{file_name}"),
    ("PATCH", "/api/v1/files/{file_name}"),
    ("DELETE", "/api/v1/files/{file_name}"),
    ("GET", "/api/v1/files/{file_name}/content"),
    ("GET", "/api/v1/files/{file_name}/profile"),
    ("GET", "/api/v1/files/{file_name}/preview"),
    ("HEAD", "/api/v1/files/{file_name}/content"),
    ("POST", "/api/v1/files/{file_name}/query"),
    ("GET", "/api/v1/files/{file_name}/rows"),
    ("GET", "/api/v1/files/{file_name}/facets"),
    ("POST", "/api/v1/files/{file_name}/links"),
    ("GET", "/api/v1/files/{file_name}/links"),
    ("DELETE", "/api/v1/files/{file_name}/links/{id}"),
    ("GET", "/api/v1/links/{secret}"),
    ("HEAD", "/api/v1/links/{secret}"),
    ("GET", "/api/v1/files/active/{session}"),
    ("POST", "/api/v1/files/active/{session}"),
    ("DELETE", "/api/v1/files/active/{session}"),
    ("POST", "/api/v1/files/active/{session}/query"),
    ("OPTIONS", "/api/v1/uploads/"),
    ("POST", "/api/v1/uploads/"),
    ("HEAD", "/api/v1/uploads/{id}"),
    ("PATCH", "/api/v1/uploads/{id}"),
    ("DELETE", "/api/v1/uploads/{id}"),
    ("GET", "/api/v1/uploads/{id}"),
    ("GET", "/api/v1/changes"),
    ("GET", "/api/v1/sync/files/{id}/content"),
    ("GET", "/api/v1/sync/checkpoints/{source}"),
    ("POST", "/api/v1/sync/missing"),
    ("PUT", "/api/v1/sync/blobs/{sha256}"),
    ("GET", "/api/v1/sync/blobs/{sha256}"),
    ("POST", "/api/v1/sync/apply"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/mcp"),
    ("POST", "/mcp"),
    ("DELETE", "/mcp"),
];

/// The methods a route template takes, in [`ROUTES`] order (for a 405's `Allow`).
pub fn allowed_methods(template: &str) -> Vec<&'static str> {
    ROUTES
        .iter()
        .filter(|(_, path)| *path == template)
        .map(|(method, _)| *method)
        .collect()
}

/// The route template a request path belongs to (a bounded set, for metric labels).
pub fn route_template(path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["api", "v1", "files"] => "/api/v1/files/",
        ["api", "v1", "files", "active", _] => "/api/v1/files/active/{session}",
        ["api", "v1", "files", "active", _, "query"] => "/api/v1/files/active/{session}/query",
        ["api", "v1", "files", _, "content"] => "/api/v1/files/{file_name}/content",
        ["api", "v1", "files", _, "profile"] => "/api/v1/files/{file_name}/profile",
        ["api", "v1", "files", _, "preview"] => "/api/v1/files/{file_name}/preview",
        ["api", "v1", "files", _, "query"] => "/api/v1/files/{file_name}/query",
        ["api", "v1", "files", _, "rows"] => "/api/v1/files/{file_name}/rows",
        ["api", "v1", "files", _, "facets"] => "/api/v1/files/{file_name}/facets",
        ["api", "v1", "files", _, "links"] => "/api/v1/files/{file_name}/links",
        ["api", "v1", "files", _, "links", _] => "/api/v1/files/{file_name}/links/{id}",
        ["api", "v1", "links", _] => "/api/v1/links/{secret}",
        ["api", "v1", "files", _] => "/api/v1/files/{file_name}",
        ["api", "v1", "uploads"] => "/api/v1/uploads/",
        ["api", "v1", "uploads", _] => "/api/v1/uploads/{id}",
        ["api", "v1", "changes"] => "/api/v1/changes",
        ["api", "v1", "sync", "files", _, "content"] => "/api/v1/sync/files/{id}/content",
        ["api", "v1", "sync", "checkpoints", _] => "/api/v1/sync/checkpoints/{source}",
        ["api", "v1", "sync", "missing"] => "/api/v1/sync/missing",
        ["api", "v1", "sync", "blobs", _] => "/api/v1/sync/blobs/{sha256}",
        ["api", "v1", "sync", "apply"] => "/api/v1/sync/apply",
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        ["metrics"] => "/metrics",
        ["openapi.json"] => "/openapi.json",
        ["docs"] => "/docs",
        ["mcp"] => "/mcp",
        [] => "/",
        ["ui", _] => "/ui/{asset}",
        _ => "unmatched",
    }
}

/// The first of `routes` (in order) that takes the request. Each route is boxed before
/// they are joined: joined unboxed, every route's filter type nests inside the next one's,
/// and the compiler's front end spent nearly all of this crate's build on that nesting
/// (the measurements are in the README, under Performance).
pub(crate) fn first_of(routes: Vec<BoxedFilter<(Response,)>>) -> BoxedFilter<(Response,)> {
    routes
        .into_iter()
        .reduce(|tried, next| tried.or(next).unify().boxed())
        .expect("at least one route")
}

/// Every route of the service, with error recovery and, when origins are configured, CORS.
/// What the routes take from the configuration beside the service.
#[derive(Debug, Clone, Default)]
pub struct RouteSettings {
    /// Origins whose pages may call the API (CORS); none: no CORS headers.
    pub cors_origins: Vec<String>,
    /// The address clients reach the service at, for absolute addresses handed out.
    pub public_url: Option<String>,
}

impl RouteSettings {
    pub fn from_config(config: &crate::config::Config) -> RouteSettings {
        RouteSettings {
            cors_origins: config.cors_allowed_origins.clone(),
            public_url: config.public_url.clone(),
        }
    }
}

pub fn routes(service: Arc<FileService>, auth: Arc<Auth>, settings: &RouteSettings) -> BoxedFilter<(Response,)> {
    // Taken as raw bytes: a header that is not valid text is a bad token (401), not a
    // malformed request.
    let authorization = warp::header::value("authorization")
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let auth_for_tus = auth.clone();
    let principal = authorization.and_then(move |header: Option<header::HeaderValue>| {
        let auth = auth.clone();
        async move {
            let text = header.as_ref().map(|h| h.to_str().unwrap_or("<not text>"));
            let principal = auth.admit(text).await.map_err(warp::reject::custom)?;
            server::record_user(principal.user);
            Ok::<_, Rejection>(principal)
        }
    });
    // Boxed: every route embeds these, and unboxed filter types grow with each route
    // until type checking takes minutes.
    let principal = principal.boxed();
    let sync = sync::routes(service.clone(), principal.clone());
    let resumable = tus::routes(service.clone(), auth_for_tus);
    let user = principal.map(|p: Principal| p.user).boxed();
    let api = first_of(vec![
        files::routes(service.clone(), user.clone()),
        query::routes(service.clone(), user.clone()),
        links::routes(service.clone(), user.clone(), settings.public_url.clone()),
        explore::routes(service.clone(), user),
        sync,
        resumable,
        ops::routes(service),
        web::routes(),
    ]);
    let cors_origins = &settings.cors_origins;
    if cors_origins.is_empty() {
        return api.recover(recover).unify().boxed();
    }
    let cors = warp::cors()
        .allow_origins(cors_origins.iter().map(String::as_str))
        .allow_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allow_headers([
            "authorization",
            "content-type",
            "range",
            "if-none-match",
            "if-range",
            "x-request-id",
            // tus
            "tus-resumable",
            "upload-length",
            "upload-offset",
            "upload-metadata",
            "upload-checksum",
            "upload-defer-length",
            "upload-concat",
            "x-http-method-override",
            "x-requested-with",
        ])
        .expose_headers([
            "etag",
            "content-range",
            "content-disposition",
            "x-total-count",
            "x-request-id",
            "retry-after",
            // tus
            "location",
            "tus-resumable",
            "tus-version",
            "tus-extension",
            "tus-max-size",
            "tus-checksum-algorithm",
            "upload-offset",
            "upload-length",
            "upload-metadata",
            "upload-expires",
        ])
        .max_age(600);
    api.with(cors)
        .map(Reply::into_response)
        .recover(recover)
        .unify()
        .boxed()
}

/// A request body as it arrives, chunk by chunk.
pub(crate) type BodyChunks = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, Error>> + Send>>;

pub(crate) fn body_chunks() -> impl Filter<Extract = (BodyChunks,), Error = Rejection> + Clone {
    warp::body::stream().map(into_chunks)
}

fn into_chunks<S, B>(body: S) -> BodyChunks
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(body.map(|chunk| {
        chunk
            .map(|mut buf| buf.copy_to_bytes(buf.remaining()))
            .map_err(|e| Error::invalid("invalid_body", format!("reading the body failed: {e}")))
    }))
}

fn json_body() -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_JSON_BODY).and(warp::body::bytes())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid("invalid_body", format!("expected a JSON body {shape}: {e}")))
}

/// Path segments arrive percent-encoded (`sales%202024`, `%C3%A9`).
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

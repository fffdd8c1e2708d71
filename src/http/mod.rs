//! The HTTP API (warp): routes and the authentication filter; `error` is the one place
//! errors become responses.
//!
//! Handlers are thin: they parse the request, call [`FileService`], and serialize.

mod download;
mod error;
mod explore;
mod query;
pub mod server;
mod sync;
mod upload;
pub mod web;

use std::sync::Arc;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::{Auth, Principal};
use crate::error::Error;
use crate::model::{ListQuery, UserId};
use crate::service::FileService;
pub use error::error_response;
use error::{recover, MapErrReject};

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
    ("GET", "/api/v1/files/active/{session}"),
    ("POST", "/api/v1/files/active/{session}"),
    ("DELETE", "/api/v1/files/active/{session}"),
    ("POST", "/api/v1/files/active/{session}/query"),
    ("GET", "/api/v1/changes"),
    ("GET", "/api/v1/sync/files/{id}/content"),
    ("GET", "/api/v1/sync/checkpoints/{source}"),
    ("POST", "/api/v1/sync/missing"),
    ("PUT", "/api/v1/sync/blobs/{sha256}"),
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
        ["api", "v1", "files", _] => "/api/v1/files/{file_name}",
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
/// (lib tests, non-incremental: 564 s of CPU joined unboxed, 22 s boxed).
pub(crate) fn first_of(routes: Vec<BoxedFilter<(Response,)>>) -> BoxedFilter<(Response,)> {
    routes
        .into_iter()
        .reduce(|tried, next| tried.or(next).unify().boxed())
        .expect("at least one route")
}

/// Every route of the service, with error recovery and, when origins are configured, CORS.
pub fn routes(service: Arc<FileService>, auth: Arc<Auth>, cors_origins: &[String]) -> BoxedFilter<(Response,)> {
    let ops = ops_routes(service.clone());
    let sync_service = service.clone();
    let with_service_arc = service.clone();
    let with_service = warp::any().map(move || service.clone());
    // Taken as raw bytes: a header that is not valid text is a bad token (401), not a
    // malformed request.
    let authorization = warp::header::value("authorization")
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let principal = authorization.and_then(move |header: Option<header::HeaderValue>| {
        let auth = auth.clone();
        async move {
            let text = header.as_ref().map(|h| h.to_str().unwrap_or("<not text>"));
            let principal = auth.principal_from_header(text).map_err(warp::reject::custom)?;
            server::record_user(principal.user);
            Ok::<_, Rejection>(principal)
        }
    });
    // Boxed: every route embeds these, and unboxed filter types grow with each route
    // until type checking takes minutes.
    let principal = principal.boxed();
    let sync = sync::routes(sync_service, principal.clone());
    let user = principal.map(|p: Principal| p.user).boxed();
    // Path first, then method: an unknown path is 404, a known one with the wrong method 405.
    let files = warp::path!("api" / "v1" / "files");
    let active = warp::path!("api" / "v1" / "files" / "active" / String);
    let one_file = warp::path!("api" / "v1" / "files" / String);
    let content = warp::path!("api" / "v1" / "files" / String / "content");
    let profile = warp::path!("api" / "v1" / "files" / String / "profile");
    let preview = warp::path!("api" / "v1" / "files" / String / "preview");
    let get_or_head = warp::get().map(|| false).or(warp::head().map(|| true)).unify();

    let list = files
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(|user, service: Arc<FileService>, params| {
            async move {
                let (body, total) = service.list_files_json(user, list_query(params)?).await?;
                let mut response = Response::new(body.into());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                response.headers_mut().insert("x-total-count", total.into());
                Ok::<_, Error>(response)
            }
            .map_err_reject()
        });

    let create = files
        .and(warp::post())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::multipart::form().max_length(None))
        .and_then(|user, service: Arc<FileService>, form| {
            async move {
                let record = upload::handle(&service, user, form).await?;
                Ok::<_, Error>(json(StatusCode::CREATED, &record.to_read()))
            }
            .map_err_reject()
        });

    let get_active = active
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|session: String, user, service: Arc<FileService>| {
            async move {
                let record = service.get_active(user, &decode(&session)).await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let set_active = active
        .and(warp::post())
        .and(user.clone())
        .and(with_service.clone())
        .and(json_body())
        .and_then(|session: String, user, service: Arc<FileService>, body: bytes::Bytes| {
            async move {
                #[derive(Deserialize)]
                struct ActiveFile {
                    file_name: String,
                }
                let body: ActiveFile = parse_json(&body, "{\"file_name\": \"…\"}")?;
                let record = service.set_active(user, &decode(&session), &body.file_name).await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let clear_active = active
        .and(warp::delete())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|session: String, user, service: Arc<FileService>| {
            async move {
                service.clear_active(user, &decode(&session)).await?;
                Ok::<_, Error>(StatusCode::NO_CONTENT.into_response())
            }
            .map_err_reject()
        });

    let get_file = one_file
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|name: String, user, service: Arc<FileService>| {
            async move {
                let record = service.get_file(user, &decode(&name)).await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let update_file = one_file
        .and(warp::patch())
        .and(user.clone())
        .and(with_service.clone())
        .and(json_body())
        .and_then(|name: String, user, service: Arc<FileService>, body: bytes::Bytes| {
            async move {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Update {
                    file_name: Option<String>,
                    description: Option<String>,
                }
                let body: Update = parse_json(&body, "{\"file_name\"?: \"…\", \"description\"?: \"…\"}")?;
                let record = service
                    .update_file(user, &decode(&name), body.file_name, body.description)
                    .await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let delete = one_file
        .and(warp::delete())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|name: String, user: UserId, service: Arc<FileService>| {
            async move {
                let record = service.delete_file(user, &decode(&name)).await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let get_profile = profile
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|name: String, user, service: Arc<FileService>| {
            async move {
                let profile = service.get_profile(user, &decode(&name)).await?;
                let mut response = profile.into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Error>(response)
            }
            .map_err_reject()
        });

    let get_preview = preview
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(
            |name: String, user, service: Arc<FileService>, params: Vec<(String, String)>| {
                async move {
                    let rows = match params.iter().find(|(k, _)| k == "rows") {
                        None => 20,
                        Some((_, v)) => v.parse().map_err(|_| {
                            Error::invalid("invalid_rows", format!("rows must be a whole number, not {v:?}"))
                        })?,
                    };
                    let sheet = params.iter().find(|(k, _)| k == "sheet").map(|(_, v)| v.clone());
                    let preview = service.preview(user, &decode(&name), rows, sheet).await?;
                    Ok::<_, Error>(json(StatusCode::OK, &preview))
                }
                .map_err_reject()
            },
        );

    let download = content
        .and(get_or_head)
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::header::headers_cloned())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(
            |name: String, head: bool, user, service: Arc<FileService>, headers, params: Vec<(String, String)>| {
                async move {
                    let name = decode(&name);
                    // `?format=`: the file converted; without it, the stored bytes.
                    if let Some((_, format)) = params.iter().find(|(k, _)| k == "format") {
                        return query::conversion(&service, user, &name, format, head).await;
                    }
                    let (record, file) = service.open_content(user, &name).await?;
                    Ok::<_, Error>(download::respond(&record, file, &headers, head))
                }
                .map_err_reject()
            },
        );
    let explore = explore::routes(with_service_arc.clone(), user.clone());
    let queries = query::routes(with_service_arc, user);

    let api = first_of(vec![
        list.boxed(),
        create.boxed(),
        get_active.boxed(),
        set_active.boxed(),
        clear_active.boxed(),
        get_file.boxed(),
        update_file.boxed(),
        delete.boxed(),
        download.boxed(),
        get_profile.boxed(),
        get_preview.boxed(),
        queries,
        explore,
        sync,
        ops,
        web::routes(),
    ]);
    if cors_origins.is_empty() {
        return api.recover(recover).unify().boxed();
    }
    let cors = warp::cors()
        .allow_origins(cors_origins.iter().map(String::as_str))
        .allow_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers([
            "authorization",
            "content-type",
            "range",
            "if-none-match",
            "if-range",
            "x-request-id",
        ])
        .expose_headers([
            "etag",
            "content-range",
            "content-disposition",
            "x-total-count",
            "x-request-id",
            "retry-after",
        ])
        .max_age(600);
    api.with(cors)
        .map(Reply::into_response)
        .recover(recover)
        .unify()
        .boxed()
}

/// Health, readiness, metrics and API documentation: no authentication.
fn ops_routes(service: Arc<FileService>) -> BoxedFilter<(Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json(StatusCode::OK, &serde_json::json!({ "status": "ok" })));
    let readyz = warp::path!("readyz").and(warp::get()).then(move || {
        let service = service.clone();
        async move {
            let report = service.readiness().await;
            let status = if report.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, &report)
        }
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(|| {
        let mut response = crate::metrics::metrics().render().into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    });
    let openapi = warp::path!("openapi.json").and(warp::get()).map(|| {
        let mut response = OPENAPI.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        response
    });
    let docs = warp::path!("docs")
        .and(warp::get())
        .map(|| warp::reply::html(DOCS).into_response());
    first_of(vec![
        healthz.boxed(),
        readyz.boxed(),
        metrics.boxed(),
        openapi.boxed(),
        docs.boxed(),
    ])
}

/// The OpenAPI 3.1 description of every route, and a page that renders it offline.
pub const OPENAPI: &str = include_str!("openapi.json");
const DOCS: &str = include_str!("docs.html");

fn json_body() -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_JSON_BODY).and(warp::body::bytes())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid("invalid_body", format!("expected a JSON body {shape}: {e}")))
}

/// `limit`, `offset` and `name_prefix` of `GET /files/`; other parameters are ignored.
fn list_query(params: Vec<(String, String)>) -> Result<ListQuery, Error> {
    let mut query = ListQuery::default();
    for (key, value) in params {
        // At most i64::MAX: databases take signed offsets.
        let number = |what: &str| {
            value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| n as u64)
                .ok_or_else(|| Error::invalid("invalid_query", format!("{what} must be a whole number, not {value:?}")))
        };
        match key.as_str() {
            "limit" => query.limit = Some(number("limit")?.min(u32::MAX as u64) as u32),
            "offset" => query.offset = number("offset")?,
            "name_prefix" => query.name_prefix = Some(value),
            _ => {}
        }
    }
    Ok(query)
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

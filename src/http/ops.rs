//! Health, readiness, metrics and the API's description: the routes that need no token.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{first_of, json};
use crate::service::FileService;

/// Health, readiness, metrics and API documentation: no authentication.
pub(super) fn routes(service: Arc<FileService>) -> BoxedFilter<(Response,)> {
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

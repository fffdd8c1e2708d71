//! `POST /files/{name}/query`, `POST /files/active/{session}/query` and the conversions of
//! `GET /files/{name}/content?format=…`: parse, call the service, answer or stream.

use std::sync::Arc;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::server::StreamPieces;
use super::{decode, json, json_body, parse_json, MapErrReject};
use crate::error::Error;
use crate::model::UserId;
use crate::query::{OutputFormat, DEFAULT_LIMIT};
use crate::service::{Download, FileService, QueryTarget};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
    limit: Option<i64>,
    offset: Option<i64>,
}

const BODY_SHAPE: &str = "{\"sql\": \"SELECT …\", \"limit\"?: 1000, \"offset\"?: 0}";

/// Both query routes.
pub(super) fn routes(service: Arc<FileService>, user: BoxedFilter<(UserId,)>) -> BoxedFilter<(Response,)> {
    let with_service = warp::any().map(move || service.clone());
    let on_file = warp::path!("api" / "v1" / "files" / String / "query")
        .and(warp::post())
        .map(|name: String| Target::File(decode(&name)))
        .boxed();
    let on_active = warp::path!("api" / "v1" / "files" / "active" / String / "query")
        .and(warp::post())
        .map(|session: String| Target::Active(decode(&session)))
        .boxed();
    on_active
        .or(on_file)
        .unify()
        .and(user)
        .and(with_service)
        .and(warp::query::<Vec<(String, String)>>())
        .and(warp::header::headers_cloned())
        .and(json_body())
        .and_then(
            |target: Target,
             user,
             service: Arc<FileService>,
             params: Vec<(String, String)>,
             headers: HeaderMap,
             body: bytes::Bytes| {
                async move {
                    let body: QueryBody = parse_json(&body, BODY_SHAPE)?;
                    let target = match &target {
                        Target::File(name) => QueryTarget::File(name),
                        Target::Active(session) => QueryTarget::Active(session),
                    };
                    if let Some(format) = download_format(&params, &headers)? {
                        let download = service.query_download(user, target, body.sql, format).await?;
                        return Ok::<_, Error>(streamed(download));
                    }
                    let limit = match body.limit {
                        None => DEFAULT_LIMIT,
                        Some(n) => usize::try_from(n).unwrap_or(0),
                    };
                    let offset = match body.offset {
                        None => 0,
                        Some(n) => u64::try_from(n).map_err(|_| {
                            Error::invalid("invalid_offset", format!("offset must be 0 or more, not {n}"))
                        })?,
                    };
                    let answer = service.query(user, target, body.sql, limit, offset).await?;
                    Ok(json(StatusCode::OK, &answer))
                }
                .map_err_reject()
            },
        )
        .boxed()
}

enum Target {
    File(String),
    Active(String),
}

/// `?format=` (csv, parquet, jsonl, arrow), or CSV for `Accept: text/csv`; `None`: a JSON answer.
fn download_format(params: &[(String, String)], headers: &HeaderMap) -> Result<Option<OutputFormat>, Error> {
    if let Some((_, name)) = params.iter().find(|(k, _)| k == "format") {
        return output_format(name).map(Some);
    }
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")));
    Ok(wants_csv.then_some(OutputFormat::Csv))
}

pub(super) fn output_format(name: &str) -> Result<OutputFormat, Error> {
    OutputFormat::from_name(name).ok_or_else(|| {
        Error::invalid(
            "invalid_format",
            format!("format must be one of csv, parquet, jsonl, arrow, xlsx; not {name:?}"),
        )
    })
}

/// `GET /files/{name}/content?format=…`: the file converted, streamed.
pub(super) async fn conversion(
    service: &FileService,
    user: UserId,
    name: &str,
    format: &str,
    head: bool,
) -> Result<Response, Error> {
    let format = output_format(format)?;
    if head {
        // The headers (or the refusal) a GET would have, without doing the conversion.
        let filename = service.conversion_name(user, name, format).await?;
        let mut response = Response::default();
        set_download_headers(response.headers_mut(), format.content_type(), &filename);
        return Ok(response);
    }
    let download = service.convert(user, name, format).await?;
    Ok(streamed(download))
}

/// A 200 whose body is the download's pieces as they are written.
pub(super) fn streamed(download: Download) -> Response {
    let mut response = Response::default();
    *response.status_mut() = StatusCode::OK;
    set_download_headers(response.headers_mut(), download.content_type, &download.filename);
    response.extensions_mut().insert(StreamPieces::new(download));
    response.into_response()
}

fn set_download_headers(headers: &mut HeaderMap, content_type: &str, filename: &str) {
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&super::download::content_disposition(filename)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
}

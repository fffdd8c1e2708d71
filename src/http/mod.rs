//! The HTTP API (warp): routes, authentication filter and the one place errors become responses.
//!
//! Handlers are thin: they parse the request, call [`FileService`], and serialize.

mod upload;

use std::convert::Infallible;
use std::sync::Arc;

use serde::Deserialize;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::Auth;
use crate::error::Error;
use crate::model::{FileRecord, UserId};
use crate::service::FileService;

/// Largest JSON body accepted on small JSON routes.
const MAX_JSON_BODY: u64 = 64 * 1024;

/// Every route of the service, with error recovery.
pub fn routes(service: Arc<FileService>, auth: Arc<Auth>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_service = warp::any().map(move || service.clone());
    let user = warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let auth = auth.clone();
        async move { auth.user_from_header(header.as_deref()).map_err(warp::reject::custom) }
    });

    let files = warp::path!("api" / "v1" / "files");
    let active = warp::path!("api" / "v1" / "files" / "active" / String);
    let one_file = warp::path!("api" / "v1" / "files" / String);

    let list = files
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|user, service: Arc<FileService>| async move {
            let files = service.list_files(user).await?;
            Ok::<_, Error>(json(StatusCode::OK, &files.iter().map(FileRecord::to_read).collect::<Vec<_>>()))
        }.map_err_reject());

    let create = files
        .and(warp::post())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::multipart::form().max_length(None))
        .and_then(|user, service: Arc<FileService>, form| async move {
            let record = upload::handle(&service, user, form).await?;
            Ok::<_, Error>(json(StatusCode::CREATED, &record.to_read()))
        }.map_err_reject());

    let get_active = active
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|session: String, user, service: Arc<FileService>| async move {
            let record = service.get_active(user, &decode(&session)).await?;
            Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
        }.map_err_reject());

    let set_active = active
        .and(warp::post())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::body::content_length_limit(MAX_JSON_BODY))
        .and(warp::body::bytes())
        .and_then(|session: String, user, service: Arc<FileService>, body: bytes::Bytes| async move {
            #[derive(Deserialize)]
            struct ActiveFile {
                file_name: String,
            }
            let body: ActiveFile = serde_json::from_slice(&body).map_err(|e| {
                Error::invalid("invalid_body", format!("expected a JSON body {{\"file_name\": \"…\"}}: {e}"))
            })?;
            let record = service.set_active(user, &decode(&session), &body.file_name).await?;
            Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
        }.map_err_reject());

    let delete = one_file
        .and(warp::delete())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|name: String, user: UserId, service: Arc<FileService>| async move {
            let record = service.delete_file(user, &decode(&name)).await?;
            Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
        }.map_err_reject());

    list.or(create)
        .unify()
        .or(get_active)
        .unify()
        .or(set_active)
        .unify()
        .or(delete)
        .unify()
        .recover(recover)
        .unify()
}

/// Turns a handler's `Result<_, Error>` future into warp's `Result<_, Rejection>`.
trait MapErrReject: Sized {
    type Output;
    fn map_err_reject(self) -> Self::Output;
}

impl<F, T> MapErrReject for F
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    type Output = futures_util::future::MapErr<F, fn(Error) -> Rejection>;
    fn map_err_reject(self) -> Self::Output {
        futures_util::TryFutureExt::map_err(self, warp::reject::custom as fn(Error) -> Rejection)
    }
}

/// Path segments arrive percent-encoded (`sales%202024`, `%C3%A9`).
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// Renders an error as `{"detail", "code"}` with its status; 401s carry
/// `WWW-Authenticate: Bearer`.
pub fn error_response(err: &Error) -> Response {
    if let Error::Internal(cause) = err {
        tracing::error!(error = ?cause, "request failed");
    }
    let body = serde_json::json!({ "detail": err.detail(), "code": err.code() });
    let mut response = json(err.status(), &body);
    if err.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(err) = rejection.find::<Error>() {
        return Ok(error_response(err));
    }
    // Most specific first: a route whose path matched but whose body was wrong should
    // say so, rather than the 405 of a sibling route with another method.
    let (status, code, detail) = if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("invalid {} header; uploads are multipart/form-data", e.name()))
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("missing {} header; uploads are multipart/form-data", e.name()))
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large".to_string())
    } else if rejection.find::<warp::reject::UnsupportedMediaType>().is_some() {
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "unsupported Content-Type".to_string())
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, "length_required", "send a Content-Length header".to_string())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method".to_string())
    } else if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not_found", "no such route; the API is under /api/v1/files".to_string())
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error".to_string())
    };
    let body = serde_json::json!({ "detail": detail, "code": code });
    Ok(json(status, &body))
}

//! The one place errors become HTTP responses: each kind's status, and the
//! `{"detail", "code"}` body every error answers with.

use std::convert::Infallible;

use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::Rejection;

use super::json;
use crate::error::Error;

impl warp::reject::Reject for Error {}

/// The status each kind of error answers with.
fn status(err: &Error) -> StatusCode {
    match err {
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Unavailable(_) | Error::OutcomeUnknown(_) | Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        Error::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
        Error::UnsupportedVersion(_) => StatusCode::PRECONDITION_FAILED,
        Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::OffsetMismatch(_) | Error::UploadInProgress { .. } => StatusCode::CONFLICT,
        Error::Locked(_) => StatusCode::LOCKED,
        Error::Expired(_) | Error::Gone { .. } => StatusCode::GONE,
        // tus's own status for a checksum that does not match.
        Error::ChecksumMismatch(_) => StatusCode::from_u16(460).expect("a valid status"),
        Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        // The client's own limit, like MAX_UPLOAD_BYTES' 413 (507 is kept for a full
        // storage, which is the server's condition, not the user's).
        Error::QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Turns a handler's `Result<_, Error>` future into warp's `Result<_, Rejection>`.
pub(super) trait MapErrReject: Sized {
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

/// Renders an error as `{"detail", "code"}` with its status; 401s carry
/// `WWW-Authenticate: Bearer`.
pub fn error_response(err: &Error) -> Response {
    if let Error::Internal(cause) = err {
        tracing::error!(error = ?cause, "request failed");
    }
    let mut body = serde_json::json!({ "detail": err.detail(), "code": err.code() });
    if let Error::UploadInProgress { id, .. } = err {
        // The upload holding the name, to go on with it or terminate it. Not a Location:
        // a tus client would take that for an upload made for it, and write into it.
        body["upload"] = format!("/api/v1/uploads/{}", id.simple()).into();
    }
    let mut response = json(status(err), &body);
    match err {
        Error::Unauthorized(_) => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        Error::Busy(_) => {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        Error::TooManyRequests { retry_after, .. } => {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        _ => {}
    }
    response
}

pub(super) async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(err) = rejection.find::<Error>() {
        return Ok(error_response(err));
    }
    // Most specific first: a route whose path matched but whose body was wrong should
    // say so, rather than the 405 of a sibling route with another method.
    let (status, code, detail) = if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("invalid {} header; uploads are multipart/form-data", e.name()),
        )
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("missing {} header; uploads are multipart/form-data", e.name()),
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large".to_string(),
        )
    } else if rejection.find::<warp::reject::UnsupportedMediaType>().is_some() {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "unsupported Content-Type".to_string(),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send a Content-Length header".to_string(),
        )
    } else if rejection.find::<warp::filters::cors::CorsForbidden>().is_some() {
        (
            StatusCode::FORBIDDEN,
            "cors_forbidden",
            "this origin, method or header is not allowed by CORS_ALLOWED_ORIGINS".to_string(),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method".to_string(),
        )
    } else if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no such route; the API is under /api/v1/files".to_string(),
        )
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error".to_string(),
        )
    };
    let body = serde_json::json!({ "detail": detail, "code": code });
    Ok(json(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_storage_is_507_insufficient_storage() {
        let response = error_response(&Error::storage_full());
        assert_eq!(response.status().as_u16(), 507);
    }

    #[test]
    fn a_quota_refusal_is_413_quota_exceeded() {
        let response = error_response(&Error::QuotaExceeded("no room".into()));
        assert_eq!(response.status().as_u16(), 413);
    }
}

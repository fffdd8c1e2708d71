//! Resumable uploads over tus 1.0.0 at `/api/v1/uploads/`: core, creation,
//! creation-with-upload, termination, expiration and checksum (sha1, sha256), plus
//! `GET /api/v1/uploads/{id}` telling what became of an upload.
//!
//! The routes translate tus headers into [`FileService`] calls and back; every answer,
//! errors and 401s included, carries `Tus-Resumable`.

use std::sync::Arc;

use base64::Engine;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error_response;
use crate::auth::Auth;
use crate::catalog::{ResumableState, ResumableUpload};
use crate::error::{Error, Result};
use crate::model::UserId;
use crate::service::resumable::{Checksum, ResumableFields};
use crate::service::FileService;

const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
/// The body of a `PATCH` (and of a `POST` that carries the first bytes).
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// What a route gets of a request: method (after `X-HTTP-Method-Override`), headers, body.
struct TusRequest {
    method: Method,
    headers: HeaderMap,
    body: super::BodyChunks,
}

pub(super) fn routes(service: Arc<FileService>, auth: Arc<Auth>) -> BoxedFilter<(Response,)> {
    let request = warp::method()
        .and(warp::header::headers_cloned())
        .and(super::body_chunks())
        .map(|method: Method, headers: HeaderMap, body: super::BodyChunks| {
            let overridden = headers
                .get("x-http-method-override")
                .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
                .filter(|_| method == Method::POST);
            TusRequest {
                method: overridden.unwrap_or(method),
                headers,
                body,
            }
        })
        .boxed();
    let (with_service, with_auth) = {
        let (service, auth) = (service.clone(), auth.clone());
        (
            warp::any().map(move || service.clone()),
            warp::any().map(move || auth.clone()),
        )
    };
    let base = warp::path!("api" / "v1" / "uploads")
        .and(request.clone())
        .and(with_service.clone())
        .and(with_auth.clone())
        .then(
            |request: TusRequest, service: Arc<FileService>, auth: Arc<Auth>| async move {
                tus_answer(on_base(request, &service, &auth).await)
            },
        );
    let one = warp::path!("api" / "v1" / "uploads" / String)
        .and(request)
        .and(with_service)
        .and(with_auth)
        .then(
            |id: String, request: TusRequest, service: Arc<FileService>, auth: Arc<Auth>| async move {
                tus_answer(on_upload(&id, request, &service, &auth).await)
            },
        );
    base.or(one).unify().boxed()
}

/// `OPTIONS` (discovery) and `POST` (creation) at the base.
async fn on_base(request: TusRequest, service: &Arc<FileService>, auth: &Auth) -> Result<Response> {
    match request.method {
        Method::OPTIONS => {
            let mut response = empty(StatusCode::NO_CONTENT);
            let headers = response.headers_mut();
            headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
            headers.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
            headers.insert("tus-max-size", service.max_upload_bytes().into());
            headers.insert("tus-checksum-algorithm", HeaderValue::from_static(CHECKSUM_ALGORITHMS));
            Ok(response)
        }
        Method::POST => {
            let user = authenticate(&request.headers, auth).await?;
            check_version(&request.headers)?;
            create(user, request, service).await
        }
        _ => Ok(method_not_allowed("OPTIONS, POST")),
    }
}

/// `POST`: a new upload, with the first bytes if the body carries them.
async fn create(user: UserId, request: TusRequest, service: &Arc<FileService>) -> Result<Response> {
    let headers = &request.headers;
    if headers.contains_key("upload-defer-length") {
        return Err(Error::BadRequest {
            code: "invalid_upload_length",
            detail: "Upload-Defer-Length is not supported: send Upload-Length".into(),
        });
    }
    if headers.contains_key("upload-concat") {
        return Err(Error::BadRequest {
            code: "unsupported_extension",
            detail: "the concatenation extension is not supported".into(),
        });
    }
    let length = number_header(headers, "upload-length", "invalid_upload_length")?;
    let metadata = text_header(headers, "upload-metadata")?.unwrap_or_default();
    let fields = parse_metadata(&metadata)?;
    let carries_bytes = is_offset_octet_stream(headers) && content_length(headers) != Some(0);
    let checksum = if carries_bytes { parse_checksum(headers)? } else { None };
    let upload = service.create_resumable(user, length, metadata, fields).await?;
    let upload = if carries_bytes {
        match service
            .append_resumable(user, upload.id, 0, checksum, request.body)
            .await
        {
            Ok(upload) => upload,
            Err(e) => {
                let now = service.resumable(user, upload.id).await?;
                // The file was refused once every byte was there: the multipart route's
                // answer. Otherwise the upload exists: its address and offset let the
                // client go on.
                if now.state == ResumableState::Failed {
                    return Err(e);
                }
                now
            }
        }
    } else {
        upload
    };
    let mut response = with_upload_headers(empty(StatusCode::CREATED), &upload);
    let location = format!("/api/v1/uploads/{}", upload.id.simple());
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(Error::internal)?,
    );
    Ok(response)
}

/// `HEAD`, `PATCH`, `DELETE` and `GET` of one upload.
async fn on_upload(id: &str, request: TusRequest, service: &Arc<FileService>, auth: &Auth) -> Result<Response> {
    if !matches!(
        request.method,
        Method::HEAD | Method::PATCH | Method::DELETE | Method::GET
    ) {
        return Ok(method_not_allowed("HEAD, PATCH, DELETE, GET"));
    }
    let user = authenticate(&request.headers, auth).await?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| Error::NotFound(format!("no upload {id:?}: not an upload id")))?;
    if request.method == Method::GET {
        let upload = service.resumable(user, id).await?;
        let file = service.resumable_file(&upload).await?;
        return Ok(super::json(StatusCode::OK, &status_json(&upload, file.as_ref())));
    }
    check_version(&request.headers)?;
    match request.method {
        Method::HEAD => {
            let upload = service.resumable(user, id).await?;
            let mut response = with_upload_headers(empty(StatusCode::OK), &upload);
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert("upload-length", upload.length.into());
            if !upload.metadata.is_empty() {
                if let Ok(value) = HeaderValue::from_str(&upload.metadata) {
                    headers.insert("upload-metadata", value);
                }
            }
            Ok(response)
        }
        Method::PATCH => {
            if !is_offset_octet_stream(&request.headers) {
                return Err(Error::UnsupportedMediaType(format!(
                    "a PATCH's body must be sent as Content-Type: {OFFSET_OCTET_STREAM}"
                )));
            }
            let offset = number_header(&request.headers, "upload-offset", "invalid_upload_offset")?;
            let checksum = parse_checksum(&request.headers)?;
            let upload = service
                .append_resumable(user, id, offset, checksum, request.body)
                .await?;
            Ok(with_upload_headers(empty(StatusCode::NO_CONTENT), &upload))
        }
        _ => {
            service.terminate_resumable(user, id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
    }
}

/// Every answer carries `Tus-Resumable`; an error is the API's JSON error.
fn tus_answer(result: Result<Response>) -> Response {
    let mut response = result.unwrap_or_else(|e| {
        let mut response = error_response(&e);
        match &e {
            Error::UnsupportedVersion(_) => {
                response
                    .headers_mut()
                    .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
            }
            _ => {}
        }
        response
    });
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

fn empty(status: StatusCode) -> Response {
    warp::reply::with_status(warp::reply(), status).into_response()
}

/// `Upload-Offset` and, while it can still take bytes, `Upload-Expires`.
fn with_upload_headers(mut response: Response, upload: &ResumableUpload) -> Response {
    let headers = response.headers_mut();
    headers.insert("upload-offset", upload.offset.into());
    if upload.state == ResumableState::Receiving {
        // RFC 9110's HTTP date, as the expiration extension asks.
        let expires = upload.expires_at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(value) = HeaderValue::from_str(&expires) {
            headers.insert("upload-expires", value);
        }
    }
    response
}

/// What `GET /api/v1/uploads/{id}` says of an upload.
fn status_json(upload: &ResumableUpload, file: Option<&crate::model::FileRecord>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "id": upload.id,
        "state": upload.state,
        "offset": upload.offset,
        "length": upload.length,
        "file_name": upload.file_name,
        "session_id": upload.session_id,
        "created_at": upload.created_at,
        "expires_at": upload.expires_at,
    });
    if let Some(file) = file {
        body["file"] = serde_json::to_value(file.to_read()).unwrap_or_default();
    }
    if let Some(error) = upload
        .error
        .as_deref()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
    {
        body["error"] = error;
    }
    body
}

async fn authenticate(headers: &HeaderMap, auth: &Auth) -> Result<UserId> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|h| h.to_str().unwrap_or("<not text>"));
    let principal = auth.admit(header).await?;
    super::server::record_user(principal.user);
    Ok(principal.user)
}

fn check_version(headers: &HeaderMap) -> Result<()> {
    match headers.get("tus-resumable").map(HeaderValue::as_bytes) {
        Some(v) if v == TUS_VERSION.as_bytes() => Ok(()),
        Some(v) => Err(Error::UnsupportedVersion(format!(
            "Tus-Resumable {:?} is not a version this server speaks; it speaks {TUS_VERSION}",
            String::from_utf8_lossy(v)
        ))),
        None => Err(Error::UnsupportedVersion(format!(
            "send Tus-Resumable: {TUS_VERSION} with every tus request"
        ))),
    }
}

/// 405, as the router answers a method a route does not take, with `Allow`.
fn method_not_allowed(allowed: &'static str) -> Response {
    let body = serde_json::json!({
        "detail": format!("this address takes {allowed}"),
        "code": "method_not_allowed",
    });
    let mut response = super::json(StatusCode::METHOD_NOT_ALLOWED, &body);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

fn text_header(headers: &HeaderMap, name: &str) -> Result<Option<String>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| Error::BadRequest {
                code: "invalid_header",
                detail: format!("the {name} header is not text"),
            })
        })
        .transpose()
}

/// A header holding a whole number of bytes, which the request must carry.
fn number_header(headers: &HeaderMap, name: &str, code: &'static str) -> Result<u64> {
    let text = text_header(headers, name)?.ok_or_else(|| Error::BadRequest {
        code,
        detail: format!("send the {name} header (a whole number of bytes)"),
    })?;
    text.trim().parse::<u64>().map_err(|_| Error::BadRequest {
        code,
        detail: format!("{name} must be a whole number of bytes, not {text:?}"),
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn is_offset_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|essence| essence.eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

/// `Upload-Metadata`: comma-separated `key base64-value` pairs (a key may stand alone).
/// The file's fields are taken from it; other keys (`filetype`, …) are kept but unused.
fn parse_metadata(raw: &str) -> Result<ResumableFields> {
    let invalid = |detail: String| Error::BadRequest {
        code: "invalid_metadata",
        detail,
    };
    let mut fields = ResumableFields::default();
    let mut seen = std::collections::HashSet::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = pair.split(' ').filter(|w| !w.is_empty());
        let key = words.next().unwrap_or_default();
        let encoded = words.next().unwrap_or_default();
        if words.next().is_some() {
            return Err(invalid(format!(
                "Upload-Metadata pair {pair:?} is not `key base64-value`"
            )));
        }
        if !seen.insert(key.to_string()) {
            return Err(invalid(format!("Upload-Metadata has the key {key:?} twice")));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| invalid(format!("the value of {key:?} in Upload-Metadata is not base64")))?;
        let value = String::from_utf8(bytes)
            .map_err(|_| invalid(format!("the value of {key:?} in Upload-Metadata is not UTF-8 text")))?;
        match key {
            "file_name" => fields.file_name = Some(value),
            "session_id" => fields.session_id = Some(value),
            "description" => fields.description = Some(value),
            "filename" => fields.filename = Some(value),
            _ => {}
        }
    }
    Ok(fields)
}

/// `Upload-Checksum: <algorithm> <base64 digest>`, sha1 or sha256.
fn parse_checksum(headers: &HeaderMap) -> Result<Option<Checksum>> {
    let Some(raw) = text_header(headers, "upload-checksum")? else {
        return Ok(None);
    };
    let unsupported = |detail: String| Error::BadRequest {
        code: "unsupported_checksum",
        detail,
    };
    let (algorithm, encoded) = raw
        .trim()
        .split_once(' ')
        .ok_or_else(|| unsupported(format!("Upload-Checksum {raw:?} is not `algorithm base64-digest`")))?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unsupported(format!("the digest in Upload-Checksum {raw:?} is not base64")))?;
    let (checksum, size) = match algorithm.to_ascii_lowercase().as_str() {
        "sha1" => (Checksum::Sha1(digest.clone()), 20),
        "sha256" => (Checksum::Sha256(digest.clone()), 32),
        other => {
            return Err(unsupported(format!(
                "checksum algorithm {other:?} is not supported; use one of {CHECKSUM_ALGORITHMS}"
            )))
        }
    };
    if digest.len() != size {
        return Err(unsupported(format!(
            "a {algorithm} digest is {size} bytes, not {}",
            digest.len()
        )));
    }
    Ok(Some(checksum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn metadata_gives_the_files_fields_and_refuses_what_is_not_key_base64() {
        let raw = format!(
            "file_name {},session_id {}, filename {},is_private,description {}",
            b64("données 2024"),
            b64("0b9f4a3e-8f0c-4d7e-9a59-3c3a4f1c2b10"),
            b64("sales.csv"),
            b64("")
        );
        let fields = parse_metadata(&raw).unwrap();
        assert_eq!(fields.file_name.as_deref(), Some("données 2024"));
        assert_eq!(fields.filename.as_deref(), Some("sales.csv"));
        assert_eq!(fields.description.as_deref(), Some(""));
        for bad in ["file_name not-base64!", "a YQ== b", "a YQ==,a YQ=="] {
            let err = parse_metadata(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_metadata", "{bad}");
        }
    }

    #[test]
    fn checksums_are_sha1_or_sha256_of_the_right_size() {
        let mut headers = HeaderMap::new();
        let sha1 = base64::engine::general_purpose::STANDARD.encode([7u8; 20]);
        headers.insert("upload-checksum", format!("sha1 {sha1}").parse().unwrap());
        assert!(matches!(parse_checksum(&headers), Ok(Some(Checksum::Sha1(d))) if d == [7u8; 20]));
        for bad in [format!("md5 {sha1}"), format!("sha256 {sha1}"), "sha1".to_string()] {
            headers.insert("upload-checksum", bad.parse().unwrap());
            assert_eq!(
                parse_checksum(&headers).unwrap_err().code(),
                "unsupported_checksum",
                "{bad}"
            );
        }
    }
}

//! The one error type of the service and its mapping to HTTP statuses and stable codes.

use warp::http::StatusCode;

/// Everything a request can fail with. Each variant carries the `detail` shown to the
/// client; [`Error::status`] and [`Error::code`] are the only place statuses are chosen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request is well-formed HTTP but its content is not acceptable (bad name,
    /// bad session id, missing field, unparseable file...). `code` is stable for clients.
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    /// A backend (catalog, cache, storage) cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
    /// Too much work in progress; the client should retry after a moment.
    #[error("{0}")]
    Busy(String),
    /// The storage has no room for the bytes (ENOSPC): nothing was kept, and a retry
    /// only helps once space is freed.
    #[error("{0}")]
    InsufficientStorage(String),
    /// The client stopped sending in the middle of a request.
    #[error("{0}")]
    Timeout(String),
    /// A bug or an unexpected backend failure; the detail is logged, not shown.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            detail: detail.into(),
        }
    }

    /// The 409 for a name the user already has (said the same by every catalog).
    pub fn name_taken(name: &str) -> Self {
        Error::Conflict(format!("a file named {name:?} already exists for this user"))
    }

    /// The 507 for bytes that did not fit in the storage (ENOSPC or EDQUOT).
    pub fn storage_full() -> Self {
        Error::InsufficientStorage(
            "the storage folder is full: the upload was not kept; retry once space is freed, or send a smaller file"
                .into(),
        )
    }

    /// Whether a write failed for want of space (a full disk or a used-up quota). By kind,
    /// not only by OS code: `tempfile` wraps its errors with the path, keeping the kind.
    pub fn is_out_of_space(err: &std::io::Error) -> bool {
        use std::io::ErrorKind;
        matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || matches!(err.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
    }

    pub fn internal(context: impl std::fmt::Display) -> Self {
        Error::Internal(anyhow::anyhow!("{context}"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable(_) | Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::Invalid { code, .. } => code,
            Error::Unavailable(_) => "unavailable",
            Error::Busy(_) => "busy",
            Error::Timeout(_) => "timeout",
            Error::InsufficientStorage(_) => "insufficient_storage",
            Error::Internal(_) => "internal",
        }
    }

    /// The message for the client: internal errors are not described beyond this.
    pub fn detail(&self) -> String {
        match self {
            Error::Internal(_) => "internal server error; the server log has the cause".to_string(),
            other => other.to_string(),
        }
    }
}

impl warp::reject::Reject for Error {}

/// The bucket's answers: a missing object and a taken name are ordinary outcomes; any
/// other failure (no answer, refused credentials, a missing bucket, retries used up) is
/// the storage being unavailable, which the client may retry and which heals by itself.
impl From<object_store::Error> for Error {
    fn from(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { path, .. } => Error::NotFound(format!("{path} is not in the bucket")),
            object_store::Error::AlreadyExists { path, .. } => {
                Error::Conflict(format!("the bucket already holds {path}; it is never overwritten"))
            }
            object_store::Error::Precondition { path, .. } => {
                Error::Conflict(format!("{path} changed in the bucket meanwhile; try again"))
            }
            other => Error::Unavailable(format!("the storage bucket is not answering as it should: {other}")),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(err: tokio::task::JoinError) -> Self {
        Error::internal(format_args!("background task failed: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_storage_is_507_insufficient_storage() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(Error::is_out_of_space(&full) && Error::is_out_of_space(&quota));
        assert!(!Error::is_out_of_space(&std::io::Error::from_raw_os_error(libc::EIO)));
        // As a temporary file's write reports it: the OS error wrapped with the path (found
        // by the disk-full test, where the raw-code check alone gave 500).
        let wrapped = std::io::Error::new(full.kind(), format!("{full} at path \"/storage/.upload-x\""));
        assert_eq!(wrapped.raw_os_error(), None);
        assert!(Error::is_out_of_space(&wrapped));
        let err = Error::storage_full();
        assert_eq!(err.status().as_u16(), 507);
        assert_eq!(err.code(), "insufficient_storage");
        assert!(err.detail().contains("storage folder is full"), "{}", err.detail());
    }
}

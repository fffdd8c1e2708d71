//! The one error type of the service, with the stable code and the detail its clients see.
//! Backends' errors are converted where they enter (`crate::storage`, `crate::catalog`);
//! the HTTP status of each kind is chosen in `crate::http`.

/// Everything a request can fail with. Each variant carries the `detail` shown to the
/// client; [`Error::code`] is its stable code (HTTP and MCP alike).
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
    /// The catalog was asked to commit a change and its answer was lost (the connection
    /// broke after the COMMIT was sent): the change may or may not have happened. Only
    /// the catalog's conversion of a commit's answer makes this; whoever gets it must
    /// find out which it was before undoing anything (see `Records::settle_upload`).
    /// Clients see it as `unavailable`.
    #[error("{0}")]
    OutcomeUnknown(String),
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
    /// A request the protocol itself refuses (a resumable upload's headers that are
    /// missing or malformed), as opposed to content that is not acceptable (`Invalid`).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// A resumable upload's request speaks a protocol version this server does not.
    #[error("{0}")]
    UnsupportedVersion(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The resumable upload is at another offset than the request said.
    #[error("{0}")]
    OffsetMismatch(String),
    /// Another request (here or on a replica) is writing to this resumable upload.
    #[error("{0}")]
    Locked(String),
    /// The user's own unfinished resumable upload `id` holds the name.
    #[error("{detail}")]
    UploadInProgress { id: uuid::Uuid, detail: String },
    /// The resumable upload expired: nothing of it is kept.
    #[error("{0}")]
    Expired(String),
    /// What the request names existed but is no longer served (a share link expired or
    /// used up, or its file's content changed since it was made). `code` says which.
    #[error("{detail}")]
    Gone { code: &'static str, detail: String },
    /// The bytes sent do not have the checksum the request gave; they were not kept.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// The caller has used up its request budget for now.
    #[error("{detail}")]
    TooManyRequests {
        retry_after: std::time::Duration,
        detail: String,
    },
    /// The user's quota (stored bytes or file count) has no room for this: nothing was kept.
    #[error("{0}")]
    QuotaExceeded(String),
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

    /// The 409 for a name the user's own unfinished resumable upload `id` holds (said the
    /// same by every catalog).
    pub fn upload_in_progress(id: uuid::Uuid, name: &str) -> Self {
        Error::UploadInProgress {
            id,
            detail: format!(
                "an unfinished upload named {name:?} is already in progress for this user (upload {id}): \
                 go on with it, or terminate it (DELETE /api/v1/uploads/{id}) to start again"
            ),
        }
    }

    /// The 507 for bytes that did not fit in the storage (ENOSPC or EDQUOT).
    pub fn storage_full() -> Self {
        Error::InsufficientStorage(
            "the storage folder is full: the upload was not kept; retry once space is freed, or send a smaller file"
                .into(),
        )
    }

    pub fn internal(context: impl std::fmt::Display) -> Self {
        Error::Internal(anyhow::anyhow!("{context}"))
    }

    /// Whether the change this error ended may have happened all the same (its commit's
    /// answer was lost), as opposed to a definite failure.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown(_))
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::Invalid { code, .. } => code,
            Error::Unavailable(_) | Error::OutcomeUnknown(_) => "unavailable",
            Error::Busy(_) => "busy",
            Error::Timeout(_) => "timeout",
            Error::InsufficientStorage(_) => "insufficient_storage",
            Error::BadRequest { code, .. } => code,
            Error::UnsupportedVersion(_) => "unsupported_tus_version",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::OffsetMismatch(_) => "offset_mismatch",
            Error::Locked(_) => "upload_locked",
            Error::UploadInProgress { .. } => "upload_in_progress",
            Error::Expired(_) => "upload_expired",
            Error::Gone { code, .. } => code,
            Error::ChecksumMismatch(_) => "checksum_mismatch",
            Error::TooManyRequests { .. } => "rate_limited",
            Error::QuotaExceeded(_) => "quota_exceeded",
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

impl From<tokio::task::JoinError> for Error {
    fn from(err: tokio::task::JoinError) -> Self {
        Error::internal(format_args!("background task failed: {err}"))
    }
}

//! Reads a multipart upload form part by part, streaming the `file` part to the service without buffering it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use futures_util::{StreamExt, TryStreamExt};
use warp::multipart::{FormData, Part};

use crate::error::{Error, Result};
use crate::model::{FileRecord, UserId};
use crate::service::{FileService, FormPart, MAX_TEXT_FIELD_BYTES};

/// After refusing an upload early (413, 409, 422 before the end of the body), read on a
/// little so that clients which send the whole body before reading the answer (Python's
/// `requests`, for one) see the status instead of a reset connection.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Handles `POST /files/`: fields `file_name`, `session_id`, `description`, `file`, in any
/// order, read one at a time as the service asks for them.
pub async fn handle(service: &Arc<FileService>, user: UserId, mut form: FormData) -> Result<FileRecord> {
    let parts = (&mut form).then(form_part);
    let result = service.upload(user, Box::pin(parts)).await;
    if matches!(&result, Err(e) if !matches!(e, Error::Timeout(_))) {
        drain_form(&mut form).await;
    }
    result
}

/// A part of the form as the service takes it: text fields read whole, the file as a stream.
async fn form_part(part: std::result::Result<Part, warp::Error>) -> Result<FormPart> {
    let part = part.map_err(malformed)?;
    Ok(match part.name() {
        "file" => FormPart::File {
            filename: part.filename().map(str::to_string),
            chunks: Box::pin(
                part.stream()
                    .map_ok(|mut buf| buf.copy_to_bytes(buf.remaining()))
                    .map_err(malformed),
            ),
        },
        "file_name" => FormPart::FileName(text(part, "file_name").await?),
        "session_id" => FormPart::SessionId(text(part, "session_id").await?),
        "description" => FormPart::Description(text(part, "description").await?),
        // Unknown parts are read and ignored, as the original's form parser did.
        _ => {
            drain(part).await?;
            FormPart::Other
        }
    })
}

/// A text field, at most `MAX_TEXT_FIELD_BYTES` long and valid UTF-8.
async fn text(part: Part, name: &str) -> Result<String> {
    let mut buf = Vec::new();
    let mut stream = part.stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(malformed)?;
        if buf.len() + chunk.remaining() > MAX_TEXT_FIELD_BYTES {
            return Err(Error::invalid(
                "field_too_long",
                format!("the `{name}` field is longer than {MAX_TEXT_FIELD_BYTES} bytes"),
            ));
        }
        buf.extend_from_slice(chunk.chunk());
    }
    String::from_utf8(buf).map_err(|_| Error::invalid("invalid_field", format!("the `{name}` field is not UTF-8 text")))
}

/// Reads and drops what is left of the body, within `DRAIN_LIMIT` and `DRAIN_BYTES`.
async fn drain_form(form: &mut FormData) {
    let mut budget = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while let Some(Ok(part)) = form.next().await {
            let mut stream = part.stream();
            while let Some(Ok(chunk)) = stream.next().await {
                budget = budget.saturating_sub(chunk.remaining());
                if budget == 0 {
                    return;
                }
            }
        }
    })
    .await;
}

async fn drain(part: Part) -> Result<()> {
    let mut stream = part.stream();
    while let Some(chunk) = stream.next().await {
        chunk.map_err(malformed)?;
    }
    Ok(())
}

fn malformed(err: warp::Error) -> Error {
    Error::invalid(
        "invalid_multipart",
        format!("the multipart body could not be read: {err}"),
    )
}

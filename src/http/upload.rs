//! Reads a multipart upload form part by part, streaming the `file` part to the service without buffering it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use futures_util::{StreamExt, TryStreamExt};
use warp::multipart::{FormData, Part};

use crate::error::{Error, Result};
use crate::model::{FileRecord, UserId};
use crate::service::{FileService, ReceivedFile, UploadFields, MAX_TEXT_FIELD_BYTES};

/// After refusing an upload early (413, 409, 422 before the end of the body), read on a
/// little so that clients which send the whole body before reading the answer (Python's
/// `requests`, for one) see the status instead of a reset connection.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Handles `POST /files/`: fields `file_name`, `session_id`, `description`, `file`, in any order.
pub async fn handle(service: &Arc<FileService>, user: UserId, mut form: FormData) -> Result<FileRecord> {
    let _permit = service.upload_permit()?;
    let result = receive_and_store(service, user, &mut form).await;
    if matches!(&result, Err(e) if !matches!(e, Error::Timeout(_))) {
        drain_form(&mut form).await;
    }
    result
}

async fn receive_and_store(service: &Arc<FileService>, user: UserId, form: &mut FormData) -> Result<FileRecord> {
    let mut fields = UploadFields::default();
    let mut file: Option<ReceivedFile> = None;
    while let Some(part) = form.next().await {
        let part = part.map_err(malformed)?;
        match part.name() {
            "file" => {
                if file.is_some() {
                    return Err(Error::invalid(
                        "duplicate_field",
                        "the form has more than one `file` part",
                    ));
                }
                let filename = part.filename().map(str::to_string);
                service.precheck_upload(user, &fields, filename.as_deref()).await?;
                let chunks = part
                    .stream()
                    .map_ok(|mut buf| buf.copy_to_bytes(buf.remaining()))
                    .map_err(malformed);
                file = Some(service.receive_file(filename.as_deref(), Box::pin(chunks)).await?);
            }
            "file_name" => fields.file_name = Some(text(part, "file_name").await?),
            "session_id" => fields.session_id = Some(text(part, "session_id").await?),
            "description" => fields.description = Some(text(part, "description").await?),
            // Unknown parts are read and ignored, as the original's form parser did.
            _ => drain(part).await?,
        }
    }
    let file = file.ok_or_else(|| Error::invalid("missing_field", "the multipart form has no `file` field"))?;
    service.store_upload(user, fields, file).await
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

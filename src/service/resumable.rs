//! Resumable uploads (tus): the file's fields are checked at creation, before any byte;
//! each request's bytes go through the intake into a stored part; once the last byte is
//! there, the parts are read back in order through the same intake and pipeline as a
//! multipart upload, and the file gets the upload's id.
//!
//! One request at a time writes to an upload (the catalog row's holder, see
//! [`ResumableUploads`]); a request cut off keeps the bytes that arrived. Expired
//! uploads are removed by the periodic pass, and a completion that a stopped process
//! left is taken over by another.
//!
//! [`ResumableUploads`]: crate::catalog::ResumableUploads

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures_util::Stream;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::upload::{upload_format, Arrived, SizeLimit, Taken, UploadFields};
use super::{check_description, FileService};
use crate::catalog::{ResumableState, ResumableUpload};
use crate::error::{Error, Result};
use crate::model::{parse_session_id, validate_file_name, FileRecord, UserId};
use crate::storage::UploadSink;

/// The file's fields as a client announced them (any may be missing).
#[derive(Debug, Default)]
pub struct ResumableFields {
    pub file_name: Option<String>,
    pub session_id: Option<String>,
    pub description: Option<String>,
    pub filename: Option<String>,
}

/// A checksum a client sent with a request's bytes.
#[derive(Debug, Clone)]
pub enum Checksum {
    Sha1(Vec<u8>),
    Sha256(Vec<u8>),
}

/// Parts are read back this much at a time.
const READ_BACK_CHUNK: usize = 256 * 1024;

impl FileService {
    /// Creates a resumable upload of `length` bytes after checking its fields as a
    /// multipart upload's are checked, and the name against the user's files and
    /// unfinished uploads. `metadata` is kept as sent. An upload of no bytes is complete
    /// at once (the answer waits for its commit).
    pub async fn create_resumable(
        self: &Arc<Self>,
        user: UserId,
        length: u64,
        metadata: String,
        fields: ResumableFields,
    ) -> Result<ResumableUpload> {
        let max = self.limits.max_upload_bytes;
        if length > max {
            return Err(Error::PayloadTooLarge(format!(
                "Upload-Length {length} is larger than the limit of {max} bytes (MAX_UPLOAD_BYTES)"
            )));
        }
        // The length is known: a file that cannot fit the user's quota now is refused before
        // any byte is sent. Completion checks again, in the transaction that reserves it.
        self.precheck_quota(user, Some(length)).await?;
        let required = |field: &Option<String>, name: &str| {
            field
                .clone()
                .ok_or_else(|| Error::invalid("missing_field", format!("Upload-Metadata has no `{name}`")))
        };
        let file_name = validate_file_name(&required(&fields.file_name, "file_name")?)?.to_string();
        let session_id = parse_session_id(&required(&fields.session_id, "session_id")?)?;
        let description = required(&fields.description, "description")?;
        check_description(&description)?;
        let filename = fields.filename.clone().ok_or_else(|| {
            Error::invalid(
                "missing_filename",
                "Upload-Metadata has no `filename`; send the file's own name, with its format's extension (*.csv, *.parquet, *.xlsx, …)",
            )
        })?;
        upload_format(Some(&filename))?;
        let taken = file_name.clone();
        if self.with_catalog(move |c| c.get_file(user, &taken)).await?.is_some() {
            return Err(Error::name_taken(&file_name));
        }
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
        let upload = ResumableUpload {
            id: Uuid::new_v4(),
            user_id: user,
            file_name,
            session_id,
            description,
            filename,
            metadata,
            length,
            offset: 0,
            parts: Vec::new(),
            state: ResumableState::Receiving,
            error: None,
            created_at: now,
            expires_at: self.resumable_expiry(),
        };
        let created = upload.clone();
        self.with_catalog(move |c| c.create_resumable(&created)).await?;
        if length > 0 {
            return Ok(upload);
        }
        // No bytes to wait for: it is complete at once (recording it at its length makes
        // it completing, held by this process).
        let id = upload.id;
        self.with_catalog(move |c| c.hold_resumable(id)).await?;
        let recorded = upload.clone();
        if !self.with_catalog(move |c| c.record_part(&recorded, 0)).await? {
            return Err(Error::internal("a new empty resumable upload could not be completed"));
        }
        let complete = upload.clone();
        self.to_completion(move |s| async move { s.complete_resumable(complete).await })
            .await?;
        self.resumable(user, id).await
    }

    /// The user's upload `id`: `NotFound` if it is another user's or gone, `Expired` if
    /// it is past its expiry (the periodic pass removes it soon).
    pub async fn resumable(&self, user: UserId, id: Uuid) -> Result<ResumableUpload> {
        let upload = self.with_catalog(move |c| c.get_resumable(id)).await?;
        let upload = upload.filter(|u| u.user_id == user).ok_or_else(|| {
            Error::NotFound(format!(
                "no upload {id}: it never existed, was terminated or has expired"
            ))
        })?;
        if upload.expires_at <= Utc::now() && upload.state != ResumableState::Completing {
            return Err(Error::Expired(format!(
                "upload {id} expired at {}; nothing of it is kept: start a new upload",
                upload.expires_at.to_rfc3339()
            )));
        }
        Ok(upload)
    }

    /// The file a done upload became (`None` while it is not done, or if the file was
    /// deleted since).
    pub async fn resumable_file(&self, upload: &ResumableUpload) -> Result<Option<FileRecord>> {
        if upload.state != ResumableState::Done {
            return Ok(None);
        }
        let id = upload.id;
        Ok(self.with_catalog(move |c| c.get_by_id(id)).await?.map(|mut r| {
            r.profile_json.clear();
            r
        }))
    }

    /// Takes a request's bytes for upload `id` at `offset` (which must be the upload's):
    /// holds the upload, streams the bytes through the intake into a new part, and
    /// records it. A request cut off keeps what arrived (unless it carried a checksum,
    /// which then cannot be checked). When the last byte arrives the file is committed
    /// before this returns. Returns the upload as it now is.
    ///
    /// Runs on its own task: a client that goes away drops the request, and what arrived
    /// must still be kept and the upload let go.
    pub async fn append_resumable<S>(
        self: &Arc<Self>,
        user: UserId,
        id: Uuid,
        offset: u64,
        checksum: Option<Checksum>,
        chunks: S,
    ) -> Result<ResumableUpload>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send + 'static,
    {
        self.to_completion(move |s| async move { s.append(user, id, offset, checksum, chunks).await })
            .await
    }

    async fn append<S>(
        self: &Arc<Self>,
        user: UserId,
        id: Uuid,
        offset: u64,
        checksum: Option<Checksum>,
        chunks: S,
    ) -> Result<ResumableUpload>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        let _permit = self.upload_permit()?;
        check_receiving(&self.resumable(user, id).await?, offset)?;
        if !self.with_catalog(move |c| c.hold_resumable(id)).await? {
            return Err(Error::Locked(format!(
                "another request is writing to upload {id}; retry once it ends"
            )));
        }
        let appended = async {
            // Read again under the hold: a request that ended just before may have moved it on.
            let upload = self.resumable(user, id).await?;
            check_receiving(&upload, offset)?;
            self.append_held(upload, checksum, chunks).await
        }
        .await;
        // Whatever happened, a receiving upload is let go (a completing one is its
        // completion's to end).
        if let Err(e) = self.with_catalog(move |c| c.release_resumable(id)).await {
            tracing::warn!(error = %e.detail(), %id, "could not let go of a resumable upload; its hold ends with this process's lease");
        }
        let upload = appended?;
        if upload.state == ResumableState::Completing {
            self.complete_resumable(upload).await?;
            return self.resumable(user, id).await;
        }
        Ok(upload)
    }

    /// The bytes of one request into a part of the held `upload`, recorded.
    async fn append_held<S>(
        &self,
        mut upload: ResumableUpload,
        checksum: Option<Checksum>,
        chunks: S,
    ) -> Result<ResumableUpload>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        let remaining = upload.length - upload.offset;
        let limit = SizeLimit {
            max: remaining,
            refusal: format!(
                "the request sends more than the {remaining} bytes left of Upload-Length {}; nothing of it was kept",
                upload.length
            ),
            over_quota: false,
            sha1: matches!(checksum, Some(Checksum::Sha1(_))),
        };
        let label = format!("resumable upload {}", upload.id);
        let sink = self.with_storage(move |s| s.begin_upload(false, &label)).await?;
        let Taken {
            upload: sink,
            kept,
            arrived,
        } = self.take_in(chunks, sink, None, &limit).await?;
        // What to keep of the bytes that arrived, and what to answer.
        let (keep, outcome) = match (arrived, &checksum) {
            (Ok(arrived), Some(expected)) if !checksum_matches(expected, &arrived) => (
                false,
                Err(Error::ChecksumMismatch(
                    "the bytes sent do not match Upload-Checksum; they were not kept: send them again".into(),
                )),
            ),
            (Ok(_), _) => (true, Ok(())),
            // A checksum covers the whole request: part of it cannot be checked. Bytes
            // past the upload's length are refused whole.
            (Err(e), Some(_)) | (Err(e @ Error::PayloadTooLarge(_)), None) => (false, Err(e)),
            // Cut off: what arrived is kept, for the client to continue from.
            (Err(e), None) => (true, Err(e)),
        };
        if !keep || kept == 0 {
            self.discard_upload(sink).await;
            return outcome.map(|()| upload);
        }
        let from = upload.offset;
        let part = format!(
            "{}-{from:020}-{}",
            upload.id.simple(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        self.keep_part(sink, part.clone()).await?;
        upload.offset = from + kept;
        upload.parts.push(part.clone());
        upload.expires_at = self.resumable_expiry();
        if upload.offset == upload.length {
            upload.state = ResumableState::Completing;
        }
        let recorded = upload.clone();
        if !self.with_catalog(move |c| c.record_part(&recorded, from)).await? {
            // Terminated (or expired) while the bytes arrived: nothing of it is kept.
            let _ = self.with_storage(move |s| s.remove_parts(&part)).await;
            return Err(Error::NotFound(format!(
                "upload {} was terminated while its bytes arrived; nothing of it is kept",
                upload.id
            )));
        }
        // Every byte there: the upload is complete whatever became of the request.
        if upload.state == ResumableState::Completing {
            return Ok(upload);
        }
        outcome.map(|()| upload)
    }

    /// Makes a finished sink's bytes the stored part `part`.
    pub(super) async fn keep_part(&self, sink: Box<dyn UploadSink>, part: String) -> Result<()> {
        self.with_storage(move |_| {
            let mut sink = sink;
            sink.finish()?;
            sink.keep_as_part(&part)
        })
        .await
    }

    /// Commits a completing upload held by this process: its parts, read back in order,
    /// go through the intake and the multipart upload's pipeline. Ends the upload done or
    /// failed (with the refusal, which is also returned); a failure of a backend leaves
    /// it completing for the periodic pass to try again.
    pub(super) async fn complete_resumable(self: &Arc<Self>, upload: ResumableUpload) -> Result<FileRecord> {
        let id = upload.id;
        let committed = self.commit_parts(&upload).await;
        // Already committed (by this process before it lost track, or by recovery of the
        // pipeline's own reservation): the file is the upload's.
        let committed = match committed {
            Err(e) => match self.with_catalog(move |c| c.get_by_id(id)).await {
                Ok(Some(record)) => Ok(record),
                _ => Err(e),
            },
            ok => ok,
        };
        let outcome = match &committed {
            Ok(_) => Some(None),
            Err(e) if retryable(e) => None,
            Err(e) => Some(Some(
                serde_json::json!({ "code": e.code(), "detail": e.detail() }).to_string(),
            )),
        };
        match outcome {
            Some(error) => {
                self.with_catalog(move |c| c.finish_resumable(id, error.as_deref()))
                    .await?;
                let prefix = id.simple().to_string();
                if let Err(e) = self.with_storage(move |s| s.remove_parts(&prefix)).await {
                    tracing::warn!(error = %e.detail(), %id, "could not remove a finished upload's parts");
                }
            }
            None => {
                tracing::warn!(%id, "a resumable upload could not be committed for now; the periodic pass tries again");
                let _ = self.with_catalog(move |c| c.release_resumable(id)).await;
            }
        }
        committed
    }

    async fn commit_parts(self: &Arc<Self>, upload: &ResumableUpload) -> Result<FileRecord> {
        let fields = UploadFields {
            file_name: Some(upload.file_name.clone()),
            session_id: Some(upload.session_id.to_string()),
            description: Some(upload.description.clone()),
            record_id: Some(upload.id),
        };
        let file = self
            .receive_file(Some(&upload.filename), self.read_parts(upload.parts.clone()), None)
            .await?;
        self.store_upload(upload.user_id, fields, file).await
    }

    /// The stored parts' bytes in order, as a stream (read on the blocking pool).
    pub(super) fn read_parts(&self, parts: Vec<String>) -> impl Stream<Item = Result<Bytes>> + Unpin {
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(4);
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            let send_all = || -> Result<()> {
                for part in &parts {
                    let content = storage
                        .open_part(part)?
                        .ok_or_else(|| Error::internal(format!("part {part} of a resumable upload is missing")))?;
                    let mut reader = content.into_reader()?;
                    loop {
                        let mut buf = vec![0u8; READ_BACK_CHUNK];
                        let n = read_full(&mut reader, &mut buf)
                            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("reading a part back")))?;
                        if n == 0 {
                            break;
                        }
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return Ok(()); // the intake stopped; it says why
                        }
                    }
                }
                Ok(())
            };
            if let Err(e) = send_all() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// Removes the user's upload `id` and every byte of it. A done or failed upload is
    /// only forgotten (its file, if any, stays). `Locked` while it is being committed.
    pub async fn terminate_resumable(&self, user: UserId, id: Uuid) -> Result<()> {
        let upload = self.with_catalog(move |c| c.get_resumable(id)).await?;
        match upload {
            Some(u) if u.user_id == user => {}
            _ => {
                return Err(Error::NotFound(format!(
                    "no upload {id}: it never existed, was terminated or has expired"
                )))
            }
        }
        if self.with_catalog(move |c| c.remove_resumable(id)).await?.is_none() {
            return Err(Error::Locked(format!(
                "upload {id} is being committed; it cannot be terminated now (GET tells what became of it)"
            )));
        }
        let prefix = id.simple().to_string();
        self.with_storage(move |s| s.remove_parts(&prefix)).await?;
        Ok(())
    }

    /// Expiry of an upload continued now.
    fn resumable_expiry(&self) -> chrono::DateTime<Utc> {
        let expires = chrono::TimeDelta::from_std(self.limits.upload_expires).unwrap_or(chrono::TimeDelta::days(1));
        chrono::SubsecRound::trunc_subsecs(Utc::now() + expires, 3)
    }

    /// The periodic pass's share (blocking): removes expired uploads with their parts,
    /// frees uploads whose writer stopped, and queues the completions a stopped process
    /// left. Returns how many uploads it removed or took over.
    pub(super) fn recover_resumables(&self, all_others: bool) -> Result<usize> {
        let expired = self.catalog.remove_expired_resumables()?;
        for upload in &expired {
            self.storage.remove_parts(&upload.id.simple().to_string())?;
            tracing::info!(id = %upload.id, file = %upload.file_name, user = upload.user_id, "removed an expired resumable upload");
        }
        let stalled = self.catalog.claim_abandoned_resumables(all_others)?;
        let count = expired.len() + stalled.len();
        if !stalled.is_empty() {
            self.stalled_completions
                .lock()
                .expect("the stalled completions' lock is never poisoned")
                .extend(stalled);
        }
        Ok(count)
    }

    /// Completes the uploads [`FileService::recover_resumables`] took over.
    pub(super) async fn complete_stalled(self: &Arc<Self>) {
        let stalled = std::mem::take(
            &mut *self
                .stalled_completions
                .lock()
                .expect("the stalled completions' lock is never poisoned"),
        );
        for upload in stalled {
            let (id, name) = (upload.id, upload.file_name.clone());
            match self.complete_resumable(upload).await {
                Ok(_) => tracing::info!(%id, file = %name, "completed a resumable upload a stopped process left"),
                Err(e) => {
                    tracing::warn!(%id, file = %name, error = %e.detail(), "a resumable upload a stopped process left was not committed")
                }
            }
        }
    }
}

/// Refuses a request's bytes unless `upload` is receiving them at `offset`.
fn check_receiving(upload: &ResumableUpload, offset: u64) -> Result<()> {
    if upload.state != ResumableState::Receiving {
        return Err(Error::OffsetMismatch(format!(
            "upload {} already has all of its {} bytes (it is {})",
            upload.id,
            upload.length,
            upload.state.as_str()
        )));
    }
    if offset != upload.offset {
        return Err(Error::OffsetMismatch(format!(
            "Upload-Offset is {offset} but upload {} is at {}; send the bytes from there (HEAD tells the offset)",
            upload.id, upload.offset
        )));
    }
    Ok(())
}

/// A backend that failed for now (the catalog or bucket away, too much work): the
/// upload's bytes are all there, so its commit is tried again rather than refused.
fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable(_) | Error::OutcomeUnknown(_) | Error::Busy(_) | Error::Internal(_)
    )
}

/// Whether the bytes that arrived have the checksum the client sent.
fn checksum_matches(expected: &Checksum, arrived: &Arrived) -> bool {
    match expected {
        Checksum::Sha1(digest) => arrived.sha1.as_deref() == Some(digest.as_slice()),
        Checksum::Sha256(digest) => hex::encode(digest) == arrived.sha256,
    }
}

/// Reads until `buf` is full or the reader ends.
fn read_full(reader: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

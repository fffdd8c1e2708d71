//! One intake for every byte that arrives (chunks in; size, SHA-256 and a profile out; bytes into a storage upload), and the upload of a file through it: permit, checks, receive, store.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::quotas::ByteRoom;
use super::recovery::Unsettled;
use super::{analysis_error, check_description, stall_for_test, FileService};
use crate::analysis;
use crate::error::{Error, Result};
use crate::formats::{self, Format, FormatError};
use crate::metrics::metrics;
use crate::model::{new_rev, parse_session_id, validate_file_name, FileRecord, UserId};
use crate::storage::chunks::ChunkReader;
use crate::storage::{object_name, UploadSink};

/// One part of an upload form, as the route reads it: text fields whole, the file as
/// a stream of its bytes (read before the next part is asked for).
pub enum FormPart {
    FileName(String),
    SessionId(String),
    Description(String),
    File {
        filename: Option<String>,
        chunks: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
    },
    /// A part the form may carry and the upload ignores (read and dropped by the route).
    Other,
}

/// The text fields of an upload form, as received (any may be missing).
#[derive(Debug, Default)]
pub(super) struct UploadFields {
    pub file_name: Option<String>,
    pub session_id: Option<String>,
    pub description: Option<String>,
    /// The id the file's record takes (a resumable upload's own); new if `None`.
    pub record_id: Option<Uuid>,
}

/// An upload's bytes, complete, on their way into storage (a temporary file of the folder,
/// or parts sent to the bucket), not yet visible under any name.
pub(super) struct ReceivedFile {
    upload: Box<dyn UploadSink>,
    format: Format,
    extension: String,
    size_bytes: u64,
    sha256: String,
    /// Analyzed while receiving, when an analysis slot was free.
    profile: Option<analysis::Profile>,
}

impl FileService {
    /// Uploads a file from its form's parts, in any order, with an upload slot held
    /// throughout: checks the fields seen before the file as soon as the file starts,
    /// receives it through the intake, then stores it (see [`FileService::store_upload`]).
    pub async fn upload<P>(self: &Arc<Self>, user: UserId, mut parts: P) -> Result<FileRecord>
    where
        P: Stream<Item = Result<FormPart>> + Unpin,
    {
        let _permit = self.upload_permit()?;
        let mut fields = UploadFields::default();
        let mut file: Option<ReceivedFile> = None;
        while let Some(part) = parts.next().await {
            match part? {
                FormPart::File { filename, chunks } => {
                    if file.is_some() {
                        return Err(Error::invalid(
                            "duplicate_field",
                            "the form has more than one `file` part",
                        ));
                    }
                    let room = self.precheck_upload(user, &fields, filename.as_deref()).await?;
                    file = Some(self.receive_file(filename.as_deref(), chunks, room).await?);
                }
                FormPart::FileName(name) => fields.file_name = Some(name),
                FormPart::SessionId(session) => fields.session_id = Some(session),
                FormPart::Description(description) => fields.description = Some(description),
                FormPart::Other => {}
            }
        }
        let file = file.ok_or_else(|| Error::invalid("missing_field", "the multipart form has no `file` field"))?;
        self.store_upload(user, fields, file).await
    }

    /// Checks what an upload's fields say before its bytes are read, so a bad name,
    /// session or extension, a name already taken or a full quota, fails fast. The same checks run
    /// again in [`FileService::store_upload`]; the catalog has the last word on names.
    /// Answers the bytes left of the user's byte quota (`None`: no byte limit).
    async fn precheck_upload(
        &self,
        user: UserId,
        fields: &UploadFields,
        filename: Option<&str>,
    ) -> Result<Option<ByteRoom>> {
        upload_format(filename)?;
        // A user at (or, after files dropped in storage, over) a limit is refused before
        // sending the bytes. The length is not known yet: the upload is cut off once it
        // passes the room left, and the exact check (racing uploads) is at reserve.
        let room = self.precheck_quota(user, None).await?;
        if let Some(raw) = &fields.session_id {
            parse_session_id(raw)?;
        }
        if let Some(name) = &fields.file_name {
            let name = validate_file_name(name)?.to_string();
            if self.with_catalog(move |c| c.get_file(user, &name)).await?.is_some() {
                return Err(Error::name_taken(fields.file_name.as_deref().unwrap_or_default()));
            }
        }
        Ok(room)
    }

    /// Streams an upload's bytes to the storage backend ([`Storage::begin_upload`]: a
    /// temporary file of the folder, or a multipart upload to the bucket) through the
    /// intake. On any error nothing of the upload is left. A file larger than `room`
    /// (what is left of the user's byte quota) is refused as soon as it passes it.
    ///
    /// [`Storage::begin_upload`]: crate::storage::Storage::begin_upload
    pub(super) async fn receive_file<S>(
        &self,
        filename: Option<&str>,
        chunks: S,
        room: Option<ByteRoom>,
    ) -> Result<ReceivedFile>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        let (format, extension) = upload_format(filename)?;
        // When an analysis slot is free, the file is analyzed while it arrives (the intake
        // forwards each chunk), so a large upload costs max(receive, analyze), not the sum.
        // Otherwise it is analyzed after it is complete, when a slot frees up.
        // Only delimited text can be read as it arrives; other formats are analyzed once the
        // whole file has landed, in `store_upload` (same request).
        let streamed = format.streaming().and_then(|text_format| {
            let permit = self.streamed_analyses.clone().try_acquire_owned().ok()?;
            Some((text_format, permit))
        });
        // An analysis after the fact reads a local file: the backend keeps a local copy
        // then (the folder backend always has one).
        let label = filename.unwrap_or_default().to_string();
        let local_copy = streamed.is_none();
        let upload = self.with_storage(move |s| s.begin_upload(local_copy, &label)).await?;
        let tap = streamed.map(|(text_format, permit)| {
            let (to_analysis, chunks) = mpsc::channel::<Result<Bytes>>(8);
            let timer = metrics().analysis_seconds.start_timer();
            let analysis = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let profile = analysis::profile_reader(ChunkReader::new(chunks), text_format);
                timer.observe_duration();
                profile.map_err(FormatError::from)
            });
            AnalysisTap { to_analysis, analysis }
        });
        let limit = match room {
            Some(room) if room.left < self.limits.max_upload_bytes => SizeLimit::quota_room(room),
            _ => SizeLimit::upload(self.limits.max_upload_bytes, "file"),
        };
        let Taken { upload, arrived, .. } = self.take_in(chunks, upload, tap, &limit).await?;
        // A cut-off or oversized upload, or a failed write, explains a failed analysis
        // of what arrived: `take_in` reports those first.
        let checked = arrived.and_then(|arrived| {
            let profile = arrived.profile.transpose().map_err(|e| analysis_error(e, &extension))?;
            Ok((arrived.size, arrived.sha256, profile))
        });
        // Complete: every byte durable where it is (fsynced, or every part sent).
        let (upload, checked) = match checked {
            Ok(checked) => {
                let mut upload = upload;
                let finished = tokio::task::spawn_blocking(move || {
                    let finished = upload.finish();
                    (upload, finished)
                });
                let (upload, finished) = finished.await?;
                (upload, finished.map(|()| checked))
            }
            Err(e) => (upload, Err(e)),
        };
        let (size_bytes, sha256, profile) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                self.discard_upload(upload).await;
                return Err(e);
            }
        };
        Ok(ReceivedFile {
            upload,
            format,
            extension,
            size_bytes,
            sha256,
            profile,
        })
    }

    /// The intake every byte that arrives goes through (an upload's file, a sync blob, a
    /// part of a resumable upload): streams `chunks` into `upload` while counting and
    /// hashing them, and hands each chunk to `tap`'s analysis if there is one. Memory
    /// stays at a few chunks (and, to a bucket, a few parts) whatever the size; more than
    /// `limit` allows is refused as soon as it is seen, and a sender quiet for the idle
    /// timeout is cut off. Waits for the writer (and the analysis) even on error, and
    /// gives the upload back unfinished with what arrived or why not, and how many bytes
    /// it holds either way: the caller finishes or discards it.
    pub(super) async fn take_in<S>(
        &self,
        mut chunks: S,
        upload: Box<dyn UploadSink>,
        tap: Option<AnalysisTap>,
        limit: &SizeLimit,
    ) -> Result<Taken>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        let (to_analysis, analysis) = tap.map(|t| (t.to_analysis, t.analysis)).unzip();
        let with_sha1 = limit.sha1;
        // The blocking writer takes chunks from a short queue, so receiving the next chunk
        // overlaps with writing and hashing the previous one. It hands the upload back
        // even when writing failed; it does not finish it: if this request is dropped
        // half-way (the channel closes all the same), the upload it returns to no one is
        // dropped, which aborts it.
        type Written = (Box<dyn UploadSink>, u64, Result<Digests>);
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let writer = tokio::task::spawn_blocking(move || -> Written {
            let mut upload = upload;
            let mut hasher = Sha256::new();
            let mut sha1 = with_sha1.then(sha1::Sha1::new);
            let mut kept = 0u64;
            let written = (|| {
                while let Some(chunk) = rx.blocking_recv() {
                    upload.write(&chunk)?;
                    kept += chunk.len() as u64;
                    hasher.update(&chunk);
                    if let Some(sha1) = &mut sha1 {
                        sha1.update(&chunk);
                    }
                    if let Some(to_analysis) = &to_analysis {
                        // A closed channel means the analysis already failed; it reports why.
                        let _ = to_analysis.blocking_send(Ok(chunk));
                    }
                }
                Ok(())
            })();
            let digests = written.map(|()| Digests {
                sha256: hasher.finalize().to_vec(),
                sha1: sha1.map(|h| h.finalize().to_vec()),
            });
            (upload, kept, digests)
        });
        let max = limit.max;
        let idle = self.limits.upload_idle_timeout;
        let mut size = 0u64;
        let mut analysis = analysis;
        // An analysis can only end before the data does by finding the file unreadable:
        // then stop receiving and say so now, instead of after the rest arrives.
        let mut ended_early = None;
        let received: Result<()> = async {
            loop {
                let analysis_ended = async {
                    match analysis.as_mut() {
                        Some(handle) => handle.await,
                        None => std::future::pending().await,
                    }
                };
                let next = tokio::select! {
                    ended = analysis_ended => {
                        ended_early = Some(ended);
                        break;
                    }
                    next = tokio::time::timeout(idle, chunks.next()) => next.map_err(|_| {
                        Error::Timeout(format!("the upload sent nothing for {} seconds", idle.as_secs()))
                    })?,
                };
                let Some(chunk) = next else { break };
                let chunk = chunk?;
                size += chunk.len() as u64;
                metrics().uploaded_bytes.inc_by(chunk.len() as u64);
                if size > max {
                    let detail = limit.refusal.clone();
                    return Err(match limit.over_quota {
                        true => Error::QuotaExceeded(detail),
                        false => Error::PayloadTooLarge(detail),
                    });
                }
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Ok(())
        }
        .await;
        drop(tx);
        let (upload, kept, written) = writer.await?;
        let profile = match (ended_early, analysis) {
            (Some(ended), _) => Some(ended?),
            (None, Some(handle)) => Some(handle.await?),
            (None, None) => None,
        };
        // What the writer holds is only worth keeping if it wrote it all without error.
        let kept = if written.is_ok() { kept } else { 0 };
        let arrived = received.and(written).map(|digests| Arrived {
            size,
            sha256: hex::encode(&digests.sha256),
            sha1: digests.sha1,
            profile,
        });
        Ok(Taken { upload, kept, arrived })
    }

    /// Abandons a received upload and waits until nothing of it is left (a failure to
    /// clean up is logged: the upload's own error is the one to report).
    pub(super) async fn discard_upload(&self, upload: Box<dyn UploadSink>) {
        let discarded = tokio::task::spawn_blocking(move || upload.discard()).await;
        match discarded.map_err(Error::from).and_then(|r| r) {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e.detail(), "could not remove what a refused upload left"),
        }
    }

    /// Validates the form, analyzes the received file, records it, moves its bytes into
    /// place and makes it the session's active file. All or nothing: on any error no
    /// record, no stored file and no active entry remain.
    pub(super) async fn store_upload(
        self: &Arc<Self>,
        user: UserId,
        fields: UploadFields,
        file: ReceivedFile,
    ) -> Result<FileRecord> {
        let stored = self
            .to_completion(move |s| async move { s.store_upload_steps(user, fields, file).await })
            .await?;
        self.make_tables_ahead(&stored);
        Ok(stored)
    }

    /// Hands the stored file to the tables-ahead worker, without waiting (the bytes are
    /// opened on a task of their own, then queued).
    fn make_tables_ahead(self: &Arc<Self>, stored: &FileRecord) {
        if !self.tables_ahead.enabled() {
            return;
        }
        let (service, user, name) = (self.clone(), stored.user_id, stored.file_name.clone());
        tokio::spawn(async move {
            // The record and bytes as they are now, checked to belong together (a table is
            // kept under its content hash).
            match service.open_content(user, &name).await {
                Ok((record, content)) => service.tables_ahead.offer(record, content),
                // Deleted or renamed meanwhile: its first query (if any) makes its table.
                Err(e) => tracing::debug!(error = %e.detail(), "could not open a new file to make its table ahead"),
            }
        });
    }

    async fn store_upload_steps(&self, user: UserId, fields: UploadFields, file: ReceivedFile) -> Result<FileRecord> {
        let file_name = validate_file_name(required(&fields.file_name, "file_name")?)?.to_string();
        let session = parse_session_id(required(&fields.session_id, "session_id")?)?;
        let description = required(&fields.description, "description")?.to_string();
        check_description(&description)?;

        let ReceivedFile {
            upload,
            format,
            extension,
            size_bytes,
            sha256,
            profile,
        } = file;
        let local_copy = upload.local_path().map(std::path::Path::to_path_buf);
        // Until the name is reserved, a failure discards the upload (aborts its parts).
        let reserved: Result<FileRecord> = async {
            let profile = match profile {
                Some(profile) => profile,
                None => {
                    let path = local_copy
                        .ok_or_else(|| Error::internal("an upload analyzed after it arrived has no local copy"))?;
                    self.analyze(path, format, &extension).await?
                }
            };
            let mut record = self
                .new_record(user, file_name, description, extension, &profile, size_bytes, sha256)
                .await?;
            record.id = fields.record_id.unwrap_or(record.id);
            // Reserve the name first: the unique index decides between concurrent uploads,
            // and the quota is checked in the same transaction (a refusal discards the
            // bytes received below).
            self.reserve_within_quota(record.clone()).await?;
            Ok(record)
        }
        .await;
        let record = match reserved {
            Ok(record) => record,
            Err(e) => {
                self.discard_upload(upload).await;
                return Err(e);
            }
        };
        let object = object_name(user, &record.file_name, &record.extension);
        let (id, name) = (record.id, record.file_name.clone());
        let persisted = {
            let object = object.clone();
            self.with_storage(move |_| upload.persist(&object)).await
        };
        if let Err(e) = persisted {
            self.with_catalog(move |c| c.abort_upload(id)).await?;
            return Err(e);
        }
        stall_for_test("upload", &name).await;

        // The user lock is a catalog call too: when it fails, the stored bytes and the
        // reservation must be undone like a failed commit, or they outlive the request.
        let committed = match self.lock_user(user).await {
            Ok(guard) => (self.with_catalog(move |c| c.commit_upload(id, Some(session))).await).map(|s| (guard, s)),
            Err(e) => Err(e),
        };
        let (_guard, stored) = match committed {
            Ok((guard, stored)) => (Some(guard), Arc::new(stored)),
            Err(e) => {
                // Undo, but only after the catalog says the upload is not committed: the
                // commit's answer may be what was lost, or recovery elsewhere may have
                // completed it (this process lost its lease while the catalog was away).
                let upload = Unsettled {
                    id,
                    user,
                    object,
                    session: Some(session),
                };
                let stored = Arc::new(self.settle_upload(upload, e).await?);
                // Committed after all: its cache entry is written under the lock as usual,
                // if the lock can be had.
                (self.lock_user(user).await.ok(), stored)
            }
        };
        self.feed_changed();
        self.cache_result(self.cache.put(user, session, stored.clone()).await);
        Ok(Arc::unwrap_or_clone(stored))
    }

    /// Analyzes a local file (one at a time per core); a file that does not parse is
    /// `unreadable_file` (422).
    async fn analyze(&self, path: std::path::PathBuf, format: Format, extension: &str) -> Result<analysis::Profile> {
        let _permit = self.analyses.acquire().await.map_err(Error::internal)?;
        let timer = metrics().analysis_seconds.start_timer();
        let profiled = tokio::task::spawn_blocking(move || formats::profile_path(&path, format)).await;
        timer.observe_duration();
        profiled?.map_err(|e| analysis_error(e, extension))
    }

    /// A new record for `user`'s file, from its analysis: the first version, made here.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn new_record(
        &self,
        user: UserId,
        file_name: String,
        description: String,
        extension: String,
        profile: &analysis::Profile,
        size_bytes: u64,
        sha256: String,
    ) -> Result<FileRecord> {
        let object = object_name(user, &file_name, &extension);
        // Milliseconds: what both catalogs keep, so a synced copy has the same date.
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
        Ok(FileRecord {
            id: Uuid::new_v4(),
            user_id: user,
            storage_uri: self.storage.uri(&object),
            storage_type: self.storage.storage_type().to_string(),
            description,
            summary: profile.summary(),
            extension,
            size_bytes,
            sha256,
            row_count: profile.row_count,
            column_count: profile.column_count,
            profile_json: serde_json::to_string(profile).map_err(Error::internal)?,
            created_at: now,
            updated_at: now,
            file_name,
            rev: new_rev(),
            rev_history: Vec::new(),
            origin: self.instance_id().await?,
        })
    }
}

/// An analysis that reads an upload while it arrives: the chunks go to `to_analysis`.
pub(super) struct AnalysisTap {
    to_analysis: mpsc::Sender<Result<Bytes>>,
    analysis: tokio::task::JoinHandle<std::result::Result<analysis::Profile, FormatError>>,
}

/// How much the intake takes of one stream, and which hashes it makes besides SHA-256.
pub(super) struct SizeLimit {
    pub max: u64,
    /// The 413's detail when more arrives.
    pub refusal: String,
    /// The limit is what is left of the user's byte quota: a refusal is 413
    /// `quota_exceeded`, not `payload_too_large`.
    pub over_quota: bool,
    /// Also hash the bytes with SHA-1 (the checksum tus clients send).
    pub sha1: bool,
}

impl SizeLimit {
    /// At most `MAX_UPLOAD_BYTES` of `what` (a file, a sync content).
    pub fn upload(max: u64, what: &str) -> SizeLimit {
        SizeLimit {
            max,
            refusal: format!("the {what} is larger than the limit of {max} bytes (MAX_UPLOAD_BYTES)"),
            over_quota: false,
            sha1: false,
        }
    }

    /// At most what is left of the user's byte quota.
    pub fn quota_room(room: ByteRoom) -> SizeLimit {
        SizeLimit {
            max: room.left,
            refusal: format!(
                "the storage quota would be exceeded: this user has {} of its {} bytes left and the file is \
                 larger; delete some files to make room",
                room.left, room.limit
            ),
            over_quota: true,
            sha1: false,
        }
    }
}

/// The upload back from the intake, with how many bytes it holds and what arrived.
pub(super) struct Taken {
    pub upload: Box<dyn UploadSink>,
    /// Bytes written to the upload without error (kept even when the stream failed
    /// later: a resumable upload keeps what arrived before a cut).
    pub kept: u64,
    pub arrived: Result<Arrived>,
}

struct Digests {
    sha256: Vec<u8>,
    sha1: Option<Vec<u8>>,
}

/// What the intake took in: every byte written (not yet finished), counted and hashed.
pub(super) struct Arrived {
    pub size: u64,
    pub sha256: String,
    /// When asked for ([`SizeLimit::sha1`]).
    pub sha1: Option<Vec<u8>>,
    /// The tap's analysis, if there was one: it may have found the bytes unreadable.
    pub profile: Option<std::result::Result<analysis::Profile, FormatError>>,
}

/// The format of an upload, from the extension of the uploaded part's filename.
pub(super) fn upload_format(filename: Option<&str>) -> Result<(Format, String)> {
    let filename = filename.ok_or_else(|| {
        Error::invalid(
            "missing_filename",
            "the `file` part has no filename; send it as a file named with its format's extension (*.csv, *.parquet, *.xlsx, …)",
        )
    })?;
    let ext = std::path::Path::new(filename)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match Format::from_extension(&ext) {
        Some(format) => Ok((format, ext)),
        None => Err(Error::invalid(
            "unsupported_extension",
            format!(
                "{filename:?} is not a supported file type; supported extensions: .{}",
                formats::EXTENSIONS.join(", .")
            ),
        )),
    }
}

fn required<'a>(field: &'a Option<String>, name: &str) -> Result<&'a str> {
    field
        .as_deref()
        .ok_or_else(|| Error::invalid("missing_field", format!("the multipart form has no `{name}` field")))
}

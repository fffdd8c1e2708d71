//! The business rules of the service: upload, list, activate, look up the active file and delete, over the catalog, cache and storage.
//!
//! `sync` holds the rules of replication between instances (the change feed, applying
//! another instance's changes, conflicts). HTTP handlers only translate requests into
//! these calls. Blocking backends (catalog,
//! storage, analysis) run on the blocking pool behind semaphores, so a burst of requests
//! queues instead of swamping two cores.

pub mod explore;
mod listing;
mod query;
mod recovery;
pub mod sync;

pub use query::{Download, QueryTarget};
pub use recovery::run as run_recovery;
pub use sync::{ApplyReport, ChangePage};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Mutex, MutexGuard, Semaphore};
use uuid::Uuid;

use crate::analysis;
use crate::cache::ActiveFileCache;
use crate::catalog::{Catalog, UserLock};
use crate::error::{Error, Result};
use crate::formats::{self, Format, FormatError};
use crate::metrics::metrics;
use crate::model::{
    new_rev, parse_session_id, validate_file_name, FileRecord, FileUpdate, ListQuery, SyncRecord, UserId,
};
use crate::storage::{object_name, Content, Storage, UploadSink};

/// Longest accepted `description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 64 * 1024;
/// A text part of the upload form may be this long: the longest description in
/// characters of four bytes.
pub const MAX_TEXT_FIELD_BYTES: usize = 4 * MAX_DESCRIPTION_CHARS;

/// The text fields of an upload form, as received (any may be missing).
#[derive(Debug, Default)]
pub struct UploadFields {
    pub file_name: Option<String>,
    pub session_id: Option<String>,
    pub description: Option<String>,
}

/// An upload's bytes, complete, on their way into storage (a temporary file of the folder,
/// or parts sent to the bucket), not yet visible under any name.
pub struct ReceivedFile {
    upload: Box<dyn UploadSink>,
    format: Format,
    extension: String,
    size_bytes: u64,
    sha256: String,
    /// Analyzed while receiving, when an analysis slot was free.
    profile: Option<analysis::Profile>,
}

/// Limits the service enforces, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload_bytes: u64,
    pub max_concurrent_analyses: usize,
    pub max_concurrent_uploads: usize,
    /// An upload that sends nothing for this long is cut off.
    pub upload_idle_timeout: Duration,
    pub max_concurrent_queries: usize,
    /// A query running longer is stopped.
    pub query_timeout: Duration,
}

/// Held for the whole of one upload; past `max_concurrent_uploads` none is given.
pub struct UploadPermit {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for UploadPermit {
    fn drop(&mut self) {
        metrics().uploads_in_progress.dec();
    }
}

pub struct FileService {
    catalog: Arc<dyn Catalog>,
    cache: Arc<dyn ActiveFileCache>,
    storage: Arc<dyn Storage>,
    /// Analyses are CPU-bound: at most one per core.
    analyses: Arc<Semaphore>,
    /// Analyses that run while an upload arrives are paced by the network: their own
    /// slots (one per core), so slow clients never hold up the analyses of others.
    streamed_analyses: Arc<Semaphore>,
    /// Catalog and storage calls block a thread each: bound how many at once.
    blocking_calls: Arc<Semaphore>,
    /// Serialises catalog-then-cache updates of one user, so a slow cache write can never
    /// re-insert an entry that a concurrent delete has just cleared.
    user_locks: Vec<Mutex<()>>,
    uploads: Arc<Semaphore>,
    limits: Limits,
    /// Set while the cache is failing, so the outage is logged once, not per request.
    cache_failing: AtomicBool,
    /// The catalog's instance id, read once.
    instance_id: OnceLock<String>,
    /// Woken after every change this process makes, for long-polling feed readers.
    feed: tokio::sync::Notify,
    /// Listing bodies by user and query, with the change number they were read at.
    listings: moka::future::Cache<listing::ListingKey, listing::CachedListing>,
    /// Queries and conversions running (each holds one until its work has stopped).
    queries: Arc<Semaphore>,
    /// The columnar copies queries read.
    copies: Arc<crate::query::ColumnarCache>,
}

impl FileService {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        cache: Arc<dyn ActiveFileCache>,
        storage: Arc<dyn Storage>,
        limits: Limits,
        copies: crate::query::ColumnarCache,
    ) -> FileService {
        let queries = Arc::new(Semaphore::new(limits.max_concurrent_queries.max(1)));
        FileService {
            catalog,
            cache,
            storage,
            analyses: Arc::new(Semaphore::new(limits.max_concurrent_analyses.max(1))),
            streamed_analyses: Arc::new(Semaphore::new(limits.max_concurrent_analyses.max(1))),
            blocking_calls: Arc::new(Semaphore::new(16)),
            user_locks: (0..64).map(|_| Mutex::new(())).collect(),
            uploads: Arc::new(Semaphore::new(limits.max_concurrent_uploads.max(1))),
            limits,
            cache_failing: AtomicBool::new(false),
            instance_id: OnceLock::new(),
            feed: tokio::sync::Notify::new(),
            listings: listing::new_cache(),
            queries,
            copies: Arc::new(copies),
        }
    }

    /// This instance's id (the origin of the versions made here).
    pub async fn instance_id(&self) -> Result<String> {
        if let Some(id) = self.instance_id.get() {
            return Ok(id.clone());
        }
        let id = self.with_catalog(|c| c.instance_id()).await?;
        Ok(self.instance_id.get_or_init(|| id).clone())
    }

    /// Tells long-polling feed readers that the catalog changed.
    fn feed_changed(&self) {
        self.feed.notify_waiters();
    }

    /// Runs a change of several steps (catalog, storage, cache) on its own task: a client
    /// hanging up drops the request's future, which must not stop the change half-way.
    async fn to_completion<T, F, Fut>(self: &Arc<Self>, steps: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        tokio::spawn(steps(self.clone())).await?
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn cache(&self) -> &Arc<dyn ActiveFileCache> {
        &self.cache
    }

    /// A slot for one upload, or `Error::Busy` when `max_concurrent_uploads` are running.
    pub fn upload_permit(&self) -> Result<UploadPermit> {
        let permit = self.uploads.clone().try_acquire_owned().map_err(|_| {
            Error::Busy(format!(
                "{} uploads are already in progress; retry shortly (MAX_CONCURRENT_UPLOADS)",
                self.limits.max_concurrent_uploads
            ))
        })?;
        metrics().uploads_in_progress.inc();
        Ok(UploadPermit { _permit: permit })
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    pub fn describe(&self) -> String {
        format!(
            "catalog: {}; cache: {}; storage: {}",
            self.catalog.describe(),
            self.cache.describe(),
            self.storage.describe()
        )
    }

    async fn with_catalog<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Catalog) -> Result<T> + Send + 'static,
    {
        let _permit = self.blocking_calls.acquire().await.map_err(Error::internal)?;
        let catalog = self.catalog.clone();
        let gauge = &metrics().catalog_calls_in_flight;
        gauge.inc();
        let result = tokio::task::spawn_blocking(move || f(&*catalog)).await;
        gauge.dec();
        result?
    }

    async fn with_storage<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Storage) -> Result<T> + Send + 'static,
    {
        let _permit = self.blocking_calls.acquire().await.map_err(Error::internal)?;
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || f(&*storage)).await?
    }

    fn user_lock(&self, user: UserId) -> &Mutex<()> {
        &self.user_locks[(user as u64 % self.user_locks.len() as u64) as usize]
    }

    /// Serialises one user's catalog-change-then-cache-write sequences: in this process
    /// always, and across every replica when the cache is shared (Redis) and the catalog
    /// can lock (PostgreSQL advisory lock). Without the shared lock, replica A's cache
    /// write after its commit could land after replica B's newer change or delete had
    /// cleared the entry, and every replica would serve A's stale file until the TTL.
    async fn lock_user(&self, user: UserId) -> Result<UserGuard<'_>> {
        let local = self.user_lock(user).lock().await;
        let shared = if self.cache.is_shared() {
            self.with_catalog(move |c| c.lock_user(user)).await?
        } else {
            None
        };
        Ok(UserGuard {
            _shared: shared,
            _local: local,
        })
    }

    /// Logs a cache failure the first time in a row it happens; the caller carries on
    /// with the catalog alone.
    fn cache_result<T>(&self, result: Result<T>) -> Option<T> {
        match result {
            Ok(v) => {
                if self.cache_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("active-file cache is answering again");
                }
                Some(v)
            }
            Err(e) => {
                if !self.cache_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "active-file cache failed; serving from the catalog until it recovers");
                }
                None
            }
        }
    }

    // ----- uploads -----

    /// Checks what an upload's fields say before its bytes are read, so a bad name,
    /// session or extension, or a name already taken, fails fast. The same checks run
    /// again in [`FileService::store_upload`]; the catalog has the last word on names.
    pub async fn precheck_upload(&self, user: UserId, fields: &UploadFields, filename: Option<&str>) -> Result<()> {
        upload_format(filename)?;
        if let Some(raw) = &fields.session_id {
            parse_session_id(raw)?;
        }
        if let Some(name) = &fields.file_name {
            let name = validate_file_name(name)?.to_string();
            if self.with_catalog(move |c| c.get_file(user, &name)).await?.is_some() {
                return Err(Error::name_taken(fields.file_name.as_deref().unwrap_or_default()));
            }
        }
        Ok(())
    }

    /// Streams an upload's bytes to the storage backend ([`Storage::begin_upload`]: a
    /// temporary file of the folder, or a multipart upload to the bucket) while counting
    /// and hashing them. Memory stays at a few chunks (and, to a bucket, a few parts)
    /// whatever the size; more than `MAX_UPLOAD_BYTES` is refused as soon as it is seen.
    /// On any error nothing of the upload is left.
    pub async fn receive_file<S>(&self, filename: Option<&str>, mut chunks: S) -> Result<ReceivedFile>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        let (format, extension) = upload_format(filename)?;
        // When an analysis slot is free, the file is analyzed while it arrives (the writer
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
        let streamed = streamed.map(|(text_format, permit)| {
            let (to_analysis, chunks) = std::sync::mpsc::sync_channel::<Bytes>(8);
            let timer = metrics().analysis_seconds.start_timer();
            let analysis = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let profile = analysis::profile_reader(ChunkReader::new(chunks), text_format);
                timer.observe_duration();
                profile.map_err(FormatError::from)
            });
            (to_analysis, analysis)
        });
        let (to_analysis, analysis) = streamed.unzip();
        // The blocking writer takes chunks from a short queue, so receiving the next chunk
        // overlaps with writing and hashing the previous one. It hands the upload back
        // even when writing failed, so it is discarded below either way; it does not
        // finish it: if this request is dropped half-way (the channel closes all the
        // same), the upload it returns to no one is dropped, which aborts it.
        type Written = (Box<dyn UploadSink>, Result<String>);
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let writer = tokio::task::spawn_blocking(move || -> Written {
            let mut upload = upload;
            let mut hasher = Sha256::new();
            let written = (|| {
                while let Some(chunk) = rx.blocking_recv() {
                    upload.write(&chunk)?;
                    hasher.update(&chunk);
                    if let Some(to_analysis) = &to_analysis {
                        // A closed channel means the analysis already failed; it reports why.
                        let _ = to_analysis.send(chunk);
                    }
                }
                Ok(())
            })();
            (upload, written.map(|()| hex::encode(hasher.finalize())))
        });
        let max = self.limits.max_upload_bytes;
        let idle = self.limits.upload_idle_timeout;
        let mut size_bytes = 0u64;
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
                size_bytes += chunk.len() as u64;
                metrics().uploaded_bytes.inc_by(chunk.len() as u64);
                if size_bytes > max {
                    return Err(Error::PayloadTooLarge(format!(
                        "the file is larger than the limit of {max} bytes (MAX_UPLOAD_BYTES)"
                    )));
                }
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Ok(())
        }
        .await;
        drop(tx);
        // Wait for the writer (and analysis) even on error, so what was written is
        // removed before the response goes out.
        let (upload, written) = writer.await?;
        let analyzed = match (ended_early, analysis) {
            (Some(ended), _) => Some(ended?),
            (None, Some(handle)) => Some(handle.await?),
            (None, None) => None,
        };
        // A cut-off or oversized upload, or a failed write, explains a failed analysis
        // of what arrived: report those first.
        let checked = received.and(written).and_then(|sha256| {
            let profile = analyzed.transpose().map_err(|e| analysis_error(e, &extension))?;
            Ok((sha256, profile))
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
        let (sha256, profile) = match checked {
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

    /// Abandons a received upload and waits until nothing of it is left (a failure to
    /// clean up is logged: the upload's own error is the one to report).
    async fn discard_upload(&self, upload: Box<dyn UploadSink>) {
        let discarded = tokio::task::spawn_blocking(move || upload.discard()).await;
        match discarded.map_err(Error::from).and_then(|r| r) {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e.detail(), "could not remove what a refused upload left"),
        }
    }

    /// Validates the form, analyzes the received file, records it, moves its bytes into
    /// place and makes it the session's active file. All or nothing: on any error no
    /// record, no stored file and no active entry remain.
    pub async fn store_upload(
        self: &Arc<Self>,
        user: UserId,
        fields: UploadFields,
        file: ReceivedFile,
    ) -> Result<FileRecord> {
        self.to_completion(move |s| async move { s.store_upload_steps(user, fields, file).await })
            .await
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
            let record = self
                .new_record(user, file_name, description, extension, &profile, size_bytes, sha256)
                .await?;
            // Reserve the name first: the unique index decides between concurrent uploads.
            let reserved = record.clone();
            self.with_catalog(move |c| c.reserve_upload(&reserved)).await?;
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
        let object = object_name(user, &record.file_name, &record.format);
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
            Ok((guard, stored)) => (guard, Arc::new(stored)),
            Err(e) => {
                // Undo in reverse; if this fails too, recovery finishes the job. But if
                // recovery elsewhere has already completed the upload (this process lost
                // its lease while the catalog was away), the bytes are that record's.
                let completed = self.with_catalog(move |c| c.get_by_id(id)).await;
                if !matches!(completed, Ok(Some(_))) {
                    let _ = self.with_storage(move |s| s.delete(&object)).await;
                    let _ = self.with_catalog(move |c| c.abort_upload(id)).await;
                }
                return Err(e);
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
    async fn new_record(
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
            format: extension,
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

    // ----- reconciliation with the storage folder -----

    pub async fn stored_objects(&self) -> Result<Vec<crate::storage::StoredObject>> {
        self.with_storage(|s| s.list()).await
    }

    pub async fn object_exists(&self, object: &str) -> Result<bool> {
        let object = object.to_string();
        self.with_storage(move |s| s.exists(&object)).await
    }

    pub async fn all_files(&self) -> Result<Vec<FileRecord>> {
        self.with_catalog(|c| c.all_files()).await
    }

    pub async fn name_claimed(&self, user: UserId, file_name: &str) -> Result<bool> {
        let name = file_name.to_string();
        self.with_catalog(move |c| c.name_claimed(user, &name)).await
    }

    /// Gives a stored object another name in the storage layout (a file dropped without a
    /// user prefix, adopted for the default user). Never overwrites.
    pub async fn move_object(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.with_storage(move |s| {
            s.link(&from, &to)?;
            s.delete(&from)
        })
        .await
    }

    /// Catalogues a file that appeared in storage without an upload, exactly as an
    /// upload would (same summary, size, hash), but active in no session.
    /// `Error::Conflict` if the name is taken meanwhile (another replica got there first).
    pub async fn adopt_stored(&self, user: UserId, file_name: &str, extension: &str) -> Result<FileRecord> {
        let format = Format::from_extension(extension)
            .ok_or_else(|| Error::invalid("unsupported_extension", format!(".{extension} files are not supported")))?;
        let object = object_name(user, file_name, extension);
        let (profile, size, sha256) = self.analyze_stored(&object, format, extension).await?;
        let record = self
            .new_record(
                user,
                file_name.to_string(),
                String::new(),
                extension.to_string(),
                &profile,
                size,
                sha256,
            )
            .await?;
        let reserved = record.clone();
        self.with_catalog(move |c| c.reserve_upload(&reserved)).await?;
        let id = record.id;
        let committed = self.with_catalog(move |c| c.commit_upload(id, None)).await;
        self.feed_changed();
        committed
    }

    /// Re-reads a catalogued file whose bytes may have changed in storage. Returns the new
    /// record if the content changed, `None` if it is the same (only its time moved).
    pub async fn refresh_stored(&self, record: &FileRecord) -> Result<Option<FileRecord>> {
        let format = Format::from_extension(&record.format)
            .ok_or_else(|| Error::internal(format!("stored format {:?} has no reader", record.format)))?;
        let object = object_name(record.user_id, &record.file_name, &record.format);
        let (profile, size, sha256) = self.analyze_stored(&object, format, &record.format).await?;
        if size == record.size_bytes && sha256 == record.sha256 {
            // Touched, not changed (or written by sync with its remote date): no new version.
            return Ok(None);
        }
        let content = FileRecord {
            size_bytes: size,
            sha256,
            summary: profile.summary(),
            row_count: profile.row_count,
            column_count: profile.column_count,
            profile_json: serde_json::to_string(&profile).map_err(Error::internal)?,
            ..record.clone()
        };
        let user = record.user_id;
        let _guard = self.lock_user(user).await?;
        let replaced = self.with_catalog(move |c| c.replace_content(&content)).await?;
        let Some((updated, sessions)) = replaced else {
            return Ok(None);
        };
        self.feed_changed();
        for session in sessions {
            self.cache_result(self.cache.remove(user, session).await);
        }
        Ok(Some(updated))
    }

    /// Removes the record of a file whose bytes are gone from storage, with its active
    /// entries. Does nothing if the bytes are back or the record changed meanwhile.
    pub async fn forget_missing(&self, record: &FileRecord) -> Result<bool> {
        if self
            .object_exists(&object_name(record.user_id, &record.file_name, &record.format))
            .await?
        {
            return Ok(false);
        }
        let current = self.get_file(record.user_id, &record.file_name).await.ok();
        if current.as_ref().map(|c| c.id) != Some(record.id) {
            return Ok(false);
        }
        match self.delete_file_steps(record.user_id, &record.file_name, None).await {
            Ok(_) => Ok(true),
            // Another replica watching the same folder forgot it first.
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Size, SHA-256 and analysis of a stored object, read where it lies.
    async fn analyze_stored(
        &self,
        object: &str,
        format: Format,
        extension: &str,
    ) -> Result<(analysis::Profile, u64, String)> {
        let name = object.to_string();
        let file = self
            .with_storage(move |s| s.open(&name)?.map(Content::into_file).transpose())
            .await?
            .ok_or_else(|| Error::NotFound(format!("{object} is not in storage")))?;
        let _permit = self.analyses.acquire().await.map_err(Error::internal)?;
        let timer = metrics().analysis_seconds.start_timer();
        let analyzed = tokio::task::spawn_blocking(move || {
            let (size, sha256) = hash_reader(&file).map_err(FormatError::Io)?;
            formats::profile_file(&file, format).map(|profile| (profile, size, sha256))
        })
        .await;
        timer.observe_duration();
        analyzed?.map_err(|e| analysis_error(e, extension))
    }

    // ----- reads and updates -----

    /// A page of the user's files, oldest first, and the total that match.
    pub async fn list_files(&self, user: UserId, query: ListQuery) -> Result<(Vec<FileRecord>, u64)> {
        listing::check_limit(&query)?;
        self.with_catalog(move |c| c.list_files(user, &query)).await
    }

    pub async fn get_file(&self, user: UserId, file_name: &str) -> Result<FileRecord> {
        let name = file_name.to_string();
        self.with_catalog(move |c| c.get_file(user, &name))
            .await?
            .ok_or_else(|| file_not_found(file_name))
    }

    /// The record and an open handle on its bytes. The handle keeps reading the same
    /// bytes even if the file is renamed or deleted meanwhile.
    pub async fn open_content(&self, user: UserId, file_name: &str) -> Result<(FileRecord, Content)> {
        let record = self.get_file(user, file_name).await?;
        let object = object_name(user, &record.file_name, &record.format);
        let file = self.with_storage(move |s| s.open(&object)).await?;
        // Between the lookup and the open, a rename may have moved the bytes and another
        // upload may have taken the name: serve only if the record is still the same.
        let again = self.get_file(user, file_name).await.ok();
        match (file, again) {
            (Some(file), Some(again)) if again.id == record.id && again.sha256 == record.sha256 => Ok((record, file)),
            _ => Err(file_not_found(file_name)),
        }
    }

    /// Renames and/or re-describes a file. A rename moves the stored bytes without
    /// overwriting anything; active entries follow the file, and cached copies are
    /// dropped so every session sees the new record.
    pub async fn update_file(
        self: &Arc<Self>,
        user: UserId,
        file_name: &str,
        new_name: Option<String>,
        description: Option<String>,
    ) -> Result<FileRecord> {
        let file_name = file_name.to_string();
        self.to_completion(move |s| async move { s.update_file_steps(user, &file_name, new_name, description).await })
            .await
    }

    async fn update_file_steps(
        &self,
        user: UserId,
        file_name: &str,
        new_name: Option<String>,
        description: Option<String>,
    ) -> Result<FileRecord> {
        if new_name.is_none() && description.is_none() {
            return Err(Error::invalid(
                "empty_update",
                "send at least one of `file_name` and `description`",
            ));
        }
        if let Some(name) = &new_name {
            validate_file_name(name)?;
        }
        if let Some(description) = &description {
            check_description(description)?;
        }
        let _guard = self.lock_user(user).await?;
        let current = self.get_file(user, file_name).await?;
        let old_object = object_name(user, &current.file_name, &current.format);
        let new_object = new_name
            .as_ref()
            .filter(|n| **n != current.file_name)
            .map(|n| object_name(user, n, &current.format));
        let mut update = FileUpdate {
            rename: None,
            description,
        };
        let mut rename = None;
        if let (Some(name), Some(object)) = (&new_name, &new_object) {
            // The name may be taken: say so before touching storage.
            let taken = name.clone();
            if self.with_catalog(move |c| c.get_file(user, &taken)).await?.is_some() {
                return Err(Error::name_taken(name));
            }
            let intent = self
                .begin_rename(user, &current.file_name, name, &current.format)
                .await?;
            let (from, to) = (old_object.clone(), object.clone());
            if let Err(e) = self.with_storage(move |s| s.link(&from, &to)).await {
                self.end_rename(intent).await;
                return Err(e);
            }
            rename = Some(intent);
            update.rename = Some((name.clone(), self.storage.uri(object)));
            stall_for_test("rename", file_name).await;
        }
        let result = self.apply_update(user, file_name, update, old_object, new_object).await;
        if let Some(intent) = rename {
            self.end_rename(intent).await;
        }
        result
    }

    /// The catalog half of [`FileService::update_file`], once a new stored name (if any)
    /// is linked: switch the record, then drop whichever stored name lost.
    async fn apply_update(
        &self,
        user: UserId,
        file_name: &str,
        update: FileUpdate,
        old_object: String,
        new_object: Option<String>,
    ) -> Result<FileRecord> {
        let name = file_name.to_string();
        let updated = self.with_catalog(move |c| c.update_file(user, &name, &update)).await;
        self.feed_changed();
        let (record, sessions) = match updated {
            Ok(Some(found)) => found,
            other => {
                if let Some(object) = new_object.clone() {
                    let _ = self.with_storage(move |s| s.delete(&object)).await;
                }
                return Err(other.err().unwrap_or_else(|| file_not_found(file_name)));
            }
        };
        for session in sessions {
            self.cache_result(self.cache.remove(user, session).await);
        }
        // The rename is committed: a leftover old name is logged, not reported as a
        // failed rename (the watcher would take it for a dropped-in file).
        if new_object.is_some() {
            if let Err(e) = self.with_storage(move |s| s.delete(&old_object)).await {
                tracing::warn!(error = %e, "renamed, but the old stored name could not be removed");
            }
        }
        Ok(record)
    }

    /// The stored analysis profile of a file (computed at upload), as JSON text.
    pub async fn get_profile(&self, user: UserId, file_name: &str) -> Result<String> {
        Ok(self.get_file(user, file_name).await?.profile_json)
    }

    /// The header and first `rows` rows (1–1000) of a file, read from storage.
    /// `sheet` picks a workbook's sheet (default: the sheet its profile calls the table).
    pub async fn preview(
        &self,
        user: UserId,
        file_name: &str,
        rows: usize,
        sheet: Option<String>,
    ) -> Result<analysis::Preview> {
        if !(1..=1000).contains(&rows) {
            return Err(Error::invalid(
                "invalid_rows",
                format!("rows must be between 1 and 1000, not {rows}"),
            ));
        }
        let (record, content) = self.open_content(user, file_name).await?;
        let format = Format::from_extension(&record.format)
            .ok_or_else(|| Error::internal(format!("stored format {:?} has no reader", record.format)))?;
        let windows_1252 = record.profile_json.contains("\"encoding\":\"windows-1252\"");
        let table_sheet = serde_json::from_str::<analysis::Profile>(&record.profile_json)
            .ok()
            .and_then(|p| p.sheet);
        let _permit = self.blocking_calls.acquire().await.map_err(Error::internal)?;
        let name = record.file_name.clone();
        tokio::task::spawn_blocking(move || {
            // A bucket's object is fetched into a temporary file first: the readers seek.
            let file = content.into_file()?;
            formats::preview_file(
                &file,
                format,
                rows,
                windows_1252,
                sheet.as_deref(),
                table_sheet.as_deref(),
            )
            .map_err(|e| match e {
                FormatError::NoSheet(detail) => Error::NotFound(detail),
                e => Error::internal(format!("previewing {name}: {e}")),
            })
        })
        .await?
    }

    /// The session no longer has an active file; idempotent.
    pub async fn clear_active(&self, user: UserId, session: &str) -> Result<()> {
        let session = parse_session_id(session)?;
        let _guard = self.lock_user(user).await?;
        self.with_catalog(move |c| c.clear_active(user, session)).await?;
        self.cache_result(self.cache.remove(user, session).await);
        Ok(())
    }

    pub async fn get_active(&self, user: UserId, session: &str) -> Result<Arc<FileRecord>> {
        let session = parse_session_id(session)?;
        if self.cache.is_pass_through() {
            // Nothing to refill: no lock needed around the catalog read. Every lookup is
            // a miss, so the hit ratio tells operators there is no cache.
            metrics().cache_misses.inc();
            let found = self.with_catalog(move |c| c.get_active(user, session)).await?;
            return found.map(Arc::new).ok_or_else(|| no_active_file(session));
        }
        if let Some(Some(hit)) = self.cache_result(self.cache.get(user, session).await) {
            metrics().cache_hits.inc();
            return Ok(hit);
        }
        metrics().cache_misses.inc();
        let _guard = self.lock_user(user).await?;
        let found = self.with_catalog(move |c| c.get_active(user, session)).await?;
        let record = Arc::new(found.ok_or_else(|| no_active_file(session))?);
        self.cache_result(self.cache.put(user, session, record.clone()).await);
        Ok(record)
    }

    pub async fn set_active(&self, user: UserId, session: &str, file_name: &str) -> Result<Arc<FileRecord>> {
        let session = parse_session_id(session)?;
        let name = file_name.to_string();
        let _guard = self.lock_user(user).await?;
        let found = self.with_catalog(move |c| c.set_active(user, session, &name)).await?;
        let record = Arc::new(found.ok_or_else(|| file_not_found(file_name))?);
        self.cache_result(self.cache.put(user, session, record.clone()).await);
        Ok(record)
    }

    /// Deletes the record and the bytes, and clears the file as active in every session.
    pub async fn delete_file(self: &Arc<Self>, user: UserId, file_name: &str) -> Result<FileRecord> {
        let file_name = file_name.to_string();
        self.to_completion(move |s| async move { s.delete_file_steps(user, &file_name, None).await })
            .await
    }

    /// Deletes a file; `tombstone` is the deleted version when the delete came by sync.
    async fn delete_file_steps(
        &self,
        user: UserId,
        file_name: &str,
        tombstone: Option<SyncRecord>,
    ) -> Result<FileRecord> {
        let name = file_name.to_string();
        let (record, sessions) = {
            let _guard = self.lock_user(user).await?;
            let found = self
                .with_catalog(move |c| c.begin_delete(user, &name, tombstone.as_ref()))
                .await?;
            self.feed_changed();
            let (record, sessions) = found.ok_or_else(|| file_not_found(file_name))?;
            for session in &sessions {
                self.cache_result(self.cache.remove(user, *session).await);
            }
            (record, sessions)
        };
        tracing::debug!(file = %record.id, sessions = sessions.len(), "deleting");
        stall_for_test("delete", file_name).await;
        let object = object_name(user, &record.file_name, &record.format);
        self.with_storage(move |s| s.delete(&object)).await?;
        let id = record.id;
        self.with_catalog(move |c| c.finish_delete(id)).await?;
        Ok(record)
    }

    // ----- operations -----

    /// Whether the service can do its work: catalog reachable, storage writable (both
    /// required), cache reachable (if not, the service runs degraded on the catalog).
    pub async fn readiness(&self) -> Readiness {
        let limit = Duration::from_secs(2);
        let check = |result: std::result::Result<Result<()>, tokio::time::error::Elapsed>| match result {
            Ok(Ok(())) => Check { ok: true, detail: None },
            Ok(Err(e)) => Check {
                ok: false,
                detail: Some(e.detail()),
            },
            Err(_) => Check {
                ok: false,
                detail: Some(format!("no answer within {}s", limit.as_secs())),
            },
        };
        let catalog = check(tokio::time::timeout(limit, self.with_catalog(|c| c.ping())).await);
        let storage = check(tokio::time::timeout(limit, self.with_storage(|s| s.ping())).await);
        let cache = check(tokio::time::timeout(limit, async { self.cache.get(0, Uuid::nil()).await.map(drop) }).await);
        let ready = catalog.ok && storage.ok;
        let status = match (ready, cache.ok) {
            (false, _) => "unavailable",
            (true, false) => "degraded",
            (true, true) => "ready",
        };
        Readiness {
            ready,
            status,
            checks: Checks {
                catalog,
                storage,
                cache,
            },
        }
    }
}

/// Held while one user's catalog change and its cache write happen; fields drop in
/// order, so the cross-process lock is released before the in-process one.
struct UserGuard<'a> {
    _shared: Option<UserLock>,
    _local: MutexGuard<'a, ()>,
}

/// The answer of `GET /readyz`.
#[derive(Debug, serde::Serialize)]
pub struct Readiness {
    #[serde(skip)]
    pub ready: bool,
    /// "ready", "degraded" (cache down, catalog serving) or "unavailable".
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, serde::Serialize)]
pub struct Checks {
    pub catalog: Check,
    pub storage: Check,
    pub cache: Check,
}

#[derive(Debug, serde::Serialize)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Fault injection for the crash-recovery tests only: `FILE_SERVICE_FAULT_STALL` lists
/// `step:file_name` pairs (`upload`: bytes in place, not yet committed; `rename`: new
/// name linked, record not yet switched; `delete`: record hidden, bytes not yet removed),
/// and the request for that file stops there until the process is killed.
async fn stall_for_test(step: &str, file_name: &str) {
    if crate::storage::stalls_for_test(step, file_name) {
        tracing::warn!(
            step,
            file = file_name,
            "FILE_SERVICE_FAULT_STALL: stopping here until killed"
        );
        std::future::pending::<()>().await;
    }
}

/// A file that does not parse is the client's problem (422); failing to read it is ours.
fn analysis_error(e: FormatError, extension: &str) -> Error {
    match e {
        FormatError::Io(io) | FormatError::Analysis(analysis::AnalysisError::Io(io)) => {
            Error::Internal(anyhow::Error::new(io).context("reading a dataset"))
        }
        other => Error::invalid(
            other.code(),
            format!("the file could not be read as {extension}: {other}"),
        ),
    }
}

/// Reads the chunks of an upload as they arrive, for the analysis running alongside.
struct ChunkReader {
    chunks: std::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    fn new(chunks: std::sync::mpsc::Receiver<Bytes>) -> ChunkReader {
        ChunkReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.current = chunk,
                Err(_) => return Ok(0), // the writer is done: end of file
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Size and hex SHA-256 of everything `reader` gives, read in one streaming pass.
fn hash_reader(mut reader: impl std::io::Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut reader, &mut hasher)?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// The format of an upload, from the extension of the uploaded part's filename.
fn upload_format(filename: Option<&str>) -> Result<(Format, String)> {
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

/// Descriptions are counted in characters, as the OpenAPI document's `maxLength` counts.
fn check_description(description: &str) -> Result<()> {
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid(
            "description_too_long",
            format!("description is {chars} characters; at most {MAX_DESCRIPTION_CHARS} are allowed"),
        ));
    }
    Ok(())
}

fn required<'a>(field: &'a Option<String>, name: &str) -> Result<&'a str> {
    field
        .as_deref()
        .ok_or_else(|| Error::invalid("missing_field", format!("the multipart form has no `{name}` field")))
}

fn no_active_file(session: Uuid) -> Error {
    Error::NotFound(format!("session {session} has no active file"))
}

fn file_not_found(name: &str) -> Error {
    Error::NotFound(format!("no file named {name:?} for this user"))
}

//! The business rules of the service: upload, list, activate, look up the active file, share and delete, over the catalog, cache and storage.
//!
//! `sync` holds the rules of replication between instances (the change feed, applying
//! another instance's changes, conflicts). HTTP handlers only translate requests into
//! these calls. Blocking backends (catalog,
//! storage, analysis) run on the blocking pool behind semaphores, so a burst of requests
//! queues instead of swamping two cores.

mod ahead;
pub mod explore;
mod files;
pub mod links;
mod listing;
mod query;
pub mod quotas;
mod recovery;
pub mod resumable;
mod stored;
pub mod sync;
mod upload;

pub use query::{Download, QueryTarget};
pub use recovery::run as run_recovery;
pub use sync::{ApplyReport, ChangePage, Rejection};
pub use upload::FormPart;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard, Semaphore};
use uuid::Uuid;

use crate::analysis;
use crate::cache::ActiveFileCache;
use crate::catalog::{Catalog, UserLock};
use crate::error::{Error, Result};
use crate::formats::FormatError;
use crate::metrics::metrics;
use crate::model::UserId;
use crate::storage::Storage;

/// Longest accepted `description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 64 * 1024;
/// A text part of the upload form may be this long: the longest description in
/// characters of four bytes.
pub const MAX_TEXT_FIELD_BYTES: usize = 4 * MAX_DESCRIPTION_CHARS;

/// Limits the service enforces, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload_bytes: u64,
    pub max_concurrent_analyses: usize,
    pub max_concurrent_uploads: usize,
    /// An upload that sends nothing for this long is cut off.
    pub upload_idle_timeout: Duration,
    /// A resumable upload not continued for this long is removed.
    pub upload_expires: Duration,
    pub max_concurrent_queries: usize,
    /// A query running longer is stopped.
    pub query_timeout: Duration,
    /// Every user's quota unless overridden (`QUOTA_BYTES`, `QUOTA_FILES`).
    pub quota: crate::catalog::QuotaLimits,
    /// Make each uploaded file's columnar copy and row file right after the upload, in the
    /// background (`QUERY_TABLES_AHEAD`).
    pub tables_ahead: bool,
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
    /// Makes new files' tables before their first query.
    tables_ahead: ahead::TablesAhead,
    /// Resumable uploads a stopped process left completing, taken over by the periodic
    /// pass and waiting to be committed here.
    stalled_completions: std::sync::Mutex<Vec<crate::catalog::ResumableUpload>>,
    /// Uploads of this process whose commit's outcome is unknown and whose catalog could
    /// not be asked yet: settled by the periodic pass (work of a live process is no other
    /// process's to resolve).
    unsettled: std::sync::Mutex<Vec<recovery::Unsettled>>,
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
        let copies = Arc::new(copies);
        let tables_ahead = ahead::TablesAhead::start(copies.clone(), limits.tables_ahead);
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
            copies,
            tables_ahead,
            stalled_completions: std::sync::Mutex::new(Vec::new()),
            unsettled: std::sync::Mutex::new(Vec::new()),
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

    /// The largest file accepted (`MAX_UPLOAD_BYTES`).
    pub fn max_upload_bytes(&self) -> u64 {
        self.limits.max_upload_bytes
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

fn no_active_file(session: Uuid) -> Error {
    Error::NotFound(format!("session {session} has no active file"))
}

fn file_not_found(name: &str) -> Error {
    Error::NotFound(format!("no file named {name:?} for this user"))
}

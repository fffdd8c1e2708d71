//! The S3 storage backend: objects `{prefix}/{user_id}_{file_name}.{ext}` in a bucket of any S3-compatible server, with `s3://` URIs.
//!
//! A key is the name exactly as written, in UTF-8 (`1_données été.csv`), never
//! percent-encoded: the `storage_uri` names the real key, and another tool's object is
//! listed under its real key (a literal `%C3` in it stays `%C3`). `object_store`'s
//! `Path::from`/`PathPart::from` would percent-encode non-ASCII bytes and `%`, so keys are
//! built with the validating `PathPart::parse` and listed keys read raw. Releases before
//! this one did percent-encode: [`Storage::upgrade_keys`] moves their objects once.
//!
//! Uploads stream to the bucket while they arrive ([`S3Upload`]): the bytes fill parts of
//! 8 MiB; once more than one part has arrived, a multipart upload starts under a temporary
//! key no other upload can use (`.upload-{start}-{uuid}`, its start in Unix seconds) and
//! takes each full part as it fills, at most two in flight, so memory stays at three parts
//! whatever the size. Nothing is visible until the upload is accepted: then the multipart
//! upload is completed and the object copied to its name only if the name is free (a
//! multipart copy completed with `If-None-Match: *`), and the temporary key deleted. An
//! upload of one part or less is kept (in memory, or in its local copy) until accepted,
//! then stored with one conditional PUT (`If-None-Match: *`). A refused or cut-off upload
//! is aborted; a temporary key a dead process left is swept, and so is a multipart upload
//! it left unfinished ([`multipart_sweep`]). A local copy in the spool folder is kept only
//! when the analysis needs the whole file (columnar formats and workbooks seek).
//!
//! `object_store` is async; the trait is blocking and runs on the service's blocking pool,
//! so this backend drives its own small runtime with `block_on`. Its own runtime, not the
//! server's: storage is also used before the server's runtime starts and after it stops.

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Seek, Write};
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::multipart::MultipartStore;
use object_store::path::{Path, PathPart};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};
use tempfile::NamedTempFile;
use tokio::sync::mpsc;

use super::chunks::ChunkReader;
use super::local::LocalStorage;
use super::{Content, Storage, StoredObject, UploadSink, STAGED_BYTES_KEPT_FOR, STALE_TEMPORARY_AGE};
use crate::config::S3Config;
use crate::error::{Error, Result};

mod multipart_sweep;

use multipart_sweep::MultipartLister;

/// Multipart uploads send parts of this size, at most [`PARTS_IN_FLIGHT`] at once: memory
/// stays at a few parts whatever the file's size (S3 allows 10,000 parts: 80 GB).
const PART_SIZE: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 2;
/// Objects up to this size are read whole when opened, so a download of one that is
/// renamed or deleted meanwhile still completes with the bytes that were opened.
const INLINE_MAX: u64 = 1 << 20;
/// Temporary keys of uploads between their multipart upload and their copy to the name.
const TEMP_PREFIX: &str = ".upload-";
/// Staged sync bytes, named by their SHA-256.
const BLOB_PREFIX: &str = ".blob-";
/// Parts of resumable uploads and of sync contents sent in pieces, in one folder per owner
/// (an upload id, a content's SHA-256): `.parts/{owner}/{offset}-{token}`.
const PARTS_FOLDER: &str = ".parts";
/// Written by the readiness probe: proves the bucket is there and takes writes.
const PROBE: &str = ".readyz";
/// Written once every object an earlier release stored under a percent-encoded key has
/// been moved to its name's key (see [`Storage::upgrade_keys`]): from then on a key
/// with `%` in it is another tool's, never one to move.
const UTF8_KEYS_MARKER: &str = ".keys-utf8";

/// The bucket's client and layout, shared by the storage and its uploads in progress.
#[derive(Clone)]
pub struct Client {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Key prefix without a trailing slash; empty for the bucket's root.
    prefix: String,
    /// The prefix as a key, exactly as configured (empty: the bucket's root).
    root: Path,
    /// The storage's own runtime (see the module doc).
    handle: tokio::runtime::Handle,
    /// The temporary keys of this process's uploads in progress: their multipart uploads
    /// are never taken for abandoned, however long they last.
    in_progress: Arc<Mutex<HashSet<String>>>,
}

pub struct S3Storage {
    client: Client,
    endpoint: String,
    /// Uploads in progress (and downloads for readers that seek) on this machine.
    spool: LocalStorage,
    /// Finds the multipart uploads a stopped process left (see [`multipart_sweep`]).
    multiparts: MultipartLister,
    /// Another process's multipart upload started this long ago is abandoned.
    abandoned_upload_after: Duration,
    /// The last pass could not list or abort multipart uploads (warned once, not on
    /// every pass).
    multipart_sweep_failing: AtomicBool,
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3Storage {
    /// Connects to the bucket and checks it takes writes; the spool folder is created if
    /// needed. Blocking: call it off the async runtime.
    pub fn open(config: &S3Config, spool: &FsPath) -> anyhow::Result<S3Storage> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("s3-client")
            .enable_all()
            .build()?;
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            // A part of 8 MiB, or a server-side copy of a large object, within this.
            .with_timeout(Duration::from_secs(300))
            .with_allow_http(config.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
        // An outage must become a 503 within seconds, not after minutes of retries.
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
            .with_client_options(options.clone())
            .with_retry(retry);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let store = Arc::new(builder.build()?);
        let root = Path::parse(&config.prefix)
            .map_err(|e| anyhow::anyhow!("the prefix {:?} cannot be a key: {e}", config.prefix))?;
        let storage = S3Storage {
            client: Client {
                store,
                bucket: config.bucket.clone(),
                prefix: config.prefix.clone(),
                root,
                handle: runtime.handle().clone(),
                in_progress: Arc::default(),
            },
            endpoint: config.endpoint.clone().unwrap_or_else(|| "AWS".into()),
            spool: LocalStorage::open(spool)?,
            multiparts: MultipartLister::new(config, &options)?,
            abandoned_upload_after: config.abandoned_upload_after,
            multipart_sweep_failing: AtomicBool::new(false),
            runtime: Some(runtime),
        };
        storage
            .ping()
            .map_err(|e| anyhow::anyhow!("bucket {} at {}: {}", storage.bucket, storage.endpoint, e.detail()))?;
        Ok(storage)
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the S3 runtime lives as long as the storage")
            .block_on(future)
    }
}

impl std::ops::Deref for S3Storage {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Client {
    /// The key of `segments` under the prefix, each exactly as written (UTF-8, never
    /// percent-encoded); empty segments are skipped. A segment that cannot be part of a
    /// key (a `/`, an ASCII control character, `.` or `..`) is a bug: every name reaching
    /// here is a validated file name, a name listed from the bucket, or one of ours.
    fn key_of(&self, segments: &[&str]) -> Path {
        let mut key = self.root.clone();
        key.extend(
            segments.iter().filter(|s| !s.is_empty()).map(|segment| {
                PathPart::parse(segment).unwrap_or_else(|e| panic!("unsafe object name {segment:?}: {e}"))
            }),
        );
        key
    }

    /// The key of `name` under the prefix: the name as written.
    fn key(&self, name: &str) -> Path {
        assert!(!name.is_empty() && !name.contains('/'), "unsafe object name {name:?}");
        self.key_of(&[name])
    }

    /// The key releases before this one gave `name`: the prefix's segments and the name
    /// percent-encoded by `PathPart::from` (non-ASCII bytes, `%` and a few other ASCII
    /// characters).
    fn legacy_key(&self, name: &str) -> Path {
        Path::from_iter(self.prefix.split('/').filter(|p| !p.is_empty()).chain([name]))
    }

    /// The prefix as releases before this one encoded it (the same unless it has
    /// characters `PathPart::from` encodes).
    fn legacy_root(&self) -> Path {
        Path::from_iter(self.prefix.split('/').filter(|p| !p.is_empty()))
    }

    /// The key of part `part` (`{owner}-{rest}`): `.parts/{owner}/{rest}` under the
    /// prefix, so one owner's parts are listed without listing the bucket.
    fn part_key(&self, part: &str) -> Path {
        super::check_part_name(part);
        let (owner, rest) = part.split_once('-').unwrap_or((part, ""));
        self.key_of(&[PARTS_FOLDER, owner, rest])
    }

    /// Every part whose name starts with `prefix`, as (name, meta).
    async fn list_parts_of(&self, prefix: &str) -> Result<Vec<(String, object_store::ObjectMeta)>> {
        super::check_part_name(prefix);
        let (owner, rest) = prefix.split_once('-').unwrap_or((prefix, ""));
        let folder = self.key_of(&[PARTS_FOLDER, owner]);
        let metas: Vec<object_store::ObjectMeta> = self.store.list(Some(&folder)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                let file = meta.location.filename()?.to_string();
                file.starts_with(rest).then(|| (format!("{owner}-{file}"), meta))
            })
            .collect())
    }

    fn blob_key(&self, sha256: &str) -> Path {
        assert!(
            sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a SHA-256: {sha256:?}"
        );
        self.key(&format!("{BLOB_PREFIX}{sha256}"))
    }

    /// The name of a listed key directly under `root`, as the key has it (a listed key is
    /// never decoded: `%C3` in another tool's key is three characters of its name);
    /// `None` for deeper keys.
    fn name_under(root: &Path, location: &Path) -> Option<String> {
        let mut rest = location.prefix_match(root)?;
        let name = rest.next()?;
        rest.next().is_none().then(|| name.as_ref().to_string())
    }

    fn uri_of(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}/{name}", self.bucket)
        } else {
            format!("s3://{}/{}/{name}", self.bucket, self.prefix)
        }
    }

    fn occupied(&self, name: &str) -> Error {
        Error::Conflict(format!(
            "the bucket already holds {} (an object without a catalog record); \
             it is never overwritten: move it away or delete it, then try again",
            self.uri_of(name)
        ))
    }

    async fn copy_if_free(&self, from: &Path, to: &Path, name: &str) -> Result<()> {
        match self.store.copy_if_not_exists(from, to).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {
                Err(self.occupied(name))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn head(&self, key: &Path) -> Result<Option<object_store::ObjectMeta>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_key(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key directly under `root` (the prefix, or the prefix as an earlier release
    /// encoded it), with its name. Listed with a delimiter: keys in deeper folders (the
    /// parts, another tool's) are neither fetched nor read.
    async fn list_names_under(&self, root: &Path) -> Result<Vec<(String, object_store::ObjectMeta)>> {
        let listed = self
            .store
            .list_with_delimiter((!root.is_root()).then_some(root))
            .await?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|meta| Self::name_under(root, &meta.location).map(|name| (name, meta)))
            .collect())
    }

    /// Every key directly under the prefix, with its name.
    async fn list_names(&self) -> Result<Vec<(String, object_store::ObjectMeta)>> {
        self.list_names_under(&self.root).await
    }

    /// The SHA-256 of the object at `key`; `None` if it is not there.
    async fn sha256_of(&self, key: &Path) -> Result<Option<Vec<u8>>> {
        use sha2::Digest;
        let result = match self.store.get(key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut hasher = sha2::Sha256::new();
        let mut chunks = result.into_stream();
        while let Some(chunk) = chunks.next().await {
            hasher.update(&chunk?);
        }
        Ok(Some(hasher.finalize().to_vec()))
    }

    /// Moves one object of an earlier release from its percent-encoded key `old` to its
    /// name's key `new`: a copy that never overwrites, then the old key deleted. A crash
    /// in between leaves both; the next run (or a replica doing the same at once) finds
    /// the copy there and deletes the old key only if both hold the same bytes. Returns
    /// whether the object is now under `new` alone; `false` when `new` holds other bytes
    /// (another tool's object took the name): both are then kept, with a warning.
    async fn move_legacy(&self, old: &Path, new: &Path) -> Result<bool> {
        match self.store.copy_if_not_exists(old, new).await {
            Ok(()) => {}
            // Moved meanwhile, by a replica upgrading at the same time.
            Err(object_store::Error::NotFound { .. }) => return Ok(self.head(old).await?.is_none()),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {
                let same = match (self.head(old).await?, self.head(new).await?) {
                    (None, _) => return Ok(true),
                    (Some(o), Some(n)) if o.size == n.size => match self.sha256_of(old).await? {
                        None => return Ok(true),
                        Some(sum) => self.sha256_of(new).await?.is_some_and(|other| other == sum),
                    },
                    _ => false,
                };
                if !same {
                    tracing::warn!(
                        old = %old,
                        new = %new,
                        "an object of an earlier release could not move to its name's key, which holds other \
                         bytes; both are kept: compare them and delete the one not wanted"
                    );
                    return Ok(false);
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.delete_key(old).await?;
        Ok(true)
    }
}

impl S3Storage {
    /// Opens the object at `key`; `None` if it is not there.
    fn open_key(&self, key: Path) -> Result<Option<Content>> {
        self.block_on(async {
            let Some(meta) = self.head(&key).await? else {
                return Ok(None);
            };
            let mut remote = RemoteObject {
                store: self.store.clone(),
                key: key.clone(),
                size: meta.size,
                e_tag: meta.e_tag.clone(),
                inline: None,
                runtime: self.handle.clone(),
                spool: self.spool.local_folder().map(FsPath::to_path_buf),
            };
            if meta.size <= INLINE_MAX {
                match self.store.get_opts(&key, remote.pinned(None)).await {
                    Ok(result) => remote.inline = Some(result.bytes().await?),
                    Err(object_store::Error::NotFound { .. }) | Err(object_store::Error::Precondition { .. }) => {
                        return Ok(None)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(Some(Content::Remote(remote)))
        })
    }
}

impl S3Storage {
    /// Aborts the multipart uploads stopped processes left under the prefix (see
    /// [`multipart_sweep`] for which are taken for abandoned). Returns how many. A failure
    /// (a server without ListMultipartUploads, credentials without the right to list
    /// them) is warned of once and never fails the pass: the rest of it, and startup,
    /// go on; the next pass tries again.
    fn abort_abandoned_multiparts(&self, exclusive: bool) -> usize {
        let prefix_key = self.key(TEMP_PREFIX).to_string();
        let swept = self.block_on(async {
            let listed = self.multiparts.list(&self.store, &prefix_key).await?;
            let ours = self
                .in_progress
                .lock()
                .expect("the uploads in progress' lock is never poisoned")
                .clone();
            let now = chrono::Utc::now();
            let mut aborted = 0;
            for upload in listed {
                if !multipart_sweep::abandoned(&upload, &prefix_key, &ours, exclusive, now, self.abandoned_upload_after)
                {
                    continue;
                }
                let key = Path::parse(&upload.key)
                    .map_err(|e| Error::internal(format!("a listed key {:?}: {e}", upload.key)))?;
                match self.store.abort_multipart(&key, &upload.upload_id).await {
                    Ok(()) => {
                        tracing::info!(
                            key = %upload.key,
                            initiated = ?upload.initiated,
                            "aborted a multipart upload a stopped process left"
                        );
                        aborted += 1;
                    }
                    // Gone meanwhile: completed or aborted by its own process, or a replica's pass.
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok::<_, Error>(aborted)
        });
        match swept {
            Ok(aborted) => {
                if self.multipart_sweep_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("multipart uploads are swept again");
                }
                aborted
            }
            Err(e) => {
                if !self.multipart_sweep_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e.detail(),
                        "cannot sweep the multipart uploads stopped processes left (the credentials need \
                         s3:ListBucketMultipartUploads and s3:AbortMultipartUpload); retrying on each pass"
                    );
                }
                0
            }
        }
    }
}

impl Drop for S3Storage {
    fn drop(&mut self) {
        // Never blocks: the storage may be dropped on an async thread.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Storage for S3Storage {
    fn storage_type(&self) -> &'static str {
        "s3"
    }

    fn new_upload(&self) -> Result<NamedTempFile> {
        self.spool.new_upload()
    }

    fn uri(&self, object: &str) -> String {
        self.uri_of(object)
    }

    fn begin_upload(&self, local_copy: bool, label: &str) -> Result<Box<dyn UploadSink>> {
        let local = if local_copy {
            Some(self.spool.new_upload()?)
        } else {
            None
        };
        // The start in the key: the sweep of abandoned multipart uploads reads it.
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let temp = self.key(&format!("{TEMP_PREFIX}{started}-{}", uuid::Uuid::new_v4().simple()));
        self.in_progress
            .lock()
            .expect("the uploads in progress' lock is never poisoned")
            .insert(temp.to_string());
        Ok(Box::new(S3Upload {
            client: self.client.clone(),
            temp,
            label: label.to_string(),
            local,
            part: Vec::new(),
            multipart: None,
            in_flight: VecDeque::new(),
            parts_sent: 0,
            finished: false,
        }))
    }

    fn link(&self, from: &str, to: &str) -> Result<()> {
        let (source, target) = (self.key(from), self.key(to));
        self.block_on(self.copy_if_free(&source, &target, to))
    }

    fn open(&self, object: &str) -> Result<Option<Content>> {
        self.open_key(self.key(object))
    }

    fn delete(&self, object: &str) -> Result<()> {
        self.block_on(self.delete_key(&self.key(object)))
    }

    fn exists(&self, object: &str) -> Result<bool> {
        Ok(self.block_on(self.head(&self.key(object)))?.is_some())
    }

    fn list(&self) -> Result<Vec<StoredObject>> {
        let listed = self.block_on(self.list_names())?;
        Ok(listed
            .into_iter()
            .filter(|(name, _)| !name.starts_with('.'))
            .map(|(name, meta)| StoredObject {
                name,
                size: meta.size,
                changed: SystemTime::from(meta.last_modified),
            })
            .collect())
    }

    fn stat(&self, object: &str) -> Result<Option<StoredObject>> {
        if object.is_empty() || object.starts_with('.') || object.contains('/') {
            return Ok(None);
        }
        let meta = self.block_on(self.head(&self.key(object)))?;
        Ok(meta.map(|meta| StoredObject {
            name: object.to_string(),
            size: meta.size,
            changed: SystemTime::from(meta.last_modified),
        }))
    }

    fn has_blob(&self, sha256: &str) -> Result<bool> {
        Ok(self.block_on(self.head(&self.blob_key(sha256)))?.is_some())
    }

    fn place_blob(&self, sha256: &str, object: &str) -> Result<()> {
        let (source, target) = (self.blob_key(sha256), self.key(object));
        self.block_on(self.copy_if_free(&source, &target, object))
    }

    fn replace_with_blob(&self, sha256: &str, object: &str) -> Result<()> {
        // A copy replaces the object at once: readers see the old bytes or the new ones.
        let (source, target) = (self.blob_key(sha256), self.key(object));
        Ok(self.block_on(self.store.copy(&source, &target))?)
    }

    fn remove_blob(&self, sha256: &str) -> Result<()> {
        self.block_on(self.delete_key(&self.blob_key(sha256)))
    }

    fn open_part(&self, part: &str) -> Result<Option<Content>> {
        self.open_key(self.part_key(part))
    }

    fn remove_parts(&self, prefix: &str) -> Result<usize> {
        self.block_on(async {
            let listed = self.list_parts_of(prefix).await?;
            for (_, meta) in &listed {
                self.delete_key(&meta.location).await?;
            }
            Ok(listed.len())
        })
    }

    fn list_parts(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let listed = self.block_on(self.list_parts_of(prefix))?;
        Ok(listed.into_iter().map(|(name, meta)| (name, meta.size)).collect())
    }

    fn sweep_temporaries(&self, exclusive: bool) -> Result<usize> {
        let mut removed = self.spool.sweep_temporaries(exclusive)?;
        let now = SystemTime::now();
        let old_enough = |meta: &object_store::ObjectMeta, age: Duration| {
            exclusive
                || now
                    .duration_since(SystemTime::from(meta.last_modified))
                    .is_ok_and(|a| a >= age)
        };
        removed += self.block_on(async {
            let mut removed = 0;
            for (name, meta) in self.list_names().await? {
                let leftover = (name.starts_with(TEMP_PREFIX) && old_enough(&meta, STALE_TEMPORARY_AGE))
                    || (name.starts_with(BLOB_PREFIX) && old_enough(&meta, STAGED_BYTES_KEPT_FOR));
                if leftover && self.delete_key(&meta.location).await.is_ok() {
                    removed += 1;
                }
            }
            // Pieces of sync contents (owned by a SHA-256) are kept like staged bytes;
            // parts of resumable uploads are their uploads' to remove.
            let folder = self.key_of(&[PARTS_FOLDER]);
            let pieces: Vec<object_store::ObjectMeta> = self.store.list(Some(&folder)).try_collect().await?;
            for meta in pieces {
                let owner = meta.location.parts().rev().nth(1).map(|p| p.as_ref().to_string());
                let name = format!("{}{}-", super::PART_PREFIX, owner.unwrap_or_default());
                if super::is_partial_content(&name)
                    && old_enough(&meta, STAGED_BYTES_KEPT_FOR)
                    && self.delete_key(&meta.location).await.is_ok()
                {
                    removed += 1;
                }
            }
            Ok::<_, Error>(removed)
        })?;
        removed += self.abort_abandoned_multiparts(exclusive);
        Ok(removed)
    }

    fn describe(&self) -> String {
        format!("{} (S3 at {})", self.uri_of("").trim_end_matches('/'), self.endpoint)
    }

    fn ping(&self) -> Result<()> {
        // Uploads land in the spool folder first: it must take writes too.
        self.spool.ping()?;
        let probe = self.key(PROBE);
        match self.block_on(self.store.put(&probe, PutPayload::from_static(b""))) {
            Ok(_) => Ok(()),
            // A PUT finds no object missing: the bucket itself is.
            Err(object_store::Error::NotFound { .. }) => Err(Error::Unavailable(format!(
                "there is no bucket {} at {}",
                self.bucket, self.endpoint
            ))),
            Err(e) => Err(e.into()),
        }
    }

    fn local_folder(&self) -> Option<&FsPath> {
        None
    }

    /// Releases before this one stored `{user}_données.csv` under the key
    /// `{user}_donn%C3%A9es.csv`. Which keys are theirs is known from the catalog, not
    /// guessed from the keys: a key is moved only if it is exactly the encoded form of a
    /// catalogued name (another tool's key with a literal `%C3` in it is left alone).
    /// Once done, the marker says so, and it is never run again: from then on an encoded
    /// form in the bucket can only be another tool's object. Each move is a copy that
    /// never overwrites, then a delete (see `move_legacy`): run again after a crash, or
    /// by two replicas at once, it finishes what is left and loses nothing.
    fn upgrade_keys(&self, names: &[String], dry_run: bool) -> Result<usize> {
        self.block_on(async {
            let marker = self.key(UTF8_KEYS_MARKER);
            if self.head(&marker).await?.is_some() {
                return Ok(0);
            }
            let legacy: std::collections::HashSet<Path> = self
                .list_names_under(&self.legacy_root())
                .await?
                .into_iter()
                .map(|(_, meta)| meta.location)
                .collect();
            let moves: Vec<(Path, Path)> = names
                .iter()
                .map(|name| (self.legacy_key(name), self.key(name)))
                .filter(|(old, new)| old != new && legacy.contains(old))
                .collect();
            if dry_run {
                return Ok(moves.len());
            }
            let mut moved = 0;
            for (old, new) in &moves {
                if self.move_legacy(old, new).await? {
                    tracing::info!(old = %old, new = %new, "moved an object to its name's key");
                    moved += 1;
                }
            }
            let note = "Every object of file-service here is under its name as written (UTF-8); \
                        the percent-encoded keys of earlier releases have been moved.\n";
            self.store
                .put(&marker, PutPayload::from_static(note.as_bytes()))
                .await?;
            if !moves.is_empty() {
                tracing::info!(
                    moved,
                    kept = moves.len() - moved,
                    "objects of an earlier release moved to their names' keys"
                );
            }
            Ok(moved)
        })
    }
}

/// An upload streaming to the bucket as it arrives (see the module doc): a part being
/// filled, at most [`PARTS_IN_FLIGHT`] parts being sent, and a local copy only if asked.
struct S3Upload {
    client: Client,
    /// The key of this upload's own (`.upload-{start}-{uuid}`), where its multipart upload goes.
    temp: Path,
    /// The uploaded file's name, for logs and the crash tests' faults.
    label: String,
    local: Option<NamedTempFile>,
    /// The part being filled; sent once full and more bytes follow.
    part: Vec<u8>,
    /// Started when the first part is sent; `None` again once completed or aborted.
    multipart: Option<Box<dyn MultipartUpload>>,
    in_flight: VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
    parts_sent: usize,
    finished: bool,
}

impl S3Upload {
    /// Gives the finished upload the key `target` (never over an existing object);
    /// `object` names it in errors and faults. On any error nothing of it is left.
    fn persist_at(mut self: Box<Self>, target: Path, object: &str) -> Result<()> {
        self.finish()?;
        let handle = self.client.handle.clone();
        let stored = handle.block_on(async {
            if self.multipart.is_none() {
                self.put_whole(&target, Some(object)).await
            } else {
                // Under the key of its own first: the multipart upload must never become
                // visible under a name that is taken.
                self.complete_and_copy(&target, Some(object)).await
            }
        });
        if stored.is_err() {
            if let Err(e) = handle.block_on(self.abort()) {
                tracing::warn!(error = %e.detail(), "could not abort a multipart upload");
            }
        }
        stored
    }

    /// Sends the part filled so far (starting the multipart upload with the first one),
    /// after waiting until fewer than [`PARTS_IN_FLIGHT`] parts are still being sent.
    fn send_part(&mut self) -> Result<()> {
        let data = Bytes::from(std::mem::replace(&mut self.part, Vec::with_capacity(PART_SIZE)));
        let handle = self.client.handle.clone();
        handle.block_on(async {
            if self.multipart.is_none() {
                self.multipart = Some(self.client.store.put_multipart(&self.temp).await?);
                tracing::debug!(upload = %self.label, key = %self.temp, "started a multipart upload");
            }
            while self.in_flight.len() >= PARTS_IN_FLIGHT {
                self.wait_oldest().await?;
            }
            let multipart = self.multipart.as_mut().expect("started above");
            let part = multipart.put_part(PutPayload::from(data));
            self.in_flight.push_back(self.client.handle.spawn(part));
            Ok::<_, Error>(())
        })?;
        self.parts_sent += 1;
        if self.parts_sent == 1 && super::stalls_for_test("upload-part", &self.label) {
            handle.block_on(self.wait_all())?;
            stall_for_test("upload-part", &self.label);
        }
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<()> {
        if let Some(oldest) = self.in_flight.pop_front() {
            oldest.await??;
        }
        Ok(())
    }

    async fn wait_all(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    /// Stops the parts being sent and aborts the multipart upload, if there is one.
    async fn abort(&mut self) -> Result<()> {
        for part in self.in_flight.drain(..) {
            part.abort();
        }
        if let Some(mut multipart) = self.multipart.take() {
            multipart.abort().await?;
            tracing::debug!(upload = %self.label, key = %self.temp, "aborted a multipart upload");
        }
        Ok(())
    }

    /// Stores an upload of one part or less under `target` with one PUT: conditional for
    /// a named `object` (never overwritten), replacing for staged bytes (`None`).
    async fn put_whole(&mut self, target: &Path, object: Option<&str>) -> Result<()> {
        let bytes = match &self.local {
            Some(local) => {
                let mut file = local.reopen().map_err(io_error)?;
                let mut bytes = Vec::with_capacity(file.metadata().map_err(io_error)?.len() as usize);
                file.read_to_end(&mut bytes).map_err(io_error)?;
                bytes
            }
            None => std::mem::take(&mut self.part),
        };
        let options = PutOptions {
            mode: if object.is_some() {
                PutMode::Create
            } else {
                PutMode::Overwrite
            },
            ..PutOptions::default()
        };
        match self
            .client
            .store
            .put_opts(target, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {
                Err(self.client.occupied(object.unwrap_or_default()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Completes the multipart upload under the temporary key, copies it to `target` (if
    /// the name is free, for a named `object`; replacing, for staged bytes), and deletes
    /// the temporary key either way.
    async fn complete_and_copy(&mut self, target: &Path, object: Option<&str>) -> Result<()> {
        self.wait_all().await?;
        let mut multipart = self.multipart.take().expect("a multipart upload in progress");
        if let Err(e) = multipart.complete().await {
            if let Err(abort) = multipart.abort().await {
                tracing::warn!(error = %abort, "could not abort a multipart upload that failed to complete");
            }
            return Err(e.into());
        }
        let copied = match object {
            Some(object) => {
                stall_for_test("persist-copy", object);
                self.client.copy_if_free(&self.temp, target, object).await
            }
            None => self.client.store.copy(&self.temp, target).await.map_err(Into::into),
        };
        if let Err(e) = self.client.delete_key(&self.temp).await {
            tracing::warn!(error = %e.detail(), "could not delete a temporary key; the periodic pass removes it");
        }
        copied
    }
}

impl UploadSink for S3Upload {
    fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        if let Some(local) = &mut self.local {
            local.write_all(bytes).map_err(super::upload_write_error)?;
        }
        while !bytes.is_empty() {
            if self.part.len() == PART_SIZE {
                self.send_part()?;
            }
            let n = (PART_SIZE - self.part.len()).min(bytes.len());
            self.part.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        if self.multipart.is_some() {
            // The last part, then every part in the bucket before the upload is accepted.
            if !self.part.is_empty() {
                self.send_part()?;
            }
            self.part = Vec::new();
            let handle = self.client.handle.clone();
            handle.block_on(self.wait_all())?;
        } else if self.local.is_some() {
            // One part or less: the local copy has it; no need to hold it in memory too.
            self.part = Vec::new();
        }
        self.finished = true;
        Ok(())
    }

    fn local_path(&self) -> Option<&FsPath> {
        self.local.as_ref().map(NamedTempFile::path)
    }

    fn persist(self: Box<Self>, object: &str) -> Result<()> {
        let target = self.client.key(object);
        self.persist_at(target, object)
    }

    fn stage(mut self: Box<Self>, sha256: &str) -> Result<()> {
        self.finish()?;
        let target = self.client.blob_key(sha256);
        let handle = self.client.handle.clone();
        let stored = handle.block_on(async {
            if self.multipart.is_none() {
                self.put_whole(&target, None).await
            } else {
                self.complete_and_copy(&target, None).await
            }
        });
        if stored.is_err() {
            if let Err(e) = handle.block_on(self.abort()) {
                tracing::warn!(error = %e.detail(), "could not abort a multipart upload");
            }
        }
        stored
    }

    fn keep_as_part(self: Box<Self>, part: &str) -> Result<()> {
        let target = self.client.part_key(part);
        self.persist_at(target, part)
    }

    fn discard(mut self: Box<Self>) -> Result<()> {
        let handle = self.client.handle.clone();
        handle.block_on(self.abort())
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        // From now on a pass may abort what is left of it (this drop aborts it anyway).
        self.client
            .in_progress
            .lock()
            .expect("the uploads in progress' lock is never poisoned")
            .remove(self.temp.as_ref());
        // Dropped without `persist` or `discard` (a request that ended some other way):
        // abort in the background, never blocking (this may run on an async thread).
        for part in self.in_flight.drain(..) {
            part.abort();
        }
        if let Some(mut multipart) = self.multipart.take() {
            let key = self.temp.clone();
            self.client.handle.spawn(async move {
                if let Err(e) = multipart.abort().await {
                    tracing::warn!(error = %e, %key, "could not abort an abandoned multipart upload");
                }
            });
        }
    }
}

/// An object opened in the bucket: reads are pinned to its ETag, so a replaced object
/// fails the read instead of mixing versions. Small ones are read whole when opened.
pub struct RemoteObject {
    store: Arc<AmazonS3>,
    key: Path,
    size: u64,
    e_tag: Option<String>,
    inline: Option<Bytes>,
    runtime: tokio::runtime::Handle,
    spool: Option<std::path::PathBuf>,
}

impl RemoteObject {
    pub fn size(&self) -> u64 {
        self.size
    }

    fn pinned(&self, range: Option<std::ops::Range<u64>>) -> GetOptions {
        GetOptions {
            if_match: self.e_tag.clone(),
            range: range.map(Into::into),
            ..GetOptions::default()
        }
    }

    /// `len` bytes from `start`, chunk by chunk as the bucket sends them, through a short
    /// queue: the request runs on the storage's runtime, the chunks are read anywhere.
    fn chunks(&self, start: u64, len: u64) -> mpsc::Receiver<Result<Bytes>> {
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(4);
        if let Some(bytes) = &self.inline {
            let end = (start + len).min(bytes.len() as u64);
            let _ = tx.try_send(Ok(bytes.slice(start.min(end) as usize..end as usize)));
        } else if len > 0 {
            let store = self.store.clone();
            let key = self.key.clone();
            let options = self.pinned(Some(start..start + len));
            self.runtime.spawn(async move {
                let result = match store.get_opts(&key, options).await {
                    Ok(result) => result,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let mut chunks = result.into_stream();
                while let Some(chunk) = chunks.next().await {
                    let failed = chunk.is_err();
                    if tx.send(chunk.map_err(Error::from)).await.is_err() || failed {
                        return; // the reader hung up, or the body broke off
                    }
                }
            });
        }
        rx
    }

    /// `len` bytes from `start` as a stream (for a response body).
    pub fn stream(&self, start: u64, len: u64) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        futures_util::stream::unfold(self.chunks(start, len), |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    }

    /// The whole object as a blocking reader (call it off the async runtime).
    pub fn reader(self) -> ChunkReader {
        ChunkReader::new(self.chunks(0, self.size))
    }

    /// The object downloaded into an unnamed temporary file of the spool folder, read
    /// from its start. Blocking.
    pub fn download(self) -> Result<std::fs::File> {
        let mut file = match &self.spool {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        }
        .map_err(io_error)?;
        let mut reader = self.reader();
        std::io::copy(&mut reader, &mut file).map_err(|e| match e.downcast::<Error>() {
            Ok(e) => e,
            Err(e) => io_error(e),
        })?;
        file.flush().map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        Ok(file)
    }
}

/// Fault injection for the crash tests only (see [`super::stalls_for_test`]): steps
/// `upload-part` (the first part of a streamed upload sent, by the uploaded file's name)
/// and `persist-copy` (the bytes complete under their temporary key, not yet copied to
/// the name, by object name).
fn stall_for_test(step: &str, object: &str) {
    if super::stalls_for_test(step, object) {
        tracing::warn!(step, object, "FILE_SERVICE_FAULT_STALL: stopping here until killed");
        loop {
            std::thread::park();
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    super::write_error(e, "spooling an object of the bucket")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn client(prefix: &str) -> (Client, tokio::runtime::Runtime) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let store = AmazonS3Builder::new()
            .with_bucket_name("files")
            .with_region("us-east-1")
            .build()
            .unwrap();
        let client = Client {
            store: Arc::new(store),
            bucket: "files".into(),
            prefix: prefix.into(),
            root: Path::parse(prefix).unwrap(),
            handle: runtime.handle().clone(),
            in_progress: Arc::default(),
        };
        (client, runtime)
    }

    #[test]
    fn keys_are_names_as_written() {
        let (c, _runtime) = client("team/a");
        for name in ["1_données été.csv", "1_数据 表.csv", "1_100% sure.csv", "1_a%C3b.csv"] {
            assert_eq!(c.key(name).as_ref(), format!("team/a/{name}"));
            assert_eq!(c.uri_of(name), format!("s3://files/team/a/{name}"));
            // A listed key gives back the name unchanged, `%` and all.
            let listed = Path::parse(format!("team/a/{name}")).unwrap();
            assert_eq!(Client::name_under(&c.root, &listed).as_deref(), Some(name));
        }
        assert_eq!(c.part_key("ab12-0-ff").as_ref(), "team/a/.parts/ab12/0-ff");
        assert_eq!(c.part_key("ab12").as_ref(), "team/a/.parts/ab12");
        let deeper = Path::parse("team/a/.parts/ab12/0-ff").unwrap();
        assert_eq!(Client::name_under(&c.root, &deeper), None);
        let elsewhere = Path::parse("team/ab/1_x.csv").unwrap();
        assert_eq!(Client::name_under(&c.root, &elsewhere), None);
        let (root, _runtime) = client("");
        assert_eq!(root.key("1_été.csv").as_ref(), "1_été.csv");
        let listed = Path::parse("1_été.csv").unwrap();
        assert_eq!(Client::name_under(&root.root, &listed).as_deref(), Some("1_été.csv"));
    }

    #[test]
    fn the_earlier_layout_percent_encoded_names_and_prefix() {
        let (c, _runtime) = client("équipe/a");
        assert_eq!(
            c.legacy_key("1_données été.csv").as_ref(),
            "%C3%A9quipe/a/1_donn%C3%A9es %C3%A9t%C3%A9.csv"
        );
        assert_eq!(c.legacy_root().as_ref(), "%C3%A9quipe/a");
        // Plain ASCII names were the same then: nothing to move.
        assert_eq!(
            c.legacy_key("1_sales (v2).csv"),
            Path::parse("%C3%A9quipe/a/1_sales (v2).csv").unwrap()
        );
        let (c, _runtime) = client("team");
        assert_eq!(c.legacy_key("1_plain.csv"), c.key("1_plain.csv"));
    }
}

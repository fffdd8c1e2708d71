//! The S3 storage backend: objects `{prefix}/{user_id}_{file_name}.{ext}` in a bucket of any S3-compatible server, with `s3://` URIs.
//!
//! Uploads are received into a local spool folder first (the analysis reads them there,
//! and columnar formats need a seekable file), then sent to the bucket without ever
//! overwriting anything: a small one in one conditional PUT (`If-None-Match: *`); a large
//! one as a multipart upload of bounded parts under a temporary key no other upload can
//! use (`.upload-{uuid}`), then copied to its name only if the name is free (a multipart
//! copy completed with `If-None-Match: *`), then the temporary key is deleted. A failed
//! or cut-off multipart upload is aborted; a temporary key a dead process left is swept.
//!
//! `object_store` is async; the trait is blocking and runs on the service's blocking pool,
//! so this backend drives its own small runtime with `block_on`. Its own runtime, not the
//! server's: storage is also used before the server's runtime starts and after it stops.

use std::io::{Read, Seek, Write};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};
use tempfile::NamedTempFile;
use tokio::sync::mpsc;

use super::local::LocalStorage;
use super::{Content, Storage, StoredObject, STAGED_BYTES_KEPT_FOR, STALE_TEMPORARY_AGE};
use crate::config::S3Config;
use crate::error::{Error, Result};

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
/// Written by the readiness probe: proves the bucket is there and takes writes.
const PROBE: &str = ".readyz";

pub struct S3Storage {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Key prefix without a trailing slash; empty for the bucket's root.
    prefix: String,
    endpoint: String,
    /// Uploads in progress (and downloads for readers that seek) on this machine.
    spool: LocalStorage,
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
            .with_client_options(options)
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
        let storage = S3Storage {
            store,
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            endpoint: config.endpoint.clone().unwrap_or_else(|| "AWS".into()),
            spool: LocalStorage::open(spool)?,
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

    fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the S3 runtime lives as long as the storage")
            .handle()
            .clone()
    }

    /// The key of `name` under the prefix.
    fn key(&self, name: &str) -> Path {
        assert!(!name.contains('/'), "unsafe object name {name:?}");
        let mut parts: Vec<object_store::path::PathPart<'_>> = Vec::new();
        parts.extend(self.prefix.split('/').filter(|p| !p.is_empty()).map(Into::into));
        parts.push(name.into());
        Path::from_iter(parts)
    }

    fn blob_key(&self, sha256: &str) -> Path {
        assert!(
            sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a SHA-256: {sha256:?}"
        );
        self.key(&format!("{BLOB_PREFIX}{sha256}"))
    }

    fn prefix_path(&self) -> Option<Path> {
        (!self.prefix.is_empty()).then(|| Path::from_iter(self.prefix.split('/').filter(|p| !p.is_empty())))
    }

    /// The name of a listed key directly under the prefix; `None` for deeper keys.
    fn name_of(&self, location: &Path) -> Option<String> {
        let depth = self.prefix.split('/').filter(|p| !p.is_empty()).count();
        let parts: Vec<_> = location.parts().collect();
        if parts.len() != depth + 1 {
            return None;
        }
        let raw = parts[depth].as_ref();
        Some(
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned(),
        )
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

    /// Sends the whole of `file` to `key`: one PUT with `mode` if small; otherwise a
    /// multipart upload (aborted on any failure), which cannot be conditional here, so
    /// callers that must not overwrite upload under a key of their own first.
    async fn put_file(&self, file: &std::fs::File, key: &Path, mode: PutMode, object: &str) -> Result<()> {
        let mut file = file.try_clone().map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        if size <= PART_SIZE as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).map_err(io_error)?;
            let options = PutOptions {
                mode,
                ..PutOptions::default()
            };
            self.store.put_opts(key, PutPayload::from(bytes), options).await?;
            return Ok(());
        }
        debug_assert!(matches!(mode, PutMode::Overwrite), "a multipart upload overwrites");
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1 << 20];
        let sent: Result<()> = async {
            let mut written = 0;
            loop {
                let n = file.read(&mut buf).map_err(io_error)?;
                if n == 0 {
                    return Ok(());
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(&buf[..n]);
                written += n;
                if written > PART_SIZE && written - n <= PART_SIZE {
                    writer.wait_for_capacity(0).await?;
                    stall_for_test("persist-part", object);
                }
            }
        }
        .await;
        match sent {
            Ok(()) => {
                writer.finish().await?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "could not abort a failed multipart upload");
                }
                Err(e)
            }
        }
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

    /// Every key directly under the prefix, with its name.
    async fn list_names(&self) -> Result<Vec<(String, object_store::ObjectMeta)>> {
        let prefix = self.prefix_path();
        let metas: Vec<object_store::ObjectMeta> = self.store.list(prefix.as_ref()).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|meta| self.name_of(&meta.location).map(|name| (name, meta)))
            .collect())
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

    fn persist(&self, upload: NamedTempFile, object: &str) -> Result<()> {
        let target = self.key(object);
        let size = upload.as_file().metadata().map_err(io_error)?.len();
        self.block_on(async {
            if size <= PART_SIZE as u64 {
                return match self.put_file(upload.as_file(), &target, PutMode::Create, object).await {
                    Err(Error::Conflict(_)) => Err(self.occupied(object)),
                    other => other,
                };
            }
            // Under a key of its own first: a multipart upload cannot be made conditional
            // here, and must never become visible under a name that is taken.
            let temp = self.key(&format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
            self.put_file(upload.as_file(), &temp, PutMode::Overwrite, object)
                .await?;
            stall_for_test("persist-copy", object);
            let copied = self.copy_if_free(&temp, &target, object).await;
            if let Err(e) = self.delete_key(&temp).await {
                tracing::warn!(error = %e.detail(), "could not delete a temporary key; the periodic pass removes it");
            }
            copied
        })
    }

    fn link(&self, from: &str, to: &str) -> Result<()> {
        let (source, target) = (self.key(from), self.key(to));
        self.block_on(self.copy_if_free(&source, &target, to))
    }

    fn open(&self, object: &str) -> Result<Option<Content>> {
        let key = self.key(object);
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
                runtime: self.handle(),
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
        if object.starts_with('.') || object.contains('/') {
            return Ok(None);
        }
        let meta = self.block_on(self.head(&self.key(object)))?;
        Ok(meta.map(|meta| StoredObject {
            name: object.to_string(),
            size: meta.size,
            changed: SystemTime::from(meta.last_modified),
        }))
    }

    fn stage_blob(&self, upload: NamedTempFile, sha256: &str) -> Result<()> {
        let key = self.blob_key(sha256);
        self.block_on(self.put_file(upload.as_file(), &key, PutMode::Overwrite, sha256))
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
            Ok::<_, Error>(removed)
        })?;
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
    pub fn reader(self) -> RemoteReader {
        RemoteReader {
            chunks: self.chunks(0, self.size),
            current: Bytes::new(),
        }
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

/// Reads a bucket object's chunks as they arrive, blocking.
pub struct RemoteReader {
    chunks: mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Fault injection for the crash tests only (see [`super::stalls_for_test`]): steps
/// `persist-part` (the first part of a multipart upload sent) and `persist-copy` (the
/// bytes complete under their temporary key, not yet copied to the name), by object name.
fn stall_for_test(step: &str, object: &str) {
    if super::stalls_for_test(step, object) {
        tracing::warn!(step, object, "FILE_SERVICE_FAULT_STALL: stopping here until killed");
        loop {
            std::thread::park();
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    if Error::is_out_of_space(&e) {
        Error::storage_full()
    } else {
        Error::Internal(anyhow::Error::new(e).context("spooling an object of the bucket"))
    }
}

//! Where file bytes live: one trait with one backend per file (a local folder, an S3 bucket).
//!
//! An upload is written to an [`UploadSink`] as its bytes arrive: a temporary file of the
//! folder, or a multipart upload to the bucket (with a local copy only when the analysis
//! needs the whole file); once accepted, `persist` gives it its name without ever
//! overwriting anything. Every method blocks; the service calls them on the blocking pool.

pub mod chunks;
pub mod local;
pub mod s3;

use std::io::{Read, Seek};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};
use crate::model::UserId;

/// What a failed write to the storage is to the client: for want of space (a full disk or
/// a used-up quota), 507, nothing a retry fixes until space is freed; anything else is
/// ours, logged with `doing`. Every write to the storage maps its errors here.
pub fn write_error(e: std::io::Error, doing: impl std::fmt::Display + Send + Sync + 'static) -> Error {
    if is_out_of_space(&e) {
        Error::storage_full()
    } else {
        Error::Internal(anyhow::Error::new(e).context(doing))
    }
}

/// [`write_error`] of the bytes of an upload (or a sync) being written.
pub fn upload_write_error(e: std::io::Error) -> Error {
    write_error(e, "writing an upload to the storage folder")
}

/// Whether a write failed for want of space. By kind, not only by OS code: `tempfile` wraps
/// its errors with the path, keeping the kind.
fn is_out_of_space(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(err.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// Staged sync bytes are kept this long for the sync that sent them; a later sync asks
/// for whatever is missing again.
pub const STAGED_BYTES_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// A temporary file unchanged this long belongs to no step in progress (a second name
/// made just before a rename, for example, lives for milliseconds).
pub const STALE_TEMPORARY_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The stored name of a file: `{user_id}_{file_name}.{ext}`, as the original design laid out.
pub fn object_name(user: UserId, file_name: &str, ext: &str) -> String {
    format!("{user}_{file_name}.{ext}")
}

/// Fault injection for the crash-recovery tests only: whether `FILE_SERVICE_FAULT_STALL`
/// (comma-separated `step:name` pairs) asks the work on `name` to stop at `step` until the
/// process is killed.
pub fn stalls_for_test(step: &str, name: &str) -> bool {
    static STALLS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let stalls = STALLS.get_or_init(|| {
        std::env::var("FILE_SERVICE_FAULT_STALL")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    });
    stalls.iter().any(|s| s.split_once(':') == Some((step, name)))
}

/// Parts of resumable uploads and of sync contents sent in pieces are hidden like
/// temporary files: `.part-{name}` in a folder (a bucket keeps them in a folder of their
/// owner's, see `s3.rs`).
pub const PART_PREFIX: &str = ".part-";

/// A part's name is made by the service of hex digits and dashes (an upload id, an
/// offset, a token); anything else is a bug, refused before it reaches a path or key.
pub fn check_part_name(name: &str) {
    assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
        "not a part name: {name:?}"
    );
}

/// Whether a stored name is a part of a sync content sent in pieces (`.part-{sha256}-…`):
/// kept, like staged bytes, for [`STAGED_BYTES_KEPT_FOR`] for the send to go on.
pub fn is_partial_content(name: &str) -> bool {
    name.strip_prefix(PART_PREFIX)
        .and_then(|rest| rest.split('-').next())
        .is_some_and(|head| head.len() == 64 && head.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A stored object as listed by [`Storage::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub name: String,
    pub size: u64,
    /// Last change of the content or of the name (the later of mtime and ctime): an
    /// object is "settled" once this is far enough in the past.
    pub changed: std::time::SystemTime,
}

pub trait Storage: Send + Sync + 'static {
    /// The `storage_type` recorded in the catalog ("local", "s3").
    fn storage_type(&self) -> &'static str;

    /// A new local temporary file (sync receives its bytes into one before
    /// [`Storage::stage_blob`]); it disappears when dropped.
    fn new_upload(&self) -> Result<NamedTempFile>;

    /// Starts receiving an upload: its bytes go where they will be stored as they arrive.
    /// With `local_copy`, every byte is also kept in a local file ([`UploadSink::local_path`])
    /// for an analysis that reads the whole file (the folder backend always has one).
    /// `label` names the upload in logs. Nothing is sent before the first write.
    fn begin_upload(&self, local_copy: bool, label: &str) -> Result<Box<dyn UploadSink>>;

    /// The URI a stored object will have.
    fn uri(&self, object: &str) -> String;

    /// Gives the bytes of `from` a second name `to` (for a rename: the old name is
    /// deleted once the catalog has switched). `Error::Conflict` if `to` exists.
    fn link(&self, from: &str, to: &str) -> Result<()>;

    /// Opens `object` for reading; `None` if it is not there.
    fn open(&self, object: &str) -> Result<Option<Content>>;

    /// Removes `object`; removing one that is already gone is not an error.
    fn delete(&self, object: &str) -> Result<()>;

    /// Whether `object` exists.
    fn exists(&self, object: &str) -> Result<bool>;

    /// Every stored object (not temporary uploads, not folders).
    fn list(&self) -> Result<Vec<StoredObject>>;

    /// Looks at one object; `None` if it is not there.
    fn stat(&self, object: &str) -> Result<Option<StoredObject>>;

    /// Whether bytes of content `sha256` are staged.
    fn has_blob(&self, sha256: &str) -> Result<bool>;

    /// Gives the staged bytes of `sha256` the name `object`; `Error::Conflict` if taken.
    fn place_blob(&self, sha256: &str, object: &str) -> Result<()>;

    /// Replaces the bytes of `object` with the staged bytes of `sha256`, atomically.
    fn replace_with_blob(&self, sha256: &str, object: &str) -> Result<()>;

    /// Forgets the staged bytes of `sha256` (no error if there are none).
    fn remove_blob(&self, sha256: &str) -> Result<()>;

    /// Opens part `part` of a resumable upload ([`UploadSink::keep_as_part`]); `None` if
    /// it is not there.
    fn open_part(&self, part: &str) -> Result<Option<Content>>;

    /// Removes every part whose name starts with `prefix` (all of one resumable upload's,
    /// whichever request or process wrote them). Returns how many.
    fn remove_parts(&self, prefix: &str) -> Result<usize>;

    /// The parts whose name starts with `prefix`, as (name, size), in no order.
    fn list_parts(&self, prefix: &str) -> Result<Vec<(String, u64)>>;

    /// Removes what interrupted work left: temporary files no process holds, staged sync
    /// bytes, and in a bucket the multipart uploads a stopped process left unfinished
    /// (aborted; never one of this process's uploads in progress). With `exclusive` (no
    /// other process can be using this storage) all of them; otherwise only those old
    /// enough that no work in progress, here or on a replica sharing the storage, can
    /// still need them ([`STALE_TEMPORARY_AGE`], [`STAGED_BYTES_KEPT_FOR`], a bucket's
    /// `S3_ABANDONED_UPLOAD_SECONDS`). Returns how many.
    fn sweep_temporaries(&self, exclusive: bool) -> Result<usize>;

    /// Where the bytes are, for logs.
    fn describe(&self) -> String;

    /// Whether the storage answers and takes writes (for `/readyz` and `check`).
    fn ping(&self) -> Result<()>;

    /// The local folder holding the objects, for the watcher; `None` for remote stores.
    fn local_folder(&self) -> Option<&Path>;

    /// Moves objects an earlier release stored under another key than their name's to
    /// their name's key (a bucket's percent-encoded keys, see `s3.rs`); `names` are the
    /// stored names the catalog holds. Runs once per storage, before anything compares it
    /// with the catalog (a pass would find those objects missing). With `dry_run` nothing
    /// moves. Returns how many objects were (or would be) moved. A folder's names always
    /// were the names: nothing to do.
    fn upgrade_keys(&self, _names: &[String], _dry_run: bool) -> Result<usize> {
        Ok(0)
    }
}

/// An upload's bytes on their way into storage, written as they arrive. Every method
/// blocks (the service calls them on the blocking pool); memory stays bounded whatever
/// the size (the bucket backend holds at most a few parts). Dropped without `persist`
/// or `discard`, it still leaves nothing behind (a multipart upload is aborted in the
/// background); `discard` waits until that is done.
pub trait UploadSink: Send {
    /// Appends the next bytes; may wait for parts in flight to the bucket.
    fn write(&mut self, bytes: &[u8]) -> Result<()>;

    /// Every byte has been written: makes them durable where they are (an fsync, or the
    /// last part sent), so a failure to store them shows before the upload is accepted.
    fn finish(&mut self) -> Result<()>;

    /// A local file holding every byte once finished, if there is one (see
    /// [`Storage::begin_upload`]).
    fn local_path(&self) -> Option<&Path>;

    /// Gives the finished upload its name `object`. `Error::Conflict` if something is
    /// already stored there (with or without a catalog record): bytes are never
    /// overwritten. On any error nothing of the upload is left.
    fn persist(self: Box<Self>, object: &str) -> Result<()>;

    /// Keeps the finished upload as the staged bytes of content `sha256` (sync receives
    /// bytes before the change that uses them), replacing a staged copy. On any error
    /// nothing of the upload is left.
    fn stage(self: Box<Self>, sha256: &str) -> Result<()>;

    /// Keeps the finished upload as part `part` of a resumable upload: hidden from
    /// listings, never overwriting (names are made unique by the caller; see
    /// [`check_part_name`]). On any error nothing of the upload is left.
    fn keep_as_part(self: Box<Self>, part: &str) -> Result<()>;

    /// Abandons the upload and removes everything it left (a local file, the parts sent).
    fn discard(self: Box<Self>) -> Result<()>;
}

/// A stored object opened for reading. Either way it keeps giving the bytes that were
/// there when it was opened, even if the object is renamed, replaced or deleted meanwhile
/// (or, remote, it fails rather than mixing two versions).
pub enum Content {
    /// A local file, kept open.
    File(std::fs::File),
    /// An object in a bucket, pinned to the version that was opened.
    Remote(s3::RemoteObject),
}

impl Content {
    /// The object's size in bytes.
    pub fn len(&self) -> Result<u64> {
        match self {
            Content::File(file) => Ok(file
                .metadata()
                .map_err(|e| {
                    crate::error::Error::Internal(anyhow::Error::new(e).context("reading a stored file's size"))
                })?
                .len()),
            Content::Remote(object) => Ok(object.size()),
        }
    }

    /// The bytes as a local file read from its start: the file itself, or a download into
    /// an unnamed temporary file (readers of columnar formats and workbooks seek). Blocking.
    pub fn into_file(self) -> Result<std::fs::File> {
        match self {
            Content::File(mut file) => {
                file.rewind().map_err(|e| {
                    crate::error::Error::Internal(anyhow::Error::new(e).context("rewinding a stored file"))
                })?;
                Ok(file)
            }
            Content::Remote(object) => object.download(),
        }
    }

    /// The whole content as a blocking reader (for hashing and copying). Blocking.
    pub fn into_reader(self) -> Result<Box<dyn Read + Send>> {
        match self {
            Content::File(file) => Ok(Box::new(Content::File(file).into_file()?)),
            Content::Remote(object) => Ok(Box::new(object.reader())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_storage_is_insufficient_storage_and_other_failures_are_internal() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(is_out_of_space(&full) && is_out_of_space(&quota));
        assert!(!is_out_of_space(&std::io::Error::from_raw_os_error(libc::EIO)));
        // As a temporary file's write reports it: the OS error wrapped with the path (found
        // by the disk-full test, where the raw-code check alone gave 500).
        let wrapped = std::io::Error::new(full.kind(), format!("{full} at path \"/storage/.upload-x\""));
        assert_eq!(wrapped.raw_os_error(), None);
        assert!(is_out_of_space(&wrapped));
        let err = upload_write_error(wrapped);
        assert!(matches!(err, Error::InsufficientStorage(_)), "{err}");
        assert_eq!(err.code(), "insufficient_storage");
        assert!(err.detail().contains("storage folder is full"), "{}", err.detail());
        let other = upload_write_error(std::io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(other, Error::Internal(_)), "{other}");
    }
}

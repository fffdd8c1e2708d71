//! Where file bytes live: one trait with one backend per file.
//!
//! Uploads are always received into a local temporary file first (the analysis reads it
//! there); `persist` then moves it to its final place without ever overwriting anything.
//! Every method blocks; the service calls them on the blocking pool.

pub mod local;

use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::Result;
use crate::model::UserId;

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
    /// The `storage_type` recorded in the catalog ("local").
    fn storage_type(&self) -> &'static str;

    /// A new temporary file to receive an upload into; it disappears when dropped.
    fn new_upload(&self) -> Result<NamedTempFile>;

    /// The URI a stored object will have.
    fn uri(&self, object: &str) -> String;

    /// Moves a complete upload to `object`. `Error::Conflict` if something is already
    /// stored there (with or without a catalog record): bytes are never overwritten.
    fn persist(&self, upload: NamedTempFile, object: &str) -> Result<()>;

    /// Gives the bytes of `from` a second name `to` (for a rename: the old name is
    /// deleted once the catalog has switched). `Error::Conflict` if `to` exists.
    fn link(&self, from: &str, to: &str) -> Result<()>;

    /// Opens `object` for reading; `None` if it is not there.
    fn open(&self, object: &str) -> Result<Option<std::fs::File>>;

    /// Removes `object`; removing one that is already gone is not an error.
    fn delete(&self, object: &str) -> Result<()>;

    /// Whether `object` exists.
    fn exists(&self, object: &str) -> Result<bool>;

    /// A path the object can be read from on this machine.
    fn local_path(&self, object: &str) -> Option<PathBuf>;

    /// Every stored object (not temporary uploads, not folders).
    fn list(&self) -> Result<Vec<StoredObject>>;

    /// Looks at one object; `None` if it is not there.
    fn stat(&self, object: &str) -> Result<Option<StoredObject>>;

    /// Keeps a received upload as the staged bytes of content `sha256` (sync receives
    /// bytes before the change that uses them); replaces a staged copy.
    fn stage_blob(&self, upload: NamedTempFile, sha256: &str) -> Result<()>;

    /// Whether bytes of content `sha256` are staged.
    fn has_blob(&self, sha256: &str) -> Result<bool>;

    /// Gives the staged bytes of `sha256` the name `object`; `Error::Conflict` if taken.
    fn place_blob(&self, sha256: &str, object: &str) -> Result<()>;

    /// Replaces the bytes of `object` with the staged bytes of `sha256`, atomically.
    fn replace_with_blob(&self, sha256: &str, object: &str) -> Result<()>;

    /// Forgets the staged bytes of `sha256` (no error if there are none).
    fn remove_blob(&self, sha256: &str) -> Result<()>;

    /// Removes what interrupted work left: temporary files no process holds and staged
    /// sync bytes. With `exclusive` (no other process can be using this storage) all of
    /// them; otherwise only those old enough that no work in progress, here or on a
    /// replica sharing the storage, can still need them ([`STALE_TEMPORARY_AGE`],
    /// [`STAGED_BYTES_KEPT_FOR`]). Returns how many.
    fn sweep_temporaries(&self, exclusive: bool) -> Result<usize>;

    /// Where the bytes are, for logs.
    fn describe(&self) -> String;

    /// The local folder holding the objects, for the watcher; `None` for remote stores.
    fn local_folder(&self) -> Option<&Path>;
}

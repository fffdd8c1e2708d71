//! The local-folder storage backend: a flat folder of `{user_id}_{file_name}.{ext}` files with `local://` URIs.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::NamedTempFile;

use super::{Content, Storage, StoredObject, UploadSink};
use crate::error::{Error, Result};

/// Temporary uploads start with this; stored objects start with a digit, so the two can
/// never collide, and a sweep can tell leftovers apart.
const TEMP_PREFIX: &str = ".upload-";
/// Staged sync bytes, named by their SHA-256: `.blob-{sha256}`.
const BLOB_PREFIX: &str = ".blob-";

pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Opens the folder, creating it if needed, and checks it is writable.
    pub fn open(root: &Path) -> anyhow::Result<LocalStorage> {
        std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&root)
            .with_context(|| format!("{} is not writable", root.display()))?;
        Ok(LocalStorage { root })
    }

    fn path(&self, object: &str) -> PathBuf {
        // Object names come from validated file names (no separators, no leading dot);
        // this guard keeps that true even if a caller forgets.
        assert!(
            !object.contains('/') && !object.starts_with('.'),
            "unsafe object name {object:?}"
        );
        self.root.join(object)
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        assert!(
            sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a SHA-256: {sha256:?}"
        );
        self.root.join(format!("{BLOB_PREFIX}{sha256}"))
    }

    fn part_path(&self, part: &str) -> PathBuf {
        super::check_part_name(part);
        self.root.join(format!("{}{part}", super::PART_PREFIX))
    }

    /// Moves a complete temporary file to `object`, never over an existing file.
    pub(super) fn persist(&self, upload: NamedTempFile, object: &str) -> Result<()> {
        self.persist_to(upload, self.path(object))
    }

    fn persist_to(&self, upload: NamedTempFile, target: PathBuf) -> Result<()> {
        match upload.persist_noclobber(&target) {
            Ok(_) => self.sync_dir(),
            Err(e) if e.error.kind() == ErrorKind::AlreadyExists => Err(occupied(&target)),
            Err(e) => Err(Error::Internal(
                anyhow::Error::new(e.error).context(format!("cannot store {}", target.display())),
            )),
        }
    }

    fn sync_dir(&self) -> Result<()> {
        // Makes the rename/unlink itself durable, not only the file's contents.
        std::fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", self.root.display()))?;
        Ok(())
    }
}

fn occupied(target: &Path) -> Error {
    Error::Conflict(format!(
        "the storage folder already holds {} (a file without a catalog record); \
         it is never overwritten: move it away or delete it, then try again",
        target.display()
    ))
}

/// An upload received into a locked temporary file of the folder, then renamed to its
/// name (no overwrite); the file disappears if it is dropped first.
struct LocalUpload {
    temp: NamedTempFile,
    storage: LocalStorage,
}

impl UploadSink for LocalUpload {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        self.temp.write_all(bytes).map_err(super::upload_write_error)
    }

    fn finish(&mut self) -> Result<()> {
        self.temp.as_file().sync_all().map_err(super::upload_write_error)
    }

    fn local_path(&self) -> Option<&Path> {
        Some(self.temp.path())
    }

    fn persist(self: Box<Self>, object: &str) -> Result<()> {
        let LocalUpload { temp, storage } = *self;
        storage.persist(temp, object)
    }

    fn stage(self: Box<Self>, sha256: &str) -> Result<()> {
        let LocalUpload { temp, storage } = *self;
        let target = storage.blob_path(sha256);
        temp.persist(&target).map_err(|e| {
            Error::Internal(anyhow::Error::new(e.error).context(format!("cannot stage {}", target.display())))
        })?;
        storage.sync_dir()
    }

    fn keep_as_part(self: Box<Self>, part: &str) -> Result<()> {
        let LocalUpload { temp, storage } = *self;
        let target = storage.part_path(part);
        storage.persist_to(temp, target)
    }

    fn discard(self: Box<Self>) -> Result<()> {
        Ok(()) // dropping the temporary file removes it
    }
}

impl Storage for LocalStorage {
    fn storage_type(&self) -> &'static str {
        "local"
    }

    fn new_upload(&self) -> Result<NamedTempFile> {
        let file = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.root)
            .map_err(|e| super::write_error(e, format!("cannot create a temporary file in {}", self.root.display())))?;
        // The lock says "an upload is using this"; it dies with the process, so a sweep
        // by another process sharing the folder only removes real leftovers.
        file.as_file().try_lock().context("cannot lock a new temporary file")?;
        Ok(file)
    }

    fn uri(&self, object: &str) -> String {
        format!("local://{}", self.path(object).display())
    }

    fn begin_upload(&self, _local_copy: bool, _label: &str) -> Result<Box<dyn UploadSink>> {
        Ok(Box::new(LocalUpload {
            temp: self.new_upload()?,
            storage: LocalStorage {
                root: self.root.clone(),
            },
        }))
    }

    fn link(&self, from: &str, to: &str) -> Result<()> {
        let target = self.path(to);
        match std::fs::hard_link(self.path(from), &target) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(occupied(&target)),
            Err(e) => Err(Error::Internal(
                anyhow::Error::new(e).context(format!("cannot link {}", target.display())),
            )),
        }
    }

    fn open(&self, object: &str) -> Result<Option<Content>> {
        match std::fs::File::open(self.path(object)) {
            Ok(f) => Ok(Some(Content::File(f))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Internal(
                anyhow::Error::new(e).context(format!("cannot open {object}")),
            )),
        }
    }

    fn delete(&self, object: &str) -> Result<()> {
        let path = self.path(object);
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Internal(
                anyhow::Error::new(e).context(format!("cannot delete {}", path.display())),
            )),
        }
    }

    fn exists(&self, object: &str) -> Result<bool> {
        Ok(self
            .path(object)
            .try_exists()
            .with_context(|| format!("cannot check {object}"))?)
    }

    fn list(&self) -> Result<Vec<StoredObject>> {
        let entries = std::fs::read_dir(&self.root).with_context(|| format!("cannot list {}", self.root.display()))?;
        let mut objects = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if let Some(object) = self.stat(&name)? {
                objects.push(object);
            }
        }
        Ok(objects)
    }

    fn stat(&self, object: &str) -> Result<Option<StoredObject>> {
        if object.starts_with('.') || object.contains('/') {
            return Ok(None); // temporary uploads and hidden files are not objects
        }
        let meta = match std::fs::symlink_metadata(self.root.join(object)) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Internal(
                    anyhow::Error::new(e).context(format!("cannot stat {object}")),
                ))
            }
        };
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        #[cfg(unix)]
        let changed = {
            use std::os::unix::fs::MetadataExt;
            let ctime = std::time::UNIX_EPOCH
                + std::time::Duration::new(
                    meta.ctime().max(0) as u64,
                    meta.ctime_nsec().clamp(0, 999_999_999) as u32,
                );
            modified.max(ctime)
        };
        #[cfg(not(unix))]
        let changed = modified;
        Ok(Some(StoredObject {
            name: object.to_string(),
            size: meta.len(),
            changed,
        }))
    }

    fn has_blob(&self, sha256: &str) -> Result<bool> {
        Ok(self
            .blob_path(sha256)
            .try_exists()
            .with_context(|| format!("cannot check staged bytes {sha256}"))?)
    }

    fn place_blob(&self, sha256: &str, object: &str) -> Result<()> {
        let target = self.path(object);
        match std::fs::hard_link(self.blob_path(sha256), &target) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(occupied(&target)),
            Err(e) => Err(Error::Internal(
                anyhow::Error::new(e).context(format!("cannot store {}", target.display())),
            )),
        }
    }

    fn replace_with_blob(&self, sha256: &str, object: &str) -> Result<()> {
        // A second name first, then a rename over the object: readers see the old bytes
        // or the new ones, never a mix.
        let swap = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .make_in(&self.root, |path| std::fs::hard_link(self.blob_path(sha256), path))
            .with_context(|| format!("cannot stage a replacement of {object}"))?;
        swap.persist(self.path(object))
            .map_err(|e| Error::Internal(anyhow::Error::new(e.error).context(format!("cannot replace {object}"))))?;
        self.sync_dir()
    }

    fn remove_blob(&self, sha256: &str) -> Result<()> {
        match std::fs::remove_file(self.blob_path(sha256)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Internal(
                anyhow::Error::new(e).context(format!("cannot remove staged bytes {sha256}")),
            )),
        }
    }

    fn open_part(&self, part: &str) -> Result<Option<Content>> {
        match std::fs::File::open(self.part_path(part)) {
            Ok(f) => Ok(Some(Content::File(f))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Internal(
                anyhow::Error::new(e).context(format!("cannot open part {part}")),
            )),
        }
    }

    fn remove_parts(&self, prefix: &str) -> Result<usize> {
        super::check_part_name(prefix);
        let prefix = format!("{}{prefix}", super::PART_PREFIX);
        let entries = std::fs::read_dir(&self.root).with_context(|| format!("cannot list {}", self.root.display()))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Internal(
                        anyhow::Error::new(e).context(format!("cannot remove {}", entry.path().display())),
                    ))
                }
            }
        }
        if removed > 0 {
            self.sync_dir()?;
        }
        Ok(removed)
    }

    fn list_parts(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        super::check_part_name(prefix);
        let full = format!("{}{prefix}", super::PART_PREFIX);
        let entries = std::fs::read_dir(&self.root).with_context(|| format!("cannot list {}", self.root.display()))?;
        Ok(entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let size = entry.metadata().ok()?.len();
                name.starts_with(&full)
                    .then(|| (name[super::PART_PREFIX.len()..].to_string(), size))
            })
            .collect())
    }

    fn sweep_temporaries(&self, exclusive: bool) -> Result<usize> {
        let old_enough = |entry: &std::fs::DirEntry, age: std::time::Duration| {
            exclusive
                || entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() >= age)
        };
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.root).with_context(|| format!("cannot list {}", self.root.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(BLOB_PREFIX) || super::is_partial_content(&name) {
                if old_enough(&entry, super::STAGED_BYTES_KEPT_FOR) && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
                continue;
            }
            if !name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let unused = old_enough(&entry, super::STALE_TEMPORARY_AGE)
                && std::fs::File::open(entry.path()).is_ok_and(|f| f.try_lock().is_ok());
            if unused && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn describe(&self) -> String {
        format!("local folder {}", self.root.display())
    }

    fn ping(&self) -> Result<()> {
        self.new_upload().map(drop)
    }

    fn local_folder(&self) -> Option<&Path> {
        Some(&self.root)
    }
}

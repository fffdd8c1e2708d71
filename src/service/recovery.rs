//! Crash recovery: this process's lease in the catalog, and finishing or undoing the work
//! (uploads, renames, deletes, resumable uploads) that a process left half-done when it died.
//!
//! Every pending upload, delete and rename names the process doing it (its holder). A
//! process renews its lease every third of the lease period while it lives; a pass that
//! runs just as often takes over the work of holders whose lease has expired. So work a
//! replica left is resolved within twice the lease period, whether or not it restarts,
//! and work of a live replica is never touched. A SQLite catalog belongs to one server,
//! which at start takes over everything earlier processes left.

use std::sync::Arc;
use std::time::Duration;

use super::stored::hash_reader;
use super::FileService;
use crate::catalog::{RenameIntent, Unfinished};
use crate::error::Result;
use crate::model::{FileRecord, UserId};
use crate::storage::object_name;

impl FileService {
    /// Takes over and resolves abandoned work (see the module doc); with `all_others`,
    /// every other process's work. Also removes long-expired share links. Blocking.
    /// Returns how many pieces of work were resolved.
    pub fn recover(&self, all_others: bool) -> Result<usize> {
        // `all_others`: no other process can be using the storage either.
        let swept = self.storage.sweep_temporaries(all_others)?;
        if swept > 0 {
            tracing::info!(count = swept, "removed temporary files of interrupted uploads");
        }
        let abandoned = self.catalog.claim_abandoned(all_others)?;
        let count = abandoned.len();
        for unfinished in abandoned {
            match unfinished {
                Unfinished::Upload(r) => self.recover_upload(&r)?,
                Unfinished::Delete(r) => {
                    self.storage
                        .delete(&object_name(r.user_id, &r.file_name, &r.extension))?;
                    self.catalog.finish_delete(r.id)?;
                    tracing::info!(file = %r.file_name, user = r.user_id, "completed an interrupted delete");
                }
                Unfinished::Rename(intent) => self.recover_rename(&intent)?,
            }
        }
        if count > 0 {
            self.feed_changed();
        }
        let resolved = count + self.recover_resumables(all_others)?;
        let links = self.remove_expired_links()?;
        if links > 0 {
            tracing::info!(count = links, "removed expired share links");
        }
        Ok(resolved)
    }

    fn recover_upload(&self, r: &FileRecord) -> Result<()> {
        let object = object_name(r.user_id, &r.file_name, &r.extension);
        // Keep the upload only if the bytes in place are exactly its bytes: a file that was
        // there before (never overwritten) is not ours.
        if self.storage_holds(&object, r)? {
            self.catalog.commit_upload(r.id, None)?;
            tracing::info!(file = %r.file_name, user = r.user_id, "completed an interrupted upload");
        } else {
            self.catalog.abort_upload(r.id)?;
            tracing::info!(file = %r.file_name, user = r.user_id, "discarded an interrupted upload");
        }
        Ok(())
    }

    /// The rename either switched the record or it did not; the stored name that no
    /// record holds is the stale one (both, if the file was deleted since).
    fn recover_rename(&self, intent: &RenameIntent) -> Result<()> {
        for name in [&intent.from_name, &intent.to_name] {
            if !self.catalog.name_recorded(intent.user_id, name)? {
                self.storage
                    .delete(&object_name(intent.user_id, name, &intent.format))?;
            }
        }
        self.catalog.end_rename(intent.id)?;
        tracing::info!(
            from = %intent.from_name,
            to = %intent.to_name,
            user = intent.user_id,
            "finished an interrupted rename"
        );
        Ok(())
    }

    fn storage_holds(&self, object: &str, record: &FileRecord) -> Result<bool> {
        let Some(content) = self.storage.open(object)? else {
            return Ok(false);
        };
        if content.len()? != record.size_bytes {
            return Ok(false);
        }
        let bytes = content.into_reader()?;
        Ok(hash_reader(bytes).is_ok_and(|(size, sha)| size == record.size_bytes && sha == record.sha256))
    }

    /// Notes a rename in the catalog before its bytes get a second stored name.
    pub(super) async fn begin_rename(&self, user: UserId, from: &str, to: &str, format: &str) -> Result<i64> {
        let (from, to, format) = (from.to_string(), to.to_string(), format.to_string());
        self.with_catalog(move |c| c.begin_rename(user, &from, &to, &format))
            .await
    }

    /// The rename's storage steps are done. If the catalog cannot be told, the note stays
    /// until this process's lease ends, and recovery then finds nothing left to remove.
    pub(super) async fn end_rename(&self, intent: i64) {
        if let Err(e) = self.with_catalog(move |c| c.end_rename(intent)).await {
            tracing::warn!(error = %e.detail(), "a rename finished, but its note could not be removed");
        }
    }
}

/// Keeps this process's lease alive and resolves abandoned work, every third of `lease`,
/// until the task is dropped. Failures (the catalog away) are logged and retried.
pub async fn run(service: Arc<FileService>, lease: Duration) {
    let period = lease / 3;
    let mut failing = false;
    loop {
        let renewing = service.clone();
        let renewed = renewing.with_catalog(move |c| c.renew_lease(lease)).await;
        let step = match renewed {
            Ok(()) => {
                let recovering = service.clone();
                let recovered = tokio::task::spawn_blocking(move || recovering.recover(false))
                    .await
                    .map_err(crate::error::Error::internal)
                    .and_then(|r| r);
                service.complete_stalled().await;
                recovered
            }
            Err(e) => Err(e),
        };
        match step {
            Ok(count) => {
                if failing {
                    tracing::info!("lease renewed and recovery running again");
                }
                failing = false;
                if count > 0 {
                    tracing::info!(count, "resolved work that a stopped process left unfinished");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e.detail(), "cannot renew the lease or recover abandoned work; retrying");
            }
            Err(_) => {}
        }
        tokio::time::sleep(period).await;
    }
}

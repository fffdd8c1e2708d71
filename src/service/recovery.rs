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

use uuid::Uuid;

use super::stored::hash_reader;
use super::FileService;
use crate::catalog::{RenameIntent, Settlement, Unfinished};
use crate::error::{Error, Result};
use crate::model::{FileRecord, UserId};
use crate::storage::object_name;

/// An upload whose bytes are in place and whose commit may or may not have happened
/// (see [`FileService::settle_upload`]).
#[derive(Debug, Clone)]
pub(super) struct Unsettled {
    pub id: Uuid,
    pub user: UserId,
    /// Its stored name: removed only once the catalog says the upload was not committed.
    pub object: String,
    /// The session the commit would have made it active in (its cache entry follows).
    pub session: Option<Uuid>,
}

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

    /// Undoes an upload whose commit failed, without ever removing the bytes of a record
    /// that exists: the catalog says first what became of it ([`Records::settle_upload`],
    /// on a fresh connection). Committed: the record, if `failure` left the outcome
    /// unknown (it is this upload's own commit), else `failure` (recovery elsewhere
    /// committed it; the bytes stay). Not committed: the bytes go and the client hears
    /// `failure`. If the catalog cannot say, this process settles it on its periodic
    /// pass; meanwhile, if the commit may have happened, nothing is removed and the client
    /// hears that the outcome will be settled. (A definite failure's bytes are no record's
    /// unless recovery elsewhere took the upload over, which needs this process's lease to
    /// lapse: they go now, as a failed upload's always did.)
    ///
    /// [`Records::settle_upload`]: crate::catalog::Records::settle_upload
    pub(super) async fn settle_upload(&self, upload: Unsettled, failure: Error) -> Result<FileRecord> {
        let id = upload.id;
        let ambiguous = failure.is_outcome_unknown();
        match self.with_catalog(move |c| c.settle_upload(id)).await {
            Ok(Settlement::Committed(record)) if ambiguous => {
                tracing::info!(file = %record.file_name, user = record.user_id, "an upload's commit lost its answer; it had committed");
                Ok(record)
            }
            Ok(Settlement::Committed(_) | Settlement::Elsewhere) => Err(failure),
            Ok(Settlement::Aborted) => {
                self.remove_unsettled_bytes(upload.object).await;
                Err(if ambiguous {
                    Error::Unavailable(format!(
                        "{}; it had not been committed: nothing of the upload was kept; retry it",
                        failure.detail()
                    ))
                } else {
                    failure
                })
            }
            Err(e) => {
                tracing::warn!(
                    error = %e.detail(),
                    upload = %id,
                    "cannot find out whether an upload committed; settled when the catalog answers"
                );
                let object = (!ambiguous).then(|| upload.object.clone());
                self.unsettled
                    .lock()
                    .expect("the unsettled uploads' lock is never poisoned")
                    .push(upload);
                match object {
                    Some(object) => {
                        self.remove_unsettled_bytes(object).await;
                        Err(failure)
                    }
                    None => Err(Error::Unavailable(format!(
                        "{}; the outcome will be settled shortly (either the file is kept whole or nothing of it \
                         is): look the file up before retrying",
                        failure.detail()
                    ))),
                }
            }
        }
    }

    /// Removes the stored bytes of an upload the catalog says was not committed (a
    /// failure is logged: the upload's own outcome is the one to report).
    async fn remove_unsettled_bytes(&self, object: String) {
        if let Err(e) = self.with_storage(move |s| s.delete(&object)).await {
            tracing::warn!(error = %e.detail(), "an upload was undone, but its stored bytes could not be removed");
        }
    }

    /// Settles the uploads [`FileService::settle_upload`] could not (the catalog away);
    /// those it still cannot wait for the next pass.
    pub(super) async fn settle_remembered(&self) {
        let waiting = std::mem::take(
            &mut *self
                .unsettled
                .lock()
                .expect("the unsettled uploads' lock is never poisoned"),
        );
        for upload in waiting {
            let id = upload.id;
            match self.with_catalog(move |c| c.settle_upload(id)).await {
                Ok(Settlement::Committed(record)) => {
                    self.feed_changed();
                    if let Some(session) = upload.session {
                        self.cache_result(self.cache.put(upload.user, session, Arc::new(record)).await);
                    }
                    tracing::info!(upload = %id, "settled an upload whose commit lost its answer: it had committed");
                }
                Ok(Settlement::Elsewhere) => {}
                Ok(Settlement::Aborted) => {
                    self.remove_unsettled_bytes(upload.object).await;
                    tracing::info!(upload = %id, "settled an upload whose commit lost its answer: it had not committed");
                }
                Err(_) => self
                    .unsettled
                    .lock()
                    .expect("the unsettled uploads' lock is never poisoned")
                    .push(upload),
            }
        }
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
                service.settle_remembered().await;
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

//! Applying another instance's changes: new files in batches, then updates, renames and
//! deletes one at a time (conflicts and their copies: `copies.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::copies::{conflict_name, later, CONFLICT_MARK};
use super::{check_sha256, ApplyReport, Rejection};
use crate::catalog::{Change, ChangeOp};
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::model::{new_rev, validate_file_name, FileRecord, SyncRecord, UserId};
use crate::service::recovery::Unsettled;
use crate::service::{file_not_found, FileService};
use crate::storage::{object_name, upload_write_error, Content, UploadSink};

/// What became of one change.
pub(super) enum Outcome {
    Applied,
    Skipped,
    Conflict,
    /// Refused here, with the error a request would get.
    Rejected(Error),
    Deferred,
}

impl Outcome {
    /// A refusal by the user's quota becomes a rejected change (reported with its
    /// reason); any other error stays one.
    fn or_rejected(result: Result<Outcome>) -> Result<Outcome> {
        match result {
            Err(e @ Error::QuotaExceeded(_)) => Ok(Outcome::Rejected(e)),
            other => other,
        }
    }
}

/// The name a remote version gets here.
enum Placement {
    Name(String),
    /// The name is held by another file that the feed may still move: try again later.
    Wait,
}

impl FileService {
    /// Applies a batch of `source`'s feed, oldest first, and records how far it got.
    /// `last_round`: the caller has read the whole feed, so names still held by other
    /// files are conflicts, not renames yet to come.
    /// Runs to completion on its own task: a sync killed mid-request must not leave a
    /// change half-applied (a reserved name, placed bytes) until this process restarts.
    pub async fn apply_changes(
        self: &Arc<Self>,
        source: &str,
        checkpoint: i64,
        last_round: bool,
        changes: Vec<Change>,
    ) -> Result<ApplyReport> {
        let source = source.to_string();
        self.to_completion(
            move |s| async move { s.apply_changes_steps(&source, checkpoint, last_round, changes).await },
        )
        .await
    }

    async fn apply_changes_steps(
        &self,
        source: &str,
        checkpoint: i64,
        last_round: bool,
        changes: Vec<Change>,
    ) -> Result<ApplyReport> {
        if source.is_empty() || source == self.instance_id().await? {
            return Err(Error::invalid(
                "invalid_source",
                "source must be the instance id of the instance the changes come from (not this one)",
            ));
        }
        // A change carried over from an earlier batch is dropped when a newer one of the
        // same file came since.
        let mut latest: HashMap<Uuid, Change> = HashMap::new();
        for change in changes {
            match latest.get(&change.file.id) {
                Some(known) if known.seq >= change.seq => {}
                _ => {
                    latest.insert(change.file.id, change);
                }
            }
        }
        let mut pending: Vec<Change> = latest.into_values().collect();
        pending.sort_by_key(|c| c.seq);
        let used: HashSet<String> = pending
            .iter()
            .filter(|c| c.op == ChangeOp::Upsert && check_sha256(&c.file.sha256).is_ok())
            .map(|c| c.file.sha256.clone())
            .collect();

        let mut report = ApplyReport::default();
        let mut pending = self.apply_unknown_files(pending, &mut report).await?;
        // Applying one change can free a name another waits for: go round until no progress.
        for resolve_names in [false, true] {
            if resolve_names && !last_round {
                break;
            }
            loop {
                let mut waiting = Vec::new();
                let before = pending.len();
                for change in pending {
                    // Boxed: these futures nest deeply, and unboxed they make the compiler crawl.
                    match Box::pin(self.apply_one(&change, resolve_names)).await? {
                        Outcome::Applied => report.applied += 1,
                        Outcome::Skipped => report.skipped += 1,
                        Outcome::Conflict => report.conflicts += 1,
                        Outcome::Rejected(why) => {
                            report.rejected += 1;
                            report.rejections.push(Rejection {
                                seq: change.seq,
                                user_id: change.file.user_id,
                                file_name: change.file.file_name.clone(),
                                code: why.code().to_string(),
                                detail: why.detail(),
                            });
                        }
                        Outcome::Deferred => waiting.push(change),
                    }
                }
                pending = waiting;
                if pending.is_empty() || pending.len() == before {
                    break;
                }
            }
        }

        // Staged bytes of this batch are done with once no waiting change needs them.
        let needed: HashSet<&str> = pending.iter().map(|c| c.file.sha256.as_str()).collect();
        let done: Vec<String> = used.into_iter().filter(|sha| !needed.contains(sha.as_str())).collect();
        report.deferred = pending.iter().map(|c| c.seq).collect();
        report.checkpoint = pending.iter().map(|c| c.seq - 1).fold(checkpoint, i64::min);
        let (source, stored) = (source.to_string(), report.checkpoint);
        self.with_catalog(move |c| c.set_checkpoint(&source, stored)).await?;
        self.with_storage(move |s| done.iter().try_for_each(|sha| s.remove_blob(sha)))
            .await?;
        Ok(report)
    }

    /// The bulk of a first sync: files this instance has never known, under names nothing
    /// here holds, are stored in two catalog transactions for the whole batch instead of
    /// several round trips each. A name that another change of the batch also uses, or a
    /// conflict copy's name, can depend on the order the changes apply in: those, and
    /// every other change, take [`FileService::apply_one`]. Returns the changes left for it.
    async fn apply_unknown_files(&self, pending: Vec<Change>, report: &mut ApplyReport) -> Result<Vec<Change>> {
        let mut uses: HashMap<(UserId, String), usize> = HashMap::new();
        for change in &pending {
            *uses.entry(name_key(&change.file)).or_default() += 1;
        }
        // The batch reserves without counting quotas: a user with a limit takes the
        // one-at-a-time path, whose reservation checks it.
        let users: Vec<UserId> = pending
            .iter()
            .filter(|c| c.op == ChangeOp::Upsert)
            .map(|c| c.file.user_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let limited = self.users_with_quota(users).await?;
        let (candidates, mut rest): (Vec<Change>, Vec<Change>) = pending.into_iter().partition(|c| {
            c.op == ChangeOp::Upsert
                && !limited.contains(&c.file.user_id)
                && acceptable(&c.file).is_ok()
                && uses[&name_key(&c.file)] == 1
                && !c.file.file_name.contains(CONFLICT_MARK)
        });
        if candidates.is_empty() {
            return Ok(rest);
        }
        let hashes: Vec<String> = candidates.iter().map(|c| c.file.sha256.clone()).collect();
        let staged = self
            .with_storage(move |s| hashes.iter().map(|sha| s.has_blob(sha)).collect::<Result<Vec<bool>>>())
            .await?;
        let mut records = Vec::new();
        let mut by_id = HashMap::new();
        for (change, staged) in candidates.into_iter().zip(staged) {
            if !staged {
                rest.push(change);
                continue;
            }
            let remote = &change.file;
            let object = object_name(remote.user_id, &remote.file_name, &remote.extension);
            records.push(remote.to_record(self.storage.uri(&object), self.storage.storage_type().to_string()));
            by_id.insert(remote.id, change);
        }
        let reserved = {
            let records = records.clone();
            self.with_catalog(move |c| c.reserve_unknown(&records)).await?
        };
        let reserved: HashSet<Uuid> = reserved.into_iter().collect();
        let placing: Vec<(Uuid, String, String)> = records
            .iter()
            .filter(|r| reserved.contains(&r.id))
            .map(|r| {
                (
                    r.id,
                    r.sha256.clone(),
                    object_name(r.user_id, &r.file_name, &r.extension),
                )
            })
            .collect();
        let placed: Vec<(Uuid, String, Result<()>)> = self
            .with_storage(move |s| {
                Ok(placing
                    .into_iter()
                    .map(|(id, sha, object)| {
                        let placed = s.place_blob(&sha, &object);
                        (id, object, placed)
                    })
                    .collect())
            })
            .await?;
        let mut to_commit = Vec::new();
        let mut failed = Vec::new();
        for (id, object, result) in placed {
            match result {
                Ok(()) => to_commit.push((id, object)),
                Err(e) => failed.push((id, e)),
            }
        }
        let ids: Vec<Uuid> = to_commit.iter().map(|(id, _)| *id).collect();
        let committed = match self.with_catalog(move |c| c.commit_uploads(&ids)).await {
            Ok(committed) => committed,
            Err(e) if e.is_outcome_unknown() => {
                // The batch's commit may have happened: each upload is settled on its own,
                // and its bytes go only if the catalog says it is not committed.
                let users: HashMap<Uuid, UserId> = records.iter().map(|r| (r.id, r.user_id)).collect();
                let mut committed = Vec::new();
                let mut refusal = None;
                for (id, object) in to_commit {
                    let upload = Unsettled {
                        id,
                        user: users[&id],
                        object,
                        session: None,
                    };
                    match self.settle_upload(upload, Error::OutcomeUnknown(e.to_string())).await {
                        Ok(_) => committed.push(id),
                        Err(e) => refusal = refusal.or(Some(e)),
                    }
                }
                if let Some(e) = refusal {
                    self.feed_changed();
                    let failed_ids: Vec<Uuid> = failed.iter().map(|(id, _)| *id).collect();
                    let _ = self
                        .with_catalog(move |c| failed_ids.iter().try_for_each(|id| c.abort_upload(*id)))
                        .await;
                    return Err(e);
                }
                committed
            }
            Err(e) => {
                // Nothing was committed: the reservations and placed bytes go.
                let objects: Vec<String> = to_commit.into_iter().map(|(_, object)| object).collect();
                let _ = self
                    .with_storage(move |s| objects.iter().try_for_each(|o| s.delete(o)))
                    .await;
                let ids: Vec<Uuid> = reserved.into_iter().collect();
                let _ = self
                    .with_catalog(move |c| ids.iter().try_for_each(|id| c.abort_upload(*id)))
                    .await;
                return Err(e);
            }
        };
        self.feed_changed();
        report.applied += committed.len() as u64;
        let failed_ids: Vec<Uuid> = failed.iter().map(|(id, _)| *id).collect();
        if !failed_ids.is_empty() {
            self.with_catalog(move |c| failed_ids.iter().try_for_each(|id| c.abort_upload(*id)))
                .await?;
        }
        if let Some((_, e)) = failed.into_iter().next() {
            return Err(e);
        }
        for id in committed {
            by_id.remove(&id);
        }
        // Not reserved (known here, or its name is taken): decided one at a time.
        rest.extend(by_id.into_values());
        rest.sort_by_key(|c| c.seq);
        Ok(rest)
    }

    async fn apply_one(&self, change: &Change, resolve_names: bool) -> Result<Outcome> {
        let remote = &change.file;
        if let Err(e) = acceptable(remote) {
            tracing::warn!(file = %remote.id, error = %e.detail(), "sync: refused a change");
            return Ok(Outcome::Rejected(e));
        }
        let id = remote.id;
        let local = self.with_catalog(move |c| c.get_by_id(id)).await?;
        let outcome = match (change.op, local) {
            (ChangeOp::Delete, local) => {
                let deleted = match local {
                    Some(local) => Box::pin(self.apply_delete(remote, &local, resolve_names)).await,
                    None => self.note_delete(remote).await,
                };
                match (deleted, Box::pin(self.delete_copies(remote)).await) {
                    (Ok(Outcome::Skipped), Ok(true)) => Ok(Outcome::Applied),
                    (deleted, Ok(_)) => deleted,
                    (_, Err(e)) => Err(e),
                }
            }
            (ChangeOp::Upsert, Some(local)) if local.rev == remote.rev => Ok(Outcome::Skipped),
            (ChangeOp::Upsert, Some(local)) if remote.knows(&local.rev) => {
                Box::pin(self.fast_forward(&local, remote, resolve_names)).await
            }
            (ChangeOp::Upsert, Some(local)) if local.knows(&remote.rev) => Ok(Outcome::Skipped),
            (ChangeOp::Upsert, Some(local)) => Box::pin(self.resolve_conflict(&local, remote, resolve_names)).await,
            (ChangeOp::Upsert, None) => {
                let tombstone = self.with_catalog(move |c| c.tombstone(id)).await?;
                match tombstone {
                    Some(t) if t.knows(&remote.rev) => Ok(Outcome::Skipped), // deleted here after that version
                    Some(t) if !remote.knows(&t.rev) && !later(remote, &t) => {
                        // A concurrent version that loses to the deleted one: the deleted
                        // version would have kept the file, so the remote one is its
                        // conflict copy, and the file stays deleted.
                        Box::pin(self.keep_as_copy(remote, resolve_names)).await
                    }
                    Some(t) => {
                        // A change made elsewhere wins over the delete made here; the
                        // versions deleted here must not come back as conflict copies.
                        let inserted = Box::pin(self.insert_synced(remote, resolve_names)).await;
                        if matches!(inserted, Ok(Outcome::Applied | Outcome::Conflict)) {
                            Box::pin(self.forget_copies(&t)).await?;
                        }
                        inserted
                    }
                    None => Box::pin(self.insert_synced(remote, resolve_names)).await,
                }
            }
        };
        // Whether the version moved a file held here or brought back one deleted here (or
        // never seen), copies of its past held here go: a copy may be made, or arrive,
        // before the version that descends from it does.
        let outcome = match outcome {
            Ok(Outcome::Applied | Outcome::Conflict) if change.op == ChangeOp::Upsert => {
                self.drop_superseded_copies(id).await;
                outcome
            }
            other => other,
        };
        match outcome {
            // A local change raced this one (a name taken meanwhile, a file renamed or
            // deleted under it): try again with the next batch.
            Err(Error::Conflict(why)) | Err(Error::NotFound(why)) => {
                tracing::info!(file = %id, reason = %why, "sync: change deferred");
                Ok(Outcome::Deferred)
            }
            other => other,
        }
    }

    /// A delete of a file not held here is still entered in this instance's feed, unless
    /// the feed knows the file already: the deleted version must not come back here (as a
    /// conflict copy this instance makes itself when it meets the same conflict, or from
    /// a third instance), and the delete travels on to the instances this one feeds.
    async fn note_delete(&self, remote: &SyncRecord) -> Result<Outcome> {
        let tombstone = remote.clone();
        if self.with_catalog(move |c| c.record_delete(&tombstone)).await? {
            self.feed_changed();
        }
        Ok(Outcome::Skipped)
    }

    /// A delete of the version `remote` applies if the local one is that version or
    /// older; a local change made since wins (and will travel back). A local version
    /// made concurrently with the deleted one meets it as a conflict would: if it is the
    /// later, it keeps the file and the delete is void; if not, the deleted version would
    /// have kept the file, so the delete applies and the local version survives as the
    /// file's conflict copy (as it does where the delete was made, if it got there first).
    async fn apply_delete(&self, remote: &SyncRecord, local: &FileRecord, resolve_names: bool) -> Result<Outcome> {
        let mut outcome = Outcome::Applied;
        if !remote.knows(&local.rev) {
            let local_version = SyncRecord::from_record(local, true);
            if local.knows(&remote.rev) || later(&local_version, remote) {
                return Ok(Outcome::Skipped);
            }
            match Box::pin(self.keep_as_copy(&local_version, resolve_names)).await? {
                Outcome::Deferred => return Ok(Outcome::Deferred),
                _ => outcome = Outcome::Conflict,
            }
        }
        Box::pin(self.delete_file_steps(local.user_id, &local.file_name, Some(remote.clone()))).await?;
        Ok(outcome)
    }

    /// A version we do not have, for a file we do not have: stored under its name, or
    /// under a conflict name if a later local file holds that name.
    pub(super) async fn insert_synced(&self, remote: &SyncRecord, resolve_names: bool) -> Result<Outcome> {
        // Refused early if it cannot fit, before a name is resolved; the reservation below
        // checks again, race-free.
        if let Err(e) = self.check_quota_now(remote.user_id, remote.size_bytes, 1).await {
            return Outcome::or_rejected(Err(e));
        }
        let (name, conflict) = match Box::pin(self.place(remote, None, resolve_names)).await? {
            (Placement::Wait, _) => return Ok(Outcome::Deferred),
            (Placement::Name(name), conflict) => (name, conflict),
        };
        if !self.stage_content(&remote.sha256).await? {
            return Ok(Outcome::Deferred);
        }
        let object = object_name(remote.user_id, &name, &remote.extension);
        let mut record = remote.to_record(self.storage.uri(&object), self.storage.storage_type().to_string());
        self.rename_here(&mut record, name).await?;
        // Within the user's quota, checked as for an upload (a refusal is a rejected change).
        if let Err(e) = self.reserve_within_quota(record.clone()).await {
            return Outcome::or_rejected(Err(e));
        }
        let (sha, target) = (remote.sha256.clone(), object.clone());
        if let Err(e) = self.with_storage(move |s| s.place_blob(&sha, &target)).await {
            self.with_catalog(move |c| c.abort_upload(record.id)).await?;
            return Err(e);
        }
        let id = record.id;
        if let Err(e) = self.with_catalog(move |c| c.commit_upload(id, None)).await {
            // Its bytes go only once the catalog says it is not committed.
            let upload = Unsettled {
                id,
                user: remote.user_id,
                object,
                session: None,
            };
            self.settle_upload(upload, e).await?;
        }
        self.feed_changed();
        Ok(if conflict { Outcome::Conflict } else { Outcome::Applied })
    }

    /// Moves the local record to `remote`, a version that descends from it: new name,
    /// bytes and description follow.
    pub(super) async fn fast_forward(
        &self,
        local: &FileRecord,
        remote: &SyncRecord,
        resolve_names: bool,
    ) -> Result<Outcome> {
        if remote.size_bytes > local.size_bytes {
            // A version that grows the file must fit the user's byte quota (checked before
            // anything moves; not a reservation, so concurrent growth may pass it).
            let growth = remote.size_bytes - local.size_bytes;
            if let Err(e) = self.check_quota_now(local.user_id, growth, 0).await {
                return Outcome::or_rejected(Err(e));
            }
        }
        let (name, conflict) = if remote.file_name == local.file_name {
            (local.file_name.clone(), false)
        } else {
            match Box::pin(self.place(remote, Some(local.id), resolve_names)).await? {
                (Placement::Wait, _) => return Ok(Outcome::Deferred),
                (Placement::Name(name), conflict) => (name, conflict),
            }
        };
        let new_content = remote.sha256 != local.sha256;
        if new_content && !self.stage_content(&remote.sha256).await? {
            return Ok(Outcome::Deferred);
        }
        let user = local.user_id;
        let old_object = object_name(user, &local.file_name, &local.extension);
        let new_object = object_name(user, &name, &remote.extension);
        let moved = new_object != old_object;
        let intent = if moved {
            Some(
                self.begin_rename(user, &local.file_name, &name, &remote.extension)
                    .await?,
            )
        } else {
            None
        };
        let result = self
            .move_to_version(local, remote, name, conflict, new_content, old_object, new_object)
            .await;
        if let Some(intent) = intent {
            self.end_rename(intent).await;
        }
        result
    }

    /// The storage and catalog steps of [`FileService::fast_forward`], once a rename (if
    /// any) is noted: new bytes or name in place, record switched, the old name dropped.
    #[allow(clippy::too_many_arguments)]
    async fn move_to_version(
        &self,
        local: &FileRecord,
        remote: &SyncRecord,
        name: String,
        conflict: bool,
        new_content: bool,
        old_object: String,
        new_object: String,
    ) -> Result<Outcome> {
        let user = local.user_id;
        let moved = new_object != old_object;
        let (sha, from, to) = (remote.sha256.clone(), old_object.clone(), new_object.clone());
        self.with_storage(move |s| match (moved, new_content) {
            (true, true) => s.place_blob(&sha, &to),
            (true, false) => s.link(&from, &to),
            (false, true) => s.replace_with_blob(&sha, &to),
            (false, false) => Ok(()),
        })
        .await?;
        let mut record = remote.to_record(self.storage.uri(&new_object), self.storage.storage_type().to_string());
        self.rename_here(&mut record, name).await?;
        let _guard = self.lock_user(user).await?;
        let applied = self.with_catalog(move |c| c.apply_version(&record)).await;
        self.feed_changed();
        let (_, sessions) = match applied {
            Ok(Some(done)) => done,
            other => {
                if moved {
                    let _ = self.with_storage(move |s| s.delete(&new_object)).await;
                }
                return Err(other.err().unwrap_or_else(|| file_not_found(&local.file_name)));
            }
        };
        for session in sessions {
            self.cache_result(self.cache.remove(user, session).await);
        }
        drop(_guard);
        if moved {
            if let Err(e) = self.with_storage(move |s| s.delete(&old_object)).await {
                tracing::warn!(error = %e, "sync: renamed, but the old stored name could not be removed");
            }
        }
        Ok(if conflict { Outcome::Conflict } else { Outcome::Applied })
    }

    /// Gives `record` (a remote version) the name it gets here. A name other than the
    /// version's own (it lost its name to a later local file) makes it a rename made
    /// here: a new version that descends from the remote one and whose origin is this
    /// instance, so that it travels back. The instance the version came from may never
    /// meet the clash itself (the local file may be renamed or deleted before it reads
    /// it), and with the remote rev kept, both would hold the same version under two names.
    async fn rename_here(&self, record: &mut FileRecord, name: String) -> Result<()> {
        if name != record.file_name {
            record.rev_history = record.next_history();
            record.rev = new_rev();
            record.origin = self.instance_id().await?;
            record.file_name = name;
        }
        Ok(())
    }

    /// Decides the local name of `remote` (file `own` here, if it exists). Returns the
    /// name and whether a conflict was resolved to get it.
    async fn place(&self, remote: &SyncRecord, own: Option<Uuid>, resolve_names: bool) -> Result<(Placement, bool)> {
        let user = remote.user_id;
        let name = remote.file_name.clone();
        let holder = {
            let name = name.clone();
            self.with_catalog(move |c| c.get_file(user, &name)).await?
        };
        let holder = match holder {
            Some(h) if Some(h.id) != own => h,
            Some(_) => return Ok((Placement::Name(name), false)),
            None => {
                // An upload or delete in progress may hold the name: wait for it.
                let claimed = {
                    let name = name.clone();
                    self.with_catalog(move |c| c.name_claimed(user, &name)).await?
                };
                return Ok((
                    if claimed {
                        Placement::Wait
                    } else {
                        Placement::Name(name)
                    },
                    false,
                ));
            }
        };
        if !resolve_names {
            return Ok((Placement::Wait, false));
        }
        if later(remote, &SyncRecord::from_record(&holder, false)) {
            // The local holder is older: it gives the name up (a local change, which
            // travels back to the other instance as a rename).
            let conflict = conflict_name(&SyncRecord::from_record(&holder, false));
            Box::pin(self.update_file_steps(user, &holder.file_name, Some(conflict), None)).await?;
            Ok((Placement::Name(name), true))
        } else {
            Ok((Placement::Name(conflict_name(remote)), true))
        }
    }

    /// Makes sure the bytes of `sha256` are staged: received earlier, or copied from a
    /// stored file with the same content. `false` if neither is possible.
    async fn stage_content(&self, sha256: &str) -> Result<bool> {
        let sha = sha256.to_string();
        if self.with_storage(move |s| s.has_blob(&sha)).await? {
            return Ok(true);
        }
        let sha = sha256.to_string();
        let Some(source) = self.with_catalog(move |c| c.find_by_sha256(&sha)).await? else {
            return Ok(false);
        };
        let object = object_name(source.user_id, &source.file_name, &source.extension);
        let Some(content) = self.with_storage(move |s| s.open(&object)).await? else {
            return Ok(false);
        };
        let label = format!("copy of content {sha256}");
        let upload = self.with_storage(move |s| s.begin_upload(false, &label)).await?;
        let sha = sha256.to_string();
        self.with_storage(move |_| {
            let mut upload = upload;
            let copied = copy_verified(content, &mut *upload, &sha);
            match copied.and_then(|()| upload.finish()) {
                Ok(()) => upload.stage(&sha),
                Err(e) => {
                    let _ = upload.discard();
                    Err(e)
                }
            }
        })
        .await?;
        Ok(true)
    }
}

/// Copies `content` into `upload`, failing if it does not hash to `sha256` (the stored
/// file changed while it was read).
fn copy_verified(content: Content, upload: &mut dyn UploadSink, sha256: &str) -> Result<()> {
    use std::io::Read;
    let mut reader = content.into_reader()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(upload_write_error)?;
        if n == 0 {
            break;
        }
        upload.write(&buf[..n])?;
        hasher.update(&buf[..n]);
    }
    if hex::encode(hasher.finalize()) != sha256 {
        return Err(Error::NotFound(format!(
            "the stored copy of {sha256} changed meanwhile"
        )));
    }
    Ok(())
}

/// A user's name, as the catalog's uniqueness compares it (at most case-folded).
fn name_key(r: &SyncRecord) -> (UserId, String) {
    (r.user_id, r.file_name.to_lowercase())
}

/// Whether a remote record can be kept here at all.
fn acceptable(r: &SyncRecord) -> Result<()> {
    validate_file_name(&r.file_name)?;
    check_sha256(&r.sha256)?;
    if r.user_id <= 0 {
        return Err(Error::invalid("invalid_user", "user_id must be positive"));
    }
    if Format::from_extension(&r.extension).is_none() {
        return Err(Error::invalid(
            "unsupported_extension",
            format!("format {:?} is not supported", r.extension),
        ));
    }
    if r.rev.is_empty() {
        return Err(Error::invalid("invalid_rev", "the record has no rev"));
    }
    Ok(())
}

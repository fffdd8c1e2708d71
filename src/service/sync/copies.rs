//! Conflict copies: a version that loses a conflict is kept beside the winner under a
//! conflict name, the same on every instance; copies that a delete or a newer version
//! makes redundant go.

use uuid::Uuid;

use super::apply::Outcome;
use crate::error::{Error, Result};
use crate::model::{FileRecord, SyncRecord, MAX_NAME_BYTES, MAX_NAME_CHARS};
use crate::service::FileService;

impl FileService {
    /// The same file changed here and there since they last agreed: the later version
    /// keeps the file; the other becomes a copy under a conflict name. Both instances
    /// decide the same way, so they converge on the same two files.
    pub(super) async fn resolve_conflict(
        &self,
        local: &FileRecord,
        remote: &SyncRecord,
        resolve_names: bool,
    ) -> Result<Outcome> {
        let local_version = SyncRecord::from_record(local, true);
        let remote_wins = later(remote, &local_version);
        let loser = if remote_wins { &local_version } else { remote };
        if let Outcome::Deferred = Box::pin(self.keep_as_copy(loser, resolve_names)).await? {
            return Ok(Outcome::Deferred);
        }
        if remote_wins {
            if let Outcome::Deferred = Box::pin(self.fast_forward(local, remote, resolve_names)).await? {
                return Ok(Outcome::Deferred);
            }
        }
        Ok(Outcome::Conflict)
    }

    /// Keeps `loser`, a version that lost a conflict, as its file's conflict copy (unless
    /// this instance holds that copy already, or deleted it). The copy's id is derived
    /// from the file's id and the losing rev, so every instance that meets the same
    /// conflict makes the same copy.
    /// A copy deleted here at that version or later stays deleted, as any deleted version
    /// does (a delete beats the version it deleted): this instance may meet the same
    /// conflict again (a change that waited and is retried, a delete of the winner while
    /// the loser is still the file here), and every other instance refuses the copy for
    /// the same delete.
    pub(super) async fn keep_as_copy(&self, loser: &SyncRecord, resolve_names: bool) -> Result<Outcome> {
        let mut copy = loser.clone();
        copy.id = copy_id(loser.id, &loser.rev);
        copy.file_name = conflict_name(loser);
        // The copy is a file made here, so its origin is this instance (its name still
        // names the instance whose version it keeps). With the loser's origin, a copy
        // made here of the other instance's version would never reach that instance,
        // which makes the same copy itself only if it meets the same conflict; if it
        // changed the file again first, it meets another one.
        copy.origin = self.instance_id().await?;
        let copy_id = copy.id;
        if self.with_catalog(move |c| c.get_by_id(copy_id)).await?.is_some() {
            return Ok(Outcome::Skipped);
        }
        if let Some(deleted) = self.with_catalog(move |c| c.tombstone(copy_id)).await? {
            if deleted.knows(&loser.rev) {
                return Ok(Outcome::Skipped);
            }
        }
        match Box::pin(self.insert_synced(&copy, resolve_names)).await? {
            Outcome::Deferred => return Ok(Outcome::Deferred),
            rejected @ Outcome::Rejected(_) => return Ok(rejected),
            _ => tracing::info!(file = %loser.id, copy = %copy.file_name, "sync: conflict, both versions kept"),
        }
        // Copies of the loser's own ancestors are its past: this copy supersedes them.
        if let Some(parent) = parent_version(loser) {
            if let Err(e) = Box::pin(self.delete_copies(&parent)).await {
                tracing::warn!(file = %loser.id, error = %e.detail(), "sync: a superseded conflict copy was kept");
            }
        }
        Ok(Outcome::Conflict)
    }

    /// A delete of a version also deletes the conflict copies of it and of its ancestors
    /// that are unchanged since: they are the deleted version under another name. (The
    /// delete may lose to a change made since on this side, and the copy may be all that
    /// is left here of the deleted version.) Each such delete is made here, so it reaches
    /// every instance, the one that made the original delete included, which may have
    /// received the copy meanwhile. Returns whether any copy was deleted.
    pub(super) async fn delete_copies(&self, tombstone: &SyncRecord) -> Result<bool> {
        let here = self.instance_id().await?;
        let mut deleted = false;
        for rev in std::iter::once(&tombstone.rev).chain(tombstone.rev_history.iter()) {
            let id = copy_id(tombstone.id, rev);
            let Some(copy) = self.with_catalog(move |c| c.get_by_id(id)).await? else {
                continue;
            };
            if copy.user_id != tombstone.user_id || !tombstone.knows(&copy.rev) {
                continue; // changed since it was made: a change wins over a delete
            }
            let copy_tombstone = SyncRecord {
                origin: here.clone(),
                ..SyncRecord::from_record(&copy, false)
            };
            Box::pin(self.delete_file_steps(copy.user_id, &copy.file_name, Some(copy_tombstone))).await?;
            deleted = true;
        }
        Ok(deleted)
    }

    /// The file `id` moved to a version (a newer one, or the winner of a conflict):
    /// conflict copies of the versions it descends from, unchanged since they were made,
    /// are its own past under another name, not a concurrent change, and are deleted here
    /// (a delete made here, so it reaches the instances that hold the copy). Such a copy
    /// is made when a version loses a conflict on one instance while its maker has
    /// already changed it again: the newer version then beats the winner, and the copy
    /// of its ancestor would stay beside it.
    /// A copy that cannot be deleted now stays (it loses nothing) and is logged.
    pub(super) async fn drop_superseded_copies(&self, id: Uuid) {
        let dropped = async {
            if let Some(now) = self.with_catalog(move |c| c.get_by_id(id)).await? {
                Box::pin(self.delete_copies(&SyncRecord::from_record(&now, false))).await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(e) = dropped.await {
            tracing::warn!(file = %id, error = %e.detail(), "sync: a superseded conflict copy was kept");
        }
    }

    /// The deleted version `tombstone` lost to a change made elsewhere, whose arrival
    /// replaces the delete in this instance's feed. Conflict copies of that version (and
    /// of its ancestors) that another instance made are the deleted version under another
    /// name: they are deleted here if held, and otherwise recorded as deleted (a delete
    /// made here), so that the copy is refused when it arrives and deleted where it was made.
    pub(super) async fn forget_copies(&self, tombstone: &SyncRecord) -> Result<()> {
        Box::pin(self.delete_copies(tombstone)).await?;
        let here = self.instance_id().await?;
        for rev in std::iter::once(&tombstone.rev).chain(tombstone.rev_history.iter()) {
            let mut copy = tombstone.clone();
            copy.id = copy_id(tombstone.id, rev);
            copy.file_name = conflict_name(&SyncRecord {
                rev: rev.clone(),
                ..tombstone.clone()
            });
            copy.rev = rev.clone();
            copy.rev_history = Vec::new();
            copy.origin = here.clone();
            self.with_catalog(move |c| c.record_delete(&copy)).await?;
        }
        self.feed_changed();
        Ok(())
    }
}

/// The id of the conflict copy of file `file` at version `rev`: the same on every instance.
fn copy_id(file: Uuid, rev: &str) -> Uuid {
    Uuid::new_v5(&file, rev.as_bytes())
}

/// Whether version `a` wins over `b`: later `updated_at`, then the larger rev.
pub(super) fn later(a: &SyncRecord, b: &SyncRecord) -> bool {
    (a.updated_at, &a.rev) > (b.updated_at, &b.rev)
}

/// The version `version` was made from, as far as its history tells.
pub(super) fn parent_version(version: &SyncRecord) -> Option<SyncRecord> {
    let (rev, older) = version.rev_history.split_first()?;
    Some(SyncRecord {
        rev: rev.clone(),
        rev_history: older.to_vec(),
        ..version.clone()
    })
}

/// What every conflict copy's name contains.
pub(super) const CONFLICT_MARK: &str = " (conflict ";

/// `<name> (conflict <first 8 of its origin> <YYYY-MM-DD HH.MM.SS> <first 6 of its rev>)`,
/// shortened to fit the name limits; the same on every instance for the same version. The
/// rev tells apart versions of one name made on one instance within the same second (a
/// delete and re-create, a script): with the same name, one would wait on the other forever.
pub(super) fn conflict_name(version: &SyncRecord) -> String {
    let origin: String = version.origin.chars().take(8).collect();
    let rev: String = version.rev.chars().take(6).collect();
    let suffix = format!(
        "{CONFLICT_MARK}{origin} {} {rev})",
        version.updated_at.format("%Y-%m-%d %H.%M.%S")
    );
    let mut stem = version.file_name.clone();
    while stem.chars().count() + suffix.chars().count() > MAX_NAME_CHARS || stem.len() + suffix.len() > MAX_NAME_BYTES {
        stem.pop();
    }
    format!("{}{suffix}", stem.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate_file_name;
    use chrono::TimeZone;

    fn version(name: &str, origin: &str) -> SyncRecord {
        SyncRecord {
            id: Uuid::nil(),
            user_id: 1,
            file_name: name.into(),
            description: String::new(),
            extension: "csv".into(),
            size_bytes: 0,
            sha256: "0".repeat(64),
            summary: String::new(),
            row_count: 0,
            column_count: 0,
            profile: None,
            created_at: chrono::Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap(),
            updated_at: chrono::Utc.with_ymd_and_hms(2026, 11, 28, 10, 15, 30).unwrap(),
            rev: "a".into(),
            rev_history: vec![],
            origin: origin.into(),
        }
    }

    #[test]
    fn conflict_names_are_valid_deterministic_and_fit() {
        let v = version("sales", "0123456789abcdef");
        assert_eq!(conflict_name(&v), "sales (conflict 01234567 2026-11-28 10.15.30 a)");
        let mut w = v.clone();
        w.rev = "9f3ab2c4".into();
        assert_eq!(
            conflict_name(&w),
            "sales (conflict 01234567 2026-11-28 10.15.30 9f3ab2)"
        );
        let long = version(&"x".repeat(128), "0123456789abcdef");
        let name = conflict_name(&long);
        assert!(validate_file_name(&name).is_ok(), "{name}");
        assert!(name.ends_with("(conflict 01234567 2026-11-28 10.15.30 a)"));
    }

    #[test]
    fn the_later_version_wins_and_ties_go_to_the_larger_rev() {
        let a = version("a", "x");
        let mut b = version("a", "y");
        b.rev = "b".into();
        assert!(later(&b, &a) && !later(&a, &b));
        b.updated_at -= chrono::Duration::seconds(1);
        assert!(later(&a, &b));
    }
}

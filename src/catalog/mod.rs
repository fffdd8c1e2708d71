//! The catalog: durable file records and active-file entries, behind one trait with one backend per file.
//!
//! Every method blocks (SQLite and PostgreSQL drivers are synchronous); the service calls
//! them on the blocking pool.

pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use uuid::Uuid;

use crate::error::Result;
use crate::model::{FileRecord, FileUpdate, ListQuery, SyncRecord, UserId};

/// Work that a process left half-done when it died, taken over by this process for recovery.
#[derive(Debug, Clone)]
pub enum Unfinished {
    /// Reserved by an upload; its bytes may or may not have reached their final place.
    Upload(FileRecord),
    /// A delete that may not have removed the bytes yet.
    Delete(FileRecord),
    /// A rename whose bytes may still be stored under both names.
    Rename(RenameIntent),
}

/// A rename in progress: between linking the new stored name and removing the old one,
/// the bytes may exist under both; whichever name no record claims afterwards is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenameIntent {
    pub id: i64,
    pub user_id: UserId,
    pub from_name: String,
    pub to_name: String,
    pub format: String,
}

/// One entry of the change feed: a file at its latest change.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub seq: i64,
    pub op: ChangeOp,
    pub file: SyncRecord,
}

/// A read of the change feed: the entries found and how far the read got.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub changes: Vec<Change>,
    /// Where the next read continues: the last entry read when the page is full, else
    /// the newest sequence number at the time of the read (entries skipped for their
    /// origin or user are passed over, not read again).
    pub last_seq: i64,
    /// The page was full: more entries may follow at once.
    pub more: bool,
    rows: u32,
}

impl FeedPage {
    pub fn new(since: i64) -> FeedPage {
        FeedPage {
            changes: Vec::new(),
            last_seq: since,
            more: false,
            rows: 0,
        }
    }

    /// One row of the feed read, and its change if it still has one to tell.
    pub fn push(&mut self, seq: i64, change: Option<Change>) {
        self.rows += 1;
        self.last_seq = seq;
        self.changes.extend(change);
    }

    /// Closes the page of at most `limit` rows read up to sequence number `newest`.
    pub fn finish(mut self, limit: u32, newest: i64) -> FeedPage {
        self.more = self.rows >= limit;
        if !self.more {
            self.last_seq = self.last_seq.max(newest);
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Upsert,
    Delete,
}

/// What the feed keeps of a deleted file: the version sync reported as deleted, or, when
/// the delete was made here, the deleted record itself (without its profile).
///
/// A tombstone's `origin` is the instance that made the delete, not the one that made the
/// deleted version: readers skip changes of their own origin, so a delete carrying its
/// file's creator would never reach that creator.
pub fn tombstone_of(record: &FileRecord, synced: Option<&SyncRecord>, here: &str) -> SyncRecord {
    synced.cloned().unwrap_or_else(|| SyncRecord {
        origin: here.to_string(),
        ..SyncRecord::from_record(record, false)
    })
}

/// A version history as both catalogs store it: a JSON list of revs.
fn history_json(history: &[String]) -> String {
    serde_json::to_string(history).expect("a list of strings serializes")
}

/// What the feed keeps of a change of `record`: its op, its origin, and for a delete the
/// tombstone (the deleted version, as JSON). `here` is this instance's id.
fn feed_entry(
    record: &FileRecord,
    op: ChangeOp,
    tombstone: Option<&SyncRecord>,
    here: &str,
) -> Result<(&'static str, String, Option<String>)> {
    Ok(match op {
        ChangeOp::Upsert => ("upsert", record.origin.clone(), None),
        ChangeOp::Delete => {
            let t = tombstone_of(record, tombstone, here);
            let json = serde_json::to_string(&t).map_err(crate::error::Error::internal)?;
            ("delete", t.origin, Some(json))
        }
    })
}

/// A lock held by [`Catalog::lock_user`]; dropping it releases the lock.
pub type UserLock = Box<dyn Send>;

/// The catalog of one deployment: every role below, migrations and health.
pub trait Catalog:
    Records + ActiveFiles + ChangeFeed + Leases + ResumableUploads + ShareLinks + Quotas + Send + Sync + 'static
{
    /// Applies pending migrations; safe to call from several processes at once.
    fn migrate(&self) -> Result<()>;

    /// Locks `user` against every other process sharing this catalog until the returned
    /// guard is dropped, or `None` when the catalog is private to this process (SQLite),
    /// where the service's in-process lock is enough. The service holds it around a
    /// catalog change and the matching write to a shared cache, so replicas apply those
    /// pairs one at a time per user and a late cache write cannot undo a newer change.
    fn lock_user(&self, _user: UserId) -> Result<Option<UserLock>> {
        Ok(None)
    }

    /// Cheap round trip proving the catalog is reachable.
    fn ping(&self) -> Result<()>;

    /// What this backend is, for logs ("sqlite ./data/files.db").
    fn describe(&self) -> String;
}

/// What [`Records::settle_upload`] found of an upload whose commit had an unknown outcome.
#[derive(Debug)]
pub enum Settlement {
    /// The commit happened: the record is visible and the stored bytes are its own.
    Committed(FileRecord),
    /// The commit did not happen and the reservation is now gone: the placed bytes are
    /// no one's and the caller removes them.
    Aborted,
    /// Still reserved, but no longer by this process (recovery elsewhere took it over
    /// when this process's lease lapsed): that process decides; the bytes stay.
    Elsewhere,
}

/// A user's file records: uploads reserved and committed, lookups, listings, renames and deletes.
pub trait Records {
    /// Reserves `record.file_name` for its user with an invisible, pending record.
    /// `Error::Conflict` when the user already has (or is uploading) that name.
    fn reserve_upload(&self, record: &FileRecord) -> Result<()>;

    /// Makes a reserved upload visible and, in the same transaction, the active file of
    /// `session` (none when recovery completes an upload), and enters it in the change
    /// feed. A version made here gets `updated_at` = now; one that arrived by sync keeps
    /// its own. Returns the record as stored.
    fn commit_upload(&self, id: Uuid, session: Option<Uuid>) -> Result<FileRecord>;

    /// Forgets a reserved upload whose bytes could not be stored.
    fn abort_upload(&self, id: Uuid) -> Result<()>;

    /// Finds out what became of the upload `id` after its commit's answer was lost
    /// (`Error::OutcomeUnknown`), and ends the doubt: a reservation still pending under
    /// this process is removed (after any commit still in flight on the server ends, so
    /// the two cannot both win), and the caller learns whether the record is committed.
    fn settle_upload(&self, id: Uuid) -> Result<Settlement>;

    /// Reserves, in one transaction, each of `records` (versions that arrived by sync)
    /// whose file this instance has never known (no record in any state, no entry in its
    /// feed) and whose name nothing here holds (no file, upload or rename). Returns the
    /// ids reserved; the others are left to the one-change-at-a-time path.
    fn reserve_unknown(&self, records: &[FileRecord]) -> Result<Vec<Uuid>>;

    /// Commits reserved uploads (no session) in one transaction, each entered in the
    /// change feed. Returns the ids committed (one no longer reserved is skipped).
    fn commit_uploads(&self, ids: &[Uuid]) -> Result<Vec<Uuid>>;

    /// A page of the user's visible files, oldest first, and how many match in all.
    /// Listings leave `profile_json` empty (it is large and only `/profile` serves it) and
    /// `rev_history` empty (only sync reads it, through other calls).
    fn list_files(&self, user: UserId, query: &ListQuery) -> Result<(Vec<FileRecord>, u64)>;

    /// The id and rev of each file [`Catalog::list_files`] would answer, in its order, and
    /// the same total: enough to tell which records a kept listing still has as they are
    /// (every change to a listed field makes a new rev).
    fn list_revs(&self, user: UserId, query: &ListQuery) -> Result<(Vec<(Uuid, String)>, u64)>;

    /// The user's visible files among `ids`, as listings read them, in no particular order.
    fn listed_by_id(&self, user: UserId, ids: &[Uuid]) -> Result<Vec<FileRecord>>;

    /// The change-feed sequence number of `user`'s latest change (0 if none). Every change
    /// to a listed record (upload, rename, description, content, delete, sync) enters the
    /// feed with a new, larger number in its own transaction, so while this number stays
    /// the same the user's listing does too.
    fn list_version(&self, user: UserId) -> Result<i64>;

    fn get_file(&self, user: UserId, file_name: &str) -> Result<Option<FileRecord>>;

    /// Renames and/or re-describes a file in one transaction; its active entries follow
    /// it. Returns the new record and the sessions it is active in; `None` if no such
    /// file; `Error::Conflict` if the new name is taken.
    fn update_file(
        &self,
        user: UserId,
        file_name: &str,
        update: &FileUpdate,
    ) -> Result<Option<(FileRecord, Vec<Uuid>)>>;

    /// First half of a delete: hides the record, removes its active entries and enters
    /// the delete in the change feed with `tombstone` (the deleted version as sync
    /// reported it) or, made here, the record itself. Returns the record and the sessions
    /// it was active in; `None` if no such file.
    fn begin_delete(
        &self,
        user: UserId,
        file_name: &str,
        tombstone: Option<&SyncRecord>,
    ) -> Result<Option<(FileRecord, Vec<Uuid>)>>;

    /// Second half of a delete, once the bytes are gone.
    fn finish_delete(&self, id: Uuid) -> Result<()>;

    /// Every visible record of every user, for reconciliation with storage (without
    /// `profile_json`, as in listings).
    fn all_files(&self) -> Result<Vec<FileRecord>>;

    /// Whether any record (visible or not: an upload or delete in progress) or a rename in
    /// progress claims this user's name.
    fn name_claimed(&self, user: UserId, file_name: &str) -> Result<bool>;

    /// Replaces what was learned from a file's bytes (size, hash, analysis) after they
    /// changed in storage: a new version made here. Returns the new record and the
    /// sessions it is active in; `None` if the record is gone.
    fn replace_content(&self, content: &FileRecord) -> Result<Option<(FileRecord, Vec<Uuid>)>>;

    /// Replaces every field of the visible record `record.id` with this version (that
    /// arrived by sync: its rev, history, origin and times are kept) and enters it in the
    /// change feed. Returns the new record and the sessions it is active in; `None` if
    /// the record is gone; `Error::Conflict` if its new name is taken.
    fn apply_version(&self, record: &FileRecord) -> Result<Option<(FileRecord, Vec<Uuid>)>>;

    /// The visible record with this id, with its profile.
    fn get_by_id(&self, id: Uuid) -> Result<Option<FileRecord>>;

    /// A visible record whose bytes hash to `sha256`, if any (to copy instead of download).
    fn find_by_sha256(&self, sha256: &str) -> Result<Option<FileRecord>>;

    /// Which of `hashes` some visible record's bytes hash to, in one call (a sync asks
    /// for hundreds at a time).
    fn held_sha256s(&self, hashes: &[String]) -> Result<HashSet<String>>;

    /// Records that this process is about to store `from_name`'s bytes under `to_name`
    /// too; until [`Records::end_rename`], the storage watcher leaves both names alone.
    fn begin_rename(&self, user: UserId, from_name: &str, to_name: &str, format: &str) -> Result<i64>;

    /// The rename's storage steps are done (or undone).
    fn end_rename(&self, id: i64) -> Result<()>;

    /// Whether a record in any state holds this user's name (unlike
    /// [`Records::name_claimed`], a rename in progress does not count).
    fn name_recorded(&self, user: UserId, file_name: &str) -> Result<bool>;
}

/// The active file of each session.
pub trait ActiveFiles {
    /// Makes `file_name` the active file of `(user, session)`; `None` if no such file.
    fn set_active(&self, user: UserId, session: Uuid, file_name: &str) -> Result<Option<FileRecord>>;

    fn get_active(&self, user: UserId, session: Uuid) -> Result<Option<FileRecord>>;

    /// The session no longer has an active file (no error if it had none).
    fn clear_active(&self, user: UserId, session: Uuid) -> Result<()>;
}

/// The change feed and what sync keeps beside it: tombstones, this instance's id, checkpoints of other instances' feeds.
pub trait ChangeFeed {
    /// The version that file `id` had when it was deleted, if it was.
    fn tombstone(&self, id: Uuid) -> Result<Option<SyncRecord>>;

    /// Enters the delete of `tombstone` (a version of a file this instance never held) in
    /// the change feed, unless the file exists here or the feed already has an entry for
    /// it. Returns whether it was entered.
    fn record_delete(&self, tombstone: &SyncRecord) -> Result<bool>;

    /// Up to `limit` feed entries after `since`, oldest first, of one user or of all,
    /// without those whose origin is `exclude_origin`.
    fn changes(&self, since: i64, limit: u32, user: Option<UserId>, exclude_origin: Option<&str>) -> Result<FeedPage>;

    /// This catalog's instance id (made by the migration; shared by PostgreSQL replicas).
    fn instance_id(&self) -> Result<String>;

    /// How far this instance has applied the feed of instance `source` (0: not at all).
    fn checkpoint(&self, source: &str) -> Result<i64>;

    fn set_checkpoint(&self, source: &str, seq: i64) -> Result<()>;
}

/// Who holds unfinished work, and taking over the work of processes that are gone.
pub trait Leases {
    /// This process's identity in the catalog: the holder of the work it starts (pending
    /// uploads, deletes, renames) and of its lease.
    fn holder(&self) -> &str;

    /// Starts or extends this process's lease to `ttl` from now. While it lasts, no other
    /// process touches this one's unfinished work.
    fn renew_lease(&self, ttl: std::time::Duration) -> Result<()>;

    /// Ends this process's lease (at shutdown), so anything it left is recovered at once.
    fn end_lease(&self) -> Result<()>;

    /// Takes over the unfinished work of processes whose lease has ended (rows from before
    /// leases: once a minute old), and with `all_others` that of every other process (a
    /// SQLite catalog at server start, when no other process can be working on it). Each
    /// piece is taken by one process only; the caller must complete or undo it.
    fn claim_abandoned(&self, all_others: bool) -> Result<Vec<Unfinished>>;
}

/// Where a resumable upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResumableState {
    /// Taking bytes; `offset` of `length` have arrived.
    Receiving,
    /// Every byte arrived; the file is being analyzed and committed.
    Completing,
    /// Committed: the file's record has the upload's id.
    Done,
    /// Every byte arrived but the file was refused; `error` says why.
    Failed,
}

impl ResumableState {
    pub fn as_str(self) -> &'static str {
        match self {
            ResumableState::Receiving => "receiving",
            ResumableState::Completing => "completing",
            ResumableState::Done => "done",
            ResumableState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Result<ResumableState> {
        Ok(match text {
            "receiving" => ResumableState::Receiving,
            "completing" => ResumableState::Completing,
            "done" => ResumableState::Done,
            "failed" => ResumableState::Failed,
            other => {
                return Err(crate::error::Error::internal(format!(
                    "unknown resumable upload state {other:?}"
                )))
            }
        })
    }
}

/// A resumable (tus) upload as the catalog keeps it: the file's fields announced at
/// creation, and the stored parts that hold the bytes received so far, in order.
#[derive(Debug, Clone)]
pub struct ResumableUpload {
    pub id: Uuid,
    pub user_id: UserId,
    pub file_name: String,
    pub session_id: Uuid,
    pub description: String,
    /// The uploaded file's own name (its extension gives the format).
    pub filename: String,
    /// `Upload-Metadata` as the client sent it, given back on `HEAD`.
    pub metadata: String,
    pub length: u64,
    pub offset: u64,
    pub parts: Vec<String>,
    pub state: ResumableState,
    /// Why a failed upload's file was refused, as JSON (`status`, `code`, `detail`).
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Resumable uploads: their rows, and which process may write to each.
///
/// One request at a time writes to an upload: it holds the row (its `holder` is this
/// process) from the first byte until its bytes are recorded, and a row whose holder's
/// lease has ended is free again (see [`Leases`]).
pub trait ResumableUploads {
    /// Records a new upload (receiving, nothing held). `Error::Conflict` when another
    /// unfinished upload of the user has its name.
    fn create_resumable(&self, upload: &ResumableUpload) -> Result<()>;

    fn get_resumable(&self, id: Uuid) -> Result<Option<ResumableUpload>>;

    /// Holds a receiving upload for this process if no live process holds it (this one
    /// included). Returns whether it is now held.
    fn hold_resumable(&self, id: Uuid) -> Result<bool>;

    /// Records that a part arrived: the held upload, still at `from_offset`, moves to
    /// `upload.offset` with `upload.parts` and `upload.expires_at`; with every byte there
    /// it becomes completing (still held), else it is let go. Returns false (nothing
    /// changed) if this process no longer holds it or it was removed.
    fn record_part(&self, upload: &ResumableUpload, from_offset: u64) -> Result<bool>;

    /// Lets go of an upload this process holds, if it is still receiving.
    fn release_resumable(&self, id: Uuid) -> Result<()>;

    /// Ends a completing upload: done, or failed with `error`; its parts are forgotten.
    fn finish_resumable(&self, id: Uuid, error: Option<&str>) -> Result<()>;

    /// Removes an upload that is not completing, held or not (a request writing to it
    /// finds it gone when it records its part). Returns it; `None` if there is none
    /// or it is completing.
    fn remove_resumable(&self, id: Uuid) -> Result<Option<ResumableUpload>>;

    /// Removes and returns the uploads past their expiry that no live process holds.
    fn remove_expired_resumables(&self) -> Result<Vec<ResumableUpload>>;

    /// Lets go of receiving uploads held by processes whose lease has ended (with
    /// `all_others`, by any other process), and takes over the completing ones, which
    /// are returned for this process to complete.
    fn claim_abandoned_resumables(&self, all_others: bool) -> Result<Vec<ResumableUpload>>;
}

/// A share link as the catalog keeps it: never its secret, only the secret's SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareLink {
    pub id: Uuid,
    /// The file's id (links follow a file through renames).
    pub file_id: Uuid,
    pub user_id: UserId,
    /// The file's content when the link was made: the link serves that content only.
    pub sha256: String,
    /// `None`: as many downloads as the link's lifetime allows.
    pub max_downloads: Option<u64>,
    /// Downloads counted so far (see [`ShareLinks::count_share_download`]).
    pub downloads: u64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Share links of files. A file's links go with its row when it is deleted, and a link
/// is found by its secret only while its file is visible.
pub trait ShareLinks {
    /// Records `link` (its `downloads` are ignored: a new link has none) under the hash of
    /// its secret, if its user's file `link.file_id` is visible and still has the content
    /// `link.sha256`. Returns whether it was recorded.
    fn create_share_link(&self, link: &ShareLink, secret_sha256: &str) -> Result<bool>;

    /// The links of the user's file, oldest first.
    fn share_links(&self, user: UserId, file_id: Uuid) -> Result<Vec<ShareLink>>;

    /// Removes the link `id` of the user's file. Returns whether there was one.
    fn revoke_share_link(&self, user: UserId, file_id: Uuid, id: Uuid) -> Result<bool>;

    /// The link whose secret hashes to `secret_sha256`, with its file's visible record
    /// (without its profile); `None` if there is no such link or the file is not visible.
    fn share_link_by_secret(&self, secret_sha256: &str) -> Result<Option<(ShareLink, FileRecord)>>;

    /// Counts one download of link `id` if it has not expired and has downloads left, in
    /// one statement: concurrent downloads (on any replica) never count past
    /// `max_downloads`. Returns whether it was counted.
    fn count_share_download(&self, id: Uuid) -> Result<bool>;

    /// Removes the links that expired before `before`. Returns how many.
    fn remove_expired_share_links(&self, before: chrono::DateTime<chrono::Utc>) -> Result<usize>;
}

/// A user's limits in effect: `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QuotaLimits {
    pub bytes: Option<u64>,
    pub files: Option<u64>,
}

/// One limit of a user's override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QuotaSetting {
    /// The configured default (`QUOTA_BYTES`, `QUOTA_FILES`).
    #[default]
    Default,
    Unlimited,
    Limit(u64),
}

impl QuotaSetting {
    /// How a catalog column keeps it: NULL for the default, -1 for no limit.
    pub fn to_column(self) -> Option<i64> {
        match self {
            QuotaSetting::Default => None,
            QuotaSetting::Unlimited => Some(-1),
            QuotaSetting::Limit(n) => Some(n.min(i64::MAX as u64) as i64),
        }
    }

    pub fn from_column(column: Option<i64>) -> QuotaSetting {
        match column {
            None => QuotaSetting::Default,
            Some(n) if n < 0 => QuotaSetting::Unlimited,
            Some(n) => QuotaSetting::Limit(n as u64),
        }
    }

    fn apply(self, default: Option<u64>) -> Option<u64> {
        match self {
            QuotaSetting::Default => default,
            QuotaSetting::Unlimited => None,
            QuotaSetting::Limit(n) => Some(n),
        }
    }
}

impl serde::Serialize for QuotaSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            QuotaSetting::Default => s.serialize_str("default"),
            QuotaSetting::Unlimited => s.serialize_str("unlimited"),
            QuotaSetting::Limit(n) => s.serialize_u64(*n),
        }
    }
}

/// What `file-service quota set` recorded for a user; both `Default` when nothing was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QuotaOverride {
    pub bytes: QuotaSetting,
    pub files: QuotaSetting,
}

impl QuotaOverride {
    /// The limits in effect for a user with this override, given the configured defaults.
    pub fn apply(&self, defaults: QuotaLimits) -> QuotaLimits {
        QuotaLimits {
            bytes: self.bytes.apply(defaults.bytes),
            files: self.files.apply(defaults.files),
        }
    }
}

/// What counts against a user's quota: their visible files and the uploads reserved in
/// the catalog but not yet committed (files being deleted no longer count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QuotaUsage {
    pub bytes: u64,
    pub files: u64,
}

impl QuotaUsage {
    /// Refuses (`Error::QuotaExceeded`) adding `files` files of `bytes` bytes to this
    /// usage when it would pass `limits`. The one wording of every refusal.
    pub fn check(&self, limits: QuotaLimits, bytes: u64, files: u64) -> Result<()> {
        if let Some(max) = limits.files {
            if self.files.saturating_add(files) > max {
                return Err(crate::error::Error::QuotaExceeded(format!(
                    "the file-count quota is reached: this user has {} of {max} files; delete some to make room",
                    self.files
                )));
            }
        }
        if let Some(max) = limits.bytes {
            if self.bytes.saturating_add(bytes) > max {
                return Err(crate::error::Error::QuotaExceeded(format!(
                    "the storage quota would be exceeded: this user stores {} of {max} bytes and this file adds {bytes}; \
                     delete some files to make room",
                    self.bytes
                )));
            }
        }
        Ok(())
    }
}

/// Per-user quotas: the overrides set by `file-service quota set`, what counts against
/// them, and reserving an upload only while it fits.
pub trait Quotas {
    /// The user's override (both `Default` when none was set).
    fn quota_override(&self, user: UserId) -> Result<QuotaOverride>;

    /// Records the user's override; one of all `Default` removes it.
    fn set_quota_override(&self, user: UserId, quota: &QuotaOverride) -> Result<()>;

    /// The user's usage: visible files and reserved uploads.
    fn quota_usage(&self, user: UserId) -> Result<QuotaUsage>;

    /// Reserves an upload like [`Records::reserve_upload`], if it fits the user's limits
    /// (their override applied to `defaults`) with everything else the user has and
    /// reserves; else `Error::QuotaExceeded` and nothing is reserved. The check and the
    /// reservation are one transaction under a per-user lock that every process sharing
    /// the catalog takes, so concurrent uploads (on any replica) cannot both pass a limit.
    fn reserve_within_quota(&self, record: &FileRecord, defaults: QuotaLimits) -> Result<()>;
}

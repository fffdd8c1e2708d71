//! Replication rules: the change feed, staging another instance's bytes, and applying its changes (updates, conflicts, deletes).
//!
//! Versions: every record carries a `rev` (new on each change) and the revs it descends
//! from. A remote version that descends from ours replaces ours; one we descend from is
//! old news; neither is a conflict, resolved the same way on both instances so that
//! they converge without talking: the later `updated_at` (then the larger rev) keeps the
//! file and its name, the other is kept as a copy named `<name> (conflict <origin> <date> <rev>)`
//! with an id derived from the file's id and the losing rev (a file made by the instance
//! that resolves the conflict: that is its origin). A delete applies only to the
//! version it deleted (or older): a change made since wins.
//!
//! Names: a remote version may want a name a local file holds. Until the caller says the
//! feed is exhausted (`last_round`), such changes are deferred, because the feed may yet
//! bring the holder's rename or delete; after that the name goes to the later version.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use uuid::Uuid;

use super::upload::{SizeLimit, Taken};
use super::FileService;
use crate::catalog::Change;
use crate::error::{Error, Result};
use crate::model::{FileRecord, UserId};
use crate::storage::{object_name, Content};

mod apply;
mod copies;
mod pieces;
pub use pieces::{ContentProgress, ContentRange};

/// Longest long-poll of the change feed.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Default and largest page of the change feed.
pub const DEFAULT_LIMIT: u32 = 500;
pub const MAX_LIMIT: u32 = 1000;

/// A page of the change feed.
#[derive(Debug, serde::Serialize)]
pub struct ChangePage {
    /// The instance serving the feed.
    pub instance_id: String,
    /// Where the next read continues (`since=last_seq`).
    pub last_seq: i64,
    /// The page was full: more changes may follow at once.
    pub more: bool,
    pub changes: Vec<Change>,
}

/// What applying a batch of another instance's changes did.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ApplyReport {
    pub applied: u64,
    /// Already known here, or superseded by a newer local version.
    pub skipped: u64,
    /// Resolved conflicts (both versions kept).
    pub conflicts: u64,
    /// Changes that carry a record this instance refuses (bad name, unsupported format,
    /// a user's quota that it would exceed).
    pub rejected: u64,
    /// Why each rejected change was refused (absent from the reports of older instances).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
    /// Sequence numbers not applied yet: waiting for bytes or for a name to be freed.
    /// The caller sends them again with the next batch.
    pub deferred: Vec<i64>,
    /// The checkpoint stored for the source: everything up to it is applied.
    pub checkpoint: i64,
}

/// A change refused by the instance applying it, and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub seq: i64,
    pub user_id: UserId,
    pub file_name: String,
    /// The error code a request would get (`quota_exceeded`, `invalid_file_name`, …).
    pub code: String,
    pub detail: String,
}

impl FileService {
    /// Feed entries after `since` for `user` (`None`: every user), skipping changes that
    /// came from `exclude_origin`; waits up to `wait` for one if there is none.
    pub async fn changes(
        &self,
        since: i64,
        limit: u32,
        wait: Duration,
        user: Option<UserId>,
        exclude_origin: Option<String>,
    ) -> Result<ChangePage> {
        if since < 0 {
            return Err(Error::invalid(
                "invalid_since",
                format!("since must be 0 or more, not {since}"),
            ));
        }
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_LIMIT}, not {limit}"),
            ));
        }
        if wait > MAX_WAIT {
            return Err(Error::invalid(
                "invalid_wait",
                format!("wait must be at most {} seconds", MAX_WAIT.as_secs()),
            ));
        }
        let instance_id = self.instance_id().await?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut last_seq = since;
        loop {
            // Registered before reading, so a change committed in between still wakes us.
            let notified = self.feed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (after, exclude) = (last_seq, exclude_origin.clone());
            let page = self
                .with_catalog(move |c| c.changes(after, limit, user, exclude.as_deref()))
                .await?;
            let (changes, more) = (page.changes, page.more);
            last_seq = page.last_seq;
            let now = tokio::time::Instant::now();
            if !changes.is_empty() || more || now >= deadline {
                return Ok(ChangePage {
                    instance_id,
                    last_seq,
                    more,
                    changes,
                });
            }
            // Changes made by other replicas of a shared catalog wake no one here: look
            // again every second.
            let nap = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    /// The record and bytes of file `id`, if `user` may read it (`None`: anyone's).
    pub async fn open_by_id(&self, user: Option<UserId>, id: Uuid) -> Result<(FileRecord, Content)> {
        let not_found = || Error::NotFound(format!("no file with id {id}"));
        let record = self
            .with_catalog(move |c| c.get_by_id(id))
            .await?
            .filter(|r| user.is_none_or(|u| u == r.user_id))
            .ok_or_else(not_found)?;
        let object = object_name(record.user_id, &record.file_name, &record.extension);
        let file = self
            .with_storage(move |s| s.open(&object))
            .await?
            .ok_or_else(not_found)?;
        Ok((record, file))
    }

    /// This instance's id and how far it has applied `source`'s feed.
    pub async fn checkpoint(&self, source: &str) -> Result<(String, i64)> {
        let source = source.to_string();
        let seq = self.with_catalog(move |c| c.checkpoint(&source)).await?;
        Ok((self.instance_id().await?, seq))
    }

    /// Which of these contents this instance holds neither staged nor in a stored file.
    /// Which of `hashes` this instance holds neither as a visible file's bytes nor as a
    /// staged content: one catalog call, then one storage call for the rest.
    pub async fn missing_contents(&self, hashes: Vec<String>) -> Result<Vec<String>> {
        let asked: Vec<String> = hashes.into_iter().collect::<HashSet<_>>().into_iter().collect();
        for sha256 in &asked {
            check_sha256(sha256)?;
        }
        let lookup = asked.clone();
        let held = self.with_catalog(move |c| c.held_sha256s(&lookup)).await?;
        let unheld: Vec<String> = asked.into_iter().filter(|h| !held.contains(h)).collect();
        let mut missing = self
            .with_storage(move |s| {
                let mut missing = Vec::new();
                for sha256 in unheld {
                    if !s.has_blob(&sha256)? {
                        missing.push(sha256);
                    }
                }
                Ok(missing)
            })
            .await?;
        missing.sort();
        Ok(missing)
    }

    /// Receives the bytes of content `sha256` through the intake and stages them for the
    /// changes that use them; nothing is kept unless they hash to `sha256`.
    pub async fn receive_content<S>(&self, sha256: &str, chunks: S) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        check_sha256(sha256)?;
        let label = format!("sync content {sha256}");
        let upload = self.with_storage(move |s| s.begin_upload(false, &label)).await?;
        let limit = SizeLimit::upload(self.limits.max_upload_bytes, "content");
        let Taken { upload, arrived, .. } = self.take_in(chunks, upload, None, &limit).await?;
        let checked = arrived.and_then(|arrived| match arrived.sha256 == sha256 {
            true => Ok(arrived.size),
            false => Err(Error::invalid(
                "hash_mismatch",
                format!("the body hashes to {}, not {sha256}; nothing was kept", arrived.sha256),
            )),
        });
        let size = match checked {
            Ok(size) => size,
            Err(e) => {
                self.discard_upload(upload).await;
                return Err(e);
            }
        };
        let sha = sha256.to_string();
        self.with_storage(move |_| upload.stage(&sha)).await?;
        Ok(size)
    }
}

fn check_sha256(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_sha256",
            format!("{sha256:?} is not a SHA-256 (64 lowercase hex digits)"),
        ))
    }
}

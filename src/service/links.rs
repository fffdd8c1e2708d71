//! Share links: a file's bytes for anyone who holds a link's secret, without a token, until the link expires, is revoked, is used up, or the file's content changes.
//!
//! The secret is 256 random bits, shown once (in the address the link is made with) and
//! kept only as its SHA-256. A link is bound to its file's id (it follows a rename) and to
//! the content the file had when it was made: once that content is replaced, the link
//! answers 410 `link_content_changed` rather than serve other bytes than were shared.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{file_not_found, FileService};
use crate::catalog::ShareLink;
use crate::error::{Error, Result};
use crate::model::{FileRecord, UserId};
use crate::storage::Content;

/// Shortest and longest lifetime of a link, in seconds (one second to 30 days).
pub const MIN_EXPIRES_IN: i64 = 1;
pub const MAX_EXPIRES_IN: i64 = 30 * 24 * 3600;
/// Largest `max_downloads` accepted.
pub const MAX_DOWNLOADS: i64 = 1_000_000;
/// Links one file may have at once (expired ones included until they are removed).
pub const MAX_LINKS_PER_FILE: usize = 1000;
/// An expired link still answers 410 `link_expired` (and is listed) for this long; then
/// it is removed and its address is 404 like any unknown one.
pub const EXPIRED_LINKS_KEPT: TimeDelta = TimeDelta::days(1);
/// Bytes of randomness in a secret (43 characters of base64url).
const SECRET_BYTES: usize = 32;

/// Whether a link serves its file now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Active,
    Expired,
    UsedUp,
    /// The file's content changed since the link was made.
    ContentChanged,
}

/// A link as its owner sees it: everything but the secret, which is never shown again.
#[derive(Debug, Clone, Serialize)]
pub struct LinkRead {
    pub id: Uuid,
    pub created_at: String,
    pub expires_at: String,
    pub max_downloads: Option<u64>,
    pub downloads: u64,
    pub state: LinkState,
}

/// A link just made, with its secret (the only time it is known).
pub struct NewLink {
    pub secret: String,
    pub link: LinkRead,
}

/// A link and its file's record, for one download of the file's bytes.
pub struct Shared {
    pub link: ShareLink,
    pub record: FileRecord,
    secret_sha256: String,
}

fn state_of(link: &ShareLink, file_sha256: &str, now: DateTime<Utc>) -> LinkState {
    if link.expires_at <= now {
        LinkState::Expired
    } else if link.max_downloads.is_some_and(|max| link.downloads >= max) {
        LinkState::UsedUp
    } else if link.sha256 != file_sha256 {
        LinkState::ContentChanged
    } else {
        LinkState::Active
    }
}

fn read_of(link: &ShareLink, file_sha256: &str, now: DateTime<Utc>) -> LinkRead {
    LinkRead {
        id: link.id,
        created_at: link.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        expires_at: link.expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        max_downloads: link.max_downloads,
        downloads: link.downloads,
        state: state_of(link, file_sha256, now),
    }
}

/// The error a link that does not serve its file answers with; `None` when it does.
fn refusal(link: &ShareLink, file_sha256: &str) -> Option<Error> {
    let gone = |code, detail: String| Some(Error::Gone { code, detail });
    match state_of(link, file_sha256, Utc::now()) {
        LinkState::Active => None,
        LinkState::Expired => gone(
            "link_expired",
            format!(
                "this share link expired at {}",
                link.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ),
        LinkState::UsedUp => gone(
            "link_used_up",
            format!(
                "this share link has been used for all of its {} downloads",
                link.max_downloads.unwrap_or_default()
            ),
        ),
        LinkState::ContentChanged => gone(
            "link_content_changed",
            "the file's content changed since this share link was made; ask its owner for a new link".into(),
        ),
    }
}

fn no_such_link() -> Error {
    Error::NotFound("no share link at this address: it never existed, was revoked, or its file was deleted".into())
}

/// The hex SHA-256 of a secret, as the catalog keeps it.
fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` could be one this service made (43 characters of base64url).
fn well_formed(secret: &str) -> bool {
    secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `expires_in` (required) and `max_downloads` (optional) checked against their bounds.
fn check_new_link(expires_in: Option<i64>, max_downloads: Option<i64>) -> Result<(TimeDelta, Option<u64>)> {
    let bounds = format!("a whole number of seconds from {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} (30 days)");
    let expires_in = match expires_in {
        None => {
            return Err(Error::invalid(
                "invalid_expires_in",
                format!("expires_in is required: {bounds}"),
            ))
        }
        Some(s) if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&s) => {
            return Err(Error::invalid(
                "invalid_expires_in",
                format!("expires_in is {s}; it must be {bounds}"),
            ))
        }
        Some(s) => TimeDelta::seconds(s),
    };
    let max_downloads = match max_downloads {
        Some(n) if !(1..=MAX_DOWNLOADS).contains(&n) => {
            return Err(Error::invalid(
                "invalid_max_downloads",
                format!("max_downloads is {n}; it must be from 1 to {MAX_DOWNLOADS}, or left out for no limit"),
            ))
        }
        other => other.map(|n| n as u64),
    };
    Ok((expires_in, max_downloads))
}

impl FileService {
    /// Makes a link to the user's file that expires `expires_in` seconds from now and
    /// serves at most `max_downloads` downloads (`None`: no limit).
    pub async fn create_share_link(
        &self,
        user: UserId,
        file_name: &str,
        expires_in: Option<i64>,
        max_downloads: Option<i64>,
    ) -> Result<NewLink> {
        let (expires_in, max_downloads) = check_new_link(expires_in, max_downloads)?;
        let record = self.get_file(user, file_name).await?;
        let file_id = record.id;
        let existing = self.with_catalog(move |c| c.share_links(user, file_id)).await?.len();
        if existing >= MAX_LINKS_PER_FILE {
            return Err(Error::invalid(
                "too_many_links",
                format!("{file_name:?} already has {existing} share links; revoke some first"),
            ));
        }
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; SECRET_BYTES]>());
        let now = Utc::now().trunc_subsecs(3);
        let link = ShareLink {
            id: Uuid::new_v4(),
            file_id,
            user_id: user,
            sha256: record.sha256.clone(),
            max_downloads,
            downloads: 0,
            created_at: now,
            expires_at: now + expires_in,
        };
        let (stored, hash) = (link.clone(), secret_sha256(&secret));
        if !self.with_catalog(move |c| c.create_share_link(&stored, &hash)).await? {
            // Deleted, renamed or given new content since it was looked up.
            return Err(file_not_found(file_name));
        }
        Ok(NewLink {
            secret,
            link: read_of(&link, &record.sha256, now),
        })
    }

    /// The links of the user's file, oldest first.
    pub async fn share_links(&self, user: UserId, file_name: &str) -> Result<Vec<LinkRead>> {
        let record = self.get_file(user, file_name).await?;
        let file_id = record.id;
        let links = self.with_catalog(move |c| c.share_links(user, file_id)).await?;
        let now = Utc::now();
        Ok(links.iter().map(|l| read_of(l, &record.sha256, now)).collect())
    }

    /// Revokes link `id` (a UUID) of the user's file: its address is 404 from now on.
    pub async fn revoke_share_link(&self, user: UserId, file_name: &str, id: &str) -> Result<()> {
        let id = Uuid::parse_str(id)
            .map_err(|_| Error::invalid("invalid_link_id", format!("{id:?} is not a share link id (a UUID)")))?;
        let file_id = self.get_file(user, file_name).await?.id;
        if !self
            .with_catalog(move |c| c.revoke_share_link(user, file_id, id))
            .await?
        {
            return Err(Error::NotFound(format!(
                "file {file_name:?} has no share link {id}: it never existed, was revoked or has expired"
            )));
        }
        Ok(())
    }

    /// The file behind `secret` and an open handle on its bytes, if the link serves it now.
    pub async fn open_shared(&self, secret: &str) -> Result<(Shared, Content)> {
        if !well_formed(secret) {
            return Err(no_such_link());
        }
        let hash = secret_sha256(secret);
        let lookup = hash.clone();
        let (link, record) = self
            .with_catalog(move |c| c.share_link_by_secret(&lookup))
            .await?
            .ok_or_else(no_such_link)?;
        if let Some(refused) = refusal(&link, &record.sha256) {
            return Err(refused);
        }
        // By name, as an owner's download: the handle is checked to be that record's bytes.
        let (opened, content) = match self.open_content(record.user_id, &record.file_name).await {
            Ok(found) => found,
            Err(Error::NotFound(_)) => return Err(no_such_link()),
            Err(e) => return Err(e),
        };
        if opened.id != link.file_id {
            return Err(no_such_link());
        }
        if let Some(refused) = refusal(&link, &opened.sha256) {
            return Err(refused);
        }
        let shared = Shared {
            link,
            record: opened,
            secret_sha256: hash,
        };
        Ok((shared, content))
    }

    /// Counts one download of a shared file, or says why the link no longer serves it
    /// (it expired, was used up or revoked since it was opened).
    pub async fn count_shared_download(&self, shared: &Shared) -> Result<()> {
        let id = shared.link.id;
        if self.with_catalog(move |c| c.count_share_download(id)).await? {
            return Ok(());
        }
        let hash = shared.secret_sha256.clone();
        match self.with_catalog(move |c| c.share_link_by_secret(&hash)).await? {
            None => Err(no_such_link()),
            Some((link, record)) => Err(refusal(&link, &record.sha256).unwrap_or_else(|| Error::Gone {
                code: "link_used_up",
                detail: "this share link has been used for all of its downloads".into(),
            })),
        }
    }

    /// The periodic pass's share (blocking): removes links that expired longer ago than
    /// [`EXPIRED_LINKS_KEPT`]. Returns how many.
    pub(super) fn remove_expired_links(&self) -> Result<usize> {
        self.catalog.remove_expired_share_links(Utc::now() - EXPIRED_LINKS_KEPT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_links_are_checked_against_their_bounds() {
        assert!(check_new_link(Some(1), None).is_ok());
        assert!(check_new_link(Some(MAX_EXPIRES_IN), Some(MAX_DOWNLOADS)).is_ok());
        for (expires_in, max_downloads, code) in [
            (None, None, "invalid_expires_in"),
            (Some(0), None, "invalid_expires_in"),
            (Some(MAX_EXPIRES_IN + 1), None, "invalid_expires_in"),
            (Some(60), Some(0), "invalid_max_downloads"),
            (Some(60), Some(MAX_DOWNLOADS + 1), "invalid_max_downloads"),
        ] {
            let err = check_new_link(expires_in, max_downloads).unwrap_err();
            assert_eq!(err.code(), code, "{expires_in:?} {max_downloads:?}: {err}");
        }
    }

    #[test]
    fn secrets_this_service_makes_are_well_formed() {
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; SECRET_BYTES]);
        assert!(well_formed(&secret), "{secret}");
        assert!(!well_formed(&secret[1..]));
        assert!(!well_formed(&format!("{}=", &secret[1..])));
    }

    #[test]
    fn a_link_says_first_that_it_expired_then_that_it_is_used_up() {
        let now = Utc::now();
        let link = ShareLink {
            id: Uuid::new_v4(),
            file_id: Uuid::new_v4(),
            user_id: 1,
            sha256: "a".into(),
            max_downloads: Some(1),
            downloads: 1,
            created_at: now,
            expires_at: now - TimeDelta::seconds(1),
        };
        assert_eq!(state_of(&link, "b", now), LinkState::Expired);
        let later = ShareLink {
            expires_at: now + TimeDelta::hours(1),
            ..link
        };
        assert_eq!(state_of(&later, "b", now), LinkState::UsedUp);
        let fresh = ShareLink { downloads: 0, ..later };
        assert_eq!(state_of(&fresh, "b", now), LinkState::ContentChanged);
        assert_eq!(state_of(&fresh, "a", now), LinkState::Active);
    }
}

//! Share links in the SQLite catalog (see [`ShareLinks`]).

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use uuid::Uuid;

use super::resumable::{parse_time, parse_uuid, time};
use super::{db_err, now, record_of, SqliteCatalog, COLUMNS};
use crate::catalog::{ShareLink, ShareLinks};
use crate::error::Result;
use crate::model::{FileRecord, UserId};

/// A link's columns (table alias `l`), named apart from a file's, read by `link_of`.
const LINK_COLUMNS: &str = "l.id AS link_id, l.file_id AS link_file_id, l.user_id AS link_user_id, \
     l.sha256 AS link_sha256, l.max_downloads AS link_max_downloads, l.downloads AS link_downloads, \
     l.created_at AS link_created_at, l.expires_at AS link_expires_at";

/// Reads a link from the [`LINK_COLUMNS`] of `row`, by column name.
fn link_of(row: &Row<'_>) -> rusqlite::Result<ShareLink> {
    Ok(ShareLink {
        id: parse_uuid(&row.get::<_, String>("link_id")?)?,
        file_id: parse_uuid(&row.get::<_, String>("link_file_id")?)?,
        user_id: row.get("link_user_id")?,
        sha256: row.get("link_sha256")?,
        max_downloads: row.get::<_, Option<i64>>("link_max_downloads")?.map(|n| n as u64),
        downloads: row.get::<_, i64>("link_downloads")? as u64,
        created_at: parse_time(&row.get::<_, String>("link_created_at")?)?,
        expires_at: parse_time(&row.get::<_, String>("link_expires_at")?)?,
    })
}

/// A file's [`COLUMNS`] from table alias `f`, without the profile (a download needs none).
fn file_columns() -> String {
    COLUMNS
        .split(", ")
        .map(|c| match c {
            "profile" => "'' AS profile".to_string(),
            c => format!("f.{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ShareLinks for SqliteCatalog {
    fn create_share_link(&self, link: &ShareLink, secret_sha256: &str) -> Result<bool> {
        let inserted = self
            .conn()?
            .execute(
                "INSERT INTO share_links (id, secret_sha256, file_id, user_id, sha256, max_downloads, downloads,
                     created_at, expires_at)
                 SELECT ?1, ?2, f.id, f.user_id, f.sha256, ?3, 0, ?4, ?5 FROM files f
                 WHERE f.id = ?6 AND f.user_id = ?7 AND f.sha256 = ?8 AND f.state = 'ready'",
                params![
                    link.id.to_string(),
                    secret_sha256,
                    link.max_downloads.map(|n| n as i64),
                    time(&link.created_at),
                    time(&link.expires_at),
                    link.file_id.to_string(),
                    link.user_id,
                    link.sha256,
                ],
            )
            .map_err(db_err)?;
        Ok(inserted == 1)
    }

    fn share_links(&self, user: UserId, file_id: Uuid) -> Result<Vec<ShareLink>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM share_links l WHERE l.user_id = ?1 AND l.file_id = ?2
                 ORDER BY l.created_at, l.id"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![user, file_id.to_string()], link_of)
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    fn revoke_share_link(&self, user: UserId, file_id: Uuid, id: Uuid) -> Result<bool> {
        let removed = self
            .conn()?
            .execute(
                "DELETE FROM share_links WHERE id = ?1 AND user_id = ?2 AND file_id = ?3",
                params![id.to_string(), user, file_id.to_string()],
            )
            .map_err(db_err)?;
        Ok(removed == 1)
    }

    fn share_link_by_secret(&self, secret_sha256: &str) -> Result<Option<(ShareLink, FileRecord)>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS}, {} FROM share_links l JOIN files f ON f.id = l.file_id
                 WHERE l.secret_sha256 = ?1 AND f.state = 'ready'",
                file_columns()
            ))
            .map_err(db_err)?;
        stmt.query_row(params![secret_sha256], |row| Ok((link_of(row)?, record_of(row)?)))
            .optional()
            .map_err(db_err)
    }

    fn count_share_download(&self, id: Uuid) -> Result<bool> {
        // One writer at a time: the condition and the increment cannot be split by another.
        let counted = self
            .conn()?
            .execute(
                "UPDATE share_links SET downloads = downloads + 1
                 WHERE id = ?1 AND expires_at > ?2 AND (max_downloads IS NULL OR downloads < max_downloads)",
                params![id.to_string(), now()],
            )
            .map_err(db_err)?;
        Ok(counted == 1)
    }

    fn remove_expired_share_links(&self, before: DateTime<Utc>) -> Result<usize> {
        self.conn()?
            .execute("DELETE FROM share_links WHERE expires_at < ?1", params![time(&before)])
            .map_err(db_err)
    }
}

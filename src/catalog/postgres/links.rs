//! Share links in the PostgreSQL catalog (see [`ShareLinks`]).

use chrono::{DateTime, Utc};
use postgres::Row;
use uuid::Uuid;

use super::{db_err, record_of, PostgresCatalog};
use crate::catalog::{ShareLink, ShareLinks};
use crate::error::Result;
use crate::model::{FileRecord, UserId};

/// A link's columns (table alias `l`), named apart from a file's, read by `link_of`.
macro_rules! link_columns {
    () => {
        "l.id AS link_id, l.file_id AS link_file_id, l.user_id AS link_user_id, l.sha256 AS link_sha256, \
         l.max_downloads AS link_max_downloads, l.downloads AS link_downloads, l.created_at AS link_created_at, \
         l.expires_at AS link_expires_at"
    };
}

// A link is recorded only while its file still has the content the caller saw. The casts
// type the parameters that only a SELECT list names.
const CREATE: &str = "INSERT INTO share_links (id, secret_sha256, file_id, user_id, sha256, max_downloads, downloads,
         created_at, expires_at)
     SELECT $1::uuid, $2::text, f.public_id, f.user_id, f.sha256, $3::bigint, 0, $4::timestamptz, $5::timestamptz
     FROM files f
     WHERE f.public_id = $6 AND f.user_id = $7 AND f.sha256 = $8 AND f.state = 'ready'";
const LIST: &str = concat!(
    "SELECT ",
    link_columns!(),
    " FROM share_links l WHERE l.user_id = $1 AND l.file_id = $2 ORDER BY l.created_at, l.id"
);
const REVOKE: &str = "DELETE FROM share_links WHERE id = $1 AND user_id = $2 AND file_id = $3";
// Without the profile: a download needs none.
const BY_SECRET: &str = concat!(
    "SELECT ",
    link_columns!(),
    ", f.public_id, f.user_id, f.file_name, f.storage_uri, f.storage_type::text, f.description, f.summary, \
     f.format, f.size_bytes, f.sha256, f.row_count, f.column_count, '' AS profile, f.created_at, f.updated_at, \
     f.state, f.rev, f.rev_history, f.origin \
     FROM share_links l JOIN files f ON f.public_id = l.file_id WHERE l.secret_sha256 = $1 AND f.state = 'ready'"
);
// One statement: the row lock makes a concurrent count (on any replica) wait, then check
// the condition again against the counted row.
const COUNT_DOWNLOAD: &str = "UPDATE share_links SET downloads = downloads + 1
     WHERE id = $1 AND expires_at > now() AND (max_downloads IS NULL OR downloads < max_downloads)";
const REMOVE_EXPIRED: &str = "DELETE FROM share_links WHERE expires_at < $1";

/// Reads a link from the `link_columns!()` of `row`, by column name.
fn link_of(row: &Row) -> Result<ShareLink> {
    let read = || -> std::result::Result<ShareLink, postgres::Error> {
        Ok(ShareLink {
            id: row.try_get("link_id")?,
            file_id: row.try_get("link_file_id")?,
            user_id: row.try_get("link_user_id")?,
            sha256: row.try_get("link_sha256")?,
            max_downloads: row.try_get::<_, Option<i64>>("link_max_downloads")?.map(|n| n as u64),
            downloads: row.try_get::<_, i64>("link_downloads")? as u64,
            created_at: row.try_get("link_created_at")?,
            expires_at: row.try_get("link_expires_at")?,
        })
    };
    read().map_err(db_err)
}

impl ShareLinks for PostgresCatalog {
    fn create_share_link(&self, link: &ShareLink, secret_sha256: &str) -> Result<bool> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(CREATE)?;
        let inserted = conn
            .client
            .execute(
                &stmt,
                &[
                    &link.id,
                    &secret_sha256,
                    &link.max_downloads.map(|n| n as i64),
                    &link.created_at,
                    &link.expires_at,
                    &link.file_id,
                    &link.user_id,
                    &link.sha256,
                ],
            )
            .map_err(db_err)?;
        Ok(inserted == 1)
    }

    fn share_links(&self, user: UserId, file_id: Uuid) -> Result<Vec<ShareLink>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(LIST)?;
        let rows = conn.client.query(&stmt, &[&user, &file_id]).map_err(db_err)?;
        rows.iter().map(link_of).collect()
    }

    fn revoke_share_link(&self, user: UserId, file_id: Uuid, id: Uuid) -> Result<bool> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(REVOKE)?;
        Ok(conn.client.execute(&stmt, &[&id, &user, &file_id]).map_err(db_err)? == 1)
    }

    fn share_link_by_secret(&self, secret_sha256: &str) -> Result<Option<(ShareLink, FileRecord)>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(BY_SECRET)?;
        let row = conn.client.query_opt(&stmt, &[&secret_sha256]).map_err(db_err)?;
        row.map(|row| Ok((link_of(&row)?, record_of(&row)?))).transpose()
    }

    fn count_share_download(&self, id: Uuid) -> Result<bool> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(COUNT_DOWNLOAD)?;
        Ok(conn.client.execute(&stmt, &[&id]).map_err(db_err)? == 1)
    }

    fn remove_expired_share_links(&self, before: DateTime<Utc>) -> Result<usize> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(REMOVE_EXPIRED)?;
        Ok(conn.client.execute(&stmt, &[&before]).map_err(db_err)? as usize)
    }
}

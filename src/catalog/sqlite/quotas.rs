//! Per-user quotas in the SQLite catalog (see [`Quotas`]).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{db_err, insert_pending, is_unique_violation, SqliteCatalog};
use crate::catalog::{QuotaLimits, QuotaOverride, QuotaSetting, QuotaUsage, Quotas};
use crate::error::{Error, Result};
use crate::model::{FileRecord, UserId};

fn override_of(conn: &Connection, user: UserId) -> Result<QuotaOverride> {
    let row: Option<(Option<i64>, Option<i64>)> = conn
        .prepare_cached("SELECT max_bytes, max_files FROM quotas WHERE user_id = ?1")
        .and_then(|mut s| s.query_row(params![user], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db_err)?;
    let (bytes, files) = row.unwrap_or_default();
    Ok(QuotaOverride {
        bytes: QuotaSetting::from_column(bytes),
        files: QuotaSetting::from_column(files),
    })
}

/// Visible files and reserved uploads count; files being deleted do not.
fn usage_of(conn: &Connection, user: UserId) -> Result<QuotaUsage> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) FROM files
         WHERE user_id = ?1 AND state IN ('ready', 'pending')",
    )
    .and_then(|mut s| {
        s.query_row(params![user], |r| {
            Ok(QuotaUsage {
                bytes: r.get::<_, i64>(0)? as u64,
                files: r.get::<_, i64>(1)? as u64,
            })
        })
    })
    .map_err(db_err)
}

impl Quotas for SqliteCatalog {
    fn quota_override(&self, user: UserId) -> Result<QuotaOverride> {
        let conn = self.conn()?;
        override_of(&conn, user)
    }

    fn set_quota_override(&self, user: UserId, quota: &QuotaOverride) -> Result<()> {
        let conn = self.conn()?;
        if *quota == QuotaOverride::default() {
            conn.execute("DELETE FROM quotas WHERE user_id = ?1", params![user])
                .map_err(db_err)?;
        } else {
            conn.execute(
                "INSERT INTO quotas (user_id, max_bytes, max_files) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET max_bytes = excluded.max_bytes, max_files = excluded.max_files",
                params![user, quota.bytes.to_column(), quota.files.to_column()],
            )
            .map_err(db_err)?;
        }
        Ok(())
    }

    fn quota_usage(&self, user: UserId) -> Result<QuotaUsage> {
        let conn = self.conn()?;
        usage_of(&conn, user)
    }

    fn reserve_within_quota(&self, r: &FileRecord, defaults: QuotaLimits) -> Result<()> {
        let mut conn = self.conn()?;
        // IMMEDIATE: the write lock from the start, so no other writer (in any process)
        // reserves between this count and this insert.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let limits = override_of(&tx, r.user_id)?.apply(defaults);
        if limits != QuotaLimits::default() {
            usage_of(&tx, r.user_id)?.check(limits, r.size_bytes, 1)?;
        }
        match insert_pending(&tx, r, &self.holder, "") {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(Error::name_taken(&r.file_name)),
            Err(e) => return Err(db_err(e)),
        }
        tx.commit().map_err(db_err)
    }
}

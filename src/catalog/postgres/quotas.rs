//! Per-user quotas in the PostgreSQL catalog (see [`Quotas`]).

use postgres::{Statement, Transaction};

use super::{db_err, is_name_taken, pending_params, PostgresCatalog, INSERT_PENDING};
use crate::catalog::{QuotaLimits, QuotaOverride, QuotaSetting, QuotaUsage, Quotas};
use crate::error::{Error, Result};
use crate::model::{FileRecord, UserId};

/// First half of the two-key advisory locks taken while reserving within a quota (the
/// second half is the user id), apart from the service's user locks: a reservation never
/// waits for a commit's cache write.
const QUOTA_LOCK_SPACE: i32 = 0x6671_7531;

const OVERRIDE: &str = "SELECT max_bytes, max_files FROM quotas WHERE user_id = $1";
const SET_OVERRIDE: &str = "INSERT INTO quotas (user_id, max_bytes, max_files) VALUES ($1, $2, $3)
     ON CONFLICT (user_id) DO UPDATE SET max_bytes = excluded.max_bytes, max_files = excluded.max_files";
const REMOVE_OVERRIDE: &str = "DELETE FROM quotas WHERE user_id = $1";
// Visible files and reserved uploads count; files being deleted do not.
const USAGE: &str = "SELECT COALESCE(SUM(size_bytes), 0)::bigint, COUNT(*) FROM files
     WHERE user_id = $1 AND state IN ('ready', 'pending')";
// Transaction-scoped: released by commit or rollback, even if this process dies.
const QUOTA_LOCK: &str = "SELECT pg_advisory_xact_lock($1, $2)";

fn override_of(row: Option<postgres::Row>) -> Result<QuotaOverride> {
    let Some(row) = row else {
        return Ok(QuotaOverride::default());
    };
    Ok(QuotaOverride {
        bytes: QuotaSetting::from_column(row.try_get(0).map_err(db_err)?),
        files: QuotaSetting::from_column(row.try_get(1).map_err(db_err)?),
    })
}

fn usage_of(row: &postgres::Row) -> Result<QuotaUsage> {
    Ok(QuotaUsage {
        bytes: row.try_get::<_, i64>(0).map_err(db_err)? as u64,
        files: row.try_get::<_, i64>(1).map_err(db_err)? as u64,
    })
}

/// Users share a lock when their ids agree in the low 32 bits: only extra waiting.
fn lock_key(user: UserId) -> i32 {
    (user ^ (user >> 32)) as i32
}

/// Takes the user's quota lock in `tx` and refuses `r` if it does not fit; `stmts` are
/// [`QUOTA_LOCK`], [`OVERRIDE`] and [`USAGE`] prepared.
fn check_in(tx: &mut Transaction<'_>, stmts: &[Statement; 3], r: &FileRecord, defaults: QuotaLimits) -> Result<()> {
    let [lock, quota, usage] = stmts;
    tx.execute(lock, &[&QUOTA_LOCK_SPACE, &lock_key(r.user_id)])
        .map_err(db_err)?;
    let limits = override_of(tx.query_opt(quota, &[&r.user_id]).map_err(db_err)?)?.apply(defaults);
    if limits != QuotaLimits::default() {
        let usage = usage_of(&tx.query_one(usage, &[&r.user_id]).map_err(db_err)?)?;
        usage.check(limits, r.size_bytes, 1)?;
    }
    Ok(())
}

impl Quotas for PostgresCatalog {
    fn quota_override(&self, user: UserId) -> Result<QuotaOverride> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(OVERRIDE)?;
        override_of(conn.client.query_opt(&stmt, &[&user]).map_err(db_err)?)
    }

    fn set_quota_override(&self, user: UserId, quota: &QuotaOverride) -> Result<()> {
        let mut conn = self.conn()?;
        if *quota == QuotaOverride::default() {
            let stmt = conn.statement(REMOVE_OVERRIDE)?;
            conn.client.execute(&stmt, &[&user]).map_err(db_err)?;
        } else {
            let stmt = conn.statement(SET_OVERRIDE)?;
            conn.client
                .execute(&stmt, &[&user, &quota.bytes.to_column(), &quota.files.to_column()])
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn quota_usage(&self, user: UserId) -> Result<QuotaUsage> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(USAGE)?;
        usage_of(&conn.client.query_one(&stmt, &[&user]).map_err(db_err)?)
    }

    fn reserve_within_quota(&self, r: &FileRecord, defaults: QuotaLimits) -> Result<()> {
        let mut conn = self.conn()?;
        let insert = conn.statement(INSERT_PENDING)?;
        let stmts = [
            conn.statement(QUOTA_LOCK)?,
            conn.statement(OVERRIDE)?,
            conn.statement(USAGE)?,
        ];
        let mut tx = conn.client.transaction().map_err(db_err)?;
        // Under the lock, every reservation of this user (on any replica) that committed
        // before it is counted, and none commits between this count and this insert.
        check_in(&mut tx, &stmts, r, defaults)?;
        match tx.execute(&insert, &pending_params(r, &self.holder).as_params()) {
            Ok(_) => {}
            Err(e) if is_name_taken(&e) => return Err(Error::name_taken(&r.file_name)),
            Err(e) => return Err(db_err(e)),
        }
        tx.commit().map_err(db_err)
    }
}

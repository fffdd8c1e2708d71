//! The embedded catalog on SQLite (bundled, WAL mode) through an r2d2 pool.

mod links;
mod quotas;
mod resumable;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::{
    feed_entry, history_json, ActiveFiles, Catalog, Change, ChangeFeed, ChangeOp, FeedPage, Leases, Records,
    RenameIntent, Settlement, Unfinished,
};
use crate::error::{Error, Result};
use crate::model::{new_rev, FileRecord, FileUpdate, ListQuery, SyncRecord, UserId};

/// Migrations in order; a version is applied once and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../schema/sqlite/0001_init.sql")),
    (2, include_str!("../../schema/sqlite/0002_changes.sql")),
    (3, include_str!("../../schema/sqlite/0003_leases.sql")),
    (4, include_str!("../../schema/sqlite/0004_s3_storage.sql")),
    (5, include_str!("../../schema/sqlite/0005_sync_origins_and_indexes.sql")),
    (6, include_str!("../../schema/sqlite/0006_resumable_uploads.sql")),
    (7, include_str!("../../schema/sqlite/0007_share_links.sql")),
    (8, include_str!("../../schema/sqlite/0008_quotas.sql")),
    (9, include_str!("../../schema/sqlite/0009_listing_index.sql")),
];

/// Rows from before leases (no holder) count as abandoned once this old.
const LEGACY_ABANDONED_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The columns every query selects, read by name by `record_of`.
const COLUMNS: &str = "id, user_id, file_name, storage_uri, storage_type, description, summary, \
     format, size_bytes, sha256, row_count, column_count, profile, created_at, updated_at, state, rev, rev_history, origin";

pub struct SqliteCatalog {
    pool: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// This process's identity in `files.holder`, `leases` and `renames`.
    holder: String,
}

impl SqliteCatalog {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteCatalog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder of the SQLite database {}", dir.display()))?;
        }
        // WAL is a property of the database file: set it once, before the pool opens
        // several connections at once (doing it per connection races for the lock).
        Connection::open(path)
            .and_then(|c| c.pragma_update(None, "journal_mode", "WAL"))
            .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            // busy_timeout: writers queue instead of failing with SQLITE_BUSY under
            // concurrent uploads; NORMAL is durable in WAL mode except on power loss.
            c.execute_batch(
                "PRAGMA busy_timeout = 10000;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;",
            )
        });
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
        Ok(SqliteCatalog {
            pool,
            path: path.to_path_buf(),
            holder: Uuid::new_v4().simple().to_string(),
        })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>> {
        self.pool
            .get()
            .map_err(|e| Error::Unavailable(format!("the SQLite catalog is not available: {e}")))
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Inserts `r` as a pending upload held by `holder`; `on_conflict` is appended to the
/// statement (empty, or a clause that makes a taken name a no-op). Returns rows inserted.
fn insert_pending(conn: &Connection, r: &FileRecord, holder: &str, on_conflict: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(&format!(
        "INSERT INTO files (id, user_id, file_name, storage_uri, storage_type, description, summary,
             format, size_bytes, sha256, row_count, column_count, profile, state, created_at, updated_at,
             rev, rev_history, origin, holder)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'pending', ?14, ?15, ?16, ?17, ?18, ?19){on_conflict}"
    ))?
    .execute(params![
        r.id.to_string(),
        r.user_id,
        r.file_name,
        r.storage_uri,
        r.storage_type,
        r.description,
        r.summary,
        r.extension,
        r.size_bytes as i64,
        r.sha256,
        r.row_count as i64,
        r.column_count as i64,
        r.profile_json,
        r.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        r.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        r.rev,
        history_json(&r.rev_history),
        r.origin,
        holder,
    ])
}

/// Makes the pending upload `id` held by `holder` visible. `updated_at` was set at
/// reservation: the version's date (now, or the remote one for a version that arrived
/// by sync). `None` if it is no longer reserved.
fn commit_pending(conn: &Connection, id: Uuid, holder: &str) -> Result<Option<(i64, FileRecord)>> {
    conn.prepare_cached(&format!(
        "UPDATE files SET state = 'ready', holder = NULL
         WHERE id = ?1 AND state = 'pending' AND holder = ?2 RETURNING pk, {COLUMNS}"
    ))
    .and_then(|mut s| s.query_row(params![id.to_string(), holder], pk_and_record).optional())
    .map_err(db_err)
}

fn db_err(err: rusqlite::Error) -> Error {
    Error::Internal(anyhow::Error::new(err).context("SQLite catalog"))
}

fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _)
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// Reads a record from the `COLUMNS` of `row`, by column name.
fn record_of(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let conv = |column: &str, e: Box<dyn std::error::Error + Send + Sync>| {
        let index = row.as_ref().column_index(column).unwrap_or_default();
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e)
    };
    let time = |column: &str| -> rusqlite::Result<DateTime<Utc>> {
        let text: String = row.get(column)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| conv(column, Box::new(e)))
    };
    let id: String = row.get("id")?;
    let history: String = row.get("rev_history")?;
    Ok(FileRecord {
        id: Uuid::parse_str(&id).map_err(|e| conv("id", Box::new(e)))?,
        user_id: row.get("user_id")?,
        file_name: row.get("file_name")?,
        storage_uri: row.get("storage_uri")?,
        storage_type: row.get("storage_type")?,
        description: row.get("description")?,
        summary: row.get("summary")?,
        extension: row.get("format")?,
        size_bytes: row.get::<_, i64>("size_bytes")? as u64,
        sha256: row.get("sha256")?,
        row_count: row.get::<_, i64>("row_count")? as u64,
        column_count: row.get::<_, i64>("column_count")? as u64,
        profile_json: row.get("profile")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        rev: row.get("rev")?,
        rev_history: serde_json::from_str(&history).map_err(|e| conv("rev_history", Box::new(e)))?,
        origin: row.get("origin")?,
    })
}

/// Enters a change of `record` in the feed at the next sequence number, in the caller's
/// transaction (SQLite has one writer at a time, so numbers follow commit order).
fn record_change(conn: &Connection, record: &FileRecord, op: ChangeOp, tombstone: Option<&SyncRecord>) -> Result<()> {
    let (seq, here): (i64, String) = conn
        .prepare_cached("UPDATE instance SET last_seq = last_seq + 1 RETURNING last_seq, instance_id")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(db_err)?;
    let (op, origin, tombstone) = feed_entry(record, op, tombstone, &here)?;
    conn.prepare_cached(
        "INSERT INTO changes (file_id, seq, user_id, op, origin, tombstone) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (file_id) DO UPDATE SET seq = excluded.seq, user_id = excluded.user_id, op = excluded.op,
             origin = excluded.origin, tombstone = excluded.tombstone",
    )
    .and_then(|mut s| {
        s.execute(params![
            record.id.to_string(),
            seq,
            record.user_id,
            op,
            origin,
            tombstone
        ])
    })
    .map_err(db_err)?;
    Ok(())
}

fn ready_by_id(conn: &Connection, id: Uuid) -> rusqlite::Result<Option<(i64, FileRecord)>> {
    conn.query_row(
        &format!("SELECT pk, {COLUMNS} FROM files WHERE id = ?1 AND state = 'ready'"),
        params![id.to_string()],
        pk_and_record,
    )
    .optional()
}

/// Which files a listing shows (`?1` the user, `?2` the name prefix). An empty prefix
/// matches everything; substr compares characters, not bytes.
const LISTED: &str = "user_id = ?1 AND state = 'ready' AND substr(file_name, 1, length(?2)) = ?2";

/// The columns listings read: without the profile and the rev history (large, and never
/// shown in a listing).
fn listed_columns() -> String {
    COLUMNS
        .replace("profile", "'' AS profile")
        .replace("rev_history", "'[]' AS rev_history")
}

/// `columns` of the page of the user's listing that `query` asks for, oldest first.
fn list_page<T>(
    conn: &Connection,
    columns: &str,
    user: UserId,
    query: &ListQuery,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let prefix = query.name_prefix.clone().unwrap_or_default();
    let limit = query.limit.map_or(-1, i64::from);
    conn.prepare_cached(&format!("SELECT {columns} FROM files WHERE {LISTED} ORDER BY pk LIMIT ?3 OFFSET ?4"))
        .map_err(db_err)?
        .query_map(params![user, prefix, limit, query.offset as i64], row)
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)
}

/// How many files the listing of `query` matches in all, given the `page_len` it got:
/// without paging the page is the whole answer, so only a paged listing counts.
fn list_total(conn: &Connection, user: UserId, query: &ListQuery, page_len: usize) -> Result<u64> {
    if query.limit.is_none() && query.offset == 0 {
        return Ok(page_len as u64);
    }
    let prefix = query.name_prefix.clone().unwrap_or_default();
    conn.prepare_cached(&format!("SELECT COUNT(*) FROM files WHERE {LISTED}"))
        .and_then(|mut s| s.query_row(params![user, prefix], |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(db_err)
}

fn record(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    record_of(row)
}

fn pk_and_record(row: &Row<'_>) -> rusqlite::Result<(i64, FileRecord)> {
    Ok((row.get("pk")?, record_of(row)?))
}

fn ready_by_name(conn: &Connection, user: UserId, name: &str) -> rusqlite::Result<Option<(i64, FileRecord)>> {
    conn.query_row(
        &format!("SELECT pk, {COLUMNS} FROM files WHERE user_id = ?1 AND file_name = ?2 AND state = 'ready'"),
        params![user, name],
        pk_and_record,
    )
    .optional()
}

fn activate(conn: &Connection, user: UserId, session: Uuid, file_pk: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO active_files (user_id, session_id, file_pk, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, session_id) DO UPDATE SET file_pk = excluded.file_pk, updated_at = excluded.updated_at",
        params![user, session.to_string(), file_pk, now()],
    )?;
    Ok(())
}

/// The sessions in which the file `file_pk` is active.
fn sessions_of(conn: &Connection, file_pk: i64) -> rusqlite::Result<Vec<Uuid>> {
    let mut stmt = conn.prepare_cached("SELECT session_id FROM active_files WHERE file_pk = ?1")?;
    let rows = stmt.query_map(params![file_pk], |row| row.get::<_, String>(0))?;
    // Session ids are written from parsed UUIDs, so every row parses.
    Ok(rows
        .filter_map(|s| s.ok().and_then(|s| Uuid::parse_str(&s).ok()))
        .collect())
}

impl Catalog for SqliteCatalog {
    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn()?;
        // IMMEDIATE takes the write lock up front, so two processes starting together
        // apply each migration once.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .map_err(db_err)?;
        let current: i64 = tx
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .map_err(db_err)?;
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.execute_batch(sql)
                .map_err(|e| Error::Internal(anyhow::Error::new(e).context(format!("SQLite migration {version}"))))?;
            if sql.contains("PRAGMA writable_schema = ON") {
                // A table definition edited in place: a new schema version makes every
                // connection (this one too) read the schema again.
                let schema_version: i64 = tx
                    .query_row("PRAGMA schema_version", [], |r| r.get(0))
                    .map_err(db_err)?;
                tx.execute_batch(&format!(
                    "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF;",
                    schema_version + 1
                ))
                .map_err(db_err)?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, now()],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    fn ping(&self) -> Result<()> {
        self.conn()?.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err)
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }
}

impl Records for SqliteCatalog {
    fn reserve_upload(&self, r: &FileRecord) -> Result<()> {
        let conn = self.conn()?;
        match insert_pending(&conn, r, &self.holder, "") {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::name_taken(&r.file_name)),
            Err(e) => Err(db_err(e)),
        }
    }

    fn commit_upload(&self, id: Uuid, session: Option<Uuid>) -> Result<FileRecord> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let (pk, record) = commit_pending(&tx, id, &self.holder)?
            .ok_or_else(|| Error::internal(format!("upload {id} is no longer reserved")))?;
        if let Some(session) = session {
            activate(&tx, record.user_id, session, pk).map_err(db_err)?;
        }
        record_change(&tx, &record, ChangeOp::Upsert, None)?;
        tx.commit().map_err(db_err)?;
        Ok(record)
    }

    fn abort_upload(&self, id: Uuid) -> Result<()> {
        self.conn()?
            .execute(
                "DELETE FROM files WHERE id = ?1 AND state = 'pending' AND holder = ?2",
                params![id.to_string(), self.holder],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn settle_upload(&self, id: Uuid) -> Result<Settlement> {
        // One connection, and SQLite has one writer: nothing can commit in between.
        let conn = self.conn()?;
        let removed = conn
            .execute(
                "DELETE FROM files WHERE id = ?1 AND state = 'pending' AND holder = ?2",
                params![id.to_string(), self.holder],
            )
            .map_err(db_err)?;
        if removed == 1 {
            return Ok(Settlement::Aborted);
        }
        if let Some((_, record)) = ready_by_id(&conn, id).map_err(db_err)? {
            return Ok(Settlement::Committed(record));
        }
        let held: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE id = ?1)",
                params![id.to_string()],
                |row| row.get(0),
            )
            .map_err(db_err)?;
        Ok(if held {
            Settlement::Elsewhere
        } else {
            Settlement::Aborted
        })
    }

    fn reserve_unknown(&self, records: &[FileRecord]) -> Result<Vec<Uuid>> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let mut reserved = Vec::new();
        for r in records {
            let known: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM files WHERE id = ?1)
                         OR EXISTS (SELECT 1 FROM changes WHERE file_id = ?1)
                         OR EXISTS (SELECT 1 FROM renames WHERE user_id = ?2 AND ?3 IN (from_name, to_name))",
                )
                .and_then(|mut s| s.query_row(params![r.id.to_string(), r.user_id, r.file_name], |row| row.get(0)))
                .map_err(db_err)?;
            // A name held by another file or upload makes the insert do nothing.
            if !known && insert_pending(&tx, r, &self.holder, " ON CONFLICT DO NOTHING").map_err(db_err)? == 1 {
                reserved.push(r.id);
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(reserved)
    }

    fn commit_uploads(&self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let mut committed = Vec::new();
        for id in ids {
            if let Some((_, record)) = commit_pending(&tx, *id, &self.holder)? {
                record_change(&tx, &record, ChangeOp::Upsert, None)?;
                committed.push(*id);
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(committed)
    }

    fn list_files(&self, user: UserId, query: &ListQuery) -> Result<(Vec<FileRecord>, u64)> {
        let conn = self.conn()?;
        let files = list_page(&conn, &listed_columns(), user, query, record)?;
        let total = list_total(&conn, user, query, files.len())?;
        Ok((files, total))
    }

    fn list_revs(&self, user: UserId, query: &ListQuery) -> Result<(Vec<(Uuid, String)>, u64)> {
        let conn = self.conn()?;
        let revs = list_page(&conn, "id, rev", user, query, |row| {
            let id: String = row.get(0)?;
            let id = Uuid::parse_str(&id)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?;
            Ok((id, row.get(1)?))
        })?;
        let total = list_total(&conn, user, query, revs.len())?;
        Ok((revs, total))
    }

    fn listed_by_id(&self, user: UserId, ids: &[Uuid]) -> Result<Vec<FileRecord>> {
        let conn = self.conn()?;
        let mut files = Vec::with_capacity(ids.len());
        // A bounded number of parameters per statement.
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT {} FROM files WHERE user_id = ? AND state = 'ready' AND id IN ({marks})",
                listed_columns()
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
            let ids: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
            let params = std::iter::once(&user as &dyn rusqlite::ToSql).chain(ids.iter().map(|i| i as &dyn rusqlite::ToSql));
            let found = stmt
                .query_map(rusqlite::params_from_iter(params), record)
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            files.extend(found);
        }
        Ok(files)
    }

    fn list_version(&self, user: UserId) -> Result<i64> {
        self.conn()?
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM changes WHERE user_id = ?1")
            .and_then(|mut s| s.query_row(params![user], |r| r.get::<_, i64>(0)))
            .map_err(db_err)
    }

    fn get_file(&self, user: UserId, file_name: &str) -> Result<Option<FileRecord>> {
        let conn = self.conn()?;
        Ok(ready_by_name(&conn, user, file_name).map_err(db_err)?.map(|(_, r)| r))
    }

    fn update_file(
        &self,
        user: UserId,
        file_name: &str,
        update: &FileUpdate,
    ) -> Result<Option<(FileRecord, Vec<Uuid>)>> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let Some((pk, current)) = ready_by_name(&tx, user, file_name).map_err(db_err)? else {
            return Ok(None);
        };
        let (new_name, new_uri) = update.rename.clone().unzip();
        let updated = tx.query_row(
            &format!(
                "UPDATE files SET file_name = COALESCE(?2, file_name), storage_uri = COALESCE(?3, storage_uri),
                     description = COALESCE(?4, description), updated_at = ?5,
                     rev = ?6, rev_history = ?7, origin = (SELECT instance_id FROM instance)
                 WHERE pk = ?1 RETURNING {COLUMNS}"
            ),
            params![
                pk,
                new_name,
                new_uri,
                update.description,
                now(),
                new_rev(),
                history_json(&current.next_history())
            ],
            record,
        );
        let record = match updated {
            Ok(r) => r,
            Err(e) if is_unique_violation(&e) => return Err(Error::name_taken(&new_name.unwrap_or_default())),
            Err(e) => return Err(db_err(e)),
        };
        let sessions = sessions_of(&tx, pk).map_err(db_err)?;
        record_change(&tx, &record, ChangeOp::Upsert, None)?;
        tx.commit().map_err(db_err)?;
        Ok(Some((record, sessions)))
    }

    fn begin_delete(
        &self,
        user: UserId,
        file_name: &str,
        tombstone: Option<&SyncRecord>,
    ) -> Result<Option<(FileRecord, Vec<Uuid>)>> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let Some((pk, record)) = ready_by_name(&tx, user, file_name).map_err(db_err)? else {
            return Ok(None);
        };
        let sessions = sessions_of(&tx, pk).map_err(db_err)?;
        tx.execute("DELETE FROM active_files WHERE file_pk = ?1", params![pk])
            .map_err(db_err)?;
        tx.execute(
            "UPDATE files SET state = 'deleting', updated_at = ?2, holder = ?3 WHERE pk = ?1",
            params![pk, now(), self.holder],
        )
        .map_err(db_err)?;
        record_change(&tx, &record, ChangeOp::Delete, tombstone)?;
        tx.commit().map_err(db_err)?;
        Ok(Some((record, sessions)))
    }

    fn finish_delete(&self, id: Uuid) -> Result<()> {
        self.conn()?
            .execute(
                "DELETE FROM files WHERE id = ?1 AND state = 'deleting' AND holder = ?2",
                params![id.to_string(), self.holder],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn all_files(&self) -> Result<Vec<FileRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM files WHERE state = 'ready' ORDER BY pk",
                COLUMNS.replace("profile", "'' AS profile")
            ))
            .map_err(db_err)?;
        let rows = stmt.query_map([], record).map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    fn name_claimed(&self, user: UserId, file_name: &str) -> Result<bool> {
        self.conn()?
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE user_id = ?1 AND file_name = ?2)
                     OR EXISTS (SELECT 1 FROM renames WHERE user_id = ?1 AND ?2 IN (from_name, to_name))",
                params![user, file_name],
                |r| r.get(0),
            )
            .map_err(db_err)
    }

    fn replace_content(&self, c: &FileRecord) -> Result<Option<(FileRecord, Vec<Uuid>)>> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let Some((_, current)) = ready_by_id(&tx, c.id).map_err(db_err)? else {
            return Ok(None);
        };
        let updated = tx
            .query_row(
                &format!(
                    "UPDATE files SET size_bytes = ?2, sha256 = ?3, summary = ?4, row_count = ?5, column_count = ?6,
                         profile = ?7, updated_at = ?8, rev = ?9, rev_history = ?10,
                         origin = (SELECT instance_id FROM instance)
                     WHERE id = ?1 AND state = 'ready' RETURNING pk, {COLUMNS}"
                ),
                params![
                    c.id.to_string(),
                    c.size_bytes as i64,
                    c.sha256,
                    c.summary,
                    c.row_count as i64,
                    c.column_count as i64,
                    c.profile_json,
                    now(),
                    new_rev(),
                    history_json(&current.next_history())
                ],
                pk_and_record,
            )
            .optional()
            .map_err(db_err)?;
        let Some((pk, record)) = updated else { return Ok(None) };
        let sessions = sessions_of(&tx, pk).map_err(db_err)?;
        record_change(&tx, &record, ChangeOp::Upsert, None)?;
        tx.commit().map_err(db_err)?;
        Ok(Some((record, sessions)))
    }

    fn apply_version(&self, r: &FileRecord) -> Result<Option<(FileRecord, Vec<Uuid>)>> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let updated = tx
            .query_row(
                &format!(
                    "UPDATE files SET file_name = ?2, storage_uri = ?3, description = ?4, summary = ?5, format = ?6,
                         size_bytes = ?7, sha256 = ?8, row_count = ?9, column_count = ?10, profile = ?11,
                         updated_at = ?12, rev = ?13, rev_history = ?14, origin = ?15
                     WHERE id = ?1 AND state = 'ready' RETURNING pk, {COLUMNS}"
                ),
                params![
                    r.id.to_string(),
                    r.file_name,
                    r.storage_uri,
                    r.description,
                    r.summary,
                    r.extension,
                    r.size_bytes as i64,
                    r.sha256,
                    r.row_count as i64,
                    r.column_count as i64,
                    r.profile_json,
                    r.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    r.rev,
                    history_json(&r.rev_history),
                    r.origin,
                ],
                pk_and_record,
            )
            .optional();
        let (pk, record) = match updated {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(e) if is_unique_violation(&e) => return Err(Error::name_taken(&r.file_name)),
            Err(e) => return Err(db_err(e)),
        };
        let sessions = sessions_of(&tx, pk).map_err(db_err)?;
        record_change(&tx, &record, ChangeOp::Upsert, None)?;
        tx.commit().map_err(db_err)?;
        Ok(Some((record, sessions)))
    }

    fn get_by_id(&self, id: Uuid) -> Result<Option<FileRecord>> {
        let conn = self.conn()?;
        Ok(ready_by_id(&conn, id).map_err(db_err)?.map(|(_, r)| r))
    }

    fn find_by_sha256(&self, sha256: &str) -> Result<Option<FileRecord>> {
        let conn = self.conn()?;
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM files WHERE sha256 = ?1 AND state = 'ready' LIMIT 1"),
            params![sha256],
            record,
        )
        .optional()
        .map_err(db_err)
    }

    fn held_sha256s(&self, hashes: &[String]) -> Result<HashSet<String>> {
        let conn = self.conn()?;
        let mut held = conn
            .prepare_cached("SELECT 1 FROM files WHERE sha256 = ?1 AND state = 'ready' LIMIT 1")
            .map_err(db_err)?;
        let mut found = HashSet::new();
        for sha256 in hashes {
            if held.exists(params![sha256]).map_err(db_err)? {
                found.insert(sha256.clone());
            }
        }
        Ok(found)
    }

    fn begin_rename(&self, user: UserId, from_name: &str, to_name: &str, format: &str) -> Result<i64> {
        self.conn()?
            .query_row(
                "INSERT INTO renames (holder, user_id, from_name, to_name, format, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                params![self.holder, user, from_name, to_name, format, now()],
                |r| r.get(0),
            )
            .map_err(db_err)
    }

    fn end_rename(&self, id: i64) -> Result<()> {
        self.conn()?
            .execute("DELETE FROM renames WHERE id = ?1", params![id])
            .map_err(db_err)?;
        Ok(())
    }

    fn name_recorded(&self, user: UserId, file_name: &str) -> Result<bool> {
        self.conn()?
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE user_id = ?1 AND file_name = ?2)",
                params![user, file_name],
                |r| r.get(0),
            )
            .map_err(db_err)
    }
}

impl ActiveFiles for SqliteCatalog {
    fn set_active(&self, user: UserId, session: Uuid, file_name: &str) -> Result<Option<FileRecord>> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let Some((pk, record)) = ready_by_name(&tx, user, file_name).map_err(db_err)? else {
            return Ok(None);
        };
        activate(&tx, user, session, pk).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(Some(record))
    }

    fn get_active(&self, user: UserId, session: Uuid) -> Result<Option<FileRecord>> {
        let conn = self.conn()?;
        let cols = COLUMNS
            .split(", ")
            .map(|c| format!("f.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {cols} FROM active_files a JOIN files f ON f.pk = a.file_pk
                 WHERE a.user_id = ?1 AND a.session_id = ?2 AND f.state = 'ready'"
            ))
            .map_err(db_err)?;
        stmt.query_row(params![user, session.to_string()], record)
            .optional()
            .map_err(db_err)
    }

    fn clear_active(&self, user: UserId, session: Uuid) -> Result<()> {
        self.conn()?
            .execute(
                "DELETE FROM active_files WHERE user_id = ?1 AND session_id = ?2",
                params![user, session.to_string()],
            )
            .map_err(db_err)?;
        Ok(())
    }
}

impl ChangeFeed for SqliteCatalog {
    fn tombstone(&self, id: Uuid) -> Result<Option<SyncRecord>> {
        let conn = self.conn()?;
        let json: Option<Option<String>> = conn
            .query_row(
                "SELECT tombstone FROM changes WHERE file_id = ?1 AND op = 'delete'",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        json.flatten()
            .map(|j| serde_json::from_str(&j).map_err(Error::internal))
            .transpose()
    }

    fn record_delete(&self, tombstone: &SyncRecord) -> Result<bool> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let id = tombstone.id.to_string();
        let known: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE id = ?1) OR EXISTS (SELECT 1 FROM changes WHERE file_id = ?1)",
                params![id],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        if known {
            return Ok(false);
        }
        let record = tombstone.to_record(String::new(), String::new());
        record_change(&tx, &record, ChangeOp::Delete, Some(tombstone))?;
        tx.commit().map_err(db_err)?;
        Ok(true)
    }

    fn changes(&self, since: i64, limit: u32, user: Option<UserId>, exclude_origin: Option<&str>) -> Result<FeedPage> {
        let conn = self.conn()?;
        // Read first: every change numbered up to it is committed (one writer at a time).
        let newest: i64 = conn
            .query_row("SELECT last_seq FROM instance", [], |r| r.get(0))
            .map_err(db_err)?;
        let cols = COLUMNS
            .split(", ")
            .map(|c| format!("f.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT c.seq, c.op, c.tombstone, {cols} FROM changes c
                 LEFT JOIN files f ON f.id = c.file_id AND f.state = 'ready' AND c.op = 'upsert'
                 WHERE c.seq > ?1 AND c.seq <= ?4 AND (?2 IS NULL OR c.user_id = ?2)
                   AND (?5 IS NULL OR c.origin <> ?5)
                 ORDER BY c.seq LIMIT ?3"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![since, user, limit, newest, exclude_origin], |row| {
                let seq: i64 = row.get(0)?;
                let op: String = row.get(1)?;
                if op == "delete" {
                    let tombstone: Option<String> = row.get(2)?;
                    return Ok((seq, None, tombstone));
                }
                // An upsert whose row is not visible (cannot happen: deletes rewrite the entry).
                if row.get::<_, Option<String>>(3)?.is_none() {
                    return Ok((seq, None, None));
                }
                Ok((seq, Some(record_of(row)?), None))
            })
            .map_err(db_err)?;
        let mut page = FeedPage::new(since);
        for row in rows {
            let (seq, record, tombstone) = row.map_err(db_err)?;
            let change = match (record, tombstone) {
                (Some(record), _) => Some(Change {
                    seq,
                    op: ChangeOp::Upsert,
                    file: SyncRecord::from_record(&record, true),
                }),
                (None, Some(tombstone)) => Some(Change {
                    seq,
                    op: ChangeOp::Delete,
                    file: serde_json::from_str(&tombstone).map_err(Error::internal)?,
                }),
                (None, None) => None,
            };
            page.push(seq, change);
        }
        Ok(page.finish(limit, newest))
    }

    fn instance_id(&self) -> Result<String> {
        self.conn()?
            .query_row("SELECT instance_id FROM instance", [], |r| r.get(0))
            .map_err(db_err)
    }

    fn checkpoint(&self, source: &str) -> Result<i64> {
        self.conn()?
            .query_row(
                "SELECT COALESCE((SELECT last_seq FROM sync_checkpoints WHERE source = ?1), 0)",
                params![source],
                |r| r.get(0),
            )
            .map_err(db_err)
    }

    fn set_checkpoint(&self, source: &str, seq: i64) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO sync_checkpoints (source, last_seq, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source) DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at",
                params![source, seq, now()],
            )
            .map_err(db_err)?;
        Ok(())
    }
}

impl Leases for SqliteCatalog {
    fn holder(&self) -> &str {
        &self.holder
    }

    fn renew_lease(&self, ttl: Duration) -> Result<()> {
        let now = Utc::now();
        let expires = (now + chrono::TimeDelta::from_std(ttl).map_err(Error::internal)?)
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        // An expired lease means the same as none, so they are not kept.
        tx.execute(
            "DELETE FROM leases WHERE expires_at <= ?1",
            params![now.to_rfc3339_opts(SecondsFormat::Millis, true)],
        )
        .map_err(db_err)?;
        tx.execute(
            "INSERT INTO leases (holder, expires_at) VALUES (?1, ?2)
             ON CONFLICT (holder) DO UPDATE SET expires_at = excluded.expires_at",
            params![self.holder, expires],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    fn end_lease(&self) -> Result<()> {
        self.conn()?
            .execute("DELETE FROM leases WHERE holder = ?1", params![self.holder])
            .map_err(db_err)?;
        Ok(())
    }

    fn claim_abandoned(&self, all_others: bool) -> Result<Vec<Unfinished>> {
        let now = Utc::now();
        let legacy_before = (now - LEGACY_ABANDONED_AFTER).to_rfc3339_opts(SecondsFormat::Millis, true);
        let now = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let mut out = Vec::new();
        {
            let mut stmt = tx
                .prepare(&format!(
                    "UPDATE files SET holder = ?1
                     WHERE state != 'ready' AND holder IS NOT ?1
                       AND (?2 OR (holder IS NULL AND updated_at < ?3)
                            OR holder NOT IN (SELECT holder FROM leases WHERE expires_at > ?4))
                     RETURNING {COLUMNS}"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![self.holder, all_others, legacy_before, now], |row| {
                    Ok((record(row)?, row.get::<_, String>(15)?))
                })
                .map_err(db_err)?;
            for row in rows {
                let (record, state) = row.map_err(db_err)?;
                out.push(if state == "pending" {
                    Unfinished::Upload(record)
                } else {
                    Unfinished::Delete(record)
                });
            }
            let mut stmt = tx
                .prepare(
                    "UPDATE renames SET holder = ?1
                     WHERE holder != ?1 AND (?2 OR holder NOT IN (SELECT holder FROM leases WHERE expires_at > ?3))
                     RETURNING id, user_id, from_name, to_name, format",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![self.holder, all_others, now], |row| {
                    Ok(RenameIntent {
                        id: row.get(0)?,
                        user_id: row.get(1)?,
                        from_name: row.get(2)?,
                        to_name: row.get(3)?,
                        format: row.get(4)?,
                    })
                })
                .map_err(db_err)?;
            for row in rows {
                out.push(Unfinished::Rename(row.map_err(db_err)?));
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(out)
    }
}

//! Resumable uploads in the SQLite catalog (see [`ResumableUploads`]).

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::{db_err, is_unique_violation, now, SqliteCatalog};
use crate::catalog::{ResumableState, ResumableUpload, ResumableUploads};
use crate::error::{Error, Result};

const COLUMNS: &str = "id, user_id, file_name, session_id, description, filename, metadata, length, \
     offset_bytes, parts, state, error, created_at, expires_at";

/// Holders whose lease is still running at `?now`.
const LIVE_HOLDERS: &str = "SELECT holder FROM leases WHERE expires_at > ?";

pub(super) fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn parse_time(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

pub(super) fn parse_uuid(text: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// Reads an upload from the [`COLUMNS`] of `row`, by column name.
fn upload_of(row: &Row<'_>) -> rusqlite::Result<(ResumableUpload, String)> {
    let parts: String = row.get("parts")?;
    let upload = ResumableUpload {
        id: parse_uuid(&row.get::<_, String>("id")?)?,
        user_id: row.get("user_id")?,
        file_name: row.get("file_name")?,
        session_id: parse_uuid(&row.get::<_, String>("session_id")?)?,
        description: row.get("description")?,
        filename: row.get("filename")?,
        metadata: row.get("metadata")?,
        length: row.get::<_, i64>("length")? as u64,
        offset: row.get::<_, i64>("offset_bytes")? as u64,
        parts: serde_json::from_str(&parts)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?,
        state: ResumableState::Receiving,
        error: row.get("error")?,
        created_at: parse_time(&row.get::<_, String>("created_at")?)?,
        expires_at: parse_time(&row.get::<_, String>("expires_at")?)?,
    };
    Ok((upload, row.get("state")?))
}

fn with_state((mut upload, state): (ResumableUpload, String)) -> Result<ResumableUpload> {
    upload.state = ResumableState::parse(&state)?;
    Ok(upload)
}

fn uploads(rows: impl Iterator<Item = rusqlite::Result<(ResumableUpload, String)>>) -> Result<Vec<ResumableUpload>> {
    rows.map(|r| with_state(r.map_err(db_err)?)).collect()
}

fn parts_json(parts: &[String]) -> String {
    serde_json::to_string(parts).expect("a list of strings serializes")
}

impl ResumableUploads for SqliteCatalog {
    fn create_resumable(&self, u: &ResumableUpload) -> Result<()> {
        let inserted = self.conn()?.execute(
            "INSERT INTO resumable_uploads (id, user_id, file_name, session_id, description, filename, metadata,
                 length, offset_bytes, parts, state, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'receiving', ?11, ?12)",
            params![
                u.id.to_string(),
                u.user_id,
                u.file_name,
                u.session_id.to_string(),
                u.description,
                u.filename,
                u.metadata,
                u.length as i64,
                u.offset as i64,
                parts_json(&u.parts),
                time(&u.created_at),
                time(&u.expires_at),
            ],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                let holder: Option<String> = self
                    .conn()?
                    .query_row(
                        "SELECT id FROM resumable_uploads
                         WHERE user_id = ?1 AND file_name = ?2 AND state IN ('receiving', 'completing')",
                        params![u.user_id, u.file_name],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                let id = holder.and_then(|id| Uuid::parse_str(&id).ok()).unwrap_or(u.id);
                Err(Error::upload_in_progress(id, &u.file_name))
            }
            Err(e) => Err(db_err(e)),
        }
    }

    fn get_resumable(&self, id: Uuid) -> Result<Option<ResumableUpload>> {
        let row = self
            .conn()?
            .prepare_cached(&format!("SELECT {COLUMNS} FROM resumable_uploads WHERE id = ?1"))
            .and_then(|mut s| s.query_row(params![id.to_string()], upload_of).optional())
            .map_err(db_err)?;
        row.map(with_state).transpose()
    }

    fn hold_resumable(&self, id: Uuid) -> Result<bool> {
        let held = self
            .conn()?
            .execute(
                &format!(
                    "UPDATE resumable_uploads SET holder = ?1
                     WHERE id = ?2 AND state = 'receiving'
                       AND (holder IS NULL OR holder NOT IN ({LIVE_HOLDERS}))"
                ),
                params![self.holder, id.to_string(), now()],
            )
            .map_err(db_err)?;
        Ok(held == 1)
    }

    fn record_part(&self, u: &ResumableUpload, from_offset: u64) -> Result<bool> {
        let complete = u.offset == u.length;
        let updated = self
            .conn()?
            .execute(
                "UPDATE resumable_uploads
                 SET offset_bytes = ?1, parts = ?2, expires_at = ?3,
                     state = CASE WHEN ?4 THEN 'completing' ELSE state END,
                     holder = CASE WHEN ?4 THEN holder ELSE NULL END
                 WHERE id = ?5 AND holder = ?6 AND state = 'receiving' AND offset_bytes = ?7",
                params![
                    u.offset as i64,
                    parts_json(&u.parts),
                    time(&u.expires_at),
                    complete,
                    u.id.to_string(),
                    self.holder,
                    from_offset as i64,
                ],
            )
            .map_err(db_err)?;
        Ok(updated == 1)
    }

    fn release_resumable(&self, id: Uuid) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE resumable_uploads SET holder = NULL WHERE id = ?1 AND holder = ?2 AND state = 'receiving'",
                params![id.to_string(), self.holder],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn finish_resumable(&self, id: Uuid, error: Option<&str>) -> Result<()> {
        let state = if error.is_some() { "failed" } else { "done" };
        self.conn()?
            .execute(
                "UPDATE resumable_uploads SET state = ?1, error = ?2, parts = '[]', holder = NULL
                 WHERE id = ?3 AND state = 'completing'",
                params![state, error, id.to_string()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn remove_resumable(&self, id: Uuid) -> Result<Option<ResumableUpload>> {
        let row = self
            .conn()?
            .prepare_cached(&format!(
                "DELETE FROM resumable_uploads WHERE id = ?1 AND state != 'completing' RETURNING {COLUMNS}"
            ))
            .and_then(|mut s| s.query_row(params![id.to_string()], upload_of).optional())
            .map_err(db_err)?;
        row.map(with_state).transpose()
    }

    fn remove_expired_resumables(&self) -> Result<Vec<ResumableUpload>> {
        let now = now();
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "DELETE FROM resumable_uploads
                 WHERE expires_at <= ?1 AND state != 'completing'
                   AND (holder IS NULL OR holder NOT IN ({LIVE_HOLDERS}))
                 RETURNING {COLUMNS}"
            ))
            .map_err(db_err)?;
        let rows = stmt.query_map(params![now, now], upload_of).map_err(db_err)?;
        uploads(rows)
    }

    fn claim_abandoned_resumables(&self, all_others: bool) -> Result<Vec<ResumableUpload>> {
        let now = now();
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let abandoned = format!("holder != ?1 AND (?2 OR holder NOT IN ({LIVE_HOLDERS}))");
        tx.execute(
            &format!("UPDATE resumable_uploads SET holder = NULL WHERE state = 'receiving' AND {abandoned}"),
            params![self.holder, all_others, now],
        )
        .map_err(db_err)?;
        let claimed = {
            let mut stmt = tx
                .prepare(&format!(
                    "UPDATE resumable_uploads SET holder = ?1 WHERE state = 'completing' AND {abandoned}
                     RETURNING {COLUMNS}"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![self.holder, all_others, now], upload_of)
                .map_err(db_err)?;
            uploads(rows)?
        };
        tx.commit().map_err(db_err)?;
        Ok(claimed)
    }
}

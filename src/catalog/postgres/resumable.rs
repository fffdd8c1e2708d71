//! Resumable uploads in the PostgreSQL catalog (see [`ResumableUploads`]).

use postgres::error::SqlState;
use postgres::Row;
use uuid::Uuid;

use super::{commit_err, db_err, PostgresCatalog};
use crate::catalog::{ResumableState, ResumableUpload, ResumableUploads};
use crate::error::{Error, Result};

macro_rules! columns {
    () => {
        "id, user_id, file_name, session_id, description, filename, metadata, length, offset_bytes, parts, \
         state, error, created_at, expires_at"
    };
}

/// Holders whose lease is still running.
macro_rules! live_holders {
    () => {
        "SELECT holder FROM leases WHERE expires_at > now()"
    };
}

const CREATE: &str = "INSERT INTO resumable_uploads (id, user_id, file_name, session_id, description, filename,
         metadata, length, offset_bytes, parts, state, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'receiving', $11, $12)";
const NAME_HOLDER: &str = "SELECT id FROM resumable_uploads
     WHERE user_id = $1 AND file_name = $2 AND state IN ('receiving', 'completing')";
const GET: &str = concat!("SELECT ", columns!(), " FROM resumable_uploads WHERE id = $1");
const HOLD: &str = concat!(
    "UPDATE resumable_uploads SET holder = $1
     WHERE id = $2 AND state = 'receiving' AND (holder IS NULL OR holder NOT IN (",
    live_holders!(),
    "))"
);
const RECORD_PART: &str = "UPDATE resumable_uploads
     SET offset_bytes = $1, parts = $2, expires_at = $3,
         state = CASE WHEN $4 THEN 'completing' ELSE state END,
         holder = CASE WHEN $4 THEN holder ELSE NULL END
     WHERE id = $5 AND holder = $6 AND state = 'receiving' AND offset_bytes = $7";
const RELEASE: &str =
    "UPDATE resumable_uploads SET holder = NULL WHERE id = $1 AND holder = $2 AND state = 'receiving'";
const FINISH: &str = "UPDATE resumable_uploads SET state = $1, error = $2, parts = '[]', holder = NULL
     WHERE id = $3 AND state = 'completing'";
const REMOVE: &str = concat!(
    "DELETE FROM resumable_uploads WHERE id = $1 AND state != 'completing' RETURNING ",
    columns!()
);
const REMOVE_EXPIRED: &str = concat!(
    "DELETE FROM resumable_uploads
     WHERE expires_at <= now() AND state != 'completing' AND (holder IS NULL OR holder NOT IN (",
    live_holders!(),
    ")) RETURNING ",
    columns!()
);
const FREE_ABANDONED: &str = concat!(
    "UPDATE resumable_uploads SET holder = NULL
     WHERE state = 'receiving' AND holder != $1 AND ($2 OR holder NOT IN (",
    live_holders!(),
    "))"
);
const CLAIM_COMPLETING: &str = concat!(
    "UPDATE resumable_uploads SET holder = $1
     WHERE state = 'completing' AND holder != $1 AND ($2 OR holder NOT IN (",
    live_holders!(),
    ")) RETURNING ",
    columns!()
);

/// Reads an upload from the `columns!()` of `row`, by column name.
fn upload_of(row: &Row) -> Result<ResumableUpload> {
    let read = || -> std::result::Result<(ResumableUpload, String, String), postgres::Error> {
        let upload = ResumableUpload {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            file_name: row.try_get("file_name")?,
            session_id: row.try_get("session_id")?,
            description: row.try_get("description")?,
            filename: row.try_get("filename")?,
            metadata: row.try_get("metadata")?,
            length: row.try_get::<_, i64>("length")? as u64,
            offset: row.try_get::<_, i64>("offset_bytes")? as u64,
            parts: Vec::new(),
            state: ResumableState::Receiving,
            error: row.try_get("error")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        };
        Ok((upload, row.try_get("parts")?, row.try_get("state")?))
    };
    let (mut upload, parts, state) = read().map_err(db_err)?;
    upload.parts = serde_json::from_str(&parts).map_err(Error::internal)?;
    upload.state = ResumableState::parse(&state)?;
    Ok(upload)
}

fn parts_json(parts: &[String]) -> String {
    serde_json::to_string(parts).expect("a list of strings serializes")
}

impl ResumableUploads for PostgresCatalog {
    fn create_resumable(&self, u: &ResumableUpload) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(CREATE)?;
        let inserted = conn.client.execute(
            &stmt,
            &[
                &u.id,
                &u.user_id,
                &u.file_name,
                &u.session_id,
                &u.description,
                &u.filename,
                &u.metadata,
                &(u.length as i64),
                &(u.offset as i64),
                &parts_json(&u.parts),
                &u.created_at,
                &u.expires_at,
            ],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                let stmt = conn.statement(NAME_HOLDER)?;
                let holder = conn
                    .client
                    .query_opt(&stmt, &[&u.user_id, &u.file_name])
                    .map_err(db_err)?;
                let id = match holder {
                    Some(row) => row.try_get(0).map_err(db_err)?,
                    None => u.id,
                };
                Err(Error::upload_in_progress(id, &u.file_name))
            }
            Err(e) => Err(db_err(e)),
        }
    }

    fn get_resumable(&self, id: Uuid) -> Result<Option<ResumableUpload>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(GET)?;
        let row = conn.client.query_opt(&stmt, &[&id]).map_err(db_err)?;
        row.as_ref().map(upload_of).transpose()
    }

    fn hold_resumable(&self, id: Uuid) -> Result<bool> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(HOLD)?;
        Ok(conn.client.execute(&stmt, &[&self.holder, &id]).map_err(db_err)? == 1)
    }

    fn record_part(&self, u: &ResumableUpload, from_offset: u64) -> Result<bool> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(RECORD_PART)?;
        let updated = conn
            .client
            .execute(
                &stmt,
                &[
                    &(u.offset as i64),
                    &parts_json(&u.parts),
                    &u.expires_at,
                    &(u.offset == u.length),
                    &u.id,
                    &self.holder,
                    &(from_offset as i64),
                ],
            )
            .map_err(db_err)?;
        Ok(updated == 1)
    }

    fn release_resumable(&self, id: Uuid) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(RELEASE)?;
        conn.client.execute(&stmt, &[&id, &self.holder]).map_err(db_err)?;
        Ok(())
    }

    fn finish_resumable(&self, id: Uuid, error: Option<&str>) -> Result<()> {
        let state = if error.is_some() { "failed" } else { "done" };
        let mut conn = self.conn()?;
        let stmt = conn.statement(FINISH)?;
        conn.client.execute(&stmt, &[&state, &error, &id]).map_err(db_err)?;
        Ok(())
    }

    fn remove_resumable(&self, id: Uuid) -> Result<Option<ResumableUpload>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(REMOVE)?;
        let row = conn.client.query_opt(&stmt, &[&id]).map_err(db_err)?;
        row.as_ref().map(upload_of).transpose()
    }

    fn remove_expired_resumables(&self) -> Result<Vec<ResumableUpload>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(REMOVE_EXPIRED)?;
        let rows = conn.client.query(&stmt, &[]).map_err(db_err)?;
        rows.iter().map(upload_of).collect()
    }

    fn claim_abandoned_resumables(&self, all_others: bool) -> Result<Vec<ResumableUpload>> {
        let mut conn = self.conn()?;
        let (free, claim) = (conn.statement(FREE_ABANDONED)?, conn.statement(CLAIM_COMPLETING)?);
        let mut tx = conn.client.transaction().map_err(db_err)?;
        tx.execute(&free, &[&self.holder, &all_others]).map_err(db_err)?;
        let rows = tx.query(&claim, &[&self.holder, &all_others]).map_err(db_err)?;
        let claimed = rows.iter().map(upload_of).collect::<Result<Vec<_>>>()?;
        tx.commit().map_err(commit_err)?;
        Ok(claimed)
    }
}

//! The scale-out catalog on PostgreSQL (postgres crate, r2d2 pool), shared by every replica.
//!
//! Same behaviour as the SQLite catalog: pending/ready/deleting rows for crash-safe
//! uploads and deletes, names unique per user by a unique index, a durable active-file
//! table. Every connection carries server-side timeouts, so a dead or stuck server turns
//! into `Error::Unavailable` (503) instead of a hung request.

mod links;
mod quotas;
mod resumable;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::config::Host;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;
use uuid::Uuid;

use super::{
    feed_entry, history_json, ActiveFiles, Catalog, Change, ChangeFeed, ChangeOp, FeedPage, Leases, Records,
    RenameIntent, Settlement, Unfinished, UserLock,
};
use crate::error::{Error, Result};
use crate::model::{new_rev, FileRecord, FileUpdate, ListQuery, SyncRecord, UserId};

/// Migrations in order; a version is applied once and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../schema/postgres/0001_init.sql")),
    (2, include_str!("../../schema/postgres/0002_changes.sql")),
    (3, include_str!("../../schema/postgres/0003_leases.sql")),
    (4, include_str!("../../schema/postgres/0004_s3_storage.sql")),
    (
        5,
        include_str!("../../schema/postgres/0005_sync_origins_and_indexes.sql"),
    ),
    (6, include_str!("../../schema/postgres/0006_resumable_uploads.sql")),
    (7, include_str!("../../schema/postgres/0007_share_links.sql")),
    (8, include_str!("../../schema/postgres/0008_quotas.sql")),
    (9, include_str!("../../schema/postgres/0009_listing_index.sql")),
];

/// Advisory lock key taken while migrating ("filesvc" + 1), so replicas starting together
/// apply each migration once. Public so tests can hold it and watch replicas wait.
pub const MIGRATION_LOCK: i64 = 0x6669_6c65_7376_6301;
/// First half of the two-key advisory locks on users (the second half is the user id);
/// two-key locks live apart from the one-key migration lock.
const USER_LOCK_SPACE: i32 = 0x6673_7531;

/// Rows from before leases (no holder) left pending or deleting for longer than this are
/// abandoned; every newer row names its holder, whose lease says whether it is alive.
const LEGACY_ABANDONED_AFTER_SECONDS: f64 = 60.0;

/// Server-side limits on every connection: a statement or lock wait that runs this long
/// is cancelled and reported as unavailable; a transaction left idle is ended.
const SESSION_OPTIONS: &str =
    "-c statement_timeout=5000 -c lock_timeout=3000 -c idle_in_transaction_session_timeout=30000";

/// The columns every record query selects (table alias `f`), read by name by `record_of`.
macro_rules! columns {
    () => {
        "f.public_id, f.user_id, f.file_name, f.storage_uri, f.storage_type::text, f.description, f.summary, \
         f.format, f.size_bytes, f.sha256, f.row_count, f.column_count, f.profile, f.created_at, f.updated_at, f.state, \
         f.rev, f.rev_history, f.origin"
    };
}

const INSERT_PENDING: &str = "INSERT INTO files (public_id, user_id, file_name, storage_uri, storage_type, description,
         summary, format, size_bytes, sha256, row_count, column_count, profile, state, created_at, updated_at,
         rev, rev_history, origin, holder)
     VALUES ($1, $2, $3, $4, CAST($5::text AS storage_type), $6, $7, $8, $9, $10, $11, $12, $13, 'pending', $14, $15,
         $16, $17, $18, $19)";
const INSERT_PENDING_IF_FREE: &str = "INSERT INTO files (public_id, user_id, file_name, storage_uri, storage_type,
         description, summary, format, size_bytes, sha256, row_count, column_count, profile, state, created_at,
         updated_at, rev, rev_history, origin, holder)
     VALUES ($1, $2, $3, $4, CAST($5::text AS storage_type), $6, $7, $8, $9, $10, $11, $12, $13, 'pending', $14, $15,
         $16, $17, $18, $19)
     ON CONFLICT DO NOTHING";
const KNOWN_TO_SYNC: &str = "SELECT EXISTS (SELECT 1 FROM files WHERE public_id = $1)
     OR EXISTS (SELECT 1 FROM changes WHERE file_id = $1)
     OR EXISTS (SELECT 1 FROM renames WHERE user_id = $2 AND $3 IN (from_name, to_name))";
// `updated_at` was set at reservation: the version's date (now, or the remote one for a
// version that arrived by sync). Times are kept to the millisecond, as SQLite keeps them.
const COMMIT: &str = concat!(
    "UPDATE files AS f SET state = 'ready', holder = NULL
     WHERE f.public_id = $1 AND f.state = 'pending' AND f.holder = $2 RETURNING f.id, ",
    columns!()
);
const ACTIVATE: &str = "INSERT INTO active_files (user_id, session_id, file_id, updated_at) VALUES ($1, $2, $3, now())
     ON CONFLICT (user_id, session_id) DO UPDATE SET file_id = excluded.file_id, updated_at = excluded.updated_at";
const ABORT: &str = "DELETE FROM files WHERE public_id = $1 AND state = 'pending' AND holder = $2";
// Any state: a row still there after `ABORT` removed nothing is ready or someone else's.
const EXISTS_BY_ID: &str = "SELECT EXISTS (SELECT 1 FROM files WHERE public_id = $1)";
// `starts_with` compares characters; an empty prefix matches every name. LIMIT NULL is no limit.
// Without the profile and the version history (see `Records::list_files`).
/// The columns listings read: without the profile and the rev history (large, and never
/// shown in a listing).
macro_rules! listed_columns {
    () => {
        "f.public_id, f.user_id, f.file_name, f.storage_uri, f.storage_type::text, f.description, f.summary, \
         f.format, f.size_bytes, f.sha256, f.row_count, f.column_count, '' AS profile, f.created_at, f.updated_at, f.state, \
         f.rev, '[]' AS rev_history, f.origin"
    };
}
const LIST: &str = concat!(
    "SELECT ",
    listed_columns!(),
    " FROM files f WHERE f.user_id = $1 AND f.state = 'ready' AND starts_with(f.file_name, $2)
     ORDER BY f.id LIMIT $3 OFFSET $4"
);
const LIST_REVS: &str = "SELECT f.public_id, f.rev FROM files f
     WHERE f.user_id = $1 AND f.state = 'ready' AND starts_with(f.file_name, $2)
     ORDER BY f.id LIMIT $3 OFFSET $4";
const LISTED_BY_ID: &str = concat!(
    "SELECT ",
    listed_columns!(),
    " FROM files f WHERE f.user_id = $1 AND f.state = 'ready' AND f.public_id = ANY($2)"
);
const COUNT: &str =
    "SELECT COUNT(*) FROM files f WHERE f.user_id = $1 AND f.state = 'ready' AND starts_with(f.file_name, $2)";
const LIST_VERSION: &str = "SELECT COALESCE(MAX(seq), 0)::bigint FROM changes WHERE user_id = $1";
const CLEAR_ONE: &str = "DELETE FROM active_files WHERE user_id = $1 AND session_id = $2";
// Row lock first (FOR UPDATE), like a delete, so concurrent activations and deletes of
// the file queue behind the rename.
const FIND_FOR_UPDATE: &str = concat!(
    "SELECT f.id, ",
    columns!(),
    " FROM files f WHERE f.user_id = $1 AND f.file_name = $2 AND f.state = 'ready' FOR UPDATE"
);
const UPDATE: &str = concat!(
    "UPDATE files AS f SET file_name = COALESCE($2, f.file_name), storage_uri = COALESCE($3, f.storage_uri),
         description = COALESCE($4, f.description), updated_at = date_trunc('milliseconds', now()),
         rev = $5, rev_history = $6, origin = (SELECT instance_id FROM instance)
     WHERE f.id = $1 RETURNING ",
    columns!()
);
const SESSIONS_OF: &str = "SELECT session_id FROM active_files WHERE file_id = $1";
const GET: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM files f WHERE f.user_id = $1 AND f.file_name = $2 AND f.state = 'ready'"
);
// FOR SHARE: a concurrent delete (which updates the row) waits for this activation to
// commit and then removes the new active entry too, or this one sees the row gone.
const GET_FOR_SHARE: &str = concat!(
    "SELECT f.id, ",
    columns!(),
    " FROM files f WHERE f.user_id = $1 AND f.file_name = $2 AND f.state = 'ready' FOR SHARE"
);
const GET_ACTIVE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM active_files a JOIN files f ON f.id = a.file_id WHERE a.user_id = $1 AND a.session_id = $2 AND f.state = 'ready'"
);
const BEGIN_DELETE: &str = concat!(
    "UPDATE files AS f SET state = 'deleting', updated_at = date_trunc('milliseconds', now()), holder = $3
     WHERE f.user_id = $1 AND f.file_name = $2 AND f.state = 'ready' RETURNING f.id, ",
    columns!()
);
const CLEAR_ACTIVE: &str = "DELETE FROM active_files WHERE file_id = $1 RETURNING session_id";
const FINISH_DELETE: &str = "DELETE FROM files WHERE public_id = $1 AND state = 'deleting' AND holder = $2";
// Expired leases mean the same as none, so they are not kept.
const DROP_EXPIRED_LEASES: &str = "DELETE FROM leases WHERE expires_at <= now()";
const RENEW_LEASE: &str = "INSERT INTO leases (holder, expires_at) VALUES ($1, now() + make_interval(secs => $2))
     ON CONFLICT (holder) DO UPDATE SET expires_at = excluded.expires_at";
const END_LEASE: &str = "DELETE FROM leases WHERE holder = $1";
// Row locks make each row go to one claimant: a second replica's UPDATE waits, then
// re-checks the row, whose holder now has a live lease.
const CLAIM_FILES: &str = concat!(
    "UPDATE files AS f SET holder = $1
     WHERE f.state <> 'ready' AND f.holder IS DISTINCT FROM $1
       AND ($2 OR (f.holder IS NULL AND f.updated_at < now() - make_interval(secs => $3))
            OR NOT EXISTS (SELECT 1 FROM leases l WHERE l.holder = f.holder AND l.expires_at > now()))
     RETURNING ",
    columns!()
);
const CLAIM_RENAMES: &str = "UPDATE renames AS r SET holder = $1
     WHERE r.holder <> $1
       AND ($2 OR NOT EXISTS (SELECT 1 FROM leases l WHERE l.holder = r.holder AND l.expires_at > now()))
     RETURNING r.id, r.user_id, r.from_name, r.to_name, r.format";
const BEGIN_RENAME: &str =
    "INSERT INTO renames (holder, user_id, from_name, to_name, format) VALUES ($1, $2, $3, $4, $5) RETURNING id";
const END_RENAME: &str = "DELETE FROM renames WHERE id = $1";
const NAME_RECORDED: &str = "SELECT EXISTS (SELECT 1 FROM files WHERE user_id = $1 AND file_name = $2)";
const USER_LOCK: &str = "SELECT pg_advisory_lock($1, $2)";
const ALL_FILES: &str = concat!(
    "SELECT f.public_id, f.user_id, f.file_name, f.storage_uri, f.storage_type::text, f.description, f.summary, \
         f.format, f.size_bytes, f.sha256, f.row_count, f.column_count, '' AS profile, f.created_at, f.updated_at, f.state, \
         f.rev, f.rev_history, f.origin",
    " FROM files f WHERE f.state = 'ready' ORDER BY f.id"
);
const NAME_CLAIMED: &str = "SELECT EXISTS (SELECT 1 FROM files WHERE user_id = $1 AND file_name = $2)
     OR EXISTS (SELECT 1 FROM renames WHERE user_id = $1 AND $2 IN (from_name, to_name))";
const GET_BY_ID_FOR_UPDATE: &str = concat!(
    "SELECT f.id, ",
    columns!(),
    " FROM files f WHERE f.public_id = $1 AND f.state = 'ready' FOR UPDATE"
);
const REPLACE_CONTENT: &str = concat!(
    "UPDATE files AS f SET size_bytes = $2, sha256 = $3, summary = $4, row_count = $5, column_count = $6,
         profile = $7, updated_at = date_trunc('milliseconds', now()), rev = $8, rev_history = $9,
         origin = (SELECT instance_id FROM instance)
     WHERE f.public_id = $1 AND f.state = 'ready' RETURNING f.id, ",
    columns!()
);
const APPLY_VERSION: &str = concat!(
    "UPDATE files AS f SET file_name = $2, storage_uri = $3, description = $4, summary = $5, format = $6,
         size_bytes = $7, sha256 = $8, row_count = $9, column_count = $10, profile = $11, updated_at = $12,
         rev = $13, rev_history = $14, origin = $15
     WHERE f.public_id = $1 AND f.state = 'ready' RETURNING f.id, ",
    columns!()
);
const GET_BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM files f WHERE f.public_id = $1 AND f.state = 'ready'"
);
const FIND_BY_SHA256: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM files f WHERE f.sha256 = $1 AND f.state = 'ready' LIMIT 1"
);
const HELD_SHA256S: &str = "SELECT DISTINCT sha256 FROM files WHERE sha256 = ANY($1) AND state = 'ready'";
const TOMBSTONE: &str = "SELECT tombstone FROM changes WHERE file_id = $1 AND op = 'delete'";
// The counter row stays locked until commit: the next change on any replica waits, so
// sequence numbers become visible in order.
const NEXT_SEQ: &str = "UPDATE instance SET last_seq = last_seq + 1 RETURNING last_seq, instance_id";
const RECORD_CHANGE: &str = "INSERT INTO changes (file_id, seq, user_id, op, origin, tombstone)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (file_id) DO UPDATE SET seq = excluded.seq, user_id = excluded.user_id, op = excluded.op,
         origin = excluded.origin, tombstone = excluded.tombstone";
const CHANGES: &str = concat!(
    "SELECT c.seq, c.op, c.tombstone, ",
    columns!(),
    " FROM changes c LEFT JOIN files f ON f.public_id = c.file_id AND f.state = 'ready' AND c.op = 'upsert'
     WHERE c.seq > $1 AND c.seq <= $4 AND ($2::BIGINT IS NULL OR c.user_id = $2)
       AND ($5::TEXT IS NULL OR c.origin <> $5)
     ORDER BY c.seq LIMIT $3"
);
const NEWEST_SEQ: &str = "SELECT last_seq FROM instance";
const KNOWN_FILE: &str = "SELECT EXISTS (SELECT 1 FROM files WHERE public_id = $1)
     OR EXISTS (SELECT 1 FROM changes WHERE file_id = $1)";
const INSTANCE_ID: &str = "SELECT instance_id FROM instance";
const CHECKPOINT: &str = "SELECT last_seq FROM sync_checkpoints WHERE source = $1";
const SET_CHECKPOINT: &str = "INSERT INTO sync_checkpoints (source, last_seq, updated_at) VALUES ($1, $2, now())
     ON CONFLICT (source) DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at";

/// A pooled connection with its prepared statements, so a query is one round trip.
pub struct PgConn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgConn {
    /// The two statements [`record_change`] runs.
    fn change_statements(&mut self) -> Result<(Statement, Statement)> {
        Ok((self.statement(NEXT_SEQ)?, self.statement(RECORD_CHANGE)?))
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(db_err)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

/// r2d2_postgres's manager, keeping a statement cache next to each client.
pub struct Manager(PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.0.connect()?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

type Pool = r2d2::Pool<Manager>;

pub struct PostgresCatalog {
    /// `Some` until dropped (see the `Drop` impl).
    pool: Option<Pool>,
    /// Connections that hold per-user advisory locks. A separate, small pool: a lock
    /// holder also needs a connection from `pool` for its catalog call, and sharing one
    /// pool would let lock holders starve each other of connections.
    locks: Option<Pool>,
    /// `user@host:port/db`, never the password.
    target: String,
    /// This process's identity in `files.holder`, `leases` and `renames`.
    holder: String,
}

impl Drop for PostgresCatalog {
    fn drop(&mut self) {
        // Closing a postgres client blocks on its own runtime, which panics on a thread
        // that drives async tasks, and the service is dropped in async code at shutdown.
        // Close the pools' connections on a plain thread.
        let pools = (self.pool.take(), self.locks.take());
        let _ = std::thread::spawn(move || drop(pools)).join();
    }
}

impl PostgresCatalog {
    /// Connects to the database at `url` (postgres://…). Fails, naming the server but not
    /// the password, when the URL is bad or the server cannot be reached now.
    pub fn open(url: &str) -> Result<PostgresCatalog, String> {
        let mut config: postgres::Config = url.parse().map_err(|e| format!("is not a valid PostgreSQL URL: {e}"))?;
        let target = describe_target(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        // Notice a vanished server (no FIN, e.g. a network cut) within seconds rather
        // than the kernel's defaults of minutes to hours.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(10));
        let options = match config.get_options() {
            Some(own) => format!("{own} {SESSION_OPTIONS}"),
            None => SESSION_OPTIONS.to_string(),
        };
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("file-service");
        }
        let manager = || Manager(PostgresConnectionManager::new(config.clone(), NoTls));
        // min_idle 1: building the pool proves the server is reachable now (startup fails
        // with a clear line otherwise); more connections open on demand.
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(3))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager())
            .map_err(|e| format!("cannot connect to PostgreSQL at {target}: {e}"))?;
        let locks = r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(3))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager());
        Ok(PostgresCatalog {
            pool: Some(pool),
            locks: Some(locks),
            target,
            holder: Uuid::new_v4().simple().to_string(),
        })
    }

    fn conn_from(&self, pool: &Option<Pool>) -> Result<r2d2::PooledConnection<Manager>> {
        pool.as_ref()
            .expect("pools live as long as the catalog")
            .get()
            .map_err(|e| {
                Error::Unavailable(format!(
                    "the PostgreSQL catalog at {} is not available: {e}",
                    self.target
                ))
            })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.conn_from(&self.pool)
    }
}

/// `user@host:port/db` for logs and errors: everything but the password.
fn describe_target(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default user)");
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

/// Connection-level failures (server gone, database dropped, timeouts, too many
/// connections) are `Unavailable`: the request may succeed later. Anything else is a bug.
fn db_err(e: postgres::Error) -> Error {
    if is_unavailable(&e) {
        Error::Unavailable(format!("the PostgreSQL catalog is not available: {e}"))
    } else {
        Error::Internal(anyhow::Error::new(e).context("PostgreSQL catalog"))
    }
}

/// The conversion for the answer to COMMIT, where a broken connection means something
/// else: the server may have received the COMMIT and committed before the answer was
/// lost. That is `Error::OutcomeUnknown`, never a plain failure, so no caller undoes
/// work that may be committed. A refusal the server sent (a serialization failure, a
/// deferred constraint) is definite: nothing was committed.
fn commit_err(e: postgres::Error) -> Error {
    if e.as_db_error().is_none() && is_unavailable(&e) {
        Error::OutcomeUnknown(format!(
            "the PostgreSQL catalog's answer to a commit was lost, so whether it happened is not known yet: {e}"
        ))
    } else {
        db_err(e)
    }
}

fn is_unavailable(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        // 08 connection exception, 53 insufficient resources, 57 operator intervention
        // (shutdown, statement timeout), 3D000 database does not exist (dropped),
        // 55P03 lock timeout, 40001/40P01 serialization failure / deadlock (retryable).
        return c.starts_with("08")
            || c.starts_with("53")
            || c.starts_with("57")
            || matches!(c, "3D000" | "55P03" | "40001" | "40P01");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The unique index on (user_id, file_name) refused a row: the name is taken.
fn is_name_taken(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|d| d.constraint()) == Some("idx_files_user_filename")
}

/// Reads a record from the `columns!()` of `row`, by column name.
/// The rows of `statement` (a listing's page: user, prefix, limit, offset) for `query`.
fn list_page(conn: &mut PgConn, statement: &'static str, user: UserId, query: &ListQuery) -> Result<Vec<Row>> {
    let stmt = conn.statement(statement)?;
    let prefix = query.name_prefix.clone().unwrap_or_default();
    let limit = query.limit.map(i64::from);
    let offset = query.offset as i64;
    conn.client
        .query(&stmt, &[&user, &prefix, &limit, &offset])
        .map_err(db_err)
}

/// How many files the listing of `query` matches in all, given the `page_len` it got:
/// without paging the page is the whole answer, so only a paged listing counts.
fn list_total(conn: &mut PgConn, user: UserId, query: &ListQuery, page_len: usize) -> Result<u64> {
    if query.limit.is_none() && query.offset == 0 {
        return Ok(page_len as u64);
    }
    let count = conn.statement(COUNT)?;
    let prefix = query.name_prefix.clone().unwrap_or_default();
    conn.client
        .query_one(&count, &[&user, &prefix])
        .and_then(|r| r.try_get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(db_err)
}

fn record_of(row: &Row) -> Result<FileRecord> {
    let read = || -> std::result::Result<FileRecord, postgres::Error> {
        Ok(FileRecord {
            id: row.try_get("public_id")?,
            user_id: row.try_get("user_id")?,
            file_name: row.try_get("file_name")?,
            storage_uri: row.try_get("storage_uri")?,
            storage_type: row.try_get("storage_type")?,
            description: row.try_get("description")?,
            summary: row.try_get("summary")?,
            extension: row.try_get("format")?,
            size_bytes: row.try_get::<_, i64>("size_bytes")? as u64,
            sha256: row.try_get("sha256")?,
            row_count: row.try_get::<_, i64>("row_count")? as u64,
            column_count: row.try_get::<_, i64>("column_count")? as u64,
            profile_json: row.try_get("profile")?,
            created_at: row.try_get::<_, DateTime<Utc>>("created_at")?,
            updated_at: row.try_get::<_, DateTime<Utc>>("updated_at")?,
            rev: row.try_get("rev")?,
            rev_history: Vec::new(),
            origin: row.try_get("origin")?,
        })
    };
    let mut record = read().map_err(db_err)?;
    let history: String = row.try_get("rev_history").map_err(db_err)?;
    record.rev_history = serde_json::from_str(&history).map_err(Error::internal)?;
    Ok(record)
}

/// The parameters of `INSERT_PENDING` for `r`, held by `holder`.
struct PendingParams<'a> {
    r: &'a FileRecord,
    holder: &'a str,
    size_bytes: i64,
    row_count: i64,
    column_count: i64,
    history: String,
}

fn pending_params<'a>(r: &'a FileRecord, holder: &'a str) -> PendingParams<'a> {
    PendingParams {
        r,
        holder,
        size_bytes: r.size_bytes as i64,
        row_count: r.row_count as i64,
        column_count: r.column_count as i64,
        history: history_json(&r.rev_history),
    }
}

impl PendingParams<'_> {
    fn as_params(&self) -> [&(dyn ToSql + Sync); 19] {
        let r = self.r;
        [
            &r.id,
            &r.user_id,
            &r.file_name,
            &r.storage_uri,
            &r.storage_type,
            &r.description,
            &r.summary,
            &r.extension,
            &self.size_bytes,
            &r.sha256,
            &self.row_count,
            &self.column_count,
            &r.profile_json,
            &r.created_at,
            &r.updated_at,
            &r.rev,
            &self.history,
            &r.origin,
            &self.holder,
        ]
    }
}

/// Enters a change of `record` in the feed at the next sequence number, in the caller's
/// transaction.
fn record_change(
    tx: &mut postgres::Transaction<'_>,
    statements: (&Statement, &Statement),
    record: &FileRecord,
    op: ChangeOp,
    tombstone: Option<&SyncRecord>,
) -> Result<()> {
    let (next_seq, insert) = statements;
    let row = tx.query_one(next_seq, &[]).map_err(db_err)?;
    let seq: i64 = row.try_get(0).map_err(db_err)?;
    let here: String = row.try_get(1).map_err(db_err)?;
    let (op, origin, tombstone) = feed_entry(record, op, tombstone, &here)?;
    tx.execute(insert, &[&record.id, &seq, &record.user_id, &op, &origin, &tombstone])
        .map_err(db_err)?;
    Ok(())
}

/// The session ids of rows whose first column is one.
fn session_ids(rows: Vec<Row>) -> Result<Vec<Uuid>> {
    rows.iter().map(|r| r.try_get::<_, Uuid>(0).map_err(db_err)).collect()
}

fn pk_and_record(row: &Row) -> Result<(i64, FileRecord)> {
    Ok((row.try_get("id").map_err(db_err)?, record_of(row)?))
}

/// Holds a per-user advisory lock on its own connection; dropping it unlocks.
struct PgUserLock {
    conn: Option<r2d2::PooledConnection<Manager>>,
}

impl Drop for PgUserLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        // Unlocking is a blocking round trip and the guard is dropped in async code:
        // hand it to the blocking pool. If the connection is broken, the server has
        // already released the lock with the session.
        let mut unlock = move || {
            let _ = conn.client.batch_execute("SELECT pg_advisory_unlock_all()");
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(unlock)),
            Err(_) => unlock(),
        }
    }
}

impl Catalog for PostgresCatalog {
    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        // A migration may take longer than a request may; waiting for another replica's
        // migration is expected. Both only for this transaction.
        tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
            .map_err(db_err)?;
        // Transaction-scoped: released by commit or rollback, even if this process dies.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .map_err(db_err)?;
        let current: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
            .and_then(|r| r.try_get(0))
            .map_err(db_err)?;
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).map_err(|e| match db_err(e) {
                Error::Internal(e) => Error::Internal(e.context(format!("PostgreSQL migration {version}"))),
                other => other,
            })?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version])
                .map_err(db_err)?;
        }
        tx.commit().map_err(commit_err)
    }

    fn lock_user(&self, user: UserId) -> Result<Option<UserLock>> {
        let mut conn = self.conn_from(&self.locks)?;
        let stmt = conn.statement(USER_LOCK)?;
        // Users share a lock when their ids agree in the low 32 bits: only extra waiting.
        let key = (user ^ (user >> 32)) as i32;
        conn.client.execute(&stmt, &[&USER_LOCK_SPACE, &key]).map_err(db_err)?;
        Ok(Some(Box::new(PgUserLock { conn: Some(conn) })))
    }

    fn ping(&self) -> Result<()> {
        let mut conn = self.conn()?;
        conn.client.simple_query("SELECT 1").map_err(db_err)?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("postgresql {}", self.target)
    }
}

impl Records for PostgresCatalog {
    fn reserve_upload(&self, r: &FileRecord) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(INSERT_PENDING)?;
        match conn.client.execute(&stmt, &pending_params(r, &self.holder).as_params()) {
            Ok(_) => Ok(()),
            Err(e) if is_name_taken(&e) => Err(Error::name_taken(&r.file_name)),
            Err(e) => Err(db_err(e)),
        }
    }

    fn commit_upload(&self, id: Uuid, session: Option<Uuid>) -> Result<FileRecord> {
        let mut conn = self.conn()?;
        let commit = conn.statement(COMMIT)?;
        let activate = conn.statement(ACTIVATE)?;
        let (next_seq, insert) = conn.change_statements()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let row = tx
            .query_opt(&commit, &[&id, &self.holder])
            .map_err(db_err)?
            .ok_or_else(|| Error::internal(format!("upload {id} is no longer reserved")))?;
        let (pk, record) = pk_and_record(&row)?;
        if let Some(session) = session {
            tx.execute(&activate, &[&record.user_id, &session, &pk])
                .map_err(db_err)?;
        }
        record_change(&mut tx, (&next_seq, &insert), &record, ChangeOp::Upsert, None)?;
        tx.commit().map_err(commit_err)?;
        Ok(record)
    }

    fn abort_upload(&self, id: Uuid) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(ABORT)?;
        conn.client.execute(&stmt, &[&id, &self.holder]).map_err(db_err)?;
        Ok(())
    }

    fn settle_upload(&self, id: Uuid) -> Result<Settlement> {
        let mut conn = self.conn()?;
        let (abort, get, exists) = (
            conn.statement(ABORT)?,
            conn.statement(GET_BY_ID)?,
            conn.statement(EXISTS_BY_ID)?,
        );
        // The lost commit's transaction holds the row's lock until the server has ended
        // it: the delete waits for that, then removes the row only if it is still pending
        // (re-checked on the row as the commit left it), so it never undoes a commit.
        if conn.client.execute(&abort, &[&id, &self.holder]).map_err(db_err)? == 1 {
            return Ok(Settlement::Aborted);
        }
        if let Some(row) = conn.client.query_opt(&get, &[&id]).map_err(db_err)? {
            return Ok(Settlement::Committed(record_of(&row)?));
        }
        let held: bool = conn
            .client
            .query_one(&exists, &[&id])
            .and_then(|row| row.try_get(0))
            .map_err(db_err)?;
        Ok(if held {
            Settlement::Elsewhere
        } else {
            Settlement::Aborted
        })
    }

    fn reserve_unknown(&self, records: &[FileRecord]) -> Result<Vec<Uuid>> {
        let mut conn = self.conn()?;
        let (known, insert) = (conn.statement(KNOWN_TO_SYNC)?, conn.statement(INSERT_PENDING_IF_FREE)?);
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let mut reserved = Vec::new();
        for r in records {
            let is_known: bool = tx
                .query_one(&known, &[&r.id, &r.user_id, &r.file_name])
                .and_then(|row| row.try_get(0))
                .map_err(db_err)?;
            // A name held by another file or upload makes the insert do nothing.
            if !is_known
                && tx
                    .execute(&insert, &pending_params(r, &self.holder).as_params())
                    .map_err(db_err)?
                    == 1
            {
                reserved.push(r.id);
            }
        }
        tx.commit().map_err(commit_err)?;
        Ok(reserved)
    }

    fn commit_uploads(&self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        let mut conn = self.conn()?;
        let commit = conn.statement(COMMIT)?;
        let (next_seq, insert) = conn.change_statements()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let mut committed = Vec::new();
        for id in ids {
            if let Some(row) = tx.query_opt(&commit, &[id, &self.holder]).map_err(db_err)? {
                let (_, record) = pk_and_record(&row)?;
                record_change(&mut tx, (&next_seq, &insert), &record, ChangeOp::Upsert, None)?;
                committed.push(*id);
            }
        }
        tx.commit().map_err(commit_err)?;
        Ok(committed)
    }

    fn list_files(&self, user: UserId, query: &ListQuery) -> Result<(Vec<FileRecord>, u64)> {
        let mut conn = self.conn()?;
        let rows = list_page(&mut conn, LIST, user, query)?;
        let files = rows.iter().map(|r| record_of(r)).collect::<Result<Vec<_>>>()?;
        let total = list_total(&mut conn, user, query, files.len())?;
        Ok((files, total))
    }

    fn list_revs(&self, user: UserId, query: &ListQuery) -> Result<(Vec<(Uuid, String)>, u64)> {
        let mut conn = self.conn()?;
        let rows = list_page(&mut conn, LIST_REVS, user, query)?;
        let revs = rows
            .iter()
            .map(|r| Ok((r.try_get("public_id")?, r.try_get("rev")?)))
            .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            .map_err(db_err)?;
        let total = list_total(&mut conn, user, query, revs.len())?;
        Ok((revs, total))
    }

    fn listed_by_id(&self, user: UserId, ids: &[Uuid]) -> Result<Vec<FileRecord>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(LISTED_BY_ID)?;
        let rows = conn.client.query(&stmt, &[&user, &ids]).map_err(db_err)?;
        rows.iter().map(|r| record_of(r)).collect()
    }

    fn list_version(&self, user: UserId) -> Result<i64> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(LIST_VERSION)?;
        conn.client
            .query_one(&stmt, &[&user])
            .and_then(|r| r.try_get::<_, i64>(0))
            .map_err(db_err)
    }

    fn get_file(&self, user: UserId, file_name: &str) -> Result<Option<FileRecord>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(GET)?;
        let row = conn.client.query_opt(&stmt, &[&user, &file_name]).map_err(db_err)?;
        row.map(|r| record_of(&r)).transpose()
    }

    fn update_file(
        &self,
        user: UserId,
        file_name: &str,
        update: &FileUpdate,
    ) -> Result<Option<(FileRecord, Vec<Uuid>)>> {
        let mut conn = self.conn()?;
        let find = conn.statement(FIND_FOR_UPDATE)?;
        let change = conn.statement(UPDATE)?;
        let sessions_of = conn.statement(SESSIONS_OF)?;
        let (next_seq, insert) = conn.change_statements()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let Some(row) = tx.query_opt(&find, &[&user, &file_name]).map_err(db_err)? else {
            return Ok(None);
        };
        let (pk, current) = pk_and_record(&row)?;
        let (new_name, new_uri) = update.rename.clone().unzip();
        let history = history_json(&current.next_history());
        let params: [&(dyn postgres::types::ToSql + Sync); 6] =
            [&pk, &new_name, &new_uri, &update.description, &new_rev(), &history];
        let record = match tx.query_one(&change, &params) {
            Ok(row) => record_of(&row)?,
            Err(e) if is_name_taken(&e) => return Err(Error::name_taken(&new_name.unwrap_or_default())),
            Err(e) => return Err(db_err(e)),
        };
        let sessions = session_ids(tx.query(&sessions_of, &[&pk]).map_err(db_err)?)?;
        record_change(&mut tx, (&next_seq, &insert), &record, ChangeOp::Upsert, None)?;
        tx.commit().map_err(commit_err)?;
        Ok(Some((record, sessions)))
    }

    fn begin_delete(
        &self,
        user: UserId,
        file_name: &str,
        tombstone: Option<&SyncRecord>,
    ) -> Result<Option<(FileRecord, Vec<Uuid>)>> {
        let mut conn = self.conn()?;
        let hide = conn.statement(BEGIN_DELETE)?;
        let clear = conn.statement(CLEAR_ACTIVE)?;
        let (next_seq, insert) = conn.change_statements()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        // The UPDATE takes the row lock first, so an activation of this file either
        // committed before (and its entry is cleared below) or finds the file gone.
        let Some(row) = tx
            .query_opt(&hide, &[&user, &file_name, &self.holder])
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let (pk, record) = pk_and_record(&row)?;
        let sessions = session_ids(tx.query(&clear, &[&pk]).map_err(db_err)?)?;
        record_change(&mut tx, (&next_seq, &insert), &record, ChangeOp::Delete, tombstone)?;
        tx.commit().map_err(commit_err)?;
        Ok(Some((record, sessions)))
    }

    fn finish_delete(&self, id: Uuid) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(FINISH_DELETE)?;
        conn.client.execute(&stmt, &[&id, &self.holder]).map_err(db_err)?;
        Ok(())
    }

    fn all_files(&self) -> Result<Vec<FileRecord>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(ALL_FILES)?;
        let rows = conn.client.query(&stmt, &[]).map_err(db_err)?;
        rows.iter().map(|row| record_of(row)).collect()
    }

    fn name_claimed(&self, user: UserId, file_name: &str) -> Result<bool> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(NAME_CLAIMED)?;
        conn.client
            .query_one(&stmt, &[&user, &file_name])
            .and_then(|r| r.try_get(0))
            .map_err(db_err)
    }

    fn replace_content(&self, c: &FileRecord) -> Result<Option<(FileRecord, Vec<Uuid>)>> {
        let mut conn = self.conn()?;
        let find = conn.statement(GET_BY_ID_FOR_UPDATE)?;
        let replace = conn.statement(REPLACE_CONTENT)?;
        let sessions_of = conn.statement(SESSIONS_OF)?;
        let (next_seq, insert) = conn.change_statements()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let Some(row) = tx.query_opt(&find, &[&c.id]).map_err(db_err)? else {
            return Ok(None);
        };
        let (_, current) = pk_and_record(&row)?;
        let history = history_json(&current.next_history());
        let params: [&(dyn postgres::types::ToSql + Sync); 9] = [
            &c.id,
            &(c.size_bytes as i64),
            &c.sha256,
            &c.summary,
            &(c.row_count as i64),
            &(c.column_count as i64),
            &c.profile_json,
            &new_rev(),
            &history,
        ];
        let Some(row) = tx.query_opt(&replace, &params).map_err(db_err)? else {
            return Ok(None);
        };
        let (pk, record) = pk_and_record(&row)?;
        let sessions = session_ids(tx.query(&sessions_of, &[&pk]).map_err(db_err)?)?;
        record_change(&mut tx, (&next_seq, &insert), &record, ChangeOp::Upsert, None)?;
        tx.commit().map_err(commit_err)?;
        Ok(Some((record, sessions)))
    }

    fn apply_version(&self, r: &FileRecord) -> Result<Option<(FileRecord, Vec<Uuid>)>> {
        let mut conn = self.conn()?;
        let apply = conn.statement(APPLY_VERSION)?;
        let sessions_of = conn.statement(SESSIONS_OF)?;
        let (next_seq, insert) = conn.change_statements()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let history = history_json(&r.rev_history);
        let params: [&(dyn postgres::types::ToSql + Sync); 15] = [
            &r.id,
            &r.file_name,
            &r.storage_uri,
            &r.description,
            &r.summary,
            &r.extension,
            &(r.size_bytes as i64),
            &r.sha256,
            &(r.row_count as i64),
            &(r.column_count as i64),
            &r.profile_json,
            &r.updated_at,
            &r.rev,
            &history,
            &r.origin,
        ];
        let row = match tx.query_opt(&apply, &params) {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e) if is_name_taken(&e) => return Err(Error::name_taken(&r.file_name)),
            Err(e) => return Err(db_err(e)),
        };
        let (pk, record) = pk_and_record(&row)?;
        let sessions = session_ids(tx.query(&sessions_of, &[&pk]).map_err(db_err)?)?;
        record_change(&mut tx, (&next_seq, &insert), &record, ChangeOp::Upsert, None)?;
        tx.commit().map_err(commit_err)?;
        Ok(Some((record, sessions)))
    }

    fn get_by_id(&self, id: Uuid) -> Result<Option<FileRecord>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(GET_BY_ID)?;
        let row = conn.client.query_opt(&stmt, &[&id]).map_err(db_err)?;
        row.map(|r| record_of(&r)).transpose()
    }

    fn find_by_sha256(&self, sha256: &str) -> Result<Option<FileRecord>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(FIND_BY_SHA256)?;
        let row = conn.client.query_opt(&stmt, &[&sha256]).map_err(db_err)?;
        row.map(|r| record_of(&r)).transpose()
    }

    fn held_sha256s(&self, hashes: &[String]) -> Result<HashSet<String>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(HELD_SHA256S)?;
        let rows = conn.client.query(&stmt, &[&hashes]).map_err(db_err)?;
        rows.iter().map(|r| r.try_get::<_, String>(0).map_err(db_err)).collect()
    }

    fn begin_rename(&self, user: UserId, from_name: &str, to_name: &str, format: &str) -> Result<i64> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(BEGIN_RENAME)?;
        conn.client
            .query_one(&stmt, &[&self.holder, &user, &from_name, &to_name, &format])
            .and_then(|r| r.try_get(0))
            .map_err(db_err)
    }

    fn end_rename(&self, id: i64) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(END_RENAME)?;
        conn.client.execute(&stmt, &[&id]).map_err(db_err)?;
        Ok(())
    }

    fn name_recorded(&self, user: UserId, file_name: &str) -> Result<bool> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(NAME_RECORDED)?;
        conn.client
            .query_one(&stmt, &[&user, &file_name])
            .and_then(|r| r.try_get(0))
            .map_err(db_err)
    }
}

impl ActiveFiles for PostgresCatalog {
    fn set_active(&self, user: UserId, session: Uuid, file_name: &str) -> Result<Option<FileRecord>> {
        let mut conn = self.conn()?;
        let find = conn.statement(GET_FOR_SHARE)?;
        let activate = conn.statement(ACTIVATE)?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let Some(row) = tx.query_opt(&find, &[&user, &file_name]).map_err(db_err)? else {
            return Ok(None);
        };
        let (pk, record) = pk_and_record(&row)?;
        tx.execute(&activate, &[&user, &session, &pk]).map_err(db_err)?;
        tx.commit().map_err(commit_err)?;
        Ok(Some(record))
    }

    fn get_active(&self, user: UserId, session: Uuid) -> Result<Option<FileRecord>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(GET_ACTIVE)?;
        let row = conn.client.query_opt(&stmt, &[&user, &session]).map_err(db_err)?;
        row.map(|r| record_of(&r)).transpose()
    }

    fn clear_active(&self, user: UserId, session: Uuid) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(CLEAR_ONE)?;
        conn.client.execute(&stmt, &[&user, &session]).map_err(db_err)?;
        Ok(())
    }
}

impl ChangeFeed for PostgresCatalog {
    fn tombstone(&self, id: Uuid) -> Result<Option<SyncRecord>> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(TOMBSTONE)?;
        let row = conn.client.query_opt(&stmt, &[&id]).map_err(db_err)?;
        let json: Option<String> = match row {
            Some(row) => row.try_get(0).map_err(db_err)?,
            None => None,
        };
        json.map(|j| serde_json::from_str(&j).map_err(Error::internal))
            .transpose()
    }

    fn record_delete(&self, tombstone: &SyncRecord) -> Result<bool> {
        let mut conn = self.conn()?;
        let known = conn.statement(KNOWN_FILE)?;
        let (next_seq, insert) = conn.change_statements()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let exists: bool = tx
            .query_one(&known, &[&tombstone.id])
            .and_then(|r| r.try_get(0))
            .map_err(db_err)?;
        if exists {
            return Ok(false);
        }
        let record = tombstone.to_record(String::new(), String::new());
        record_change(
            &mut tx,
            (&next_seq, &insert),
            &record,
            ChangeOp::Delete,
            Some(tombstone),
        )?;
        tx.commit().map_err(commit_err)?;
        Ok(true)
    }

    fn changes(&self, since: i64, limit: u32, user: Option<UserId>, exclude_origin: Option<&str>) -> Result<FeedPage> {
        let mut conn = self.conn()?;
        // Read first: the counter row is locked until each change commits, so every
        // change numbered up to it is visible to the next statement.
        let newest_stmt = conn.statement(NEWEST_SEQ)?;
        let newest: i64 = conn
            .client
            .query_one(&newest_stmt, &[])
            .and_then(|r| r.try_get(0))
            .map_err(db_err)?;
        let stmt = conn.statement(CHANGES)?;
        let rows = conn
            .client
            .query(&stmt, &[&since, &user, &i64::from(limit), &newest, &exclude_origin])
            .map_err(db_err)?;
        let mut page = FeedPage::new(since);
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(db_err)?;
            let op: String = row.try_get(1).map_err(db_err)?;
            let change = if op == "delete" {
                let tombstone: Option<String> = row.try_get(2).map_err(db_err)?;
                match tombstone {
                    Some(t) => Some(Change {
                        seq,
                        op: ChangeOp::Delete,
                        file: serde_json::from_str(&t).map_err(Error::internal)?,
                    }),
                    None => None,
                }
            } else if row.try_get::<_, Option<Uuid>>(3).map_err(db_err)?.is_some() {
                Some(Change {
                    seq,
                    op: ChangeOp::Upsert,
                    file: SyncRecord::from_record(&record_of(&row)?, true),
                })
            } else {
                None
            };
            page.push(seq, change);
        }
        Ok(page.finish(limit, newest))
    }

    fn instance_id(&self) -> Result<String> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(INSTANCE_ID)?;
        conn.client
            .query_one(&stmt, &[])
            .and_then(|r| r.try_get(0))
            .map_err(db_err)
    }

    fn checkpoint(&self, source: &str) -> Result<i64> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(CHECKPOINT)?;
        let row = conn.client.query_opt(&stmt, &[&source]).map_err(db_err)?;
        row.map_or(Ok(0), |r| r.try_get(0).map_err(db_err))
    }

    fn set_checkpoint(&self, source: &str, seq: i64) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(SET_CHECKPOINT)?;
        conn.client.execute(&stmt, &[&source, &seq]).map_err(db_err)?;
        Ok(())
    }
}

impl Leases for PostgresCatalog {
    fn holder(&self) -> &str {
        &self.holder
    }

    fn renew_lease(&self, ttl: Duration) -> Result<()> {
        let mut conn = self.conn()?;
        let (drop_expired, renew) = (conn.statement(DROP_EXPIRED_LEASES)?, conn.statement(RENEW_LEASE)?);
        let mut tx = conn.client.transaction().map_err(db_err)?;
        tx.execute(&drop_expired, &[]).map_err(db_err)?;
        tx.execute(&renew, &[&self.holder, &ttl.as_secs_f64()])
            .map_err(db_err)?;
        tx.commit().map_err(commit_err)
    }

    fn end_lease(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let stmt = conn.statement(END_LEASE)?;
        conn.client.execute(&stmt, &[&self.holder]).map_err(db_err)?;
        Ok(())
    }

    fn claim_abandoned(&self, all_others: bool) -> Result<Vec<Unfinished>> {
        let mut conn = self.conn()?;
        let (files, renames) = (conn.statement(CLAIM_FILES)?, conn.statement(CLAIM_RENAMES)?);
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let mut out = Vec::new();
        for row in tx
            .query(&files, &[&self.holder, &all_others, &LEGACY_ABANDONED_AFTER_SECONDS])
            .map_err(db_err)?
        {
            let record = record_of(&row)?;
            let state: String = row.try_get(15).map_err(db_err)?;
            out.push(if state == "pending" {
                Unfinished::Upload(record)
            } else {
                Unfinished::Delete(record)
            });
        }
        for row in tx.query(&renames, &[&self.holder, &all_others]).map_err(db_err)? {
            out.push(Unfinished::Rename(RenameIntent {
                id: row.try_get(0).map_err(db_err)?,
                user_id: row.try_get(1).map_err(db_err)?,
                from_name: row.try_get(2).map_err(db_err)?,
                to_name: row.try_get(3).map_err(db_err)?,
                format: row.try_get(4).map_err(db_err)?,
            }));
        }
        tx.commit().map_err(commit_err)?;
        Ok(out)
    }
}

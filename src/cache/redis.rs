//! The shared active-file cache on Redis (a `ConnectionManager`), in the original design's format, so replicas and the original's readers see one cache.
//!
//! Layout per (user, session):
//! - `active_file:user{u}:session:{s}`: a hash with exactly the spec's fields
//!   (`file_name`, `storage_uri`, `description`, `summary`, `storage_type`, `user_id`),
//!   which a service written against the original design reads unchanged;
//! - `file_service:active_record:user{u}:session:{s}`: a sidecar string holding, as
//!   JSON, the rest of the [`FileRecord`] (id, size, sha256, profile, …) that a hit must
//!   return. It lives under another prefix so nothing scanning `active_file:*` trips
//!   over a key of another type.
//!
//! Both keys are written, read and TTL-refreshed in one MULTI/EXEC, so they never
//! disagree in the eyes of this service; a hash without a matching sidecar (written by
//! someone else, or the sidecar expired alone) is a miss, and the service refills both
//! from the catalog.
//!
//! Faults: every call is bounded by [`OP_TIMEOUT`]; a failure pauses the cache for
//! [`PAUSE_AFTER_FAILURE`] (reads go straight to the catalog instead of waiting on a dead
//! server each time) and the keys whose write or delete may not have landed are kept in
//! a dirty set. Before the cache is used again those keys are deleted, so an entry made
//! stale while Redis was unreachable is never served once it returns.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{cache_key, ActiveFileCache};
use crate::error::{Error, Result};
use crate::model::{FileRecord, UserId};

/// Longest any Redis call may take before the request carries on without the cache.
pub const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, how long reads skip Redis before trying it again.
pub const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The key of the sidecar holding the rest of the record.
pub fn sidecar_key(user: UserId, session: Uuid) -> String {
    format!("file_service:active_record:user{user}:session:{session}")
}

/// The part of a [`FileRecord`] that is not in the spec's hash. `file_name` and
/// `storage_uri` are repeated so a hash rewritten by another program is detected.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    id: Uuid,
    file_name: String,
    storage_uri: String,
    format: String,
    size_bytes: u64,
    sha256: String,
    row_count: u64,
    column_count: u64,
    profile: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    // The version (sync); absent in entries written before it existed.
    #[serde(default)]
    rev: String,
    #[serde(default)]
    rev_history: Vec<String>,
    #[serde(default)]
    origin: String,
}

#[derive(Default)]
struct Health {
    /// Keys whose last write or delete may not have reached Redis.
    dirty: HashSet<(UserId, Uuid)>,
    /// Reads and writes skip Redis until then.
    paused_until: Option<Instant>,
}

/// What the cache and its janitor task share.
struct Inner {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Replaced by a fresh one after a failure: the manager's own reconnection can stay
    /// stuck on a failed connection attempt, and a new lazy manager costs nothing.
    conn: Mutex<ConnectionManager>,
    health: Mutex<Health>,
    /// `host:port/db`, never the password.
    target: String,
}

impl Inner {
    fn conn(&self) -> ConnectionManager {
        self.conn.lock().unwrap().clone()
    }

    /// Records a failure: pause, start over with a new connection, and remember `key`
    /// (if the failed call was meant to change it) as dirty.
    fn failed(&self, key: Option<(UserId, Uuid)>) {
        {
            let mut h = self.health.lock().unwrap();
            h.paused_until = Some(Instant::now() + PAUSE_AFTER_FAILURE);
            h.dirty.extend(key);
        }
        if let Ok(fresh) = ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            *self.conn.lock().unwrap() = fresh;
        }
    }

    /// Deletes every dirty key (hash and sidecar); on success they are clean and the
    /// pause ends.
    async fn flush_dirty(&self) -> Result<()> {
        let keys: Vec<(UserId, Uuid)> = self.health.lock().unwrap().dirty.iter().copied().collect();
        if keys.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = keys
            .iter()
            .flat_map(|&(u, s)| [cache_key(u, s), sidecar_key(u, s)])
            .collect();
        let mut conn = self.conn();
        let deleted = bounded(&self.target, async {
            redis::cmd("DEL").arg(&names).query_async::<i64>(&mut conn).await
        })
        .await;
        match deleted {
            Ok(_) => {
                let mut h = self.health.lock().unwrap();
                for k in &keys {
                    h.dirty.remove(k);
                }
                h.paused_until = None;
                Ok(())
            }
            Err(e) => {
                self.failed(None);
                Err(e)
            }
        }
    }
}

pub struct RedisCache {
    inner: Arc<Inner>,
    ttl_seconds: u64,
    /// Fault injection for the replica-race test: wait this long before every write.
    put_delay: Option<Duration>,
}

impl RedisCache {
    /// Prepares a cache on `url`. Connects lazily: an unreachable Redis does not stop
    /// startup (the catalog serves until it answers). Must run inside the tokio runtime.
    pub fn open(url: &str, ttl: Duration, put_delay: Option<Duration>) -> Result<RedisCache, String> {
        let client = redis::Client::open(url).map_err(|e| format!("is not a valid Redis URL: {e}"))?;
        let info = client.get_connection_info();
        let target = format!("{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            // Reconnection is retried by the next call; a long backoff here would only
            // delay noticing that Redis is back.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| format!("cannot set up the Redis connection to {target}: {e}"))?;
        let inner = Inner {
            client,
            config,
            conn: Mutex::new(conn),
            health: Mutex::new(Health::default()),
            target,
        };
        let cache = RedisCache {
            inner: Arc::new(inner),
            ttl_seconds: ttl.as_secs().max(1),
            put_delay,
        };
        cache.spawn_janitor();
        Ok(cache)
    }

    /// Deletes dirty keys in the background, so a replica that goes quiet after an
    /// outage still clears what it could not invalidate.
    fn spawn_janitor(&self) {
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
                let Some(inner) = inner.upgrade() else { return };
                let due = {
                    let h = inner.health.lock().unwrap();
                    !h.dirty.is_empty() && h.paused_until.is_none_or(|t| t <= Instant::now())
                };
                if due {
                    let _ = inner.flush_dirty().await;
                }
            }
        });
    }

    /// Round trip proving Redis answers now.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.inner.conn();
        self.bounded(async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await?;
        Ok(())
    }

    async fn bounded<T>(&self, op: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T> {
        bounded(&self.inner.target, op).await
    }

    /// Refuses quickly while paused; otherwise first deletes the dirty keys.
    async fn ready(&self) -> Result<()> {
        let paused = {
            let h = self.inner.health.lock().unwrap();
            h.paused_until.filter(|t| *t > Instant::now()).is_some()
        };
        if paused {
            return Err(Error::Unavailable(format!(
                "the Redis cache at {} failed recently; serving from the catalog",
                self.inner.target
            )));
        }
        self.inner.flush_dirty().await
    }

    fn failed(&self, key: Option<(UserId, Uuid)>) {
        self.inner.failed(key);
    }

    async fn write<T>(
        &self,
        user: UserId,
        session: Uuid,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<()> {
        if let Err(e) = self.ready().await {
            // Not sent: whatever Redis holds for this key is now out of date. (Only a
            // call that reached Redis and failed extends the pause.)
            self.inner.health.lock().unwrap().dirty.insert((user, session));
            return Err(e);
        }
        match self.bounded(op).await {
            Ok(_) => Ok(()),
            Err(e) => {
                // The write may or may not have landed: the key is suspect until deleted.
                self.failed(Some((user, session)));
                Err(e)
            }
        }
    }
}

async fn bounded<T>(target: &str, op: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Unavailable(format!(
            "the Redis cache at {target} is not available: {e}"
        ))),
        Err(_) => Err(Error::Unavailable(format!(
            "the Redis cache at {target} did not answer within {} ms",
            OP_TIMEOUT.as_millis()
        ))),
    }
}

/// Reads an entry's hash and sidecar and refreshes both TTLs, as one atomic command. It
/// replaced a MULTI/EXEC of HGETALL, GET and two EXPIREs: the same work and round trip,
/// but Redis parses and answers one command instead of six, and the client one reply.
/// (`false` stands for a missing sidecar: a `nil` would end the Lua table.)
const GET_SCRIPT: &str = "local hash = redis.call('HGETALL', KEYS[1]) \
    local side = redis.call('GET', KEYS[2]) \
    redis.call('EXPIRE', KEYS[1], ARGV[1]) \
    redis.call('EXPIRE', KEYS[2], ARGV[1]) \
    return {hash, side}";

/// HGETALL's flat list of fields and values as a map.
fn hash_of(pairs: Vec<String>) -> HashMap<String, String> {
    let mut map = HashMap::with_capacity(pairs.len() / 2);
    let mut items = pairs.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        map.insert(k, v);
    }
    map
}

/// Builds the record from the spec's hash and the sidecar; `None` when they do not
/// describe the same file of this user.
fn assemble(user: UserId, hash: &HashMap<String, String>, sidecar: &str) -> Option<FileRecord> {
    let extra: Sidecar = serde_json::from_str(sidecar).ok()?;
    let field = |name: &str| hash.get(name).cloned();
    let file_name = field("file_name")?;
    let storage_uri = field("storage_uri")?;
    if file_name != extra.file_name || storage_uri != extra.storage_uri || field("user_id")? != user.to_string() {
        return None;
    }
    Some(FileRecord {
        id: extra.id,
        user_id: user,
        file_name,
        storage_uri,
        storage_type: field("storage_type")?,
        description: field("description")?,
        summary: field("summary")?,
        extension: extra.format,
        size_bytes: extra.size_bytes,
        sha256: extra.sha256,
        row_count: extra.row_count,
        column_count: extra.column_count,
        profile_json: extra.profile,
        created_at: extra.created_at,
        updated_at: extra.updated_at,
        rev: extra.rev,
        rev_history: extra.rev_history,
        origin: extra.origin,
    })
}

#[async_trait]
impl ActiveFileCache for RedisCache {
    async fn get(&self, user: UserId, session: Uuid) -> Result<Option<Arc<FileRecord>>> {
        self.ready().await?;
        let (key, side) = (cache_key(user, session), sidecar_key(user, session));
        let ttl = self.ttl_seconds as i64;
        let mut conn = self.inner.conn();
        // One command: read both and refresh both TTLs, atomically (see `GET_SCRIPT`).
        let read = self
            .bounded(async {
                redis::cmd("EVAL")
                    .arg(GET_SCRIPT)
                    .arg(2)
                    .arg(&key)
                    .arg(&side)
                    .arg(ttl)
                    .query_async::<(Vec<String>, Option<String>)>(&mut conn)
                    .await
            })
            .await
            .map(|(pairs, sidecar)| (hash_of(pairs), sidecar));
        let (hash, sidecar) = match read {
            Ok(v) => v,
            Err(e) => {
                self.failed(None);
                return Err(e);
            }
        };
        if hash.is_empty() {
            return Ok(None);
        }
        Ok(sidecar.as_deref().and_then(|s| assemble(user, &hash, s)).map(Arc::new))
    }

    async fn put(&self, user: UserId, session: Uuid, record: Arc<FileRecord>) -> Result<()> {
        if let Some(delay) = self.put_delay {
            tokio::time::sleep(delay).await;
        }
        let (key, side) = (cache_key(user, session), sidecar_key(user, session));
        let fields = [
            ("file_name", record.file_name.clone()),
            ("storage_uri", record.storage_uri.clone()),
            ("description", record.description.clone()),
            ("summary", record.summary.clone()),
            ("storage_type", record.storage_type.clone()),
            ("user_id", record.user_id.to_string()),
        ];
        let sidecar = serde_json::to_string(&Sidecar {
            id: record.id,
            file_name: record.file_name.clone(),
            storage_uri: record.storage_uri.clone(),
            format: record.extension.clone(),
            size_bytes: record.size_bytes,
            sha256: record.sha256.clone(),
            row_count: record.row_count,
            column_count: record.column_count,
            profile: record.profile_json.clone(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            rev: record.rev.clone(),
            rev_history: record.rev_history.clone(),
            origin: record.origin.clone(),
        })
        .map_err(Error::internal)?;
        let ttl = self.ttl_seconds;
        let mut conn = self.inner.conn();
        self.write(user, session, async {
            redis::pipe()
                .atomic()
                // DEL first: the hash holds exactly these fields, none left from before.
                .del(&key)
                .ignore()
                .hset_multiple(&key, &fields)
                .ignore()
                .expire(&key, ttl as i64)
                .ignore()
                .set_ex(&side, sidecar, ttl)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn remove(&self, user: UserId, session: Uuid) -> Result<()> {
        let names = [cache_key(user, session), sidecar_key(user, session)];
        let mut conn = self.inner.conn();
        self.write(user, session, async {
            redis::cmd("DEL").arg(&names).query_async::<i64>(&mut conn).await
        })
        .await
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "redis {} (ttl {}s, {} ms timeout)",
            self.inner.target,
            self.ttl_seconds,
            OP_TIMEOUT.as_millis()
        )
    }
}

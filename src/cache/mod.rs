//! The active-file cache: a fast copy of each session's active file, behind one trait with one backend per file.
//!
//! The catalog is the source of truth; the cache may lose entries at any time (TTL,
//! eviction, outage) and the service then reads the catalog and refills it.

pub mod memory;
pub mod none;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{FileRecord, UserId};

#[async_trait]
pub trait ActiveFileCache: Send + Sync + 'static {
    /// The cached active file of `(user, session)`; a hit refreshes its TTL.
    async fn get(&self, user: UserId, session: Uuid) -> Result<Option<Arc<FileRecord>>>;

    async fn put(&self, user: UserId, session: Uuid, record: Arc<FileRecord>) -> Result<()>;

    async fn remove(&self, user: UserId, session: Uuid) -> Result<()>;

    /// True when other processes read and write the same entries (Redis): the service
    /// then serialises each user's catalog-then-cache updates across processes too.
    fn is_shared(&self) -> bool {
        false
    }

    /// True when the backend stores nothing (every `get` misses): the service then reads
    /// the catalog directly, without the lock a refill needs.
    fn is_pass_through(&self) -> bool {
        false
    }

    /// What this backend is, for logs.
    fn describe(&self) -> String;
}

/// The key the original design used in Redis; backends that share state with other
/// programs keep it.
pub fn cache_key(user: UserId, session: Uuid) -> String {
    format!("active_file:user{user}:session:{session}")
}

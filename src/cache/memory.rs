//! The in-process active-file cache on moka, with time-to-idle as the TTL refreshed on access.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use uuid::Uuid;

use super::ActiveFileCache;
use crate::error::Result;
use crate::model::{FileRecord, UserId};

pub struct MemoryCache {
    entries: Cache<(UserId, Uuid), Arc<FileRecord>>,
    ttl: Duration,
}

impl MemoryCache {
    pub fn new(ttl: Duration) -> MemoryCache {
        // Bounded so a flood of sessions cannot grow memory without limit; an evicted
        // entry is just a catalog read away.
        let entries = Cache::builder().max_capacity(100_000).time_to_idle(ttl).build();
        MemoryCache { entries, ttl }
    }
}

#[async_trait]
impl ActiveFileCache for MemoryCache {
    async fn get(&self, user: UserId, session: Uuid) -> Result<Option<Arc<FileRecord>>> {
        Ok(self.entries.get(&(user, session)).await)
    }

    async fn put(&self, user: UserId, session: Uuid, record: Arc<FileRecord>) -> Result<()> {
        self.entries.insert((user, session), record).await;
        Ok(())
    }

    async fn remove(&self, user: UserId, session: Uuid) -> Result<()> {
        self.entries.invalidate(&(user, session)).await;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("in-process (ttl {}s)", self.ttl.as_secs())
    }
}

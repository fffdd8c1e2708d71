//! The pass-through "cache" for PostgreSQL without Redis: caches nothing, so every read goes to the shared catalog.
//!
//! Several replicas on one PostgreSQL each have their own process memory; an in-process
//! cache in one would keep serving an active file that another replica has since
//! changed or deleted. Reading the catalog every time is the strictly correct choice
//! (one indexed query on a primary key); replicas that want a cache share Redis.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::ActiveFileCache;
use crate::error::Result;
use crate::model::{FileRecord, UserId};

pub struct PassThrough;

#[async_trait]
impl ActiveFileCache for PassThrough {
    async fn get(&self, _user: UserId, _session: Uuid) -> Result<Option<Arc<FileRecord>>> {
        Ok(None)
    }

    async fn put(&self, _user: UserId, _session: Uuid, _record: Arc<FileRecord>) -> Result<()> {
        Ok(())
    }

    async fn remove(&self, _user: UserId, _session: Uuid) -> Result<()> {
        Ok(())
    }

    fn is_pass_through(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "none (every read goes to the catalog, which replicas share)".to_string()
    }
}

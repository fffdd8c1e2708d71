//! `GET /files/` as JSON bytes, kept per user and query until the user's files change.
//!
//! A listing of 10,000 files is ~8 MB of JSON that took tens of milliseconds to read from
//! the catalog and serialize, for a list that rarely changed between two requests. Each
//! request now asks the catalog only for the user's latest change-feed sequence number
//! (one indexed lookup); while it is the one the cached body was read at, the same bytes
//! are sent again (shared, not copied). The number comes from the catalog, not from this
//! process, so a change made by another replica is seen at once.

use bytes::Bytes;
use moka::future::Cache;
use serde::Serializer as _;

use super::FileService;
use crate::error::{Error, Result};
use crate::model::{FileRecord, ListQuery, UserId};

/// Bytes of listings kept (bodies are shared with responses in flight, not copied).
const LISTING_CACHE_BYTES: u64 = 64 << 20;

/// A listing's body and total count as read at change-feed number `version`.
#[derive(Clone)]
pub(super) struct CachedListing {
    version: i64,
    body: Bytes,
    total: u64,
}

#[derive(Clone, Hash, PartialEq, Eq)]
pub(super) struct ListingKey {
    user: UserId,
    limit: Option<u32>,
    offset: u64,
    name_prefix: Option<String>,
}

pub(super) fn new_cache() -> Cache<ListingKey, CachedListing> {
    Cache::builder()
        .weigher(|_, listing: &CachedListing| u32::try_from(listing.body.len()).unwrap_or(u32::MAX))
        .max_capacity(LISTING_CACHE_BYTES)
        .build()
}

impl FileService {
    /// The user's files as the JSON array of `GET /files/` (the read shape of each record),
    /// and how many match the query without paging.
    pub async fn list_files_json(&self, user: UserId, query: ListQuery) -> Result<(Bytes, u64)> {
        check_limit(&query)?;
        let key = ListingKey {
            user,
            limit: query.limit,
            offset: query.offset,
            name_prefix: query.name_prefix.clone(),
        };
        let cached = self.listings.get(&key).await;
        let known = cached.as_ref().map(|c| c.version);
        let fresh = self
            .with_catalog(move |c| {
                // The number first: a change committed after it makes the next request miss,
                // never a stale body stored under a newer number.
                let version = c.list_version(user)?;
                if Some(version) == known {
                    return Ok(None);
                }
                let (files, total) = c.list_files(user, &query)?;
                let body = to_json(&files)?;
                Ok(Some(CachedListing { version, body, total }))
            })
            .await?;
        let listing = match (fresh, cached) {
            (Some(fresh), _) => {
                self.listings.insert(key, fresh.clone()).await;
                fresh
            }
            (None, Some(cached)) => cached,
            (None, None) => unreachable!("a version matched without a cached listing"),
        };
        Ok((listing.body, listing.total))
    }
}

pub(super) fn check_limit(query: &ListQuery) -> Result<()> {
    if let Some(limit) = query.limit {
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid(
                "invalid_limit",
                format!("limit must be between 1 and 1000, not {limit}"),
            ));
        }
    }
    Ok(())
}

/// The records' read shapes as one JSON array, written record by record into one buffer.
fn to_json(files: &[FileRecord]) -> Result<Bytes> {
    // Most of a record is its Markdown summary; a kilobyte each is about right.
    let mut body = Vec::with_capacity(files.len() * 1024 + 2);
    serde_json::Serializer::new(&mut body)
        .collect_seq(files.iter().map(FileRecord::to_read))
        .map_err(Error::internal)?;
    Ok(Bytes::from(body))
}

//! `GET /files/` as JSON bytes, kept per user and query until the user's files change,
//! and then mended rather than made again.
//!
//! A listing of 10,000 files is ~8 MB of JSON that took tens of milliseconds to read from
//! the catalog and serialize, for a list that rarely changed between two requests. Each
//! request asks the catalog only for the user's latest change-feed sequence number (one
//! indexed lookup); while it is the one the kept body was read at, the same bytes are sent
//! again (shared, not copied). The number comes from the catalog, not from this process,
//! so a change made by another replica is seen at once.
//!
//! After a change, the catalog is asked for the listing's ids and revs only (every change
//! to a listed field makes a new rev); the records whose rev is new are read whole, and
//! the body is put together from each record's kept JSON and the new ones.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use moka::future::Cache;
use uuid::Uuid;

use super::FileService;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model::{FileRecord, ListQuery, UserId};

/// Bytes of listings kept (bodies are shared with responses in flight, not copied).
const LISTING_CACHE_BYTES: u64 = 64 << 20;

/// A listing's body and total count as read at change-feed number `version`, and the
/// JSON of each of its records with the rev it was written at.
#[derive(Clone)]
pub(super) struct CachedListing {
    version: i64,
    body: Bytes,
    total: u64,
    records: Arc<HashMap<Uuid, (String, Bytes)>>,
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
        // The body, and the records' JSON it was put together from.
        .weigher(|_, listing: &CachedListing| u32::try_from(2 * listing.body.len()).unwrap_or(u32::MAX))
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
        let kept = cached.clone();
        let fresh = self
            .with_catalog(move |c| {
                // The number first: a change committed after it makes the next request miss,
                // never a stale body stored under a newer number.
                let version = c.list_version(user)?;
                match kept {
                    Some(kept) if kept.version == version => Ok(None),
                    Some(kept) => mended(c, user, &query, version, &kept).map(Some),
                    None => read_whole(c, user, &query, version).map(Some),
                }
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

/// The listing read whole from the catalog.
fn read_whole(c: &dyn Catalog, user: UserId, query: &ListQuery, version: i64) -> Result<CachedListing> {
    let (files, total) = c.list_files(user, query)?;
    let records = files
        .iter()
        .map(|f| Ok((f.id, (f.rev.clone(), to_json(f)?))))
        .collect::<Result<HashMap<_, _>>>()?;
    let order: Vec<Uuid> = files.iter().map(|f| f.id).collect();
    Ok(CachedListing {
        version,
        body: joined(&order, &records),
        total,
        records: Arc::new(records),
    })
}

/// The `kept` listing brought up to `version`: the ids and revs in order from the catalog,
/// each record's JSON kept where its rev is the same, read anew where not.
fn mended(c: &dyn Catalog, user: UserId, query: &ListQuery, version: i64, kept: &CachedListing) -> Result<CachedListing> {
    let (revs, total) = c.list_revs(user, query)?;
    let changed: Vec<Uuid> = revs
        .iter()
        .filter(|(id, rev)| kept.records.get(id).is_none_or(|(was, _)| was != rev))
        .map(|(id, _)| *id)
        .collect();
    let mut records: HashMap<Uuid, (String, Bytes)> = HashMap::with_capacity(revs.len());
    for file in c.listed_by_id(user, &changed)? {
        records.insert(file.id, (file.rev.clone(), to_json(&file)?));
    }
    for (id, _) in &revs {
        if !records.contains_key(id) {
            match kept.records.get(id) {
                Some(record) => {
                    records.insert(*id, record.clone());
                }
                // Deleted between the two reads: read the listing whole instead.
                None => return read_whole(c, user, query, version),
            }
        }
    }
    let order: Vec<Uuid> = revs.into_iter().map(|(id, _)| id).collect();
    Ok(CachedListing {
        version,
        body: joined(&order, &records),
        total,
        records: Arc::new(records),
    })
}

/// The JSON array of the records in `order`.
fn joined(order: &[Uuid], records: &HashMap<Uuid, (String, Bytes)>) -> Bytes {
    let parts: Vec<&Bytes> = order.iter().filter_map(|id| records.get(id).map(|r| &r.1)).collect();
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(part);
    }
    body.push(b']');
    Bytes::from(body)
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

/// One record's read shape as JSON.
fn to_json(file: &FileRecord) -> Result<Bytes> {
    serde_json::to_vec(&file.to_read()).map(Bytes::from).map_err(Error::internal)
}

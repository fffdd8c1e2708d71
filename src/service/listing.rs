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

/// A listing's body and total count as read at change-feed number `version`, and its
/// records' JSON in its order.
#[derive(Clone)]
pub(super) struct CachedListing {
    version: i64,
    body: Bytes,
    total: u64,
    records: Arc<Vec<Listed>>,
}

/// One record of a listing: its JSON, written at rev `rev`.
#[derive(Clone)]
struct Listed {
    id: Uuid,
    rev: Arc<str>,
    json: Bytes,
}

impl Listed {
    fn of(file: &FileRecord) -> Result<Listed> {
        let json = serde_json::to_vec(&file.to_read()).map_err(Error::internal)?;
        Ok(Listed {
            id: file.id,
            rev: file.rev.as_str().into(),
            json: Bytes::from(json),
        })
    }
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
                    Some(kept) => mended(c, user, &query, version, &kept.records).map(Some),
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
    let records = files.iter().map(Listed::of).collect::<Result<Vec<_>>>()?;
    Ok(listing(version, total, records))
}

/// The `kept` records brought up to `version`: the listing's ids and revs in order from
/// the catalog, each kept record whose rev is the same used again, the others read anew.
fn mended(c: &dyn Catalog, user: UserId, query: &ListQuery, version: i64, kept: &[Listed]) -> Result<CachedListing> {
    let (revs, total) = c.list_revs(user, query)?;
    // Kept records are met in the same order as a rule (a change adds, removes or alters
    // a few): each is looked for where the last one was found, and the index by id is made
    // only if the order has moved.
    let mut by_id: Option<HashMap<Uuid, usize>> = None;
    let mut next = 0;
    let mut records: Vec<Option<Listed>> = Vec::with_capacity(revs.len());
    let mut changed = Vec::new();
    for (id, rev) in &revs {
        let at = match kept.get(next) {
            Some(k) if k.id == *id => Some(next),
            _ => by_id
                .get_or_insert_with(|| kept.iter().enumerate().map(|(i, k)| (k.id, i)).collect())
                .get(id)
                .copied(),
        };
        if let Some(at) = at {
            next = at + 1;
        }
        match at.map(|at| &kept[at]).filter(|k| *k.rev == **rev) {
            Some(same) => records.push(Some(same.clone())),
            None => {
                records.push(None);
                changed.push(*id);
            }
        }
    }
    if !changed.is_empty() {
        let fresh: HashMap<Uuid, FileRecord> = c
            .listed_by_id(user, &changed)?
            .into_iter()
            .map(|f| (f.id, f))
            .collect();
        for (slot, (id, _)) in records.iter_mut().zip(&revs) {
            if slot.is_none() {
                match fresh.get(id) {
                    Some(file) => *slot = Some(Listed::of(file)?),
                    // Deleted between the two reads: read the listing whole instead.
                    None => return read_whole(c, user, query, version),
                }
            }
        }
    }
    Ok(listing(version, total, records.into_iter().flatten().collect()))
}

/// A listing of `records` in their order: the JSON array of them, and the records.
fn listing(version: i64, total: u64, records: Vec<Listed>) -> CachedListing {
    let mut body = Vec::with_capacity(records.iter().map(|r| r.json.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&record.json);
    }
    body.push(b']');
    CachedListing {
        version,
        body: Bytes::from(body),
        total,
        records: Arc::new(records),
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

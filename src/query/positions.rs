//! A view's row positions kept between pages: which rows of the table a `where` and a `q`
//! keep, in `orderby`'s order (all of them, or a sorted view's first rows and its count),
//! held in memory (bounded in bytes, least recently used dropped
//! first) so that later pages of the same view neither filter nor sort the table again.
//!
//! Entries are keyed by the table's identity (its content hash and how it was read) and the
//! view's expressions as built, so a renamed file keeps its views and new content never
//! meets positions of the old one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use polars::prelude::IdxSize;

/// What the process keeps of all views' positions at most: 64 million rows' worth (a view
/// of a 7.7 million row table takes 31 MB).
pub const MAX_BYTES: usize = 256 * 1024 * 1024;

/// Views' positions, least recently used dropped first once over `max_bytes`.
pub(super) struct PositionCache {
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
}

struct Entry {
    positions: Arc<Vec<IdxSize>>,
    /// Rows in the view: `positions` holds them all, or the first of them.
    total: usize,
    last_used: u64,
}

fn cost(key: &str, positions: &[IdxSize]) -> usize {
    key.len() + std::mem::size_of_val(positions)
}

impl PositionCache {
    pub(super) fn new(max_bytes: usize) -> PositionCache {
        PositionCache {
            max_bytes,
            state: Mutex::default(),
        }
    }

    /// The positions kept under `key` and the view's row count, if any (now the most
    /// recently used).
    pub(super) fn get(&self, key: &str) -> Option<(Arc<Vec<IdxSize>>, usize)> {
        let mut state = self.state.lock().ok()?;
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(key)?;
        entry.last_used = now;
        Some((entry.positions.clone(), entry.total))
    }

    /// Keeps `positions` (the first of the view's `total` rows, or all) under `key`,
    /// dropping the least recently used entries until they fit; positions larger than the
    /// whole bound are not kept.
    pub(super) fn insert(&self, key: String, positions: Arc<Vec<IdxSize>>, total: usize) {
        let size = cost(&key, &positions);
        if size > self.max_bytes {
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(old) = state.entries.remove(&key) {
            state.bytes -= cost(&key, &old.positions);
        }
        while state.bytes + size > self.max_bytes {
            let Some(oldest) = state
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = state.entries.remove(&oldest) {
                state.bytes -= cost(&oldest, &e.positions);
            }
        }
        state.clock += 1;
        let last_used = state.clock;
        state.bytes += size;
        state.entries.insert(
            key,
            Entry {
                positions,
                total,
                last_used,
            },
        );
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.state.lock().unwrap().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(n: usize) -> Arc<Vec<IdxSize>> {
        Arc::new((0..n as IdxSize).collect())
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_bound_holds() {
        let each = cost("a", &positions(100));
        let cache = PositionCache::new(each * 2);
        cache.insert("a".into(), positions(100), 100);
        cache.insert("b".into(), positions(100), 100);
        // `a` used since: `b` is the one to go.
        assert!(cache.get("a").is_some());
        cache.insert("c".into(), positions(100), 100);
        assert!(cache.get("b").is_none());
        assert_eq!(cache.get("a").unwrap().0.len(), 100);
        assert!(cache.get("c").is_some());
        assert!(cache.bytes() <= each * 2);
    }

    #[test]
    fn positions_past_the_bound_are_not_kept_and_a_key_is_replaced_whole() {
        let cache = PositionCache::new(1_000);
        cache.insert("big".into(), positions(1_000), 1_000);
        assert!(cache.get("big").is_none());
        assert_eq!(cache.bytes(), 0);
        cache.insert("k".into(), positions(10), 500);
        cache.insert("k".into(), positions(20), 20);
        assert_eq!(cache.get("k").map(|(p, total)| (p.len(), total)), Some((20, 20)));
        assert_eq!(cache.bytes(), cost("k", &positions(20)));
    }
}

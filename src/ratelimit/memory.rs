//! The in-process request budget: two counters per user, for a server alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{decide, window_of, Admission, RequestBudget};
use crate::model::UserId;

pub struct MemoryBudget {
    limit: u64,
    /// Per user: the window last counted in, its count, and the one before's.
    counts: Mutex<HashMap<UserId, (u64, u64, u64)>>,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget {
            limit,
            counts: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RequestBudget for MemoryBudget {
    async fn take(&self, user: UserId) -> Admission {
        let (window, into) = window_of(SystemTime::now());
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        // Users idle for two windows count nothing: forget them, so the map holds only
        // the last two minutes' callers.
        if counts.len() > 10_000 {
            counts.retain(|_, (w, _, _)| *w + 1 >= window);
        }
        let entry = counts.entry(user).or_insert((window, 0, 0));
        let (previous, current) = match window - entry.0.min(window) {
            0 => (entry.2, entry.1),
            1 => (entry.1, 0),
            _ => (0, 0),
        };
        let admission = decide(self.limit, previous, current, into);
        let current = current + u64::from(admission == Admission::Allowed);
        *entry = (window, current, previous);
        admission
    }

    fn describe(&self) -> String {
        format!("in-process, {} requests a minute per user", self.limit)
    }
}

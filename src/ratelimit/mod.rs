//! Per-user request budgets (`RATE_LIMIT_PER_MINUTE`): a sliding minute counted behind one trait, with one backend per file (in-process, or Redis shared by replicas).
//!
//! The window is the current calendar minute plus the part of the previous one still
//! within sixty seconds, weighted by how much of it is: the estimate the large proxies
//! use, needing two counters per user and no list of timestamps. Refused requests are
//! not counted, so a client that waits as told gets in.

pub mod memory;
pub mod redis;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::model::UserId;

/// The length of one window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Whether one more request of a user fits its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Over budget: the request may be made again after this long.
    Refused {
        retry_after: Duration,
    },
}

#[async_trait]
pub trait RequestBudget: Send + Sync + 'static {
    /// Counts one request of `user` if it fits.
    async fn take(&self, user: UserId) -> Admission;

    /// What this backend is, for logs.
    fn describe(&self) -> String;
}

/// Where `now` falls: the window's number and how far into it, as a fraction.
pub fn window_of(now: SystemTime) -> (u64, f64) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let window = since_epoch.as_secs() / WINDOW.as_secs();
    let into = (since_epoch.as_secs_f64() % WINDOW.as_secs_f64()) / WINDOW.as_secs_f64();
    (window, into)
}

/// The decision for a request that finds `previous` and `current` counted, `into` of the
/// way through the current window.
pub fn decide(limit: u64, previous: u64, current: u64, into: f64) -> Admission {
    let estimate = previous as f64 * (1.0 - into) + current as f64;
    if estimate + 1.0 <= limit as f64 {
        return Admission::Allowed;
    }
    // When the estimate will have room for one more: as the previous window slides out
    // of view, or at the latest when the current one becomes the previous.
    let left_in_window = 1.0 - into;
    let wait = if current + 1 <= limit && previous > 0 {
        let room_at = 1.0 - (limit - current - 1) as f64 / previous as f64;
        (room_at - into).clamp(0.0, left_in_window)
    } else {
        left_in_window
    };
    Admission::Refused {
        // Less a hair, so a wait of exactly three seconds in floating point is not four.
        retry_after: Duration::from_secs_f64((wait * WINDOW.as_secs_f64() - 1e-6).ceil().max(1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_minute_counts_as_much_as_is_still_in_view() {
        assert_eq!(decide(10, 0, 9, 0.5), Admission::Allowed);
        assert!(matches!(decide(10, 0, 10, 0.5), Admission::Refused { .. }));
        // 10 last minute, a quarter in: 7.5 of them still count.
        assert_eq!(decide(10, 10, 1, 0.25), Admission::Allowed);
        assert!(matches!(decide(10, 10, 2, 0.25), Admission::Refused { .. }));
        // 10 + 2 = room for one more once 9 - 2 = 7 of the previous count: at 0.3.
        let Admission::Refused { retry_after } = decide(10, 10, 2, 0.25) else {
            panic!()
        };
        assert_eq!(retry_after, Duration::from_secs(3));
        // The current minute alone is full: wait for the window to turn.
        let Admission::Refused { retry_after } = decide(10, 0, 10, 0.5) else {
            panic!()
        };
        assert_eq!(retry_after, Duration::from_secs(30));
    }
}

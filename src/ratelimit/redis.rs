//! The request budget on Redis, shared by every replica: a script checks and counts in one step, so replicas cannot both take the last request.
//!
//! Keys: `file_service:requests:user{u}:{window}`, each expiring two windows after it
//! starts. When Redis cannot be reached the request is let through (and the outage
//! logged once a window): a limit is no reason to turn an outage of Redis into one of
//! the whole service.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{decide, window_of, Admission, RequestBudget, WINDOW};
use crate::model::UserId;

/// Longest a budget check may wait on Redis before the request goes through uncounted.
const OP_TIMEOUT: Duration = Duration::from_millis(250);

/// Reads both counters and, when the caller's decision (recomputed here from the same
/// numbers) allows it, increments the current one. Returns `{previous, current, counted}`.
const TAKE: &str = r#"
local previous = tonumber(redis.call('GET', KEYS[1]) or '0')
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local limit = tonumber(ARGV[1])
local into = tonumber(ARGV[2])
if previous * (1 - into) + current + 1 <= limit then
  current = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
  return {previous, current, 1}
end
return {previous, current, 0}
"#;

pub struct RedisBudget {
    limit: u64,
    connection: ConnectionManager,
    /// The last window an outage was logged in.
    logged_outage: AtomicU64,
}

impl RedisBudget {
    /// Prepares the budget on `url`, connecting lazily. Must run inside the tokio runtime.
    pub fn open(url: &str, limit: u64) -> Result<RedisBudget, String> {
        let client = redis::Client::open(url).map_err(|e| format!("is not a valid Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cannot set up the Redis connection: {e}"))?;
        Ok(RedisBudget {
            limit,
            connection,
            logged_outage: AtomicU64::new(0),
        })
    }

    async fn count(&self, user: UserId, window: u64, into: f64) -> redis::RedisResult<(u64, u64, bool)> {
        let mut connection = self.connection.clone();
        let key = |w: u64| format!("file_service:requests:user{user}:{w}");
        let (previous, current, counted): (u64, u64, u8) = redis::cmd("EVAL")
            .arg(TAKE)
            .arg(2)
            .arg(key(window.saturating_sub(1)))
            .arg(key(window))
            .arg(self.limit)
            .arg(into)
            .arg(2 * WINDOW.as_secs())
            .query_async(&mut connection)
            .await?;
        Ok((previous, current, counted == 1))
    }
}

#[async_trait]
impl RequestBudget for RedisBudget {
    async fn take(&self, user: UserId) -> Admission {
        let (window, into) = window_of(SystemTime::now());
        match tokio::time::timeout(OP_TIMEOUT * 2, self.count(user, window, into)).await {
            Ok(Ok((_, _, true))) => Admission::Allowed,
            Ok(Ok((previous, current, false))) => match decide(self.limit, previous, current, into) {
                // The script and this process rounded differently at the very edge.
                Admission::Allowed => Admission::Refused {
                    retry_after: Duration::from_secs(1),
                },
                refused => refused,
            },
            failed => {
                if self.logged_outage.swap(window, Ordering::Relaxed) != window {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    tracing::warn!(%error, "REDIS_URL: the request budget cannot be read; requests go through uncounted until it can");
                }
                Admission::Allowed
            }
        }
    }

    fn describe(&self) -> String {
        format!("Redis (shared by replicas), {} requests a minute per user", self.limit)
    }
}

//! Per-user quotas: the limits in effect for a user, the early check before an upload's
//! bytes are stored, and the override and report of `file-service quota set` / `show`.
//!
//! The check that counts is the catalog's ([`crate::catalog::Quotas::reserve_within_quota`]): it is made
//! in the transaction that reserves the upload, so concurrent uploads cannot both pass a
//! limit. The early check only spares a client sending bytes that cannot fit.

use super::FileService;
use crate::catalog::{Catalog, QuotaLimits, QuotaOverride, QuotaSetting, QuotaUsage};
use crate::error::Result;
use crate::model::{FileRecord, UserId};

/// What `file-service quota show` prints for a user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuotaReport {
    pub user: UserId,
    /// The limits in effect (`null`: none).
    pub limits: QuotaLimits,
    /// What `quota set` recorded for the user (`default`: the configured one).
    #[serde(rename = "override")]
    pub quota_override: QuotaOverride,
    pub usage: QuotaUsage,
}

/// The user's limits, override and usage (blocking: a catalog call).
pub fn quota_report(catalog: &dyn Catalog, user: UserId, defaults: QuotaLimits) -> Result<QuotaReport> {
    let quota_override = catalog.quota_override(user)?;
    Ok(QuotaReport {
        user,
        limits: quota_override.apply(defaults),
        quota_override,
        usage: catalog.quota_usage(user)?,
    })
}

/// Changes the limits given (`None`: left as they are) of the user's override and
/// returns it (blocking). Lowering a limit below the usage keeps every file: the user's
/// next uploads are refused until they are under it again.
pub fn set_quota(
    catalog: &dyn Catalog,
    user: UserId,
    bytes: Option<QuotaSetting>,
    files: Option<QuotaSetting>,
) -> Result<QuotaOverride> {
    let mut quota = catalog.quota_override(user)?;
    quota.bytes = bytes.unwrap_or(quota.bytes);
    quota.files = files.unwrap_or(quota.files);
    catalog.set_quota_override(user, &quota)?;
    Ok(quota)
}

/// What is left of a user's byte quota as an upload starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct ByteRoom {
    pub left: u64,
    pub limit: u64,
}

impl FileService {
    /// Refuses (`Error::QuotaExceeded`) an upload of `bytes` bytes for `user` that cannot
    /// fit now, before any of them is stored; `None` when the length is not known yet
    /// (any file takes at least a byte). Answers the bytes left of the user's byte quota
    /// (`None`: no byte limit), so an upload of unknown length can be cut off there.
    pub(super) async fn precheck_quota(&self, user: UserId, bytes: Option<u64>) -> Result<Option<ByteRoom>> {
        let (limits, usage) = self.quota_state(user).await?;
        usage.check(limits, bytes.unwrap_or(1), 1)?;
        Ok(limits.bytes.map(|limit| ByteRoom {
            left: limit.saturating_sub(usage.bytes),
            limit,
        }))
    }

    /// Refuses adding `files` files and `bytes` bytes to what `user` has now if it would
    /// pass their limits. Not a reservation: only [`FileService::reserve_within_quota`]
    /// cannot be passed by concurrent requests. Unlimited users cost only the override's
    /// read.
    pub(super) async fn check_quota_now(&self, user: UserId, bytes: u64, files: u64) -> Result<()> {
        let (limits, usage) = self.quota_state(user).await?;
        usage.check(limits, bytes, files)
    }

    /// The user's limits and, when any is in effect, their usage.
    async fn quota_state(&self, user: UserId) -> Result<(QuotaLimits, QuotaUsage)> {
        let defaults = self.limits.quota;
        self.with_catalog(move |c| {
            let limits = c.quota_override(user)?.apply(defaults);
            if limits == QuotaLimits::default() {
                return Ok((limits, QuotaUsage::default()));
            }
            Ok((limits, c.quota_usage(user)?))
        })
        .await
    }

    /// Which of `users` have a limit in effect.
    pub(super) async fn users_with_quota(&self, users: Vec<UserId>) -> Result<std::collections::HashSet<UserId>> {
        let defaults = self.limits.quota;
        if defaults != QuotaLimits::default() {
            return Ok(users.into_iter().collect());
        }
        self.with_catalog(move |c| {
            let mut limited = std::collections::HashSet::new();
            for user in users {
                if c.quota_override(user)?.apply(defaults) != QuotaLimits::default() {
                    limited.insert(user);
                }
            }
            Ok(limited)
        })
        .await
    }

    /// Reserves an upload's name if it fits the user's quota (see
    /// [`crate::catalog::Quotas::reserve_within_quota`]).
    pub(super) async fn reserve_within_quota(&self, record: FileRecord) -> Result<()> {
        let defaults = self.limits.quota;
        self.with_catalog(move |c| c.reserve_within_quota(&record, defaults))
            .await
    }
}

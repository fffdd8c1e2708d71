//! Keeps the catalog in step with the storage folder: files dropped in, changed or removed out-of-band.
//!
//! One pass compares the folder with the catalog and acts through [`FileService`], so a
//! file found in the folder is catalogued exactly as an upload would be. Passes are
//! idempotent and safe to run from several replicas at once: the catalog's unique names
//! decide who adopts a file, and a record is removed only after re-checking that its
//! bytes are gone. The watcher runs a pass at start, after filesystem events (notify),
//! periodically, and again once files still being written have settled.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::Format;
use crate::model::{validate_file_name, UserId};
use crate::service::FileService;
use crate::storage::{object_name, StoredObject};

/// What a pass did (or, dry, would do), by stored object name.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Still being written: looked at again once settled.
    pub unsettled: Vec<String>,
    /// Left alone, with why (no user prefix, unsupported type, name taken…).
    pub ignored: Vec<String>,
    /// Could not be analyzed, with why; retried when the file changes.
    pub failed: Vec<String>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty() && self.failed.is_empty()
    }
}

pub struct Reconciler {
    service: Arc<FileService>,
    default_user: Option<UserId>,
    settle: Duration,
    /// Objects already reported as failed or ignored, with the (size, change time) they
    /// had: reported once, and tried again only when they change.
    reported: Mutex<HashMap<String, (u64, SystemTime)>>,
    /// Catalogued objects re-read since they last changed. The check against the
    /// record's `updated_at` compares two clocks (filesystem, catalog); this makes a
    /// skewed catalog clock cost one re-read per change, not one per pass.
    verified: Mutex<HashMap<String, (u64, SystemTime)>>,
}

/// Events are gathered this long into one pass, at least.
const EVENT_COALESCE: Duration = Duration::from_millis(100);
/// A pass prompted by events waits this many times as long as the previous pass took:
/// under a stream of events, passes use at most a tenth of the time.
const EVENT_PASS_SPACING: u32 = 9;

/// Slack between a file's change time and its record's `updated_at`, for clocks that
/// round differently (filesystem timestamps vs. the catalog's).
const CLOCK_SLACK: Duration = Duration::from_secs(1);

impl Reconciler {
    pub fn new(service: Arc<FileService>, default_user: Option<UserId>, settle: Duration) -> Reconciler {
        Reconciler {
            service,
            default_user,
            settle,
            reported: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// One full comparison of the folder with the catalog. With `dry_run`, nothing is
    /// changed and the report says what would be.
    pub async fn pass(&self, dry_run: bool) -> Result<Report> {
        let mut report = Report::default();
        // Objects first, records second: a file renamed in between shows up as a missing
        // record's object, which `forget_missing` re-checks before removing anything.
        let objects = self.service.stored_objects().await?;
        let records = self.service.all_files().await?;
        let by_object: HashMap<String, _> = records
            .iter()
            .map(|r| (object_name(r.user_id, &r.file_name, &r.extension), r))
            .collect();
        let now = SystemTime::now();
        let present: HashSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();

        for object in &objects {
            let settled = now.duration_since(object.changed).is_ok_and(|age| age >= self.settle);
            if let Some(record) = by_object.get(&object.name) {
                let updated_at = SystemTime::from(record.updated_at) + CLOCK_SLACK;
                let unchanged =
                    object.size == record.size_bytes && (object.changed <= updated_at || seen(&self.verified, object));
                if unchanged {
                    continue;
                }
                if !settled {
                    report.unsettled.push(object.name.clone());
                } else if dry_run {
                    report.updated.push(object.name.clone());
                } else if !self.already_reported(object) {
                    // (A change that failed analysis is not retried until it changes again.)
                    match self.service.refresh_stored(record).await {
                        Ok(Some(_)) => report.updated.push(object.name.clone()),
                        Ok(None) => {}
                        Err(e) => self.failed(&mut report, object, &e),
                    }
                    note(&self.verified, object);
                }
                continue;
            }
            if !settled {
                report.unsettled.push(object.name.clone());
                continue;
            }
            if self.already_reported(object) {
                continue;
            }
            match self.plan(object).await? {
                Plan::Ignore(why) => {
                    self.remember(object);
                    tracing::info!(file = %object.name, reason = %why, "storage folder: left alone");
                    report.ignored.push(format!("{}: {why}", object.name));
                }
                Plan::Adopt {
                    user,
                    name,
                    ext,
                    rename_from,
                } => {
                    let target = object_name(user, &name, &ext);
                    if dry_run {
                        report.added.push(target);
                        continue;
                    }
                    if let Some(from) = rename_from {
                        if let Err(e) = self.service.move_object(&from, &target).await {
                            self.failed(&mut report, object, &e);
                            continue;
                        }
                    }
                    match self.service.adopt_stored(user, &name, &ext).await {
                        Ok(_) => report.added.push(target),
                        // Another replica (or an upload) got there first: that is fine.
                        Err(Error::Conflict(_)) => {}
                        Err(e) => {
                            let stat = StoredObject {
                                name: target.clone(),
                                ..object.clone()
                            };
                            self.failed(&mut report, &stat, &e);
                        }
                    }
                }
            }
        }

        // Forget what was noted about objects that are gone, so the maps stay small.
        for map in [&self.reported, &self.verified] {
            if let Ok(mut m) = map.lock() {
                m.retain(|name, _| present.contains(name.as_str()));
            }
        }
        for (object, record) in &by_object {
            if present.contains(object.as_str()) {
                continue;
            }
            if dry_run || self.service.forget_missing(record).await? {
                report.removed.push(object.clone());
            }
        }
        Ok(report)
    }

    /// What to do with an object that has no record.
    async fn plan(&self, object: &StoredObject) -> Result<Plan> {
        let Some((stem, ext)) = object.name.rsplit_once('.') else {
            return Ok(Plan::Ignore("no file extension".into()));
        };
        let ext = ext.to_ascii_lowercase();
        if Format::from_extension(&ext).is_none() {
            return Ok(Plan::Ignore(format!(".{ext} is not a supported file type")));
        }
        let (user, name) = match (parse_layout(stem), self.default_user) {
            (Some((user, name)), _) => (user, name.to_string()),
            (None, Some(user)) if validate_file_name(stem).is_ok() => (user, stem.to_string()),
            (None, Some(_)) => return Ok(Plan::Ignore(format!("{stem:?} is not a valid file name"))),
            (None, None) => {
                return Ok(Plan::Ignore(
                    "not named {user_id}_{file_name}.{ext}, and watch.default_user_id is not set".into(),
                ))
            }
        };
        // Files are kept as `{user}_{name}.{ext}` with a lower-case extension; one named
        // otherwise is moved into that layout, which must be free.
        let target = object_name(user, &name, &ext);
        let rename_from = (object.name != target).then(|| object.name.clone());
        if rename_from.is_some() && self.service.object_exists(&target).await? {
            return Ok(Plan::Ignore(format!("{target} already exists")));
        }
        if self.service.name_claimed(user, &name).await? {
            return Ok(Plan::Ignore(format!("user {user} already has a file named {name:?}")));
        }
        Ok(Plan::Adopt {
            user,
            name,
            ext,
            rename_from,
        })
    }

    fn already_reported(&self, object: &StoredObject) -> bool {
        seen(&self.reported, object)
    }

    fn remember(&self, object: &StoredObject) {
        note(&self.reported, object);
    }

    fn failed(&self, report: &mut Report, object: &StoredObject, error: &Error) {
        self.remember(object);
        tracing::warn!(file = %object.name, error = %error.detail(), "storage folder: could not catalogue a file; it is retried when it changes");
        report.failed.push(format!("{}: {}", object.name, error.detail()));
    }

    /// Runs passes until the task is dropped: now, after filesystem events of `folder`
    /// (`None`: a bucket, which has none), every `interval`, and once unsettled files
    /// should have settled.
    pub async fn watch(self: Arc<Self>, folder: Option<std::path::PathBuf>, interval: Option<Duration>) {
        // `tx` lives as long as this loop, so without events (a bucket, or a folder that
        // cannot be watched) the event branch below simply never fires.
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<()>();
        let _watcher = folder.as_ref().and_then(|folder| {
            let tx = tx.clone();
            let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // The service's own temporary uploads change all the time; they never matter.
                let relevant = event.is_ok_and(|e| {
                    e.paths
                        .iter()
                        .any(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
                });
                if relevant {
                    crate::metrics::metrics().watcher_events.inc();
                    let _ = tx.send(());
                }
            })
            .and_then(|mut w| notify::Watcher::watch(&mut w, folder, notify::RecursiveMode::NonRecursive).map(|()| w));
            match watcher {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, folder = %folder.display(), "cannot watch the storage folder; relying on periodic passes");
                    None
                }
            }
        });
        loop {
            let started = std::time::Instant::now();
            let passed = self.pass(false).await;
            // A pass reads the whole folder and catalog, so it costs more as they grow; a
            // steady stream of events (uploads, a sync) must not turn into back-to-back
            // passes that take the cores from the work making the events.
            let calm = (started.elapsed() * EVENT_PASS_SPACING).max(EVENT_COALESCE);
            let recheck = match passed {
                Ok(report) => {
                    let changes = &crate::metrics::metrics().watcher_changes;
                    changes.with_label_values(&["added"]).inc_by(report.added.len() as u64);
                    changes
                        .with_label_values(&["updated"])
                        .inc_by(report.updated.len() as u64);
                    changes
                        .with_label_values(&["removed"])
                        .inc_by(report.removed.len() as u64);
                    if !report.is_empty() {
                        tracing::info!(
                            added = report.added.len(),
                            updated = report.updated.len(),
                            removed = report.removed.len(),
                            failed = report.failed.len(),
                            "storage folder reconciled"
                        );
                    }
                    (!report.unsettled.is_empty()).then_some(self.settle)
                }
                Err(e) => {
                    tracing::warn!(error = %e.detail(), "storage reconciliation failed; retrying");
                    Some(Duration::from_secs(5))
                }
            };
            let wait_interval = async {
                match interval {
                    Some(i) => tokio::time::sleep(i).await,
                    None => std::future::pending().await,
                }
            };
            let wait_recheck = async {
                match recheck {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => {
                    if event.is_none() {
                        return;
                    }
                    // Coalesce a burst of events into one pass.
                    tokio::time::sleep(calm).await;
                    while events.try_recv().is_ok() {}
                }
                _ = wait_interval => {}
                _ = wait_recheck => {}
            }
        }
    }
}

/// Whether `object` is noted in `map` as it is now (same size and change time).
fn seen(map: &Mutex<HashMap<String, (u64, SystemTime)>>, object: &StoredObject) -> bool {
    map.lock()
        .is_ok_and(|m| m.get(&object.name) == Some(&(object.size, object.changed)))
}

fn note(map: &Mutex<HashMap<String, (u64, SystemTime)>>, object: &StoredObject) {
    if let Ok(mut m) = map.lock() {
        m.insert(object.name.clone(), (object.size, object.changed));
    }
}

enum Plan {
    Ignore(String),
    /// Catalogue for `user` as `name`; first move the file from `rename_from` into the
    /// `{user}_{name}.{ext}` layout if it is not there yet.
    Adopt {
        user: UserId,
        name: String,
        ext: String,
        rename_from: Option<String>,
    },
}

/// `{user_id}_{file_name}` → its parts, when the prefix is a positive user id and the
/// rest a valid file name.
fn parse_layout(stem: &str) -> Option<(UserId, &str)> {
    let (user, name) = stem.split_once('_')?;
    if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let user: UserId = user.parse().ok().filter(|&u| u > 0)?;
    validate_file_name(name).ok()?;
    Some((user, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names() {
        assert_eq!(parse_layout("1_sales"), Some((1, "sales")));
        assert_eq!(parse_layout("42_my data (v2)"), Some((42, "my data (v2)")));
        assert_eq!(parse_layout("sales"), None);
        assert_eq!(parse_layout("0_sales"), None);
        assert_eq!(parse_layout("x1_sales"), None);
        assert_eq!(parse_layout("1_"), None);
        assert_eq!(parse_layout("1_.hidden"), None);
    }
}

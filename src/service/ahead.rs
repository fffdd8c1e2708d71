//! A newly stored file's columnar copy and row file, made in the background right after
//! its upload is committed, so the first query or page of the file finds them ready.
//!
//! One worker thread at a lower CPU priority takes files one at a time from a short queue
//! (polars' own threads, which write the row file, keep the service's priority); when the
//! queue is full the file is left, as without this, to its first query. Nothing waits for
//! the worker: an upload answers as soon as it is committed, and a query that arrives
//! while its table is being made waits for that one making (see the cache folder's makers)
//! rather than starting another.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use super::query::{prepare, Source};
use crate::metrics::metrics;
use crate::model::FileRecord;
use crate::query::{self, Cancel, ColumnarCache, QueryError};
use crate::storage::Content;

/// Files waiting for the worker; more are left to their first query.
const QUEUE: usize = 32;

/// How much lower than the service the worker runs (the nice value added): it uses the
/// cores requests leave idle.
const NICENESS: libc::c_int = 10;

/// A file to make ready: its record and its open bytes.
struct Job {
    record: FileRecord,
    content: Content,
}

/// The worker's queue (none when making tables ahead is turned off).
pub(super) struct TablesAhead {
    queue: Option<SyncSender<Job>>,
}

impl TablesAhead {
    /// Starts the worker, or nothing when `enabled` is false. The worker stops once this
    /// is dropped and its queue is done.
    pub(super) fn start(copies: Arc<ColumnarCache>, enabled: bool) -> TablesAhead {
        if !enabled {
            return TablesAhead { queue: None };
        }
        // Every outcome shown from the start (at 0), so a reader can tell this server makes
        // tables ahead before it has made one.
        for outcome in ["made", "failed", "left"] {
            metrics().tables_ahead.with_label_values(&[outcome]);
        }
        let (queue, jobs) = sync_channel(QUEUE);
        let started = std::thread::Builder::new()
            .name("tables-ahead".into())
            .spawn(move || work(&copies, jobs));
        match started {
            Ok(_) => TablesAhead { queue: Some(queue) },
            Err(e) => {
                tracing::warn!(error = %e, "could not start the worker that makes tables ahead; each is made at its first query");
                TablesAhead { queue: None }
            }
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `record` (its bytes open as `content`); a full queue leaves it to its first query.
    pub(super) fn offer(&self, record: FileRecord, content: Content) {
        let Some(queue) = &self.queue else { return };
        let name = record.file_name.clone();
        match queue.try_send(Job { record, content }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics().tables_ahead.with_label_values(&["left"]).inc();
                tracing::debug!(file = %name, "tables-ahead queue full; the table is made at the first query")
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::warn!(file = %name, "the tables-ahead worker has stopped; the table is made at the first query")
            }
        }
    }
}

fn work(copies: &ColumnarCache, jobs: Receiver<Job>) {
    lower_priority();
    for job in jobs {
        let started = Instant::now();
        let name = job.record.file_name.clone();
        let user = job.record.user_id;
        let source = Source {
            table: "data".into(),
            record: job.record,
            content: job.content,
        };
        // Nobody waits for this work: it has no deadline, and a failure only means the
        // first query makes the table (and reports what is wrong) itself.
        let cancel = Cancel::default();
        // One file that makes the readers panic must not stop the worker for the rest.
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prepare(copies, vec![source], &cancel).and_then(|mut tables| {
                let table = tables.remove(0);
                query::prepare_row_file(&table, &cancel)
            })
        }))
        .unwrap_or_else(|_| Err(QueryError::Internal(anyhow::anyhow!("making the table panicked"))));
        let outcome = if made.is_ok() { "made" } else { "failed" };
        metrics().tables_ahead.with_label_values(&[outcome]).inc();
        match made {
            Ok(()) => tracing::debug!(user, file = %name, elapsed_ms = started.elapsed().as_millis() as u64, "table made ahead of its first query"),
            Err(e) => tracing::info!(user, file = %name, error = %e, "could not make the table ahead; its first query will"),
        }
    }
}

/// Lowers this thread's CPU priority (Linux keeps a nice value per thread).
fn lower_priority() {
    // SAFETY: plain system calls on this thread's own id.
    let set = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICENESS)
    };
    if set != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the tables-ahead worker's priority");
    }
}

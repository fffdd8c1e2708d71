//! The record loop, spread over the machine's cores without changing any result.
//!
//! The calling thread tokenizes records (the csv reader is inherently sequential) into batches
//! of a few thousand rows. A batch is then analyzed column by column: the task "column `c` of
//! batch `i`" may run on any thread, but each column's state sees its batches strictly in order,
//! so every statistic (including the order-dependent reservoir sample, top values and the
//! switch to an estimated distinct count) is exactly what a single-threaded pass gives.
//!
//! Helper threads take column tasks from the oldest queued batch. The tokenizing thread helps
//! too whenever every batch is in use, which balances the two kinds of work by itself: when
//! the column work is the slower part the reader spends the difference analyzing columns.
//! Memory stays bounded: at most [`MAX_BATCHES`] batches exist, each of at most
//! [`BATCH_BYTES`] (plus one record), and their buffers are reused.

use super::column::ColumnState;
use super::infer::Value;
use super::reader::{Input, Next};
use super::AnalysisError;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Rows per batch at most.
const BATCH_ROWS: usize = 4096;
/// Bytes per batch at most (field bytes plus field bounds), so wide rows make short batches.
const BATCH_BYTES: usize = 256 << 10;
/// Batches alive at once (being filled, queued or analyzed).
const MAX_BATCHES: usize = 4;
/// Helper threads at most, whatever the core count (each analysis is one upload among others).
const MAX_HELPERS: usize = 3;
/// Fields classified and looked up ahead of being counted, so table cache misses overlap.
const BLOCK: usize = 16;

/// How the loop runs; tests use small batches to exercise the threaded path on small inputs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Config {
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// Helper threads besides the caller's; 0 analyzes everything on the calling thread.
    pub helpers: usize,
}

impl Config {
    /// One helper per core beyond the caller's.
    pub(super) fn for_this_machine() -> Config {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            batch_rows: BATCH_ROWS,
            batch_bytes: BATCH_BYTES,
            helpers: (cores - 1).min(MAX_HELPERS),
        }
    }
}

/// What the loop found besides the column states.
pub(super) struct Scanned {
    pub rows: u64,
    pub utf8: bool,
}

/// Rows of one batch, copied back to back into one buffer (scanning a column then reads
/// memory in order instead of chasing one allocation per record). The tokenizer writes
/// most rows straight into it (see [`Input::read_plain_row`]).
struct Batch {
    /// Each row's fields, each followed by one ASCII byte (a delimiter or a stand-in for one).
    data: Vec<u8>,
    /// Per row: the start of its first field, then the end of each field, as offsets into
    /// `data`; a field after the first starts one byte after the end of the one before.
    bounds: Vec<u32>,
    /// Per row: where its bounds start and how many fields it has.
    rows: Vec<(u32, u32)>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            data: Vec::new(),
            bounds: Vec::new(),
            rows: Vec::new(),
        }
    }

    fn clear(&mut self, keep_bytes: usize) {
        // Buffers that grew on an unusually long record are not kept for the whole run.
        if self.data.capacity() > keep_bytes {
            self.data = Vec::new();
        }
        if self.bounds.capacity() * 4 > keep_bytes {
            self.bounds = Vec::new();
        }
        self.data.clear();
        self.bounds.clear();
        self.rows.clear();
    }

    /// Appends the first `ncols` fields of `rec`.
    fn push(&mut self, rec: &csv::ByteRecord, ncols: usize) {
        let fields = rec.len().min(ncols);
        self.rows.push((self.bounds.len() as u32, fields as u32));
        self.bounds.push(self.data.len() as u32);
        for f in rec.iter().take(fields) {
            self.data.extend_from_slice(f);
            self.bounds.push(self.data.len() as u32);
            self.data.push(b',');
        }
    }

    /// Appends the next row straight from the tokenizer when it is a plain one; false when
    /// [`Input::read_row`] must take the next record.
    #[inline]
    fn push_plain<R: Read>(&mut self, input: &mut Input<R>, ncols: usize) -> Result<bool, AnalysisError> {
        let first = self.bounds.len();
        self.bounds.push(self.data.len() as u32);
        if input.read_plain_row(&mut self.data, &mut self.bounds, ncols)? {
            self.rows.push((first as u32, ncols as u32));
            // The ASCII byte after the row's last field (see `is_utf8`).
            self.data.push(b',');
            return Ok(true);
        }
        self.bounds.truncate(first);
        Ok(false)
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether every field is valid UTF-8. An ASCII byte follows every field, so the batch
    /// is valid UTF-8 exactly when each field is (no character can span two fields).
    fn is_utf8(&self) -> bool {
        std::str::from_utf8(&self.data).is_ok()
    }

    /// Field `c` of row `r`; empty when the row is shorter.
    #[inline]
    fn field(&self, r: usize, c: usize) -> &[u8] {
        let (first, n) = self.rows[r];
        if c >= n as usize {
            return &[];
        }
        let i = first as usize + c;
        let start = self.bounds[i] as usize + (c != 0) as usize;
        &self.data[start..self.bounds[i + 1] as usize]
    }
}

/// Tokenizes records into batches, with the per-record checks that must see every record in order.
struct Reader<'a, R: Read> {
    input: &'a mut Input<R>,
    record: csv::ByteRecord,
    ncols: usize,
    cfg: Config,
    utf8: bool,
}

impl<R: Read> Reader<'_, R> {
    /// Fills `batch` with up to a batch of non-blank records; false once the input is exhausted
    /// (the batch may still hold records then).
    fn fill(&mut self, batch: &mut Batch) -> Result<bool, AnalysisError> {
        let more = self.fill_records(batch)?;
        if self.utf8 {
            self.utf8 = batch.is_utf8();
        }
        Ok(more)
    }

    fn fill_records(&mut self, batch: &mut Batch) -> Result<bool, AnalysisError> {
        batch.clear(4 * self.cfg.batch_bytes);
        let rec = &mut self.record;
        while batch.len() < self.cfg.batch_rows && batch.data.len() + 4 * batch.bounds.len() < self.cfg.batch_bytes {
            if batch.push_plain(self.input, self.ncols)? {
                continue;
            }
            // The input ends the table (at the end of the file or where another starts) and
            // hands out only rows: extra fields past the table's width are blank (a trailing
            // delimiter), and `push` drops them.
            if self.input.read_row(rec, self.ncols)? != Next::Row {
                return Ok(false);
            }
            batch.push(rec, self.ncols);
        }
        Ok(true)
    }
}

/// Feeds column `c` of `batch` to its state, in row order.
fn analyze_column(state: &mut ColumnState, batch: &Batch, c: usize) {
    let mut fields: [&[u8]; BLOCK] = [&[]; BLOCK];
    let mut prepared = [(Value::Missing, 0u64); BLOCK];
    let rows = batch.len();
    let mut start = 0;
    while start < rows {
        let len = BLOCK.min(rows - start);
        // Classify a block of fields and start their table loads, then count them.
        for (k, (field, slot)) in fields.iter_mut().zip(prepared.iter_mut()).take(len).enumerate() {
            // A short row's absent fields are missing values, as empty ones are.
            *field = batch.field(start + k, c);
            *slot = state.prepare(field);
        }
        for (_, key) in &prepared[..len] {
            state.touch(*key);
        }
        for (field, (value, key)) in fields.iter().zip(&prepared[..len]) {
            state.apply(*value, *key, field);
        }
        start += len;
    }
}

/// Reads every row of the table after its header and feeds it to `columns`.
pub(super) fn scan<R: Read>(
    input: &mut Input<R>,
    columns: &mut [ColumnState],
    utf8: bool,
    cfg: Config,
) -> Result<Scanned, AnalysisError> {
    let mut reader = Reader {
        input,
        record: csv::ByteRecord::new(),
        ncols: columns.len(),
        cfg,
        utf8,
    };
    let mut batch = Batch::new();
    let mut more = reader.fill(&mut batch)?;
    if cfg.helpers == 0 || !more || columns.len() < 2 {
        // Small input (or one core, or one column): no threads.
        loop {
            for (c, state) in columns.iter_mut().enumerate() {
                analyze_column(state, &batch, c);
            }
            if !more {
                break;
            }
            more = reader.fill(&mut batch)?;
        }
    } else {
        parallel(&mut reader, batch, columns)?;
    }
    Ok(Scanned {
        rows: reader.input.rows(),
        utf8: reader.utf8,
    })
}

/// One column's state and the index of the next batch it must see.
struct Slot<'s> {
    state: &'s mut ColumnState,
    next: u64,
    /// Threads waiting for this column to catch up (so finishing a task rarely needs a wake-up call).
    waiters: usize,
}

/// A filled batch waiting for (or under) analysis.
struct Job {
    batch: Batch,
    index: u64,
}

/// A queued batch and its unclaimed columns `lo..hi`.
struct Pending {
    job: Arc<Job>,
    lo: usize,
    hi: usize,
}

/// Queue state shared by the reader and the helpers.
struct Queue {
    /// Batches with columns not yet claimed, oldest first.
    pending: VecDeque<Pending>,
    /// Analyzed batches whose buffers can be refilled.
    free: Vec<Batch>,
    /// The reader has queued its last batch.
    done: bool,
    /// The reader stopped on an error (or a panic): helpers leave without finishing.
    abort: bool,
    /// Threads waiting on `Shared::changed`.
    sleepers: usize,
}

struct Shared<'s> {
    queue: Mutex<Queue>,
    /// Signalled when a batch is queued, a batch is freed, or the run ends.
    changed: Condvar,
    slots: Vec<(Mutex<Slot<'s>>, Condvar)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere is re-raised when the threads are joined; the data is still usable
    // for shutting down.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    /// Takes a column task of the oldest pending batch, if any. Helpers take columns from the
    /// left and the reader from the right, so a column tends to stay on one core (and its
    /// tables in that core's cache) from batch to batch.
    fn claim(&mut self, from_right: bool) -> Option<(Arc<Job>, usize)> {
        let p = self.pending.front_mut()?;
        let c = if from_right {
            p.hi -= 1;
            p.hi
        } else {
            p.lo += 1;
            p.lo - 1
        };
        if p.lo == p.hi {
            let p = self.pending.pop_front()?;
            Some((p.job, c))
        } else {
            Some((Arc::clone(&p.job), c))
        }
    }

    /// Queues a batch; true if a thread is waiting to be told.
    fn push(&mut self, job: Job, ncols: usize) -> bool {
        self.pending.push_back(Pending {
            job: Arc::new(job),
            lo: 0,
            hi: ncols,
        });
        self.sleepers > 0
    }
}

impl Shared<'_> {
    fn wait<'q>(&self, mut q: MutexGuard<'q, Queue>) -> MutexGuard<'q, Queue> {
        q.sleepers += 1;
        let mut q = self.changed.wait(q).unwrap_or_else(PoisonError::into_inner);
        q.sleepers -= 1;
        q
    }

    /// Analyzes column `c` of `job` once that column has seen every earlier batch.
    fn run(&self, job: Arc<Job>, c: usize) {
        let (slot, turn) = &self.slots[c];
        // A poisoned slot means a thread panicked inside the analysis: re-raise it here.
        let mut s = slot.lock().expect("column analysis panicked");
        while s.next != job.index {
            s.waiters += 1;
            s = turn.wait(s).expect("column analysis panicked");
            s.waiters -= 1;
        }
        analyze_column(s.state, &job.batch, c);
        s.next += 1;
        let wake = s.waiters > 0;
        drop(s);
        if wake {
            turn.notify_all();
        }
        // Whoever drops the last reference recycles the batch.
        if let Some(job) = Arc::into_inner(job) {
            let mut q = lock(&self.queue);
            q.free.push(job.batch);
            let wake = q.sleepers > 0;
            drop(q);
            if wake {
                self.changed.notify_all();
            }
        }
    }

    /// Helper thread: analyze column tasks until the reader is done and the queue is empty.
    fn help(&self) {
        loop {
            let (job, c) = {
                let mut q = lock(&self.queue);
                loop {
                    if q.abort {
                        return;
                    }
                    if let Some(task) = q.claim(false) {
                        break task;
                    }
                    if q.done {
                        return;
                    }
                    q = self.wait(q);
                }
            };
            self.run(job, c);
        }
    }
}

/// Ends the run for every thread when one leaves early: the reader on an error, or any
/// thread on a panic (which the scope then re-raises).
struct AbortOnDrop<'a, 's>(&'a Shared<'s>);

impl Drop for AbortOnDrop<'_, '_> {
    fn drop(&mut self) {
        let mut q = lock(&self.0.queue);
        if !q.done || std::thread::panicking() {
            q.abort = true;
        }
        drop(q);
        self.0.changed.notify_all();
        for (_, turn) in &self.0.slots {
            turn.notify_all();
        }
    }
}

fn parallel<R: Read>(
    reader: &mut Reader<'_, R>,
    first: Batch,
    columns: &mut [ColumnState],
) -> Result<(), AnalysisError> {
    let ncols = columns.len();
    let shared = Shared {
        queue: Mutex::new(Queue {
            pending: VecDeque::new(),
            free: Vec::new(),
            done: false,
            abort: false,
            sleepers: 0,
        }),
        changed: Condvar::new(),
        slots: columns
            .iter_mut()
            .map(|state| {
                let slot = Slot {
                    state,
                    next: 0,
                    waiters: 0,
                };
                (Mutex::new(slot), Condvar::new())
            })
            .collect(),
    };
    let helpers = reader.cfg.helpers.min(ncols - 1);
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|| {
                let _abort = AbortOnDrop(&shared);
                shared.help()
            });
        }
        let _abort = AbortOnDrop(&shared);
        let mut index = 0u64;
        let mut created = 1;
        let mut batch = first;
        loop {
            // Queue the filled batch.
            if lock(&shared.queue).push(Job { batch, index }, ncols) {
                shared.changed.notify_all();
            }
            index += 1;
            // Get an empty batch: a freed one, a new one while under the limit, or else help
            // analyze until one is freed.
            batch = loop {
                let mut q = lock(&shared.queue);
                if q.abort {
                    // A helper panicked; leaving lets the scope re-raise its panic.
                    return Ok(());
                }
                if let Some(b) = q.free.pop() {
                    break b;
                }
                if created < MAX_BATCHES {
                    created += 1;
                    break Batch::new();
                }
                match q.claim(true) {
                    Some((job, c)) => {
                        drop(q);
                        shared.run(job, c);
                    }
                    None => drop(shared.wait(q)),
                }
            };
            if !reader.fill(&mut batch)? {
                if batch.len() > 0 && lock(&shared.queue).push(Job { batch, index }, ncols) {
                    shared.changed.notify_all();
                }
                break;
            }
        }
        lock(&shared.queue).done = true;
        shared.changed.notify_all();
        // Help finish; the helpers leave once nothing is pending, and the scope joins them.
        loop {
            let task = lock(&shared.queue).claim(true);
            match task {
                Some((job, c)) => shared.run(job, c),
                None => break,
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::{profile_with, AnalysisError, Format, Profile};
    use super::Config;

    /// A deterministic mixed file: unique integers, floats, dates, date-times, booleans, text of
    /// high and low cardinality, missing values, short rows, blank lines, quoted newlines and
    /// non-ASCII text. 80 columns make the distinct and sample budgets small enough that
    /// 16,000 rows turn distinct counts into estimates and quartiles into samples.
    fn mixed_csv(rows: usize, cols: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = String::new();
        let header: Vec<String> = (0..cols).map(|j| format!("c{j}")).collect();
        out.push_str(&header.join(","));
        out.push('\n');
        for i in 0..rows {
            if i % 1000 == 999 {
                out.push_str("\n   \n");
            }
            let width = if i % 97 == 5 { cols / 2 } else { cols };
            let mut cells = Vec::with_capacity(width);
            for j in 0..width {
                let r = next();
                let cell = match j % 9 {
                    0 => (i * 7 + j).to_string(),
                    1 => format!("{}.{:02}", r % 100_000, (r >> 20) % 100),
                    2 => format!("2020-{:02}-{:02}", 1 + r % 12, 1 + (r >> 8) % 28),
                    3 => format!("2021-03-04T{:02}:{:02}:{:02}", r % 24, (r >> 8) % 60, (r >> 16) % 60),
                    4 => if r % 2 == 0 { "true" } else { "False" }.to_string(),
                    5 => format!("name_{}", r % 30_000),
                    6 => ["a", "b", "São", "\"x, y\"", "\"multi\nline\""][(r % 5) as usize].to_string(),
                    7 if r % 10 == 0 => "NA".to_string(),
                    7 => ((r >> 4) % 1000).to_string(),
                    _ if r % 3 == 0 => String::new(),
                    _ => format!("{:.3}", (r % 5000) as f64 / 7.0),
                };
                cells.push(cell);
            }
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out.into_bytes()
    }

    fn run(data: &[u8], batch_rows: usize, batch_bytes: usize, helpers: usize) -> Result<Profile, AnalysisError> {
        let cfg = Config {
            batch_rows,
            batch_bytes,
            helpers,
        };
        profile_with(data, Format::Csv, cfg)
    }

    #[test]
    fn threads_and_batch_sizes_do_not_change_results() {
        let data = mixed_csv(16_000, 80);
        let one = run(&data, 4096, 1 << 30, 0).expect("profile");
        assert_eq!(one.row_count, 16_000);
        assert!(one.columns.iter().any(|c| c.unique_count_is_estimate));
        assert!(one.columns.iter().any(|c| c.quartiles_are_estimate));
        assert!(one.columns.iter().any(|c| c.top_values_are_estimate));
        for (rows, bytes, helpers) in [
            (4096, 512 << 10, 1),
            (7, 1 << 30, 1),
            (1000, 3000, 2),
            (333, 1 << 20, 3),
        ] {
            let got = run(&data, rows, bytes, helpers).expect("profile");
            assert!(got == one, "batch of {rows} rows / {bytes} bytes, {helpers} helpers");
        }
    }

    /// Hands out `data`, then fails as a disk or a dropped upload does.
    struct FailsAfter<'a>(&'a [u8]);

    impl std::io::Read for FailsAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("the disk went away"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn an_error_mid_file_stops_every_thread() {
        let data = mixed_csv(10_000, 10);
        let cut = &data[..data.len() * 2 / 3];
        for helpers in [0, 1, 3] {
            let cfg = Config {
                batch_rows: 64,
                batch_bytes: 1 << 20,
                helpers,
            };
            match profile_with(FailsAfter(cut), Format::Csv, cfg) {
                Err(AnalysisError::Io(e)) => assert_eq!(e.to_string(), "the disk went away"),
                other => panic!("expected the read error with {helpers} helpers, got {other:?}"),
            }
        }
    }
}

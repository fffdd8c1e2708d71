//! Running SQL with polars' streaming engine: every table is a scan of its file, and the
//! result is handed over batch by batch (so an answer never holds more than its limit, and
//! a download never holds more than a batch).

use std::io::Write;
use std::sync::{Arc, Mutex};

use polars::error::abort::catch_polars_abort;
use polars::prelude::*;
use polars::sql::SQLContext;

use super::output::{self, Answer, OutputFormat, ResultWriter, Rows};
use super::tables::{ScanKind, TableFile};
use super::{Cancel, QueryError};

/// A table the SQL can name, and the file it reads.
pub struct Table {
    pub name: String,
    pub file: TableFile,
}

/// The message a cancelled query's result callback fails with (see [`engine_error`]).
const CANCELLED: &str = "the query was cancelled";

/// Runs `sql` over `tables` and answers with `limit` rows of its result from row `offset` on.
pub fn answer(sql: &str, tables: &[Table], limit: usize, offset: u64, cancel: &Cancel) -> Result<Answer, QueryError> {
    let plan = plan(sql, tables, cancel)?;
    let schema = plan.clone().collect_schema().map_err(|e| engine_error(e, cancel))?;
    let rows = Arc::new(Mutex::new(Rows::new(&schema, limit)));
    let taken = rows.clone();
    // One row past the limit tells whether there were more.
    let plan = plan.slice(i64::try_from(offset).unwrap_or(i64::MAX), (limit + 1) as IdxSize);
    let restart = rows.clone();
    run(
        plan,
        cancel,
        move |batch| {
            let mut rows = taken.lock().map_err(|_| output_error("the answer's rows"))?;
            rows.take(&batch)
        },
        // Interrupted for another query: start the answer again.
        &|| restart.lock().map(|mut rows| rows.clear()).is_ok(),
    )?;
    let rows = std::mem::replace(
        &mut *rows
            .lock()
            .map_err(|_| QueryError::Internal(anyhow::anyhow!("the answer's rows were lost")))?,
        Rows::new(&Schema::default(), 0),
    );
    Ok(Answer {
        row_count: rows.rows.len(),
        columns: rows.columns,
        rows: rows.rows,
        truncated: rows.truncated,
        elapsed_ms: 0.0,
    })
}

/// Runs `sql` over `tables` and writes its whole result to `out` as `format`; returns how
/// many rows were written.
pub fn download<W: Write + Send + 'static>(
    sql: &str,
    tables: &[Table],
    format: OutputFormat,
    out: W,
    cancel: &Cancel,
) -> Result<u64, QueryError> {
    let plan = plan(sql, tables, cancel)?;
    write_all(plan, format, out, cancel)
}

/// Writes the whole table of `table` to `out` as `format`; returns how many rows.
pub fn convert<W: Write + Send + 'static>(
    table: &Table,
    format: OutputFormat,
    out: W,
    cancel: &Cancel,
) -> Result<u64, QueryError> {
    let plan = scan(table).map_err(|e| engine_error(e, cancel))?;
    write_all(plan, format, out, cancel)
}

pub(super) fn write_all<W: Write + Send + 'static>(
    plan: LazyFrame,
    format: OutputFormat,
    out: W,
    cancel: &Cancel,
) -> Result<u64, QueryError> {
    let schema = plan.clone().collect_schema().map_err(|e| engine_error(e, cancel))?;
    let writer: Box<dyn ResultWriter + Send> =
        output::writer(format, &schema, out).map_err(|e| QueryError::Internal(e.into()))?;
    let state = Arc::new(Mutex::new(Some((writer, 0u64))));
    let shared = state.clone();
    let written = state.clone();
    run(
        plan,
        cancel,
        move |batch| {
            let mut state = shared.lock().map_err(|_| output_error("the download"))?;
            let (writer, rows) = state.as_mut().ok_or_else(|| output_error("the download"))?;
            writer.write(&batch)?;
            *rows += batch.height() as u64;
            Ok(true)
        },
        // Interrupted for another query: it can start again only if nothing was written.
        &|| {
            written
                .lock()
                .ok()
                .and_then(|s| s.as_ref().map(|(_, rows)| *rows == 0))
                .unwrap_or(false)
        },
    )?;
    let taken = state.lock().ok().and_then(|mut s| s.take());
    let (writer, rows) =
        taken.ok_or_else(|| QueryError::Internal(anyhow::anyhow!("the download's writer was lost")))?;
    writer.finish().map_err(|e| engine_error(e, cancel))?;
    Ok(rows)
}

fn output_error(what: &str) -> PolarsError {
    PolarsError::ComputeError(format!("writing {what} failed").into())
}

/// The SQL as a lazy plan over the tables.
fn plan(sql: &str, tables: &[Table], cancel: &Cancel) -> Result<LazyFrame, QueryError> {
    let mut context = SQLContext::new();
    for table in tables {
        let scan = scan(table).map_err(|e| engine_error(e, cancel))?;
        context.register(&table.name, scan);
    }
    context.execute(sql).map_err(|e| engine_error(e, cancel))
}

/// A table's scan, as the summary describes the table.
pub(super) fn scan(table: &Table) -> PolarsResult<LazyFrame> {
    let path = PlRefPath::new(table.file.path());
    let mut frame = match table.file.kind {
        ScanKind::Parquet => LazyFrame::scan_parquet(path, ScanArgsParquet::default())?,
        ScanKind::Ipc => LazyFrame::scan_ipc(path, Default::default(), Default::default())?,
    };
    // pandas writes its index as `__index_level_0__` columns; the summary leaves them out.
    let schema = frame.collect_schema()?;
    let index: Vec<PlSmallStr> = schema
        .iter_names()
        .filter(|n| n.starts_with("__index_level_"))
        .cloned()
        .collect();
    if !index.is_empty() {
        frame = frame.drop(Selector::ByName {
            names: index.into(),
            strict: false,
        });
    }
    Ok(frame)
}

/// Runs `plan` on the streaming engine, handing each result batch to `on_batch` (which
/// returns false to stop early) in order.
///
/// Stopping. The engine has no per-query stop (a check on each scanned batch would stop a
/// query while it reads, but a join or an aggregate computes long after its inputs are
/// read, and such a check in the plan slowed scans). What the engine does check, at every
/// step of every task, is one process-wide abort flag (the one Python's Ctrl-C raises). So cancelling a query inside
/// the engine raises that flag ([`interrupt_engine`]), which stops every query running at
/// that moment; each of the others, not cancelled itself, is run again from the start if
/// `restartable` says it has handed out nothing it cannot take back, or fails.
pub(super) fn run(
    plan: LazyFrame,
    cancel: &Cancel,
    on_batch: impl Fn(DataFrame) -> PolarsResult<bool> + Send + Sync + 'static,
    restartable: &dyn Fn() -> bool,
) -> Result<(), QueryError> {
    let on_batch = Arc::new(on_batch);
    let mut engine = Engine::Streaming;
    loop {
        let stop = cancel.clone();
        let handler = on_batch.clone();
        let callback = PlanCallback::new(move |batch: DataFrame| {
            if stop.is_cancelled() {
                return Err(PolarsError::ComputeError(CANCELLED.into()));
            }
            // The callback answers "stop?".
            handler(batch).map(|more| !more)
        });
        let sink = plan
            .clone()
            .sink_batches(callback, true, None)
            .map_err(|e| engine_error(e, cancel))?;
        let outcome = cancel.in_engine(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                catch_polars_abort(std::panic::AssertUnwindSafe(|| sink.collect_with_engine(engine)))
            }))
        });
        let outcome = match outcome {
            Ok(outcome) => outcome,
            // The streaming engine does not take every plan yet (it panics on some joins):
            // such a query runs on the in-memory engine instead, if nothing was handed out.
            Err(panic) if engine == Engine::Streaming && restartable() => {
                tracing::warn!(
                    panic = panic_message(&panic),
                    "the streaming engine failed on a query; running it in memory"
                );
                engine = Engine::InMemory;
                continue;
            }
            Err(panic) => {
                return Err(QueryError::Internal(anyhow::anyhow!(
                    "the query engine failed: {}",
                    panic_message(&panic)
                )))
            }
        };
        match outcome {
            Ok(result) => {
                result.map_err(|e| engine_error(e, cancel))?;
                if cancel.is_cancelled() {
                    return Err(QueryError::Cancelled);
                }
                return Ok(());
            }
            Err(_) if cancel.is_cancelled() => return Err(QueryError::Cancelled),
            Err(_) if restartable() => {
                tracing::info!("a query stopped for another's cancellation is run again");
                // The flag stays up until every query it stopped has left the engine.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(_) => {
                return Err(QueryError::Internal(anyhow::anyhow!(
                    "the query was stopped midway when another query was cancelled; run it again"
                )))
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Raises the engine's abort flag (see [`run`]). It is raised by a panic with polars' own
/// abort message, in a thread of its own; the panic hook is told to stay quiet about those.
pub(super) fn interrupt_engine() {
    static QUIET_ABORTS: std::sync::Once = std::sync::Once::new();
    QUIET_ABORTS.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|m| m.contains("__POLARS_ABORT_")) {
                previous(info);
            }
        }));
    });
    tracing::info!("stopping the query engine's running queries (one was cancelled)");
    let _ = std::thread::Builder::new()
        .name("query-interrupt".into())
        .spawn(|| polars::error::abort::polars_abort_ooc_out_of_disk());
}

/// The engine's error as the user's (a bad query) or ours (reading or writing failed).
pub(super) fn engine_error(e: PolarsError, cancel: &Cancel) -> QueryError {
    if cancel.is_cancelled() || e.to_string().contains(CANCELLED) {
        return QueryError::Cancelled;
    }
    match e {
        PolarsError::IO { .. } => QueryError::Internal(anyhow::Error::new(e).context("running a query")),
        other => QueryError::Invalid(clean_message(&other.to_string())),
    }
}

/// Polars' messages can end in a long plan dump or a hint for Python users; keep the
/// first paragraph.
fn clean_message(message: &str) -> String {
    let first = message.split("\n\n").next().unwrap_or(message).trim();
    let first = first.strip_prefix("sql parser error: ").unwrap_or(first);
    if first.chars().count() > 2_000 {
        let cut: String = first.chars().take(2_000).collect();
        return format!("{cut}…");
    }
    first.to_string()
}

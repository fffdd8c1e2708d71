//! SQL over a user's stored files, and conversions between formats, on polars' lazy engine
//! (its SQL front end and streaming executor).
//!
//! Layout: `statement` (which SQL is accepted and which files it names), `tables` (each
//! file as something polars scans: Parquet and Arrow files as stored, every other format
//! through a typed columnar copy kept in a cache folder), `run` (the engine: deadline,
//! cancellation, results batch by batch), `output` (answers as JSON rows; downloads as CSV,
//! Parquet, JSON lines, Arrow or xlsx), `view`, `facets`, `filter` and `search` (a page,
//! facets or download of one table filtered, searched and sorted without SQL text), with
//! `positions` (a view's rows kept between pages) and `rowfile` (a table's rows read by
//! position). Everything here blocks; the service calls it on the blocking pool, a bounded
//! number at a time.

mod facets;
mod filter;
mod output;
mod positions;
mod rowfile;
mod run;
mod search;
mod statement;
mod tables;
pub mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use output::{Answer, AnswerColumn, OutputFormat, XLSX_MAX_ROWS};
pub use rowfile::prepare as prepare_row_file;
pub use run::{answer, convert, download, Table};
pub use statement::{check, Checked};
pub use tables::{ColumnarCache, TableFile};

/// Most rows an answer may ask for, and what it gets without asking.
pub const MAX_LIMIT: usize = 100_000;
pub const DEFAULT_LIMIT: usize = 1_000;

/// Why a query gave no answer. Messages are shown to API users.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A statement or function the service does not run (DDL, table functions, …).
    #[error("{0}")]
    NotAllowed(String),
    /// The engine's verdict: a syntax error, an unknown table or column, a type error.
    #[error("{0}")]
    Invalid(String),
    /// The deadline passed, or the client went away; the work was stopped.
    #[error("the query was stopped")]
    Cancelled,
    /// The stored file could not be read as the table its summary describes.
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Set to stop a query: checked before each table is prepared and on each batch of results
/// the engine hands out; while the query is inside the engine, stopping it raises the
/// engine's abort flag (see `run`).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    in_engine: AtomicBool,
}

impl Cancel {
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        if self.0.in_engine.load(Ordering::SeqCst) {
            run::interrupt_engine();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Runs `f` (a call into the engine) marked as inside the engine.
    fn in_engine<T>(&self, f: impl FnOnce() -> T) -> T {
        self.0.in_engine.store(true, Ordering::SeqCst);
        // A cancel that came just before the mark did not interrupt: do it now.
        if self.is_cancelled() {
            run::interrupt_engine();
        }
        let out = f();
        self.0.in_engine.store(false, Ordering::SeqCst);
        out
    }
}

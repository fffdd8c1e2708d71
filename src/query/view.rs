//! Views of one table for exploring it: a filtered, searched and sorted page of rows with
//! the count of rows that match, and the whole view written out (facets: `facets`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use polars::prelude::*;
use serde::Serialize;
use serde_json::Value as Json;

use super::filter::{self, SortKey};
use super::output::{AnswerColumn, OutputFormat, Rows};
use super::positions::{self, PositionCache};
use super::rowfile;
use super::run::{engine_error, run, scan, write_all};
use super::search;
use super::{Cancel, QueryError, Table};

/// How many of a sorted view's first rows its first pages find without a whole sort.
const FIRST_ROWS: usize = 10_000;

/// Positions of the views paged lately, shared by all tables (bounded in bytes).
static POSITIONS: std::sync::LazyLock<PositionCache> =
    std::sync::LazyLock::new(|| PositionCache::new(positions::MAX_BYTES));

pub use super::facets::{facets, Facets};

/// Longest text a page shows of one cell, in characters.
pub const MAX_CELL_CHARS: usize = 1_000;

/// What a client asks of a view, as sent (`where`, `orderby`, `q`, `columns`).
#[derive(Debug, Clone, Default)]
pub struct ViewSpec {
    pub filter: Option<String>,
    pub order_by: Option<String>,
    pub search: Option<String>,
    pub columns: Option<String>,
}

/// `{"columns", "rows", "offset", "total_rows", "cut"}`.
#[derive(Debug, Serialize)]
pub struct Page {
    pub columns: Vec<AnswerColumn>,
    pub rows: Vec<Vec<Json>>,
    pub offset: u64,
    /// Rows that match the view (all rows without `where` and `q`).
    pub total_rows: u64,
    /// `[row, column]` of each cell whose text was cut to [`MAX_CELL_CHARS`].
    pub cut: Vec<[usize; 2]>,
}

/// A view's plan: the table filtered and searched (not yet sorted or narrowed).
pub(super) struct Filtered {
    pub plan: LazyFrame,
    pub schema: Schema,
    /// The `where` and `q` conditions, as applied to `plan`.
    conditions: Vec<Expr>,
    /// The conditions in a form that tells views apart: `where` as built (spelling and
    /// spacing aside), `q` as sent.
    identity: String,
}

pub(super) fn filtered(table: &Table, spec: &ViewSpec, cancel: &Cancel) -> Result<Filtered, QueryError> {
    let mut plan = scan(table).map_err(|e| engine_error(e, cancel))?;
    let schema = (*plan.collect_schema().map_err(|e| engine_error(e, cancel))?).clone();
    let mut conditions = Vec::new();
    let mut identity = String::new();
    if let Some(text) = spec.filter.as_deref().filter(|t| !t.trim().is_empty()) {
        let condition = filter::parse_where(text, &schema)?;
        identity = format!("where {condition:?}");
        conditions.push(condition);
    }
    if let Some(text) = spec.search.as_deref().filter(|t| !t.is_empty()) {
        conditions.push(search::search(text, &schema)?);
        identity.push_str(&format!("\nq {text:?}"));
    }
    for condition in &conditions {
        plan = plan.filter(condition.clone());
    }
    Ok(Filtered {
        plan,
        schema,
        conditions,
        identity,
    })
}

fn sort_keys(spec: &ViewSpec, schema: &Schema) -> Result<Vec<SortKey>, QueryError> {
    match spec.order_by.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(text) => filter::parse_order_by(text, schema),
        None => Ok(Vec::new()),
    }
}

fn sorted(plan: LazyFrame, keys: &[SortKey]) -> LazyFrame {
    if keys.is_empty() {
        return plan;
    }
    let options = SortMultipleOptions::default()
        .with_order_descending_multi(keys.iter().map(|k| k.descending))
        .with_nulls_last_multi(keys.iter().map(|k| k.nulls_last))
        // Rows that tie keep the file's order, so pages do not overlap.
        .with_maintain_order(true);
    plan.sort_by_exprs(keys.iter().map(|k| col(k.column.as_str())).collect::<Vec<_>>(), options)
}

fn chosen_columns(spec: &ViewSpec, schema: &Schema) -> Result<Option<Vec<String>>, QueryError> {
    spec.columns
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|text| filter::parse_columns(text, schema))
        .transpose()
}

/// The view sorted and narrowed to its columns.
fn arranged(view: Filtered, spec: &ViewSpec) -> Result<LazyFrame, QueryError> {
    let keys = sort_keys(spec, &view.schema)?;
    let mut plan = sorted(view.plan, &keys);
    if let Some(names) = chosen_columns(spec, &view.schema)? {
        plan = plan.select(names.iter().map(|n| col(n.as_str())).collect::<Vec<_>>());
    }
    Ok(plan)
}

/// Rows `offset..offset + limit` of the view, and how many rows match it.
///
/// The whole table in its own order is a slice of the scan. A filtered, searched or sorted
/// view is found once as its rows' positions (kept between pages, see `positions`), and a
/// page reads just its rows (see `rowfile`).
pub fn page(table: &Table, spec: &ViewSpec, offset: u64, limit: usize, cancel: &Cancel) -> Result<Page, QueryError> {
    let view = filtered(table, spec, cancel)?;
    let keys = sort_keys(spec, &view.schema)?;
    let columns = chosen_columns(spec, &view.schema)?;
    if view.conditions.is_empty() && keys.is_empty() {
        return sliced_page(view, spec, offset, limit, cancel);
    }
    match positioned_page(table, &view, &keys, columns.as_deref(), offset, limit, cancel) {
        // The row file could not be made or read (a type it cannot hold, a full disk):
        // the page is still answered, by scanning.
        Err(QueryError::Internal(e)) if !cancel.is_cancelled() => {
            tracing::warn!(error = %format!("{e:#}"), "a page by row positions failed; scanning instead");
            sliced_page(view, spec, offset, limit, cancel)
        }
        answer => answer,
    }
}

/// The view's positions (from the cache, or found and kept), then the page's rows by position.
fn positioned_page(
    table: &Table,
    view: &Filtered,
    keys: &[SortKey],
    columns: Option<&[String]>,
    offset: u64,
    limit: usize,
    cancel: &Cancel,
) -> Result<Page, QueryError> {
    let key = format!("{}\n{}\norderby {keys:?}", table.file.identity(), view.identity);
    let wanted = usize::try_from(offset).unwrap_or(usize::MAX).saturating_add(limit);
    let (positions, total) = match POSITIONS.get(&key) {
        Some((kept, total)) if kept.len() == total || wanted <= kept.len() => (kept, total),
        // A sorted view's first pages: the engine sorts just enough for its first rows
        // (much less than a whole sort), and counts the view apart.
        _ if !keys.is_empty() && wanted <= FIRST_ROWS => {
            let first = Arc::new(view_positions(table, view, keys, Some(FIRST_ROWS), cancel)?);
            let total = if first.len() < FIRST_ROWS {
                first.len()
            } else {
                usize::try_from(count(view.plan.clone(), cancel)?).unwrap_or(usize::MAX)
            };
            POSITIONS.insert(key, first.clone(), total);
            (first, total)
        }
        _ => {
            let all = Arc::new(view_positions(table, view, keys, None, cancel)?);
            let total = all.len();
            POSITIONS.insert(key, all.clone(), total);
            (all, total)
        }
    };
    // `positions` reaches `end`: it is whole, or holds the first `wanted` rows or more.
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(total);
    let end = start.saturating_add(limit).min(total).min(positions.len());
    let mut frame = rowfile::gather(table, &view.schema, &positions[start..end], cancel)?;
    if let Some(names) = columns {
        frame = frame
            .select(names.iter().map(|n| PlSmallStr::from_str(n)))
            .map_err(|e| engine_error(e, cancel))?;
    }
    let mut rows = Rows::new(frame.schema(), limit);
    rows.take(&frame).map_err(|e| engine_error(e, cancel))?;
    let cut = cut_long_cells(&mut rows.rows);
    Ok(Page {
        columns: rows.columns,
        rows: rows.rows,
        offset,
        total_rows: total as u64,
        cut,
    })
}

/// Positions of the view's rows in the table, in the view's order (only the `first` ones
/// when given): only the conditions' and sort keys' columns are read, and only positions
/// are sorted.
fn view_positions(
    table: &Table,
    view: &Filtered,
    keys: &[SortKey],
    first: Option<usize>,
    cancel: &Cancel,
) -> Result<Vec<IdxSize>, QueryError> {
    let mut name = String::from("__position");
    while view.schema.contains(&name) {
        name.push('_');
    }
    let mut plan = scan(table)
        .map_err(|e| engine_error(e, cancel))?
        .with_row_index(name.as_str(), None);
    for condition in &view.conditions {
        plan = plan.filter(condition.clone());
    }
    let mut plan = sorted(plan, keys);
    if let Some(n) = first {
        plan = plan.slice(0, IdxSize::try_from(n).unwrap_or(IdxSize::MAX));
    }
    let plan = plan.select([col(name.as_str())]);
    let found: Arc<Mutex<Vec<IdxSize>>> = Arc::default();
    let taken = found.clone();
    let restart = found.clone();
    let column = name.clone();
    run(
        plan,
        cancel,
        move |batch| {
            let positions = batch.column(&column)?.idx()?;
            let mut found = taken
                .lock()
                .map_err(|_| PolarsError::ComputeError("the view's positions were lost".into()))?;
            // Whole arrays at once (a row index has no nulls): a loop over millions of
            // values is slow in an unoptimized build of this crate.
            for array in positions.downcast_iter() {
                found.extend_from_slice(array.values().as_slice());
            }
            Ok(true)
        },
        &|| restart.lock().map(|mut f| f.clear()).is_ok(),
    )?;
    let found = std::mem::take(
        &mut *found
            .lock()
            .map_err(|_| QueryError::Internal(anyhow::anyhow!("the view's positions were lost")))?,
    );
    Ok(found)
}

/// The page as a slice of the view's plan, counting its rows with a scan.
fn sliced_page(
    view: Filtered,
    spec: &ViewSpec,
    offset: u64,
    limit: usize,
    cancel: &Cancel,
) -> Result<Page, QueryError> {
    let total_rows = count(view.plan.clone(), cancel)?;
    let plan = arranged(view, spec)?.slice(
        i64::try_from(offset).unwrap_or(i64::MAX),
        IdxSize::try_from(limit).unwrap_or(IdxSize::MAX),
    );
    let schema = plan.clone().collect_schema().map_err(|e| engine_error(e, cancel))?;
    let rows = Arc::new(Mutex::new(Rows::new(&schema, limit)));
    let taken = rows.clone();
    let restart = rows.clone();
    run(
        plan,
        cancel,
        move |batch| {
            let mut rows = taken
                .lock()
                .map_err(|_| PolarsError::ComputeError("the page's rows were lost".into()))?;
            rows.take(&batch)
        },
        &|| restart.lock().map(|mut rows| rows.clear()).is_ok(),
    )?;
    let mut rows = std::mem::replace(
        &mut *rows
            .lock()
            .map_err(|_| QueryError::Internal(anyhow::anyhow!("the page's rows were lost")))?,
        Rows::new(&Schema::default(), 0),
    );
    let cut = cut_long_cells(&mut rows.rows);
    Ok(Page {
        columns: rows.columns,
        rows: rows.rows,
        offset,
        total_rows,
        cut,
    })
}

/// Writes the whole view (filtered, searched, sorted, its columns) to `out` as `format`.
pub fn download<W: Write + Send + 'static>(
    table: &Table,
    spec: &ViewSpec,
    format: OutputFormat,
    out: W,
    cancel: &Cancel,
) -> Result<u64, QueryError> {
    let plan = arranged(filtered(table, spec, cancel)?, spec)?;
    write_all(plan, format, out, cancel)
}

/// How many rows the view has (for an xlsx download's row limit).
pub fn row_count(table: &Table, spec: &ViewSpec, cancel: &Cancel) -> Result<u64, QueryError> {
    count(filtered(table, spec, cancel)?.plan, cancel)
}

fn count(plan: LazyFrame, cancel: &Cancel) -> Result<u64, QueryError> {
    let counted = collect(plan.select([len().alias("n")]), cancel)?;
    Ok(counted
        .column("n")
        .ok()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<u64>())
        .unwrap_or(0))
}

/// A small result (a count, a facet's groups) in one frame; with no rows, an empty frame
/// that still has the result's columns (the engine may hand over no batch at all).
pub(super) fn collect(mut plan: LazyFrame, cancel: &Cancel) -> Result<DataFrame, QueryError> {
    let schema = plan.collect_schema().map_err(|e| engine_error(e, cancel))?;
    let batches: Arc<Mutex<Vec<DataFrame>>> = Arc::default();
    let taken = batches.clone();
    let restart = batches.clone();
    run(
        plan,
        cancel,
        move |batch| {
            taken
                .lock()
                .map_err(|_| PolarsError::ComputeError("a result was lost".into()))?
                .push(batch);
            Ok(true)
        },
        &|| restart.lock().map(|mut b| b.clear()).is_ok(),
    )?;
    let batches = std::mem::take(
        &mut *batches
            .lock()
            .map_err(|_| QueryError::Internal(anyhow::anyhow!("a result was lost")))?,
    );
    let mut frames = batches.into_iter();
    let Some(mut all) = frames.next() else {
        return Ok(DataFrame::empty_with_schema(&schema));
    };
    for frame in frames {
        all.vstack_mut(&frame).map_err(|e| engine_error(e, cancel))?;
    }
    Ok(all)
}

/// Cuts text cells longer than [`MAX_CELL_CHARS`] and says which they were.
fn cut_long_cells(rows: &mut [Vec<Json>]) -> Vec<[usize; 2]> {
    let mut cut = Vec::new();
    for (r, row) in rows.iter_mut().enumerate() {
        for (c, cell) in row.iter_mut().enumerate() {
            if let Json::String(text) = cell {
                if let Some((at, _)) = text.char_indices().nth(MAX_CELL_CHARS) {
                    text.truncate(at);
                    cut.push([r, c]);
                }
            }
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_at_a_character_boundary_and_named() {
        let long = "é".repeat(MAX_CELL_CHARS + 5);
        let mut rows = vec![
            vec![Json::from(1), Json::from(long)],
            vec![Json::from("short"), Json::Null],
        ];
        assert_eq!(cut_long_cells(&mut rows), [[0, 1]]);
        assert_eq!(rows[0][1].as_str().unwrap().chars().count(), MAX_CELL_CHARS);
        assert_eq!(rows[1][0], "short");
    }
}

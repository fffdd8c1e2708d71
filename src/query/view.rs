//! Views of one table for exploring it: a filtered, searched and sorted page of rows with
//! the count of rows that match, facets (the most common values, dates by period, numbers
//! in bins), and the whole view written out.

use std::io::Write;
use std::sync::{Arc, Mutex};

use polars::prelude::*;
use serde::Serialize;
use serde_json::Value as Json;

use super::filter::{self, SortKey};
use super::output::{json_value, AnswerColumn, OutputFormat, Rows};
use super::run::{engine_error, run, scan, write_all};
use super::{Cancel, QueryError, Table};

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

/// `{"total_rows", "facets": {column: facet}}`.
#[derive(Debug, Serialize)]
pub struct Facets {
    pub total_rows: u64,
    pub facets: serde_json::Map<String, Json>,
}

/// A view's plan: the table filtered and searched (not yet sorted or narrowed).
struct Filtered {
    plan: LazyFrame,
    schema: Schema,
}

fn filtered(table: &Table, spec: &ViewSpec, cancel: &Cancel) -> Result<Filtered, QueryError> {
    let mut plan = scan(table).map_err(|e| engine_error(e, cancel))?;
    let schema = (*plan.collect_schema().map_err(|e| engine_error(e, cancel))?).clone();
    if let Some(text) = spec.filter.as_deref().filter(|t| !t.trim().is_empty()) {
        plan = plan.filter(filter::parse_where(text, &schema)?);
    }
    if let Some(text) = spec.search.as_deref().filter(|t| !t.is_empty()) {
        plan = plan.filter(filter::search(text, &schema)?);
    }
    Ok(Filtered { plan, schema })
}

/// The view sorted and narrowed to its columns.
fn arranged(view: Filtered, spec: &ViewSpec) -> Result<LazyFrame, QueryError> {
    let mut plan = view.plan;
    if let Some(text) = spec.order_by.as_deref().filter(|t| !t.trim().is_empty()) {
        let keys: Vec<SortKey> = filter::parse_order_by(text, &view.schema)?;
        let options = SortMultipleOptions::default()
            .with_order_descending_multi(keys.iter().map(|k| k.descending))
            .with_nulls_last_multi(keys.iter().map(|k| k.nulls_last))
            // Rows that tie keep the file's order, so pages do not overlap.
            .with_maintain_order(true);
        plan = plan.sort_by_exprs(keys.iter().map(|k| col(k.column.as_str())).collect::<Vec<_>>(), options);
    }
    if let Some(text) = spec.columns.as_deref().filter(|t| !t.trim().is_empty()) {
        let names = filter::parse_columns(text, &view.schema)?;
        plan = plan.select(names.iter().map(|n| col(n.as_str())).collect::<Vec<_>>());
    }
    Ok(plan)
}

/// Rows `offset..offset + limit` of the view, and how many rows match it.
pub fn page(table: &Table, spec: &ViewSpec, offset: u64, limit: usize, cancel: &Cancel) -> Result<Page, QueryError> {
    let view = filtered(table, spec, cancel)?;
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

/// Facets of `columns` (all when `None`) over the view: at most `limit` values or bins each.
pub fn facets(
    table: &Table,
    spec: &ViewSpec,
    columns: Option<&str>,
    limit: usize,
    cancel: &Cancel,
) -> Result<Facets, QueryError> {
    let view = filtered(table, spec, cancel)?;
    let names: Vec<String> = match columns.filter(|t| !t.trim().is_empty()) {
        Some(text) => filter::parse_columns(text, &view.schema)?,
        None => view.schema.iter_names().map(|n| n.to_string()).collect(),
    };
    let kinds: Vec<(String, FacetKind)> = names
        .into_iter()
        .map(|name| {
            let dtype = view.schema.get(name.as_str()).cloned().unwrap_or(DataType::Null);
            let kind = if matches!(dtype, DataType::Date | DataType::Datetime(..)) {
                FacetKind::Dates
            } else if dtype.is_primitive_numeric() {
                FacetKind::Bins
            } else {
                FacetKind::Values
            };
            (name, kind)
        })
        .collect();
    // One pass for the count and every range a date or number facet needs.
    let mut measures = vec![len().cast(DataType::Int64).alias("n")];
    for (i, (name, kind)) in kinds.iter().enumerate() {
        match kind {
            FacetKind::Dates => measures.extend([
                col(name.as_str()).min().cast(DataType::Date).alias(format!("lo{i}")),
                col(name.as_str()).max().cast(DataType::Date).alias(format!("hi{i}")),
            ]),
            FacetKind::Bins => measures.extend([
                col(name.as_str()).cast(DataType::Float64).min().alias(format!("lo{i}")),
                col(name.as_str()).cast(DataType::Float64).max().alias(format!("hi{i}")),
                col(name.as_str())
                    .null_count()
                    .cast(DataType::Int64)
                    .alias(format!("nulls{i}")),
            ]),
            FacetKind::Values => {}
        }
    }
    let bounds = collect(view.plan.clone().select(measures), cancel)?;
    let get = |c: &str| -> Option<AnyValue<'static>> {
        bounds
            .column(c)
            .ok()
            .and_then(|s| s.get(0).ok().map(|v| v.into_static()))
    };
    let total_rows = get("n").and_then(|v| v.extract::<u64>()).unwrap_or(0);
    let mut facets = serde_json::Map::new();
    for (i, (name, kind)) in kinds.into_iter().enumerate() {
        let facet = match kind {
            FacetKind::Dates => {
                let day = |c: String| match get(&c) {
                    Some(AnyValue::Date(d)) => Some(d),
                    _ => None,
                };
                date_facet(&view.plan, &name, day(format!("lo{i}")), day(format!("hi{i}")), cancel)?
            }
            FacetKind::Bins => {
                let number = |c: String| get(&c).and_then(|v| v.extract::<f64>());
                let nulls = number(format!("nulls{i}")).unwrap_or(0.0) as u64;
                let range = number(format!("lo{i}")).zip(number(format!("hi{i}")));
                number_facet(&view.plan, &name, limit, range, nulls, cancel)?
            }
            FacetKind::Values => value_facet(&view.plan, &name, limit, total_rows, cancel)?,
        };
        facets.insert(name, facet);
    }
    Ok(Facets { total_rows, facets })
}

/// How a column is faceted: its most frequent values, dates by period, numbers in bins.
enum FacetKind {
    Values,
    Dates,
    Bins,
}

/// The most frequent values with their counts, and how many rows hold another value.
fn value_facet(plan: &LazyFrame, name: &str, limit: usize, total: u64, cancel: &Cancel) -> Result<Json, QueryError> {
    let counts = collect(
        plan.clone()
            .group_by([col(name).alias("value")])
            .agg([len().alias("count")])
            .sort_by_exprs(
                [col("count"), col("value")],
                SortMultipleOptions::default()
                    .with_order_descending_multi([true, false])
                    .with_nulls_last(true),
            )
            .limit(IdxSize::try_from(limit).unwrap_or(IdxSize::MAX)),
        cancel,
    )?;
    let values = value_counts(&counts)?;
    let shown: u64 = values.iter().map(|v| v["count"].as_u64().unwrap_or(0)).sum();
    Ok(serde_json::json!({ "kind": "values", "values": values, "other": total.saturating_sub(shown) }))
}

/// Counts by year, month or day, whichever gives a readable number of periods for the
/// range the view covers (`lo..=hi`, days since 1970; over three years: years; over
/// ninety days: months; else days).
fn date_facet(
    plan: &LazyFrame,
    name: &str,
    lo: Option<i32>,
    hi: Option<i32>,
    cancel: &Cancel,
) -> Result<Json, QueryError> {
    let span = match (lo, hi) {
        (Some(lo), Some(hi)) => hi - lo,
        _ => 0,
    };
    let (period, format) = if span > 3 * 366 {
        ("year", "%Y")
    } else if span > 90 {
        ("month", "%Y-%m")
    } else {
        ("day", "%Y-%m-%d")
    };
    let counts = collect(
        plan.clone()
            .group_by([col(name).dt().strftime(format).alias("value")])
            .agg([len().alias("count")])
            .sort_by_exprs([col("value")], SortMultipleOptions::default().with_nulls_last(true)),
        cancel,
    )?;
    Ok(serde_json::json!({ "kind": "dates", "period": period, "values": value_counts(&counts)?, "other": 0 }))
}

/// A histogram of `bins` equal-width bins from the smallest value to the largest
/// (`range`; the last bin includes its upper edge); the `nulls` missing values are
/// counted apart, as `null`.
fn number_facet(
    plan: &LazyFrame,
    name: &str,
    bins: usize,
    range: Option<(f64, f64)>,
    nulls: u64,
    cancel: &Cancel,
) -> Result<Json, QueryError> {
    let x = || col(name).cast(DataType::Float64);
    let Some((lo, hi)) = range else {
        let values = if nulls > 0 {
            vec![serde_json::json!({ "value": null, "count": nulls })]
        } else {
            vec![]
        };
        return Ok(serde_json::json!({ "kind": "bins", "values": values, "other": 0 }));
    };
    let bins = bins.max(1);
    let width = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let counts = collect(
        plan.clone()
            .filter(col(name).is_not_null())
            .select([((x() - lit(lo)) / lit(width))
                .floor()
                .clip(lit(0.0), lit((bins - 1) as f64))
                .cast(DataType::Int64)
                .alias("bin")])
            .group_by([col("bin")])
            .agg([len().alias("count")]),
        cancel,
    )?;
    let mut per_bin = vec![0u64; bins];
    let bin_col = counts.column("bin").map_err(|e| engine_error(e, cancel))?;
    let count_col = counts.column("count").map_err(|e| engine_error(e, cancel))?;
    for i in 0..counts.height() {
        let bin = bin_col.get(i).ok().and_then(|v| v.extract::<i64>()).unwrap_or(0);
        let n = count_col.get(i).ok().and_then(|v| v.extract::<u64>()).unwrap_or(0);
        per_bin[(bin.max(0) as usize).min(bins - 1)] += n;
    }
    let mut values: Vec<Json> = if hi > lo {
        per_bin
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let to = if i + 1 == bins { hi } else { lo + width * (i + 1) as f64 };
                serde_json::json!({ "value": lo + width * i as f64, "to": to, "count": n })
            })
            .collect()
    } else {
        // Every value is the same: one bin.
        vec![serde_json::json!({ "value": lo, "to": hi, "count": per_bin.iter().sum::<u64>() })]
    };
    if nulls > 0 {
        values.push(serde_json::json!({ "value": null, "count": nulls }));
    }
    Ok(serde_json::json!({ "kind": "bins", "values": values, "other": 0 }))
}

/// `[{"value", "count"}]` from a frame of those two columns.
fn value_counts(frame: &DataFrame) -> Result<Vec<Json>, QueryError> {
    let internal = |e: PolarsError| QueryError::Internal(anyhow::Error::new(e).context("reading facet counts"));
    let values = frame.column("value").map_err(internal)?;
    let counts = frame.column("count").map_err(internal)?;
    (0..frame.height())
        .map(|i| {
            let value = values.get(i).map_err(internal)?;
            let count = counts.get(i).map_err(internal)?.extract::<u64>().unwrap_or(0);
            Ok(serde_json::json!({ "value": json_value(&value), "count": count }))
        })
        .collect()
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
fn collect(mut plan: LazyFrame, cancel: &Cancel) -> Result<DataFrame, QueryError> {
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

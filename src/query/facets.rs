//! Facets of a view: for each column asked, its most common values with counts, its dates
//! counted by year, month or day, or its numbers in equal-width bins.

use polars::prelude::*;
use serde::Serialize;
use serde_json::Value as Json;

use super::filter;
use super::output::json_value;
use super::run::engine_error;
use super::view::{collect, filtered, ViewSpec};
use super::{Cancel, QueryError, Table};

/// `{"total_rows", "facets": {column: facet}}`.
#[derive(Debug, Serialize)]
pub struct Facets {
    pub total_rows: u64,
    pub facets: serde_json::Map<String, Json>,
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
    // Grouped by the period's numbers, and only the groups written as text: writing each
    // row's date as text is what made a date facet slow.
    let parts: &[&str] = match period {
        "year" => &["y"],
        "month" => &["y", "m"],
        _ => &["y", "m", "d"],
    };
    let part = |p: &str| match p {
        "y" => col(name).dt().year().cast(DataType::Int32).alias("y"),
        "m" => col(name).dt().month().cast(DataType::Int32).alias("m"),
        _ => col(name).dt().day().cast(DataType::Int32).alias("d"),
    };
    let counts = collect(
        plan.clone()
            .group_by(parts.iter().map(|p| part(*p)).collect::<Vec<_>>())
            .agg([len().alias("count")]),
        cancel,
    )?;
    let internal = |e: PolarsError| QueryError::Internal(anyhow::Error::new(e).context("reading date facet counts"));
    let number = |c: &str, i: usize| -> Result<Option<i32>, QueryError> {
        Ok(counts
            .column(c)
            .map_err(internal)?
            .get(i)
            .map_err(internal)?
            .extract::<i32>())
    };
    let mut periods: Vec<(Option<String>, u64)> = Vec::with_capacity(counts.height());
    for i in 0..counts.height() {
        let y = number("y", i)?;
        let m = if parts.len() > 1 { number("m", i)? } else { Some(1) };
        let d = if parts.len() > 2 { number("d", i)? } else { Some(1) };
        let text = match (y, m, d) {
            (Some(y), Some(m), Some(d)) => {
                chrono::NaiveDate::from_ymd_opt(y, m as u32, d as u32).map(|day| day.format(format).to_string())
            }
            _ => None,
        };
        let count = counts
            .column("count")
            .map_err(internal)?
            .get(i)
            .map_err(internal)?
            .extract::<u64>()
            .unwrap_or(0);
        periods.push((text, count));
    }
    // By period, the missing last.
    periods.sort_by(|a, b| match (&a.0, &b.0) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let values: Vec<Json> = periods
        .into_iter()
        .map(|(value, count)| serde_json::json!({ "value": value, "count": count }))
        .collect();
    Ok(serde_json::json!({ "kind": "dates", "period": period, "values": values, "other": 0 }))
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

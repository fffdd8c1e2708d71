//! pandas' `read_json` rules (pandas 2.x defaults): which dtype a column of JSON values
//! gets, and how each value is typed as its column's dtype, in one place for profiles,
//! previews and rows.

use serde_json::Value as Json;

use crate::analysis::{self, bool_text, Cell, ColumnBudget, Dtype, Stats, TypedColumn};

/// Below this, a number in a date-like column is not taken for a time (pandas' `min_stamp`,
/// one year of seconds).
const MIN_STAMP: f64 = 31_536_000.0;

/// Columns pandas converts to dates by name (`keep_default_dates`).
fn is_date_like(name: &str) -> bool {
    let n = name.to_lowercase();
    n.ends_with("_at")
        || n.ends_with("_time")
        || n.starts_with("timestamp")
        || n == "modified"
        || n == "date"
        || n == "datetime"
}

/// A number in a date-like column as pandas converts it: epoch time in the coarsest of
/// seconds, milliseconds, microseconds and nanoseconds that fits.
fn epoch_ns(x: f64) -> Option<i64> {
    [1e9, 1e6, 1e3, 1.0]
        .iter()
        .map(|per| x * per)
        .find(|ns| ns.abs() < 9.2e18)
        .map(|ns| ns as i64)
}

/// A string pandas' `astype("float64")` accepts.
fn numeric_text(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok()
}

/// One column's statistics and what pandas needs to pick its dtype.
pub(super) struct JsonColumn {
    pub(super) name: String,
    plain: TypedColumn,
    /// Date-like columns: the same values read as times, kept while every one converts.
    as_date: Option<TypedColumn>,
    date_ok: bool,
    min_number: f64,
    nulls: u64,
    bools: u64,
    /// Values that are numbers (or numeric text), and how many of them are whole.
    numbers: u64,
    integral: u64,
    /// Whole numbers above i64 and below zero.
    big: u64,
    negative: u64,
    floats: u64,
    text: u64,
    /// Numbers written as text (pandas converts them).
    numeric_text: u64,
    nested: u64,
    /// Previews: every value's text.
    pub(super) kept: Option<Vec<Option<String>>>,
}

impl JsonColumn {
    pub(super) fn new(name: String, budget: &ColumnBudget, index: usize) -> JsonColumn {
        let as_date = is_date_like(&name).then(|| TypedColumn::new(budget, index));
        JsonColumn {
            name,
            plain: TypedColumn::new(budget, index),
            date_ok: as_date.is_some(),
            as_date,
            min_number: f64::INFINITY,
            nulls: 0,
            bools: 0,
            numbers: 0,
            integral: 0,
            big: 0,
            negative: 0,
            floats: 0,
            text: 0,
            numeric_text: 0,
            nested: 0,
            kept: None,
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.plain.len()
    }

    pub(super) fn push_nulls(&mut self, n: u64) {
        if let Some(kept) = self.kept.as_mut() {
            kept.extend((0..n).map(|_| None));
        }
        for _ in 0..n {
            self.count_null();
        }
    }

    fn count_null(&mut self) {
        self.nulls += 1;
        self.plain.push(Cell::Null);
        if let Some(d) = self.as_date.as_mut() {
            d.push(Cell::Null);
        }
    }

    pub(super) fn push(&mut self, v: &Json) {
        if let Some(kept) = self.kept.as_mut() {
            kept.push(preview_text(v));
        }
        let number = |c: &mut JsonColumn, x: f64, cell: Cell<'_>| {
            c.count_number(x);
            c.min_number = c.min_number.min(x);
            c.plain.push(cell);
            c.push_date_number(x);
        };
        match v {
            Json::Null => self.count_null(),
            Json::Bool(b) => {
                self.bools += 1;
                self.plain.push(Cell::Bool(*b));
                self.date_ok = false;
            }
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    number(self, i as f64, Cell::Int(i));
                } else if let Some(u) = n.as_u64() {
                    number(self, u as f64, Cell::UInt(u));
                } else {
                    let x = n.as_f64().unwrap_or(f64::NAN);
                    self.floats += 1;
                    number(self, x, Cell::Float(x));
                }
            }
            Json::String(s) => {
                if let Some(d) = self.as_date.as_mut() {
                    match analysis::parse_iso(s.as_bytes()) {
                        Some((ns, has_time)) => d.push(Cell::Time { ns, has_time }),
                        None => self.date_ok = false,
                    }
                }
                match numeric_text(s) {
                    Some(x) if x.is_nan() => {
                        // NaN after conversion: missing to pandas.
                        self.numeric_text += 1;
                        self.nulls += 1;
                        self.plain.push(Cell::Null);
                    }
                    Some(x) => {
                        self.numeric_text += 1;
                        self.count_number(x);
                        if x.fract() == 0.0 && x.abs() < 9.2e18 {
                            self.plain.push(Cell::Int(x as i64));
                        } else {
                            self.floats += 1;
                            self.plain.push(Cell::Float(x));
                        }
                    }
                    None => {
                        self.text += 1;
                        self.plain.push(Cell::Text(s.as_bytes()));
                    }
                }
            }
            Json::Array(_) | Json::Object(_) => {
                self.nested += 1;
                self.date_ok = false;
                self.plain.push(Cell::Text(v.to_string().as_bytes()));
            }
        }
    }

    /// A number in a date-like column, as a time (see [`epoch_ns`]).
    fn push_date_number(&mut self, x: f64) {
        let Some(d) = self.as_date.as_mut() else { return };
        match epoch_ns(x) {
            Some(ns) => d.push(Cell::Time { ns, has_time: true }),
            None => self.date_ok = false,
        }
    }

    /// A number (or numeric text): whether it is whole, negative, or past `int64`.
    fn count_number(&mut self, x: f64) {
        self.numbers += 1;
        if x.fract() == 0.0 && x.is_finite() {
            self.integral += 1;
        }
        if x < 0.0 {
            self.negative += 1;
        }
        if x > i64::MAX as f64 {
            self.big += 1;
        }
    }

    /// pandas' `read_json` (pandas 2.x, `dtype=True`, `convert_dates=True`): date-like names
    /// whose every value is a date (or an epoch number past one year) become
    /// `datetime64[ns]`; a column of booleans alone (none missing) stays `bool`; any other column that can be
    /// cast to float64 (numbers, numbers as text, booleans, missing values) is `int64` when every
    /// value is whole and none is missing, else `float64`; the rest is `object`.
    fn dtype(&self, rows: u64) -> (Dtype, Stats) {
        let present = rows - self.nulls;
        if self.as_date.is_some() && self.date_ok && (self.numbers == 0 || self.min_number > MIN_STAMP) {
            return (Dtype::Datetime, Stats::Datetime);
        }
        if self.text > 0 || self.nested > 0 {
            return (Dtype::Object, Stats::Object);
        }
        if present > 0 && self.bools == present && self.nulls == 0 {
            return (Dtype::Bool, Stats::Bool);
        }
        let all_ints_as_read = self.floats == 0 && self.bools == 0 && self.numeric_text == 0;
        if self.nulls == 0 && present > 0 && self.big > 0 && self.negative == 0 && all_ints_as_read {
            return (Dtype::UInt64, Stats::UInt);
        }
        if self.nulls == 0 && present > 0 && self.big == 0 && self.integral + self.bools == present {
            return (Dtype::Int64, Stats::Int);
        }
        (Dtype::Float64, Stats::Float)
    }

    pub(super) fn finish(self, rows: u64) -> analysis::ColumnProfile {
        let (dtype, stats) = self.dtype(rows);
        match (stats, self.as_date) {
            (Stats::Datetime, Some(d)) => d.finish(self.name, dtype.as_str(), stats, rows),
            _ => self.plain.finish(self.name, dtype.as_str(), stats, rows),
        }
    }
}

/// A JSON value as a column of `dtype` holds it (see [`JsonColumn::push`] for the rules).
pub(super) fn typed_cell<'a>(v: &'a Json, dtype: Dtype, text: &'a str) -> Cell<'a> {
    let number = |v: &Json| -> Option<f64> {
        match v {
            Json::Number(n) => n.as_f64(),
            Json::Bool(b) => Some(*b as u8 as f64),
            Json::String(s) => numeric_text(s),
            _ => None,
        }
    };
    match (dtype, v) {
        (_, Json::Null) => Cell::Null,
        (Dtype::Object, _) => Cell::Text(text.as_bytes()),
        (Dtype::Bool, Json::Bool(b)) => Cell::Bool(*b),
        (Dtype::Int64, Json::Number(n)) if n.as_i64().is_some() => Cell::Int(n.as_i64().unwrap_or_default()),
        (Dtype::Int64, v) => number(v).map_or(Cell::Null, |x| Cell::Int(x as i64)),
        (Dtype::UInt64, Json::Number(n)) if n.as_u64().is_some() => Cell::UInt(n.as_u64().unwrap_or_default()),
        (Dtype::UInt64, v) => number(v).map_or(Cell::Null, |x| Cell::UInt(x as u64)),
        (Dtype::Float64, v) => number(v).filter(|x| !x.is_nan()).map_or(Cell::Null, Cell::Float),
        (Dtype::Datetime, Json::String(s)) => {
            analysis::parse_iso(s.as_bytes()).map_or(Cell::Null, |(ns, has_time)| Cell::Time { ns, has_time })
        }
        (Dtype::Datetime, Json::Number(n)) => {
            epoch_ns(n.as_f64().unwrap_or(f64::NAN)).map_or(Cell::Null, |ns| Cell::Time { ns, has_time: true })
        }
        _ => Cell::Null,
    }
}

/// A value as a preview shows it.
pub(super) fn preview_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::Bool(b) => Some(bool_text(*b).into()),
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

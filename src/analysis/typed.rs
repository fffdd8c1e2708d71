//! Statistics for values that arrive already typed (Parquet, Arrow and JSON readers in
//! `crate::formats`), on the same per-column state as the CSV engine, so a column's profile
//! reads the same whatever the file's format.

use super::column::{format_float, ColumnState};
use super::dtype::{bool_text, Dtype};
use super::infer::Value;
use super::iso::{self, IsoDate};
use super::sketch::Budget;
use super::ColumnProfile;

/// One typed value of a column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Nanoseconds since the epoch (UTC for zoned values); `has_time` false for a whole date.
    Time {
        ns: i64,
        has_time: bool,
    },
    /// Text, binary, or a nested value already written as JSON.
    Text(&'a [u8]),
}

impl Cell<'_> {
    /// The text a preview shows for the value, as pandas prints it (`None` when missing).
    pub fn text(&self) -> Option<String> {
        match *self {
            Cell::Null => None,
            Cell::Bool(b) => Some(bool_text(b).into()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::UInt(u) => Some(u.to_string()),
            Cell::Float(x) => Some(float_text(x)),
            Cell::Time { ns, has_time } => Some(timestamp_text(ns, !has_time)),
            Cell::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        }
    }
}

/// Which statistics a column gets: what its pandas dtype is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stats {
    /// Signed integers: integer min/max, mean, std, quartiles.
    Int,
    /// Unsigned integers.
    UInt,
    /// Floating point (also integers with missing values, as pandas makes them).
    Float,
    Bool,
    /// `datetime64`: ISO min/max and quartiles.
    Datetime,
    /// Everything else: counts and top values only.
    Object,
}

impl Stats {
    fn dtype(self) -> Dtype {
        match self {
            Stats::Int => Dtype::Int64,
            Stats::UInt => Dtype::UInt64,
            Stats::Float => Dtype::Float64,
            Stats::Bool => Dtype::Bool,
            Stats::Datetime => Dtype::Datetime,
            Stats::Object => Dtype::Object,
        }
    }
}

/// Per-column sizes for a table of `ncols` columns (bounded total memory, as for CSV).
#[derive(Debug, Clone)]
pub struct ColumnBudget(Budget);

impl ColumnBudget {
    pub fn for_columns(ncols: usize) -> ColumnBudget {
        ColumnBudget(Budget::for_columns(ncols))
    }
}

/// A column's running statistics over typed values.
pub struct TypedColumn {
    state: ColumnState,
    /// Scratch for the text a value is shown as.
    text: Vec<u8>,
    values: u64,
}

impl TypedColumn {
    /// `index` seeds the column's sample, as the CSV engine seeds it.
    pub fn new(budget: &ColumnBudget, index: usize) -> TypedColumn {
        TypedColumn {
            state: ColumnState::new(&budget.0, index as u64),
            text: Vec::new(),
            values: 0,
        }
    }

    /// Values pushed so far, missing ones included.
    pub fn len(&self) -> u64 {
        self.values
    }

    pub fn is_empty(&self) -> bool {
        self.values == 0
    }

    #[inline]
    pub fn push(&mut self, cell: Cell<'_>) {
        self.values += 1;
        let value = match cell {
            Cell::Null => Value::Missing,
            Cell::Bool(b) => Value::Bool(b),
            Cell::Int(i) => Value::Int(i),
            Cell::UInt(u) if u <= i64::MAX as u64 => Value::Int(u as i64),
            Cell::UInt(u) => Value::UInt(u),
            Cell::Float(x) => Value::Float(x),
            Cell::Time { ns, has_time } => Value::Date(IsoDate {
                ns,
                has_time,
                has_tz: false,
            }),
            Cell::Text(bytes) => {
                let (v, key) = (Value::Text, super::sketch::hash_bytes(bytes));
                self.state.touch(key);
                self.state.apply(v, key, bytes);
                return;
            }
        };
        // The key of a value that is not text does not depend on its text.
        let key = self.state.key(&value, &[]);
        self.state.touch(key);
        let text = &mut self.text;
        self.state.apply_typed(value, key, move || {
            text.clear();
            write_text(text, cell);
            let text: &Vec<u8> = text;
            text.as_slice()
        });
    }

    /// The column's profile, with `dtype` as pandas names it and `stats` saying which
    /// statistics that dtype has; `rows` is the table's row count.
    pub fn finish(self, name: String, dtype: &str, stats: Stats, rows: u64) -> ColumnProfile {
        let mut p = self
            .state
            .finish_as(name, rows, stats.dtype(), &|b| String::from_utf8_lossy(b).into_owned());
        p.dtype = dtype.to_string();
        p
    }

    /// Counts missing values not pushed one by one (a column absent from part of a file).
    pub fn push_nulls(&mut self, n: u64) {
        for _ in 0..n {
            self.push(Cell::Null);
        }
    }
}

/// The text a typed value is shown as (among the top values): Python's, as pandas prints it.
fn write_text(text: &mut Vec<u8>, cell: Cell<'_>) {
    use std::io::Write;
    match cell {
        Cell::Null => {}
        Cell::Bool(b) => text.extend_from_slice(bool_text(b).as_bytes()),
        Cell::Int(i) => {
            let _ = write!(text, "{i}");
        }
        Cell::UInt(u) => {
            let _ = write!(text, "{u}");
        }
        Cell::Float(x) => text.extend_from_slice(format_float(x).as_bytes()),
        Cell::Time { ns, has_time } => text.extend_from_slice(iso::format(ns, !has_time).as_bytes()),
        Cell::Text(bytes) => text.extend_from_slice(bytes),
    }
}

/// An ISO-8601 date or date-time as nanoseconds since the epoch (UTC when it has an offset),
/// with whether it has a time part, by the CSV engine's rules.
pub fn parse_iso(text: &[u8]) -> Option<(i64, bool)> {
    iso::parse(text).map(|d| (d.ns, d.has_time))
}

/// Python-like float text (`3.0`, `0.25`, `1e+20`), as the profile shows floats.
pub fn float_text(x: f64) -> String {
    format_float(x)
}

/// `YYYY-MM-DD HH:MM:SS[.f]` (or the date alone), as pandas prints a Timestamp.
pub fn timestamp_text(ns: i64, date_only: bool) -> String {
    iso::format(ns, date_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn column(cells: &[Cell<'_>], dtype: &str, stats: Stats) -> ColumnProfile {
        let mut c = TypedColumn::new(&ColumnBudget::for_columns(1), 0);
        for cell in cells {
            c.push(*cell);
        }
        c.finish("c".into(), dtype, stats, cells.len() as u64)
    }

    #[test]
    fn ints_with_a_null_as_pandas_float64() {
        let p = column(
            &[Cell::Int(1), Cell::Null, Cell::Int(3), Cell::Int(3)],
            "float64",
            Stats::Float,
        );
        assert_eq!(p.dtype, "float64");
        assert_eq!(p.null_count, 1);
        assert_eq!(p.min, Some(json!(1.0)));
        assert_eq!(p.max, Some(json!(3.0)));
        assert_eq!(p.top_values[0].value, "3.0");
        assert_eq!(p.unique_count, 2);
    }

    #[test]
    fn small_ints_keep_their_dtype_name() {
        let p = column(&[Cell::Int(5), Cell::Int(-2)], "int8", Stats::Int);
        assert_eq!(p.dtype, "int8");
        assert_eq!(p.min, Some(json!(-2)));
        assert_eq!(p.mean, Some(1.5));
    }

    #[test]
    fn timestamps_and_text() {
        let day = 86_400_000_000_000i64;
        let p = column(
            &[
                Cell::Time { ns: 0, has_time: true },
                Cell::Time {
                    ns: day,
                    has_time: true,
                },
            ],
            "datetime64[ns]",
            Stats::Datetime,
        );
        assert_eq!(p.min, Some(json!("1970-01-01 00:00:00")));
        assert_eq!(p.max, Some(json!("1970-01-02 00:00:00")));
        let p = column(
            &[Cell::Text(b"a"), Cell::Text(b"b"), Cell::Text(b"a")],
            "object",
            Stats::Object,
        );
        assert_eq!(p.top_values[0].value, "a");
        assert_eq!(p.top_values[0].count, 2);
        assert_eq!(p.min, None);
    }

    #[test]
    fn bools_show_as_python_prints_them() {
        let p = column(
            &[Cell::Bool(true), Cell::Bool(true), Cell::Bool(false)],
            "bool",
            Stats::Bool,
        );
        assert_eq!(p.top_values[0].value, "True");
        let p = column(&[Cell::Bool(true), Cell::Null], "object", Stats::Object);
        assert_eq!(p.top_values[0].value, "True");
        assert_eq!(p.null_count, 1);
    }
}

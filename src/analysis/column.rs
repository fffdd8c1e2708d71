//! One column's running state (type lattice, counts, numeric/date accumulators, sketches)
//! and its conversion into a [`ColumnProfile`] once the whole file has been read.

use super::dtype::{bool_text, Dtype};
use super::infer::{self, Lattice, Value};
use super::iso;
use super::sketch::{self, Budget, Distinct, Reservoir, TopK};
use super::{ColumnProfile, TopValue};
use serde_json::Value as Json;

/// Canonical keys make `1`, `01` and `1.0` one value in numeric columns (as pandas counts
/// them); text is keyed by its exact bytes.
const TAG_NUM: u64 = 0x6e75_6d00_0000_0000;
const TAG_UINT: u64 = 0x7569_6e74_0000_0000;
const TAG_FLOAT: u64 = 0x666c_6f61_7400_0000;
const TAG_BOOL: u64 = 0x626f_6f6c_0000_0000;
const TAG_DATE: u64 = 0x6461_7465_0000_0000;

#[inline]
fn key_int(i: i64) -> u64 {
    sketch::mix(TAG_NUM ^ i as u64)
}

#[inline]
fn key_float(x: f64) -> u64 {
    if x.fract() == 0.0 && x.abs() < 9.2e18 {
        key_int(x as i64)
    } else {
        sketch::mix(TAG_FLOAT ^ x.to_bits())
    }
}

/// Sums are taken relative to the first finite value, which keeps the variance accurate
/// without a division per value (Welford) for data far from zero.
#[derive(Default)]
struct NumAcc {
    count: u64,
    min_f: f64,
    max_f: f64,
    min_i: i128,
    max_i: i128,
    ints: u64,
    shift: Option<f64>,
    sum: f64,
    sumsq: f64,
    nonfinite: bool,
}

impl NumAcc {
    #[inline]
    fn push_f(&mut self, x: f64) {
        if self.count == 0 {
            self.min_f = x;
            self.max_f = x;
        } else {
            self.min_f = self.min_f.min(x);
            self.max_f = self.max_f.max(x);
        }
        self.count += 1;
        if !x.is_finite() {
            self.nonfinite = true;
            return;
        }
        let s = *self.shift.get_or_insert(x);
        let d = x - s;
        self.sum += d;
        self.sumsq += d * d;
    }

    #[inline]
    fn push_int(&mut self, i: i128) {
        if self.ints == 0 {
            self.min_i = i;
            self.max_i = i;
        } else {
            self.min_i = self.min_i.min(i);
            self.max_i = self.max_i.max(i);
        }
        self.ints += 1;
        self.push_f(i as f64);
    }

    fn mean_std(&self) -> (Option<f64>, Option<f64>) {
        if self.count == 0 || self.nonfinite {
            return (None, None);
        }
        let n = self.count as f64;
        let s = self.shift.unwrap_or(0.0);
        let mean = s + self.sum / n;
        let std = if self.count > 1 {
            let var = ((self.sumsq - self.sum * self.sum / n) / (n - 1.0)).max(0.0);
            Some(var.sqrt())
        } else {
            None
        };
        (Some(mean).filter(|m| m.is_finite()), std.filter(|s| s.is_finite()))
    }
}

#[derive(Default)]
struct DateAcc {
    count: u64,
    min: i64,
    max: i64,
    any_time: bool,
}

pub(super) struct ColumnState {
    lat: Lattice,
    distinct: Distinct,
    top: TopK,
    sample: Reservoir,
    num: NumAcc,
    date: DateAcc,
    /// Values written as numbers with a decimal comma (`7,5`, `1.234,5`).
    comma_numbers: u64,
    /// A value that is neither missing, an integer, nor such a number.
    not_comma_numbers: bool,
}

/// A number written with a decimal comma: `7,5`, `-0,25`, `1.234,56` (dots grouping thousands).
/// One pass over the bytes: it runs on every value of a column until one is not such a number.
fn is_decimal_comma(field: &[u8]) -> bool {
    let t = infer::trim(field);
    let t = match t.first() {
        Some(b'-' | b'+') => &t[1..],
        _ => t,
    };
    // Digits in the current group, whether a dot came before it, and the first group's length.
    let (mut run, mut grouped, mut lead) = (0usize, false, 0usize);
    for (i, &b) in t.iter().enumerate() {
        match b {
            b'0'..=b'9' => run += 1,
            b'.' => {
                if run == 0 || (grouped && run != 3) || (!grouped && run > 3) {
                    return false;
                }
                if !grouped {
                    lead = run;
                }
                grouped = true;
                run = 0;
            }
            b',' => {
                let fraction = &t[i + 1..];
                let whole = run > 0 && (!grouped || (run == 3 && lead <= 3));
                return whole && !fraction.is_empty() && fraction.iter().all(u8::is_ascii_digit);
            }
            _ => return false,
        }
    }
    false
}

impl ColumnState {
    pub(super) fn new(budget: &Budget, seed: u64) -> ColumnState {
        ColumnState {
            lat: Lattice::default(),
            distinct: Distinct::new(budget),
            top: TopK::default(),
            sample: Reservoir::new(budget.reservoir_cap, seed),
            num: NumAcc::default(),
            date: DateAcc::default(),
            comma_numbers: 0,
            not_comma_numbers: false,
        }
    }

    /// Stops looking for decimal commas (in a comma-separated file a comma is no decimal mark).
    pub(super) fn without_decimal_comma(mut self) -> ColumnState {
        self.not_comma_numbers = true;
        self
    }

    /// Every present value is an integer or a number with a decimal comma, and one is such a
    /// number: the column is numbers to a reader who takes `,` as the decimal mark.
    pub(super) fn decimal_comma(&self) -> bool {
        !self.not_comma_numbers && self.comma_numbers > 0
    }

    /// Classifies a field and computes its counting key; [`Self::touch`] then [`Self::apply`]
    /// finish the work. Splitting them lets the table loads of all columns of a record overlap.
    #[inline]
    pub(super) fn prepare(&self, field: &[u8]) -> (Value, u64) {
        let v = infer::classify(field);
        let key = self.key(&v, field);
        (v, key)
    }

    /// The counting key of a classified value (`field` is its text, hashed for text values).
    #[inline]
    pub(super) fn key(&self, v: &Value, field: &[u8]) -> u64 {
        match *v {
            Value::Missing => 0,
            Value::Text | Value::BigInt => sketch::hash_bytes(field),
            Value::Bool(b) => sketch::mix(TAG_BOOL ^ b as u64),
            Value::Int(i) => key_int(i),
            Value::UInt(u) => sketch::mix(TAG_UINT ^ u),
            Value::Float(x) => key_float(x),
            Value::Date(d) => sketch::mix(TAG_DATE ^ d.ns as u64),
        }
    }

    /// Starts loading the counter slot `apply` will update.
    #[inline]
    pub(super) fn touch(&self, key: u64) {
        self.distinct.touch(key);
    }

    #[cfg(test)]
    pub(super) fn push(&mut self, field: &[u8]) {
        let (v, key) = self.prepare(field);
        self.touch(key);
        self.apply(v, key, field);
    }

    #[inline]
    pub(super) fn apply(&mut self, v: Value, key: u64, field: &[u8]) {
        self.apply_shown(v, key, field, || field);
    }

    /// As [`ColumnState::apply`] for a value that is not text (`v` is never `Text`, so its
    /// text is needed only if the top values keep it): `shown` makes that text.
    #[inline]
    pub(super) fn apply_typed<D: AsRef<[u8]>>(&mut self, v: Value, key: u64, shown: impl FnOnce() -> D) {
        debug_assert!(!matches!(v, Value::Text), "text values come with their text");
        self.apply_shown(v, key, &[], shown);
    }

    #[inline]
    fn apply_shown<D: AsRef<[u8]>>(&mut self, v: Value, key: u64, field: &[u8], shown: impl FnOnce() -> D) {
        self.lat.observe(&v);
        if !self.not_comma_numbers {
            match v {
                Value::Missing | Value::Int(_) | Value::UInt(_) => {}
                Value::Text if is_decimal_comma(field) => self.comma_numbers += 1,
                _ => self.not_comma_numbers = true,
            }
        }
        // Numeric/date accumulators are useless once the column is certainly text.
        let typed = !self.lat.is_object_for_sure();
        match v {
            Value::Missing => return,
            Value::Text | Value::BigInt | Value::Bool(_) => {}
            Value::Int(i) => {
                if typed {
                    self.num.push_int(i as i128);
                    self.sample.push(i as f64);
                }
            }
            Value::UInt(u) => {
                if typed {
                    self.num.push_int(u as i128);
                    self.sample.push(u as f64);
                }
            }
            Value::Float(x) => {
                if typed {
                    self.num.push_f(x);
                    self.sample.push(x);
                }
            }
            Value::Date(d) => {
                if typed {
                    let acc = &mut self.date;
                    if acc.count == 0 {
                        acc.min = d.ns;
                        acc.max = d.ns;
                    } else {
                        acc.min = acc.min.min(d.ns);
                        acc.max = acc.max.max(d.ns);
                    }
                    acc.count += 1;
                    acc.any_time |= d.has_time;
                    self.sample.push(d.ns as f64);
                }
            }
        }
        match self.distinct.insert(key) {
            Some(count) => self.top.observe_counted(key, count, shown),
            None => self.top.observe_frozen(key),
        }
    }

    pub(super) fn finish(self, name: String, rows: u64, decode: &dyn Fn(&[u8]) -> String) -> ColumnProfile {
        let dtype = self.lat.dtype(rows);
        self.finish_as(name, rows, dtype, decode)
    }

    /// As [`Self::finish`], with the dtype decided by the caller (a typed file's schema).
    pub(super) fn finish_as(
        self,
        name: String,
        _rows: u64,
        dtype: Dtype,
        decode: &dyn Fn(&[u8]) -> String,
    ) -> ColumnProfile {
        let (unique_count, unique_est) = self.distinct.count(self.lat.present);
        let date_only = !self.date.any_time;
        let top_values = self
            .top
            .sorted()
            .into_iter()
            .take(5)
            .map(|e| TopValue {
                value: display(dtype, &e.display, date_only, decode),
                count: e.count,
            })
            .collect();
        let mut p = ColumnProfile {
            name,
            dtype: dtype.as_str().to_string(),
            null_count: self.lat.missing,
            unique_count,
            unique_count_is_estimate: unique_est,
            min: None,
            max: None,
            mean: None,
            std: None,
            quartiles: None,
            quartiles_are_estimate: false,
            top_values,
            top_values_are_estimate: self.top.frozen,
        };
        match dtype {
            Dtype::Int64 | Dtype::UInt64 | Dtype::Float64 if self.num.count > 0 => {
                if dtype == Dtype::Float64 {
                    p.min = Some(json_f64(self.num.min_f));
                    p.max = Some(json_f64(self.num.max_f));
                } else {
                    p.min = Some(json_int(self.num.min_i));
                    p.max = Some(json_int(self.num.max_i));
                }
                let (mean, std) = self.num.mean_std();
                p.mean = mean;
                p.std = std;
                p.quartiles = self
                    .sample
                    .quartiles()
                    .map(|q| q.iter().map(|x| json_f64(*x)).collect());
                p.quartiles_are_estimate = !self.sample.is_exact();
            }
            Dtype::Datetime if self.date.count > 0 => {
                p.min = Some(Json::String(iso::format(self.date.min, date_only)));
                p.max = Some(Json::String(iso::format(self.date.max, date_only)));
                p.quartiles = self.sample.quartiles().map(|q| {
                    q.iter()
                        .map(|x| Json::String(iso::format(x.round() as i64, date_only)))
                        .collect()
                });
                p.quartiles_are_estimate = !self.sample.is_exact();
            }
            _ => {}
        }
        p
    }
}

fn json_f64(x: f64) -> Json {
    match serde_json::Number::from_f64(x) {
        Some(n) => Json::Number(n),
        None if x > 0.0 => Json::String("inf".into()),
        None if x < 0.0 => Json::String("-inf".into()),
        None => Json::Null,
    }
}

fn json_int(i: i128) -> Json {
    if let Ok(v) = i64::try_from(i) {
        Json::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        Json::from(v)
    } else {
        Json::String(i.to_string())
    }
}

/// Shows a value the way the column's dtype prints it (`1.0` in a float column, `True` in a
/// bool column); text as decoded.
fn display(dtype: Dtype, raw: &[u8], date_only: bool, decode: &dyn Fn(&[u8]) -> String) -> String {
    let v = infer::classify(raw);
    match (dtype, v) {
        (Dtype::Int64 | Dtype::UInt64, Value::Int(i)) => i.to_string(),
        (Dtype::Int64 | Dtype::UInt64, Value::UInt(u)) => u.to_string(),
        (Dtype::Float64, Value::Int(i)) => format_float(i as f64),
        (Dtype::Float64, Value::UInt(u)) => format_float(u as f64),
        (Dtype::Float64, Value::Float(x)) => format_float(x),
        (Dtype::Bool, Value::Bool(b)) => bool_text(b).to_string(),
        (Dtype::Datetime, Value::Date(d)) => iso::format(d.ns, date_only),
        _ => decode(raw),
    }
}

/// Python-like float text: `3.0`, `0.25`, `1e+20`, `inf`.
pub(super) fn format_float(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x.is_nan() {
        return "nan".into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{x:e}");
        // Python writes the exponent with a sign and at least two digits.
        return match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        };
    }
    if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(values: &[&str]) -> ColumnProfile {
        let mut c = ColumnState::new(&Budget::for_columns(1), 0);
        for v in values {
            c.push(v.as_bytes());
        }
        c.finish("c".into(), values.len() as u64, &|b| {
            String::from_utf8_lossy(b).into_owned()
        })
    }

    #[test]
    fn int_stats() {
        let p = profile(&["3", "1", "2", "4", "2"]);
        assert_eq!(p.dtype, "int64");
        assert_eq!(p.min, Some(Json::from(1)));
        assert_eq!(p.max, Some(Json::from(4)));
        assert_eq!(p.mean, Some(2.4));
        let std = p.std.expect("std");
        assert!((std - 1.140175425).abs() < 1e-6, "{std}");
        assert_eq!(
            p.quartiles,
            Some(vec![Json::from(2.0), Json::from(2.0), Json::from(3.0)])
        );
        assert_eq!(p.unique_count, 4);
        assert_eq!(
            p.top_values[0],
            TopValue {
                value: "2".into(),
                count: 2
            }
        );
    }

    #[test]
    fn numbers_with_a_decimal_comma() {
        for t in ["7,5", "-0,25", "+3,0", " 12,5 ", "1.234,5", "12.345.678,90"] {
            assert!(is_decimal_comma(t.as_bytes()), "{t}");
        }
        for t in ["7,", ",5", "7.5", "1,234,5", "1234.567,8", "1.23,4", "a,5", "7,5x", "7"] {
            assert!(!is_decimal_comma(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn float_column_merges_spellings_and_counts_missing() {
        let p = profile(&["1", "1.0", "01", "", "2.5", "NA"]);
        assert_eq!(p.dtype, "float64");
        assert_eq!(p.null_count, 2);
        assert_eq!(p.unique_count, 2);
        assert_eq!(
            p.top_values[0],
            TopValue {
                value: "1.0".into(),
                count: 3
            }
        );
        assert_eq!(p.min, Some(Json::from(1.0)));
        assert_eq!(p.max, Some(Json::from(2.5)));
    }

    #[test]
    fn infinite_values_give_string_bounds_and_no_mean() {
        let p = profile(&["1", "inf", "-inf"]);
        assert_eq!(p.dtype, "float64");
        assert_eq!(p.min, Some(Json::from("-inf")));
        assert_eq!(p.max, Some(Json::from("inf")));
        assert_eq!(p.mean, None);
    }

    #[test]
    fn date_stats() {
        let p = profile(&["2024-01-03", "2024-01-01", "", "2024-01-02"]);
        assert_eq!(p.dtype, "datetime64[ns]");
        assert_eq!(p.min, Some(Json::from("2024-01-01")));
        assert_eq!(p.max, Some(Json::from("2024-01-03")));
        assert_eq!(
            p.quartiles.as_ref().map(|q| q[1].clone()),
            Some(Json::from("2024-01-02"))
        );
        assert_eq!(p.mean, None);
    }

    #[test]
    fn object_column_has_top_values_but_no_range() {
        let p = profile(&["b", "a", "b", "1"]);
        assert_eq!(p.dtype, "object");
        assert_eq!(p.min, None);
        assert_eq!(
            p.top_values[0],
            TopValue {
                value: "b".into(),
                count: 2
            }
        );
        assert_eq!(p.unique_count, 3);
    }

    #[test]
    fn bool_display() {
        let p = profile(&["true", "TRUE", "False"]);
        assert_eq!(p.dtype, "bool");
        assert_eq!(
            p.top_values[0],
            TopValue {
                value: "True".into(),
                count: 2
            }
        );
        assert_eq!(p.unique_count, 2);
    }

    #[test]
    fn high_cardinality_is_flagged_estimate() {
        let mut c = ColumnState::new(&Budget::for_columns(1000), 0);
        let n = 200_000u64;
        for i in 0..n {
            c.push(format!("v{i}").as_bytes());
            if i % 3 == 0 {
                c.push(b"common");
            }
        }
        let rows = n + n / 3 + 1;
        let p = c.finish("c".into(), rows, &|b| String::from_utf8_lossy(b).into_owned());
        assert!(p.unique_count_is_estimate);
        let err = (p.unique_count as f64 - n as f64).abs() / n as f64;
        assert!(err < 0.06, "{} vs {n}", p.unique_count);
        assert_eq!(p.top_values[0].value, "common");
        assert_eq!(p.top_values[0].count, n / 3 + 1);
    }

    #[test]
    fn float_text() {
        assert_eq!(format_float(3.0), "3.0");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(1e20), "1e+20");
        assert_eq!(format_float(1.5e-7), "1.5e-07");
    }
}

//! JSON datasets, streamed: `.json` (an array of records, or an object of columns as pandas
//! writes with `orient="columns"`) and `.jsonl`/`.ndjson` (one record per line). One record
//! (or one value) is in memory at a time. Dtypes follow pandas' `read_json` defaults, which
//! differ from `read_csv`'s: see [`JsonColumn::dtype`].

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::FormatError;
use crate::analysis::{self, Cell, ColumnBudget, Preview, Profile, Stats, TypedColumn};

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

/// A string pandas' `astype("float64")` accepts.
fn numeric_text(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok()
}

/// One column's statistics and what pandas needs to pick its dtype.
struct JsonColumn {
    name: String,
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
    kept: Option<Vec<Option<String>>>,
}

impl JsonColumn {
    fn new(name: String, budget: &ColumnBudget, index: usize) -> JsonColumn {
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

    fn len(&self) -> u64 {
        self.plain.len()
    }

    fn push_nulls(&mut self, n: u64) {
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

    fn push(&mut self, v: &Json) {
        if let Some(kept) = self.kept.as_mut() {
            kept.push(preview_text(v));
        }
        let number = |c: &mut JsonColumn, x: f64, cell: Cell<'_>| {
            c.numbers += 1;
            if x.fract() == 0.0 && x.is_finite() {
                c.integral += 1;
            }
            if x < 0.0 {
                c.negative += 1;
            }
            if x > i64::MAX as f64 {
                c.big += 1;
            }
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

    /// A number in a date-like column, as pandas converts it: epoch time in the coarsest of
    /// seconds, milliseconds, microseconds and nanoseconds that fits.
    fn push_date_number(&mut self, x: f64) {
        let Some(d) = self.as_date.as_mut() else { return };
        let ns = [1e9, 1e6, 1e3, 1.0]
            .iter()
            .map(|per| x * per)
            .find(|ns| ns.abs() < 9.2e18)
            .unwrap_or(f64::NAN);
        if ns.is_finite() {
            d.push(Cell::Time {
                ns: ns as i64,
                has_time: true,
            });
        } else {
            self.date_ok = false;
        }
    }

    /// pandas' `read_json` (pandas 2.x, `dtype=True`, `convert_dates=True`): date-like names
    /// whose every value is a date (or an epoch number past one year) become
    /// `datetime64[ns]`; a column of booleans alone (none missing) stays `bool`; any other column that can be
    /// cast to float64 (numbers, numbers as text, booleans, missing values) is `int64` when every
    /// value is whole and none is missing, else `float64`; the rest is `object`.
    fn dtype(&self, rows: u64) -> (&'static str, Stats) {
        let present = rows - self.nulls;
        if self.as_date.is_some() && self.date_ok && (self.numbers == 0 || self.min_number > MIN_STAMP) {
            return ("datetime64[ns]", Stats::Datetime);
        }
        if self.text > 0 || self.nested > 0 {
            return ("object", Stats::Object);
        }
        if present > 0 && self.bools == present && self.nulls == 0 {
            return ("bool", Stats::Bool);
        }
        let all_ints_as_read = self.floats == 0 && self.bools == 0 && self.numeric_text == 0;
        if self.nulls == 0 && present > 0 && self.big > 0 && self.negative == 0 && all_ints_as_read {
            return ("uint64", Stats::UInt);
        }
        if self.nulls == 0 && present > 0 && self.big == 0 && self.integral + self.bools == present {
            return ("int64", Stats::Int);
        }
        ("float64", Stats::Float)
    }

    fn finish(self, rows: u64) -> analysis::ColumnProfile {
        let (dtype, stats) = self.dtype(rows);
        match (stats, self.as_date) {
            (Stats::Datetime, Some(d)) => d.finish(self.name, dtype, stats, rows),
            _ => self.plain.finish(self.name, dtype, stats, rows),
        }
    }
}

/// The table being built: columns in order of first appearance, as pandas orders them.
struct Table {
    columns: Vec<JsonColumn>,
    index: std::collections::HashMap<String, usize>,
    budget: Option<ColumnBudget>,
    rows: u64,
    /// Previews: columns keep their values' text.
    keep_text: bool,
}

impl Table {
    fn new() -> Table {
        Table {
            columns: Vec::new(),
            index: std::collections::HashMap::new(),
            budget: None,
            rows: 0,
            keep_text: false,
        }
    }

    fn column(&mut self, name: &str, width_hint: usize) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        // Per-column memory is sized once, from the first record's width.
        let budget = self
            .budget
            .get_or_insert_with(|| ColumnBudget::for_columns(width_hint.max(8)))
            .clone();
        let i = self.columns.len();
        let mut column = JsonColumn::new(name.to_string(), &budget, i);
        if self.keep_text {
            column.kept = Some(Vec::new());
        }
        column.push_nulls(self.rows);
        self.columns.push(column);
        self.index.insert(name.to_string(), i);
        i
    }

    /// One record: an object's fields; an array's items are columns `0`, `1`, …; a scalar is column `0`.
    fn record(&mut self, record: Record) {
        match record {
            Record::Fields(fields) => {
                let width = fields.len();
                for (name, value) in fields {
                    let i = self.column(&name, width);
                    self.columns[i].push(&value);
                }
            }
            Record::Items(items) => {
                let width = items.len();
                for (k, value) in items.into_iter().enumerate() {
                    let i = self.column(&k.to_string(), width);
                    self.columns[i].push(&value);
                }
            }
            Record::Scalar(scalar) => {
                let i = self.column("0", 1);
                self.columns[i].push(&scalar);
            }
        }
        self.rows += 1;
        for c in &mut self.columns {
            let short = self.rows.saturating_sub(c.len());
            c.push_nulls(short);
        }
    }

    /// Columns of unequal length (an object of columns) are padded with missing values.
    fn finish(mut self) -> Profile {
        let rows = self
            .columns
            .iter()
            .map(JsonColumn::len)
            .max()
            .unwrap_or(0)
            .max(self.rows);
        for c in &mut self.columns {
            let short = rows - c.len();
            c.push_nulls(short);
        }
        let columns: Vec<_> = self.columns.into_iter().map(|c| c.finish(rows)).collect();
        Profile {
            encoding: "utf-8".into(),
            ..Profile::of_columns(rows, columns)
        }
    }
}

/// A record with its fields in file order (serde_json's own map sorts keys; pandas keeps
/// the order of first appearance).
enum Record {
    Fields(Vec<(String, Json)>),
    Items(Vec<Json>),
    Scalar(Json),
}

impl<'de> serde::Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Record, D::Error> {
        d.deserialize_any(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            fields.push((k, v));
        }
        Ok(Record::Fields(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Record, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Json>()? {
            items.push(v);
        }
        Ok(Record::Items(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Record, E> {
        Ok(Record::Scalar(Json::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Record, E> {
        Ok(Record::Scalar(Json::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Record, E> {
        Ok(Record::Scalar(Json::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Record, E> {
        Ok(Record::Scalar(Json::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Record, E> {
        Ok(Record::Scalar(Json::from(v)))
    }

    fn visit_unit<E>(self) -> Result<Record, E> {
        Ok(Record::Scalar(Json::Null))
    }
}

fn not_json(e: &serde_json::Error) -> FormatError {
    FormatError::Corrupt(format!("the file is not valid JSON: {e}"))
}

/// Streams the records of a `.json` file into `table`: an array of records, or an object
/// of columns (`{"col": {"row": value}}` or `{"col": [values]}`).
struct Document<'a> {
    table: &'a mut Table,
    /// Stop after this many rows (previews).
    limit: Option<u64>,
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records or an object of columns")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(record) = seq.next_element::<Record>()? {
            if self.limit.is_some_and(|l| self.table.rows >= l) {
                continue;
            }
            self.table.record(record);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            let width = map.size_hint().unwrap_or(8);
            let i = self.table.column(&name, width);
            map.next_value_seed(ColumnValues {
                column: &mut self.table.columns[i],
                limit: self.limit,
            })?;
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// One column of an object of columns: its values, in order, whatever the row labels.
struct ColumnValues<'a> {
    column: &'a mut JsonColumn,
    limit: Option<u64>,
}

impl ColumnValues<'_> {
    fn take(&mut self, v: &Json) {
        if self.limit.is_none_or(|l| self.column.len() < l) {
            self.column.push(v);
        }
    }
}

impl<'de> Visitor<'de> for ColumnValues<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column: an object of row labels to values, or an array of values")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            let v = map.next_value::<Json>()?;
            self.take(&v);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Json>()? {
            self.take(&v);
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for ColumnValues<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Reads a whole `.json` document into `table` (streamed, with bounded memory).
fn read_document(file: &File, table: &mut Table, limit: Option<u64>) -> Result<(), FormatError> {
    let reader = BufReader::with_capacity(1 << 16, super::rewound(file)?);
    let mut de = serde_json::Deserializer::from_reader(reader);
    Document { table, limit }
        .deserialize(&mut de)
        .map_err(|e| not_json(&e))?;
    de.end().map_err(|e| not_json(&e))
}

/// Reads `.jsonl` records into `table`, line by line.
fn read_lines(file: &File, table: &mut Table, limit: Option<u64>) -> Result<(), FormatError> {
    for_each_line(file, &mut |record| {
        table.record(record);
        limit.is_none_or(|l| table.rows < l)
    })
}

/// Hands each `.jsonl` record to `record` until it returns false.
fn for_each_line(file: &File, record: &mut dyn FnMut(Record) -> bool) -> Result<(), FormatError> {
    let mut reader = BufReader::with_capacity(1 << 16, super::rewound(file)?);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        number += 1;
        let text = line.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            continue;
        }
        let not_object =
            |why: &dyn fmt::Display| FormatError::Corrupt(format!("line {number} is not a JSON object: {why}"));
        match serde_json::from_str::<Record>(text) {
            Ok(r @ Record::Fields(_)) => {
                if !record(r) {
                    break;
                }
            }
            Ok(_) => return Err(not_object(&"it is not an object")),
            Err(e) => return Err(not_object(&e)),
        }
    }
    Ok(())
}

pub(super) fn profile(file: &File, lines: bool) -> Result<Profile, FormatError> {
    let mut table = Table::new();
    if lines {
        read_lines(file, &mut table, None)?;
    } else {
        read_document(file, &mut table, None)?;
    }
    Ok(table.finish())
}

/// The typed rows of the table `profile` describes: each record's values by column name,
/// converted to the column's dtype as pandas' `read_json` converts them. Records stream; an
/// object of columns is read whole first (it holds its rows column by column).
pub(super) fn read_rows(
    file: &File,
    lines: bool,
    profile: &Profile,
    row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
) -> Result<u64, FormatError> {
    let index: std::collections::HashMap<&str, usize> = profile
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let targets: Vec<(&str, bool)> = profile
        .columns
        .iter()
        .map(|c| (c.dtype.as_str(), is_date_like(&c.name)))
        .collect();
    let mut values: Vec<Json> = vec![Json::Null; targets.len()];
    let mut rows = 0u64;
    let mut emit = |values: &mut Vec<Json>| -> bool {
        let texts: Vec<String> = values.iter().map(|v| preview_text(v).unwrap_or_default()).collect();
        let cells: Vec<Cell<'_>> = values
            .iter()
            .zip(&targets)
            .zip(&texts)
            .map(|((v, (dtype, _)), text)| typed_cell(v, dtype, text))
            .collect();
        rows += 1;
        let more = row(&cells);
        values.iter_mut().for_each(|v| *v = Json::Null);
        more
    };
    let mut on_record = |record: Record| -> bool {
        match record {
            Record::Fields(fields) => {
                for (name, v) in fields {
                    if let Some(&i) = index.get(name.as_str()) {
                        values[i] = v;
                    }
                }
            }
            Record::Items(items) => {
                for (k, v) in items.into_iter().enumerate() {
                    if let Some(&i) = index.get(k.to_string().as_str()) {
                        values[i] = v;
                    }
                }
            }
            Record::Scalar(v) => {
                if let Some(&i) = index.get("0") {
                    values[i] = v;
                }
            }
        }
        emit(&mut values)
    };
    if lines {
        for_each_line(file, &mut on_record)?;
    } else {
        let reader = BufReader::with_capacity(1 << 16, super::rewound(file)?);
        let mut de = serde_json::Deserializer::from_reader(reader);
        let columns = RowsDocument {
            on_record: &mut on_record,
        }
        .deserialize(&mut de)
        .map_err(|e| not_json(&e))?;
        if let Some(columns) = columns {
            // An object of columns: row k holds each column's k-th value.
            let height = columns.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
            let mut columns: Vec<(Option<usize>, std::vec::IntoIter<Json>)> = columns
                .into_iter()
                .map(|(name, c)| (index.get(name.as_str()).copied(), c.into_iter()))
                .collect();
            for _ in 0..height {
                for (i, c) in columns.iter_mut() {
                    let v = c.next().unwrap_or(Json::Null);
                    if let Some(i) = i {
                        values[*i] = v;
                    }
                }
                if !emit(&mut values) {
                    break;
                }
            }
        }
    }
    Ok(rows)
}

/// A JSON value as a column of `dtype` holds it (see [`JsonColumn::push`] for the rules).
fn typed_cell<'a>(v: &'a Json, dtype: &str, text: &'a str) -> Cell<'a> {
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
        ("object", _) => Cell::Text(text.as_bytes()),
        ("bool", Json::Bool(b)) => Cell::Bool(*b),
        ("int64", Json::Number(n)) if n.as_i64().is_some() => Cell::Int(n.as_i64().unwrap_or_default()),
        ("int64", v) => number(v).map_or(Cell::Null, |x| Cell::Int(x as i64)),
        ("uint64", Json::Number(n)) if n.as_u64().is_some() => Cell::UInt(n.as_u64().unwrap_or_default()),
        ("uint64", v) => number(v).map_or(Cell::Null, |x| Cell::UInt(x as u64)),
        ("float64", v) => number(v).filter(|x| !x.is_nan()).map_or(Cell::Null, Cell::Float),
        ("datetime64[ns]", Json::String(s)) => {
            analysis::parse_iso(s.as_bytes()).map_or(Cell::Null, |(ns, has_time)| Cell::Time { ns, has_time })
        }
        ("datetime64[ns]", Json::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            // Epoch time in the coarsest unit that fits, as the profile read it.
            [1e9, 1e6, 1e3, 1.0]
                .iter()
                .map(|per| x * per)
                .find(|ns| ns.abs() < 9.2e18)
                .map_or(Cell::Null, |ns| Cell::Time {
                    ns: ns as i64,
                    has_time: true,
                })
        }
        _ => Cell::Null,
    }
}

/// A `.json` document for [`read_rows`]: records of an array go to `on_record` as they are
/// read; an object of columns is returned whole.
struct RowsDocument<'a> {
    on_record: &'a mut dyn FnMut(Record) -> bool,
}

type Columns = Vec<(String, Vec<Json>)>;

impl<'de> Visitor<'de> for RowsDocument<'_> {
    type Value = Option<Columns>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records or an object of columns")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut more = true;
        while let Some(record) = seq.next_element::<Record>()? {
            if more {
                more = (self.on_record)(record);
            }
        }
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut columns = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let values = map.next_value::<ColumnOfValues>()?;
            columns.push((name, values.0));
        }
        Ok(Some(columns))
    }
}

impl<'de> DeserializeSeed<'de> for RowsDocument<'_> {
    type Value = Option<Columns>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A column of an object of columns: `{"row": value}` or `[values]`, in order.
struct ColumnOfValues(Vec<Json>);

impl<'de> serde::Deserialize<'de> for ColumnOfValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut values = Vec::new();
        let mut column = JsonColumnSink(&mut values);
        d.deserialize_any(&mut column)?;
        Ok(ColumnOfValues(values))
    }
}

struct JsonColumnSink<'a>(&'a mut Vec<Json>);

impl<'de> Visitor<'de> for &mut JsonColumnSink<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column: an object of row labels to values, or an array of values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            self.0.push(map.next_value::<Json>()?);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Json>()? {
            self.0.push(v);
        }
        Ok(())
    }
}

/// Previews show each value's own text (`True` for booleans, nested values as JSON): a
/// preview reads only the first rows, so it cannot know the dtype the whole column gets.
pub(super) fn preview(file: &File, lines: bool, rows: usize) -> Result<Preview, FormatError> {
    let mut table = Table::new();
    table.keep_text = true;
    let limit = Some(rows as u64);
    if lines {
        read_lines(file, &mut table, limit)?;
    } else {
        read_document(file, &mut table, limit)?;
    }
    let height = table
        .columns
        .iter()
        .map(JsonColumn::len)
        .max()
        .unwrap_or(0)
        .min(rows as u64) as usize;
    let mut out = Preview {
        columns: table.columns.iter().map(|c| c.name.clone()).collect(),
        rows: vec![Vec::with_capacity(table.columns.len()); height],
    };
    for column in table.columns {
        let mut kept = column.kept.unwrap_or_default();
        kept.resize(height, None);
        for (row, text) in out.rows.iter_mut().zip(kept) {
            row.push(text);
        }
    }
    Ok(out)
}

/// A value as a preview shows it.
fn preview_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::Bool(b) => Some(if *b { "True" } else { "False" }.into()),
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dtypes(text: &str, lines: bool) -> Vec<(String, String, u64)> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let p = profile(&file, lines).unwrap();
        p.columns.into_iter().map(|c| (c.name, c.dtype, c.null_count)).collect()
    }

    fn d(name: &str, dtype: &str, nulls: u64) -> (String, String, u64) {
        (name.into(), dtype.into(), nulls)
    }

    /// Each expectation is what pandas 2.3.3 `read_json` gives for the same text.
    #[test]
    fn dtypes_follow_pandas_read_json() {
        assert_eq!(
            dtypes(r#"[{"a":1,"b":true},{"a":null,"b":null}]"#, false),
            [d("a", "float64", 1), d("b", "float64", 1)]
        );
        assert_eq!(
            dtypes(r#"[{"a":1,"b":"1"},{"a":"x","b":"2"}]"#, false),
            [d("a", "object", 0), d("b", "int64", 0)]
        );
        assert_eq!(
            dtypes(r#"[{"a":18446744073709551615},{"a":1}]"#, false),
            [d("a", "uint64", 0)]
        );
        assert_eq!(
            dtypes(r#"[{"a":1},{"b":2}]"#, false),
            [d("a", "float64", 1), d("b", "float64", 1)]
        );
        assert_eq!(
            dtypes(
                r#"[{"modified":1700000000000,"ts_x":5},{"modified":1700000001000,"ts_x":6}]"#,
                false
            ),
            [d("modified", "datetime64[ns]", 0), d("ts_x", "int64", 0)]
        );
        assert_eq!(
            dtypes(
                r#"[{"c":1.5,"w":1.0,"d":true,"h":"2024-01-01","date":"2024-01-01"},{"c":2,"w":2.0,"d":false,"h":"2024-01-02","date":"2024-01-02"}]"#,
                false
            ),
            [
                d("c", "float64", 0),
                d("w", "int64", 0),
                d("d", "bool", 0),
                d("h", "object", 0),
                d("date", "datetime64[ns]", 0)
            ]
        );
    }

    #[test]
    fn an_object_of_columns_and_json_lines() {
        assert_eq!(
            dtypes(r#"{"a":{"0":1,"1":2},"b":{"0":"x","1":null}}"#, false),
            [d("a", "int64", 0), d("b", "object", 1)]
        );
        assert_eq!(
            dtypes("{\"a\":1,\"n\":[1]}\n\n{\"a\":2.5,\"n\":{\"k\":1}}\n", true),
            [d("a", "float64", 0), d("n", "object", 0)]
        );
    }

    /// The typed rows of `text` as `read_rows` gives them, as debug text.
    fn typed_rows(text: &str, lines: bool) -> Vec<Vec<String>> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let profile = profile(&file, lines).unwrap();
        let mut out = Vec::new();
        let n = read_rows(&file, lines, &profile, &mut |cells| {
            out.push(cells.iter().map(|c| format!("{c:?}")).collect());
            true
        })
        .unwrap();
        assert_eq!(n, profile.row_count);
        out
    }

    #[test]
    fn rows_are_typed_as_the_profile_says_in_every_layout() {
        let records =
            r#"[{"a":1,"b":"x","created_at":"2024-01-02"},{"b":null,"a":2.5,"created_at":"2024-01-03T10:00:00"}]"#;
        let rows = typed_rows(records, false);
        assert_eq!(
            rows[0],
            [
                "Float(1.0)",
                "Text([120])",
                "Time { ns: 1704153600000000000, has_time: false }"
            ]
        );
        assert_eq!(rows[1][1], "Null");
        let columns = r#"{"a":{"0":1,"1":2},"b":{"0":"x","1":true}}"#;
        assert_eq!(
            typed_rows(columns, false),
            [["Int(1)", "Text([120])"], ["Int(2)", "Text([84, 114, 117, 101])"]]
        );
        let lines = "{\"a\":1,\"n\":[1]}\n\n{\"n\":{\"k\":1}}\n";
        assert_eq!(
            typed_rows(lines, true),
            [
                ["Float(1.0)", "Text([91, 49, 93])"],
                ["Null", "Text([123, 34, 107, 34, 58, 49, 125])"]
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"{\"a\":1}\n{\"a\":\n").unwrap();
        let e = profile(&file, true).unwrap_err().to_string();
        assert!(e.starts_with("line 2 is not a JSON object"), "{e}");
    }
}

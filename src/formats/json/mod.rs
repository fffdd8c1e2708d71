//! JSON datasets, streamed: `.json` (an array of records, or an object of columns as pandas
//! writes with `orient="columns"`) and `.jsonl`/`.ndjson` (one record per line). One record
//! (or one value) is in memory at a time. One serde visitor reads both layouts of a
//! document and hands what it finds to a [`Sink`]: the profile's table, or the typed rows.
//! Dtypes follow pandas' `read_json` defaults (`rules`), which differ from `read_csv`'s.

mod rules;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::{mismatch, rewound, FileFormat, FormatError, PreviewOptions};
use crate::analysis::{Cell, ColumnBudget, Dtype, Preview, Profile};
use rules::{preview_text, typed_cell, JsonColumn};

/// `.json` documents, or `.jsonl`/`.ndjson` lines.
pub(super) struct JsonFile {
    pub(super) lines: bool,
}

impl FileFormat for JsonFile {
    fn extensions(&self) -> &'static [&'static str] {
        if self.lines {
            &["jsonl", "ndjson"]
        } else {
            &["json"]
        }
    }

    fn key(&self) -> &'static str {
        self.extensions()[0]
    }

    fn name(&self) -> &'static str {
        if self.lines {
            "JSON lines"
        } else {
            "JSON"
        }
    }

    fn content_type(&self) -> &'static str {
        if self.lines {
            "application/x-ndjson"
        } else {
            "application/json"
        }
    }

    /// The first character after a byte-order mark and blanks: `[` or `{` for a document,
    /// `{` for lines.
    fn check_content(&self, head: &[u8], _file: &File) -> Result<(), FormatError> {
        let body = head.strip_prefix(b"\xef\xbb\xbf".as_slice()).unwrap_or(head);
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            None => Err(FormatError::Corrupt("the file holds no JSON value".into())),
            Some(b'{') => Ok(()),
            Some(b'[') if !self.lines => Ok(()),
            Some(_) if self.lines => Err(mismatch(
                self,
                "each line of JSON lines is an object starting with {",
                head,
            )),
            Some(_) => Err(mismatch(self, "JSON data starts with [ or {", head)),
        }
    }

    fn profile(&self, file: &File) -> Result<Profile, FormatError> {
        let mut table = Table::new(None, false);
        self.read(file, &mut table)?;
        Ok(table.finish())
    }

    /// Previews show each value's own text (`True` for booleans, nested values as JSON): a
    /// preview reads only the first rows, so it cannot know the dtype the whole column gets.
    fn preview(&self, file: &File, options: &PreviewOptions<'_>) -> Result<Preview, FormatError> {
        let rows = options.rows;
        let mut table = Table::new(Some(rows as u64), true);
        self.read(file, &mut table)?;
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

    /// The typed rows of the table `profile` describes: each record's values by column name,
    /// converted to the column's dtype as pandas' `read_json` converts them. Records stream; an
    /// object of columns is read whole first (it holds its rows column by column).
    fn read_rows(
        &self,
        file: &File,
        profile: &Profile,
        row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
    ) -> Result<u64, FormatError> {
        let mut rows = Rows {
            index: profile
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.as_str(), i))
                .collect(),
            dtypes: profile.columns.iter().map(|c| Dtype::of(&c.dtype)).collect(),
            values: vec![Json::Null; profile.columns.len()],
            count: 0,
            stopped: false,
            row,
            columns: Vec::new(),
        };
        self.read(file, &mut rows)?;
        rows.emit_columns();
        Ok(rows.count)
    }
}

impl JsonFile {
    /// Reads the whole file into `sink`, in either layout.
    fn read(&self, file: &File, sink: &mut dyn Sink) -> Result<(), FormatError> {
        if self.lines {
            return read_lines(file, sink);
        }
        let reader = BufReader::with_capacity(1 << 16, rewound(file)?);
        let mut de = serde_json::Deserializer::from_reader(reader);
        Document(sink).deserialize(&mut de).map_err(|e| not_json(&e))?;
        de.end().map_err(|e| not_json(&e))
    }
}

/// What a reader does with what a file holds: records as they are read (an array of
/// records, or lines), or the values of an object of columns, column by column.
trait Sink {
    /// Takes no more records; the rest of a document is still read, so damage is reported.
    fn full(&self) -> bool;
    fn record(&mut self, record: Record);
    /// The next column of an object of columns; `width` is how many columns it may have.
    fn column(&mut self, name: String, width: usize);
    /// The next value of the current column.
    fn value(&mut self, value: Json);
}

/// A record with its fields in file order (serde_json's own map sorts keys; pandas keeps
/// the order of first appearance).
enum Record {
    Fields(Vec<(String, Json)>),
    Items(Vec<Json>),
    Scalar(Json),
}

impl Record {
    /// Its fields by column name: an object's own; an array's items are columns `0`, `1`, …;
    /// a scalar is column `0`.
    fn into_fields(self) -> Vec<(String, Json)> {
        match self {
            Record::Fields(fields) => fields,
            Record::Items(items) => items.into_iter().enumerate().map(|(k, v)| (k.to_string(), v)).collect(),
            Record::Scalar(v) => vec![("0".to_string(), v)],
        }
    }
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

/// A `.json` document, streamed into a sink: an array of records, or an object of columns
/// (`{"col": {"row": value}}` or `{"col": [values]}`).
struct Document<'a>(&'a mut dyn Sink);

impl<'de> Visitor<'de> for Document<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records or an object of columns")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(record) = seq.next_element::<Record>()? {
            if !self.0.full() {
                self.0.record(record);
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            self.0.column(name, map.size_hint().unwrap_or(8));
            map.next_value_seed(ColumnValues(&mut *self.0))?;
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
struct ColumnValues<'a>(&'a mut dyn Sink);

impl<'de> Visitor<'de> for ColumnValues<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column: an object of row labels to values, or an array of values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            self.0.value(map.next_value::<Json>()?);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Json>()? {
            self.0.value(v);
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

/// Hands each `.jsonl` record to `sink` until it is full.
fn read_lines(file: &File, sink: &mut dyn Sink) -> Result<(), FormatError> {
    let mut reader = BufReader::with_capacity(1 << 16, rewound(file)?);
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
                sink.record(r);
                if sink.full() {
                    break;
                }
            }
            Ok(_) => return Err(not_object(&"it is not an object")),
            Err(e) => return Err(not_object(&e)),
        }
    }
    Ok(())
}

/// The table a profile or preview is built from: columns in order of first appearance, as
/// pandas orders them.
struct Table {
    columns: Vec<JsonColumn>,
    index: HashMap<String, usize>,
    budget: Option<ColumnBudget>,
    rows: u64,
    /// Previews: stop after this many rows.
    limit: Option<u64>,
    /// Previews: columns keep their values' text.
    keep_text: bool,
    /// The column an object of columns is giving values to.
    current: usize,
}

impl Table {
    fn new(limit: Option<u64>, keep_text: bool) -> Table {
        Table {
            columns: Vec::new(),
            index: HashMap::new(),
            budget: None,
            rows: 0,
            limit,
            keep_text,
            current: 0,
        }
    }

    fn column_index(&mut self, name: &str, width_hint: usize) -> usize {
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

impl Sink for Table {
    fn full(&self) -> bool {
        self.limit.is_some_and(|l| self.rows >= l)
    }

    fn record(&mut self, record: Record) {
        let fields = record.into_fields();
        let width = fields.len();
        for (name, value) in fields {
            let i = self.column_index(&name, width);
            self.columns[i].push(&value);
        }
        self.rows += 1;
        for c in &mut self.columns {
            let short = self.rows.saturating_sub(c.len());
            c.push_nulls(short);
        }
    }

    fn column(&mut self, name: String, width: usize) {
        self.current = self.column_index(&name, width);
    }

    fn value(&mut self, value: Json) {
        let column = &mut self.columns[self.current];
        if self.limit.is_none_or(|l| column.len() < l) {
            column.push(&value);
        }
    }
}

/// The typed rows handed to a caller: records as they are read; an object of columns once
/// it has been read whole.
struct Rows<'a> {
    /// The profile's columns by name, and their dtypes.
    index: HashMap<&'a str, usize>,
    dtypes: Vec<Dtype>,
    /// The row being filled.
    values: Vec<Json>,
    count: u64,
    stopped: bool,
    row: &'a mut dyn FnMut(&[Cell<'_>]) -> bool,
    /// An object of columns: each column's profile index and values.
    columns: Vec<(Option<usize>, Vec<Json>)>,
}

impl Rows<'_> {
    /// Hands out the row in `values` and clears it.
    fn emit(&mut self) {
        let texts: Vec<String> = self
            .values
            .iter()
            .map(|v| preview_text(v).unwrap_or_default())
            .collect();
        let cells: Vec<Cell<'_>> = self
            .values
            .iter()
            .zip(&self.dtypes)
            .zip(&texts)
            .map(|((v, dtype), text)| typed_cell(v, *dtype, text))
            .collect();
        self.count += 1;
        self.stopped = !(self.row)(&cells);
        self.values.iter_mut().for_each(|v| *v = Json::Null);
    }

    /// An object of columns: row k holds each column's k-th value.
    fn emit_columns(&mut self) {
        let height = self.columns.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let mut columns: Vec<_> = std::mem::take(&mut self.columns)
            .into_iter()
            .map(|(i, c)| (i, c.into_iter()))
            .collect();
        for _ in 0..height {
            if self.stopped {
                break;
            }
            for (i, c) in columns.iter_mut() {
                let v = c.next().unwrap_or(Json::Null);
                if let Some(i) = i {
                    self.values[*i] = v;
                }
            }
            self.emit();
        }
    }
}

impl Sink for Rows<'_> {
    fn full(&self) -> bool {
        self.stopped
    }

    fn record(&mut self, record: Record) {
        for (name, v) in record.into_fields() {
            if let Some(&i) = self.index.get(name.as_str()) {
                self.values[i] = v;
            }
        }
        self.emit();
    }

    fn column(&mut self, name: String, _width: usize) {
        let i = self.index.get(name.as_str()).copied();
        self.columns.push((i, Vec::new()));
    }

    fn value(&mut self, value: Json) {
        if let Some((_, values)) = self.columns.last_mut() {
            values.push(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dtypes(text: &str, lines: bool) -> Vec<(String, String, u64)> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let p = JsonFile { lines }.profile(&file).unwrap();
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
        let profile = JsonFile { lines }.profile(&file).unwrap();
        let mut out = Vec::new();
        let n = JsonFile { lines }
            .read_rows(&file, &profile, &mut |cells| {
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
        let e = JsonFile { lines: true }.profile(&file).unwrap_err().to_string();
        assert!(e.starts_with("line 2 is not a JSON object"), "{e}");
    }
}

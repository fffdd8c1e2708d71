//! Arrow arrays (a Parquet row group's columns, an IPC record batch) as typed cells: the
//! dtype pandas gives each Arrow type (`pyarrow`'s `to_pandas`, as `read_parquet` and
//! `read_feather` use it), the values fed to the shared column statistics, and the preview text.

use polars_arrow::array::{
    Array, BinaryArray, BinaryViewArray, BooleanArray, DictionaryArray, FixedSizeBinaryArray, FixedSizeListArray,
    ListArray, MapArray, PrimitiveArray, StructArray, Utf8Array, Utf8ViewArray,
};
use polars_arrow::datatypes::{ArrowDataType, ArrowSchema, TimeUnit};
use serde_json::Value as Json;

use crate::analysis::{self, Cell, ColumnBudget, Dtype, Profile, Stats, TypedColumn};

/// What pandas wrote about its own frame in the file's metadata (key `pandas`): the columns
/// that were its index (restored as the index, so not columns) and the extension dtypes it
/// restores (`Int64`, `boolean`, `string`, …) instead of what the Arrow type alone gives.
#[derive(Debug, Default)]
pub(super) struct PandasMeta {
    index: std::collections::HashSet<String>,
    dtypes: std::collections::HashMap<String, String>,
}

impl PandasMeta {
    pub(super) fn parse(json: Option<&str>) -> PandasMeta {
        let mut meta = PandasMeta::default();
        let Some(value) = json.and_then(|j| serde_json::from_str::<Json>(j).ok()) else {
            return meta;
        };
        for index in value["index_columns"].as_array().into_iter().flatten() {
            if let Some(name) = index.as_str() {
                meta.index.insert(name.to_string());
            }
        }
        for column in value["columns"].as_array().into_iter().flatten() {
            let (Some(field), Some(numpy)) = (
                column["field_name"].as_str().or(column["name"].as_str()),
                column["numpy_type"].as_str(),
            ) else {
                continue;
            };
            // pandas' nullable extension types are named with a capital (`Int64`, `Float32`)
            // or are `boolean` and `string`; numpy's own names come back from the Arrow type.
            if numpy.starts_with(|c: char| c.is_ascii_uppercase()) || numpy == "boolean" || numpy == "string" {
                meta.dtypes.insert(field.to_string(), numpy.to_string());
            }
        }
        meta
    }

    fn is_index(&self, name: &str) -> bool {
        self.index.contains(name)
    }

    /// The extension dtype pandas restores for `name`, with the statistics it has.
    fn dtype(&self, name: &str) -> Option<(String, Stats)> {
        let dtype = self.dtypes.get(name)?;
        let stats = match dtype.as_str() {
            d if d.starts_with("Int") => Stats::Int,
            d if d.starts_with("UInt") => Stats::UInt,
            d if d.starts_with("Float") => Stats::Float,
            "boolean" => Stats::Bool,
            _ => Stats::Object,
        };
        Some((dtype.clone(), stats))
    }
}

/// How a column's values are read and which pandas dtype they make.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// Signed integers, named as numpy names them (`int8` … `int64`).
    Int(&'static str),
    /// Unsigned integers (`uint8` … `uint64`).
    UInt(&'static str),
    /// `float16`, `float32`, `float64`.
    Float(&'static str),
    Bool,
    /// `datetime64[unit]` or `datetime64[unit, tz]`: nanoseconds per stored unit, and the name.
    Timestamp(i64, String),
    /// Strings and binary: `object`.
    Text,
    /// Dictionary-encoded values: `category`.
    Category,
    /// Lists, structs and maps: `object`, each value written as JSON.
    Nested,
    /// Dates, times, decimals, durations and the rest: shown as Arrow prints them; the name
    /// is pandas' (`object`, or `timedelta64[unit]` for durations).
    Display(String),
}

impl Kind {
    pub(super) fn of(dtype: &ArrowDataType) -> Kind {
        use ArrowDataType as D;
        match dtype.to_storage() {
            D::Int8 => Kind::Int("int8"),
            D::Int16 => Kind::Int("int16"),
            D::Int32 => Kind::Int("int32"),
            D::Int64 => Kind::Int(Dtype::Int64.as_str()),
            D::UInt8 => Kind::UInt("uint8"),
            D::UInt16 => Kind::UInt("uint16"),
            D::UInt32 => Kind::UInt("uint32"),
            D::UInt64 => Kind::UInt(Dtype::UInt64.as_str()),
            D::Float16 => Kind::Float("float16"),
            D::Float32 => Kind::Float("float32"),
            D::Float64 => Kind::Float(Dtype::Float64.as_str()),
            D::Boolean => Kind::Bool,
            D::Timestamp(unit, tz) => {
                let (per, name) = unit_of(*unit);
                let name = match tz {
                    Some(tz) => format!("datetime64[{name}, {tz}]"),
                    None => format!("datetime64[{name}]"),
                };
                Kind::Timestamp(per, name)
            }
            D::Utf8
            | D::LargeUtf8
            | D::Utf8View
            | D::Binary
            | D::LargeBinary
            | D::BinaryView
            | D::FixedSizeBinary(_) => Kind::Text,
            D::Dictionary(..) => Kind::Category,
            D::List(_) | D::LargeList(_) | D::FixedSizeList(..) | D::Struct(_) | D::Map(..) => Kind::Nested,
            D::Duration(unit) => Kind::Display(format!("timedelta64[{}]", unit_of(*unit).1)),
            _ => Kind::Display(Dtype::Object.to_string()),
        }
    }

    /// pandas' dtype once the column's missing values are known: integers with a missing
    /// value become `float64`, booleans `object` (what `to_pandas` does without extension types).
    fn dtype(&self, nulls: u64) -> (String, Stats) {
        match self {
            Kind::Int(name) if nulls == 0 => (name.to_string(), Stats::Int),
            Kind::UInt(name) if nulls == 0 => (name.to_string(), Stats::UInt),
            Kind::Int(_) | Kind::UInt(_) => (Dtype::Float64.to_string(), Stats::Float),
            Kind::Float(name) => (name.to_string(), Stats::Float),
            Kind::Bool if nulls == 0 => (Dtype::Bool.to_string(), Stats::Bool),
            Kind::Bool => (Dtype::Object.to_string(), Stats::Object),
            Kind::Timestamp(_, name) => (name.clone(), Stats::Datetime),
            Kind::Text | Kind::Nested => (Dtype::Object.to_string(), Stats::Object),
            Kind::Category => ("category".into(), Stats::Object),
            Kind::Display(name) => (name.clone(), Stats::Object),
        }
    }
}

fn unit_of(unit: TimeUnit) -> (i64, &'static str) {
    match unit {
        TimeUnit::Second => (1_000_000_000, "s"),
        TimeUnit::Millisecond => (1_000_000, "ms"),
        TimeUnit::Microsecond => (1_000, "us"),
        TimeUnit::Nanosecond => (1, "ns"),
    }
}

fn downcast<T: 'static>(array: &dyn Array) -> &T {
    array
        .as_any()
        .downcast_ref::<T>()
        .expect("the array's Rust type follows its Arrow data type")
}

macro_rules! each {
    ($array:expr, $ty:ty, $f:expr, |$v:ident| $cell:expr) => {
        for v in downcast::<$ty>($array).iter() {
            match v {
                Some($v) => $f($cell),
                None => $f(Cell::Null),
            }
        }
    };
}

/// Calls `f` with every value of `array`, in order.
pub(super) fn for_each_cell(array: &dyn Array, kind: &Kind, f: &mut dyn FnMut(Cell<'_>)) {
    use ArrowDataType as D;
    let dtype = array.dtype().to_storage().clone();
    match (kind, &dtype) {
        (Kind::Int(_), D::Int8) => each!(array, PrimitiveArray<i8>, f, |v| Cell::Int(*v as i64)),
        (Kind::Int(_), D::Int16) => each!(array, PrimitiveArray<i16>, f, |v| Cell::Int(*v as i64)),
        (Kind::Int(_), D::Int32) => each!(array, PrimitiveArray<i32>, f, |v| Cell::Int(*v as i64)),
        (Kind::Int(_), D::Int64) => each!(array, PrimitiveArray<i64>, f, |v| Cell::Int(*v)),
        (Kind::UInt(_), D::UInt8) => each!(array, PrimitiveArray<u8>, f, |v| Cell::Int(*v as i64)),
        (Kind::UInt(_), D::UInt16) => each!(array, PrimitiveArray<u16>, f, |v| Cell::Int(*v as i64)),
        (Kind::UInt(_), D::UInt32) => each!(array, PrimitiveArray<u32>, f, |v| Cell::Int(*v as i64)),
        (Kind::UInt(_), D::UInt64) => each!(array, PrimitiveArray<u64>, f, |v| Cell::UInt(*v)),
        (Kind::Float(_), D::Float32) => each!(array, PrimitiveArray<f32>, f, |v| float(*v as f64)),
        (Kind::Float(_), D::Float64) => each!(array, PrimitiveArray<f64>, f, |v| float(*v)),
        (Kind::Bool, _) => each!(array, BooleanArray, f, |v| Cell::Bool(v)),
        (Kind::Timestamp(per, _), _) => {
            let per = *per;
            each!(array, PrimitiveArray<i64>, f, |v| Cell::Time {
                ns: v.saturating_mul(per),
                has_time: true
            })
        }
        (Kind::Text, D::Utf8View) => each!(array, Utf8ViewArray, f, |v| Cell::Text(v.as_bytes())),
        (Kind::Text, D::BinaryView) => each!(array, BinaryViewArray, f, |v| Cell::Text(v)),
        (Kind::Text, D::Utf8) => each!(array, Utf8Array<i32>, f, |v| Cell::Text(v.as_bytes())),
        (Kind::Text, D::LargeUtf8) => each!(array, Utf8Array<i64>, f, |v| Cell::Text(v.as_bytes())),
        (Kind::Text, D::Binary) => each!(array, BinaryArray<i32>, f, |v| Cell::Text(v)),
        (Kind::Text, D::LargeBinary) => each!(array, BinaryArray<i64>, f, |v| Cell::Text(v)),
        (Kind::Text, D::FixedSizeBinary(_)) => each!(array, FixedSizeBinaryArray, f, |v| Cell::Text(v)),
        (Kind::Category, D::Dictionary(key, ..)) => {
            polars_arrow::match_integer_type!(key, |$K| {
                let dict = downcast::<DictionaryArray<$K>>(array);
                let texts = texts(dict.values().as_ref());
                for k in dict.keys_iter() {
                    match k.and_then(|k| texts.get(k)).and_then(|t| t.as_deref()) {
                        Some(t) => f(Cell::Text(t.as_bytes())),
                        None => f(Cell::Null),
                    }
                }
            })
        }
        (Kind::Nested, _) => {
            let mut text = String::new();
            for i in 0..array.len() {
                if array.is_null(i) {
                    f(Cell::Null);
                } else {
                    text.clear();
                    text.push_str(&json_at(array, i).to_string());
                    f(Cell::Text(text.as_bytes()));
                }
            }
        }
        _ => {
            // Float16, dates, times, decimals, durations: Arrow's own text.
            let texts = texts(array);
            for t in &texts {
                match (kind, t) {
                    (_, None) => f(Cell::Null),
                    (Kind::Float(_), Some(t)) => f(float(t.parse().unwrap_or(f64::NAN))),
                    (_, Some(t)) => f(Cell::Text(t.as_bytes())),
                }
            }
        }
    }
}

/// NaN is a missing value to pandas (`isna`), as in CSV.
fn float(x: f64) -> Cell<'static> {
    if x.is_nan() {
        Cell::Null
    } else {
        Cell::Float(x)
    }
}

/// Every value of `array` as Arrow prints it (`None` where missing).
fn texts(array: &dyn Array) -> Vec<Option<String>> {
    let display = polars_arrow::array::get_value_display::<String>(array, "");
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return None;
            }
            if let Some(s) = array.as_any().downcast_ref::<Utf8ViewArray>() {
                return Some(s.value(i).to_string());
            }
            let mut s = String::new();
            display(&mut s, i).ok()?;
            Some(s)
        })
        .collect()
}

/// One value as JSON: lists as arrays, structs and maps with text keys as objects, numbers
/// and booleans as themselves, everything else as its text.
pub(super) fn json_at(array: &dyn Array, i: usize) -> Json {
    use ArrowDataType as D;
    if array.is_null(i) {
        return Json::Null;
    }
    let dtype = array.dtype().to_storage().clone();
    match &dtype {
        D::Boolean => Json::Bool(downcast::<BooleanArray>(array).value(i)),
        D::Int8 => Json::from(downcast::<PrimitiveArray<i8>>(array).value(i)),
        D::Int16 => Json::from(downcast::<PrimitiveArray<i16>>(array).value(i)),
        D::Int32 => Json::from(downcast::<PrimitiveArray<i32>>(array).value(i)),
        D::Int64 => Json::from(downcast::<PrimitiveArray<i64>>(array).value(i)),
        D::UInt8 => Json::from(downcast::<PrimitiveArray<u8>>(array).value(i)),
        D::UInt16 => Json::from(downcast::<PrimitiveArray<u16>>(array).value(i)),
        D::UInt32 => Json::from(downcast::<PrimitiveArray<u32>>(array).value(i)),
        D::UInt64 => Json::from(downcast::<PrimitiveArray<u64>>(array).value(i)),
        D::Float32 => json_float(downcast::<PrimitiveArray<f32>>(array).value(i) as f64),
        D::Float64 => json_float(downcast::<PrimitiveArray<f64>>(array).value(i)),
        D::Utf8View => Json::from(downcast::<Utf8ViewArray>(array).value(i)),
        D::LargeUtf8 => Json::from(downcast::<Utf8Array<i64>>(array).value(i)),
        D::Utf8 => Json::from(downcast::<Utf8Array<i32>>(array).value(i)),
        D::List(_) => list(downcast::<ListArray<i32>>(array).value(i)),
        D::LargeList(_) => list(downcast::<ListArray<i64>>(array).value(i)),
        D::FixedSizeList(..) => list(downcast::<FixedSizeListArray>(array).value(i)),
        D::Struct(fields) => {
            let values = downcast::<StructArray>(array).values();
            Json::Object(
                fields
                    .iter()
                    .zip(values)
                    .map(|(field, values)| (field.name.to_string(), json_at(values.as_ref(), i)))
                    .collect(),
            )
        }
        D::Map(..) => entries(downcast::<MapArray>(array).value(i)),
        _ => {
            let mut s = String::new();
            let display = polars_arrow::array::get_value_display::<String>(array, "");
            match display(&mut s, i) {
                Ok(()) => Json::String(s),
                Err(_) => Json::Null,
            }
        }
    }
}

fn json_float(x: f64) -> Json {
    serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
}

fn list(values: Box<dyn Array>) -> Json {
    Json::Array((0..values.len()).map(|j| json_at(values.as_ref(), j)).collect())
}

/// A map's entries (a struct array of key and value): an object when every key is text.
fn entries(pairs: Box<dyn Array>) -> Json {
    let Some(pairs) = pairs.as_any().downcast_ref::<StructArray>() else {
        return list(pairs);
    };
    let [keys, values] = pairs.values() else {
        return Json::Null;
    };
    let keys: Vec<Json> = (0..keys.len()).map(|j| json_at(keys.as_ref(), j)).collect();
    if keys.iter().all(Json::is_string) {
        Json::Object(
            keys.into_iter()
                .enumerate()
                .map(|(j, k)| (k.as_str().unwrap_or_default().to_string(), json_at(values.as_ref(), j)))
                .collect(),
        )
    } else {
        Json::Array(
            keys.into_iter()
                .enumerate()
                .map(|(j, k)| Json::Array(vec![k, json_at(values.as_ref(), j)]))
                .collect(),
        )
    }
}

/// One column's statistics, fed its values in file order.
pub(super) struct ColumnFill<'a> {
    /// The column's place in the schema.
    pub index: usize,
    stats: &'a mut TypedColumn,
    nulls: &'a mut u64,
    kind: &'a Kind,
}

impl ColumnFill<'_> {
    /// Adds the column's next values.
    pub(super) fn push(&mut self, array: &dyn Array) {
        let (stats, nulls) = (&mut *self.stats, &mut *self.nulls);
        for_each_cell(array, self.kind, &mut |cell| {
            if cell == Cell::Null {
                *nulls += 1;
            }
            stats.push(cell);
        });
    }

    /// `rows` rows where the file has no values of this column (a Parquet row group
    /// without it): missing.
    pub(super) fn missing(&mut self, rows: u64) {
        *self.nulls += rows;
        self.stats.push_nulls(rows);
    }
}

/// The statistics of a whole table, fed one column's arrays at a time.
pub(super) struct TableStats {
    names: Vec<String>,
    kinds: Vec<Kind>,
    columns: Vec<TypedColumn>,
    nulls: Vec<u64>,
    rows: u64,
    pandas: PandasMeta,
}

impl TableStats {
    pub(super) fn new(schema: &ArrowSchema, pandas: PandasMeta) -> TableStats {
        let budget = ColumnBudget::for_columns(schema.len());
        TableStats {
            names: schema.iter_names().map(|n| n.to_string()).collect(),
            kinds: schema.iter_values().map(|f| Kind::of(&f.dtype)).collect(),
            columns: (0..schema.len()).map(|i| TypedColumn::new(&budget, i)).collect(),
            nulls: vec![0; schema.len()],
            rows: 0,
            pandas,
        }
    }

    /// Whether a column is part of the table (not a pandas index stored as a column).
    pub(super) fn wants(&self, column: usize) -> bool {
        !self.pandas.is_index(&self.names[column])
    }

    /// Adds the next values of one column.
    pub(super) fn push(&mut self, column: usize, array: &dyn Array) {
        if !self.wants(column) {
            return;
        }
        ColumnFill {
            index: column,
            stats: &mut self.columns[column],
            nulls: &mut self.nulls[column],
            kind: &self.kinds[column],
        }
        .push(array);
    }

    /// Each wanted column's statistics apart, to be filled column by column (on threads
    /// of their own: columns are independent); then [`TableStats::rows_done`] with the
    /// table's rows.
    pub(super) fn column_fills(&mut self) -> Vec<ColumnFill<'_>> {
        let pandas = &self.pandas;
        self.columns
            .iter_mut()
            .zip(&mut self.nulls)
            .zip(self.kinds.iter().zip(&self.names))
            .enumerate()
            .filter(|(_, (_, (_, name)))| !pandas.is_index(name))
            .map(|(index, ((stats, nulls), (kind, _)))| ColumnFill {
                index,
                stats,
                nulls,
                kind,
            })
            .collect()
    }

    /// A piece of the file whose rows are all pushed (a row group, a record batch).
    pub(super) fn rows_done(&mut self, rows: u64) {
        self.rows += rows;
        // A column a piece did not hold (a Parquet row group without it) is missing there.
        for (column, nulls) in self.columns.iter_mut().zip(&mut self.nulls) {
            let short = self.rows.saturating_sub(column.len());
            *nulls += short;
            column.push_nulls(short);
        }
    }

    pub(super) fn finish(self, chunks: u64) -> Profile {
        let rows = self.rows;
        let pandas = &self.pandas;
        let columns = self
            .columns
            .into_iter()
            .zip(self.names)
            .zip(self.kinds.iter().zip(&self.nulls))
            .filter(|((_, name), _)| !pandas.is_index(name))
            .map(|((column, name), (kind, nulls))| {
                let (dtype, stats) = pandas.dtype(&name).unwrap_or_else(|| kind.dtype(*nulls));
                column.finish(name, &dtype, stats, rows)
            })
            .collect::<Vec<_>>();
        Profile {
            chunks: Some(chunks),
            ..Profile::of_columns(rows, columns)
        }
    }
}

/// The first rows of a table as preview text, collected from arrays.
pub(super) struct PreviewRows {
    columns: Vec<String>,
    kinds: Vec<Kind>,
    rows: Vec<Vec<Option<String>>>,
    max: usize,
    /// The schema's positions of the columns shown (pandas index columns left out).
    shown: Vec<usize>,
}

impl PreviewRows {
    pub(super) fn new(schema: &ArrowSchema, pandas: &PandasMeta, max: usize) -> PreviewRows {
        let shown: Vec<usize> = schema
            .iter_names()
            .enumerate()
            .filter(|(_, n)| !pandas.is_index(n))
            .map(|(i, _)| i)
            .collect();
        let fields: Vec<_> = schema.iter_values().collect();
        PreviewRows {
            columns: shown.iter().map(|&i| fields[i].name.to_string()).collect(),
            kinds: shown.iter().map(|&i| Kind::of(&fields[i].dtype)).collect(),
            rows: Vec::new(),
            max,
            shown,
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.rows.len() >= self.max
    }

    /// Adds the rows of one piece, given as one array per column (all of one length).
    pub(super) fn push(&mut self, arrays: &[Box<dyn Array>]) {
        let start = self.rows.len();
        let take = arrays.first().map_or(0, |a| a.len()).min(self.max - start);
        self.rows.extend((0..take).map(|_| vec![None; self.columns.len()]));
        for (c, &at) in self.shown.iter().enumerate() {
            let Some(array) = arrays.get(at) else { continue };
            let sliced = array.sliced(0, take.min(array.len()));
            let mut r = start;
            for_each_cell(sliced.as_ref(), &self.kinds[c], &mut |cell| {
                self.rows[r][c] = cell.text();
                r += 1;
            });
        }
    }

    pub(super) fn finish(self) -> analysis::Preview {
        analysis::Preview {
            columns: self.columns,
            rows: self.rows,
        }
    }
}

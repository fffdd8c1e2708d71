//! What a query gives back: an answer of JSON rows, or the whole result written out as CSV,
//! Parquet, JSON lines, Arrow IPC or an xlsx workbook, one batch of rows at a time.

use std::io::Write;

use polars::prelude::*;
use serde::Serialize;
use serde_json::Value as Json;

use crate::analysis::Dtype;

/// `{"columns", "rows", "row_count", "truncated", "elapsed_ms"}`.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub columns: Vec<AnswerColumn>,
    pub rows: Vec<Vec<Json>>,
    /// Rows in `rows`.
    pub row_count: usize,
    /// Whether the result had more rows than the limit.
    pub truncated: bool,
    pub elapsed_ms: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct AnswerColumn {
    pub name: String,
    /// pandas' name for the column's type, as the summary names dtypes.
    pub dtype: String,
}

/// A format a whole result (or a whole file) can be downloaded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    Parquet,
    Jsonl,
    Arrow,
    Xlsx,
}

impl OutputFormat {
    /// From `?format=`; `None` for a name that is not one.
    pub fn from_name(name: &str) -> Option<OutputFormat> {
        Some(match name.to_ascii_lowercase().as_str() {
            "csv" => OutputFormat::Csv,
            "parquet" => OutputFormat::Parquet,
            "jsonl" | "ndjson" => OutputFormat::Jsonl,
            "arrow" | "ipc" | "feather" => OutputFormat::Arrow,
            "xlsx" => OutputFormat::Xlsx,
            _ => return None,
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Csv => "csv",
            OutputFormat::Parquet => "parquet",
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Arrow => "arrow",
            OutputFormat::Xlsx => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Csv => "text/csv; charset=utf-8",
            OutputFormat::Parquet => "application/vnd.apache.parquet",
            OutputFormat::Jsonl => "application/x-ndjson",
            OutputFormat::Arrow => "application/vnd.apache.arrow.file",
            OutputFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// pandas' dtype name for a polars type (what `to_pandas()` gives).
pub fn pandas_dtype(dtype: &DataType) -> String {
    match dtype {
        DataType::Boolean => Dtype::Bool.to_string(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => Dtype::Int64.to_string(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => Dtype::UInt64.to_string(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => Dtype::Float64.to_string(),
        DataType::Datetime(unit, tz) => {
            let unit = match unit {
                TimeUnit::Nanoseconds => "ns",
                TimeUnit::Microseconds => "us",
                TimeUnit::Milliseconds => "ms",
            };
            match tz {
                Some(tz) => format!("datetime64[{unit}, {tz}]"),
                None => format!("datetime64[{unit}]"),
            }
        }
        DataType::Date => "datetime64[ms]".into(),
        DataType::Duration(_) => "timedelta64[ns]".into(),
        _ => Dtype::Object.to_string(),
    }
}

const NS_PER_DAY: i64 = 86_400_000_000_000;

/// One value as JSON: numbers, booleans, null, text; dates and times as ISO text.
pub fn json_value(value: &AnyValue<'_>) -> Json {
    let time = |v: i64, unit: &TimeUnit| -> Json {
        let ns = match unit {
            TimeUnit::Nanoseconds => v,
            TimeUnit::Microseconds => v.saturating_mul(1_000),
            TimeUnit::Milliseconds => v.saturating_mul(1_000_000),
        };
        Json::String(crate::analysis::timestamp_text(ns, false))
    };
    match value {
        AnyValue::Null => Json::Null,
        AnyValue::Boolean(b) => Json::Bool(*b),
        AnyValue::String(s) => Json::String(s.to_string()),
        AnyValue::StringOwned(s) => Json::String(s.to_string()),
        AnyValue::Int8(v) => (*v).into(),
        AnyValue::Int16(v) => (*v).into(),
        AnyValue::Int32(v) => (*v).into(),
        AnyValue::Int64(v) => (*v).into(),
        AnyValue::UInt8(v) => (*v).into(),
        AnyValue::UInt16(v) => (*v).into(),
        AnyValue::UInt32(v) => (*v).into(),
        AnyValue::UInt64(v) => (*v).into(),
        AnyValue::Float32(v) => float(*v as f64),
        AnyValue::Float64(v) => float(*v),
        AnyValue::Date(days) => Json::String(crate::analysis::timestamp_text(*days as i64 * NS_PER_DAY, true)),
        AnyValue::Datetime(v, unit, _) => time(*v, unit),
        AnyValue::DatetimeOwned(v, unit, _) => time(*v, unit),
        AnyValue::Time(ns) => {
            let text = crate::analysis::timestamp_text(*ns, false);
            Json::String(text.split_once(' ').map_or(text.clone(), |(_, t)| t.to_string()))
        }
        other => Json::String(other.to_string()),
    }
}

/// JSON has no NaN or infinity: those are null.
fn float(x: f64) -> Json {
    serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
}

/// Writes a result batch by batch in one format.
pub trait ResultWriter {
    fn write(&mut self, batch: &DataFrame) -> PolarsResult<()>;
    /// Ends the output (footers); nothing is written after.
    fn finish(self: Box<Self>) -> PolarsResult<()>;
}

/// A writer of `format` with the result's `schema`, into `out`.
pub fn writer<'a, W: Write + Send + 'a>(
    format: OutputFormat,
    schema: &Schema,
    out: W,
) -> PolarsResult<Box<dyn ResultWriter + Send + 'a>> {
    Ok(match format {
        OutputFormat::Csv => Box::new(
            CsvWriter::new(out)
                .include_header(true)
                // As the summary writes times (pandas' Timestamp), fraction only when there is one.
                .with_datetime_format(Some(PlSmallStr::from_static("%Y-%m-%d %H:%M:%S%.f")))
                .batched(schema)?,
        ),
        OutputFormat::Parquet => Box::new(
            ParquetWriter::new(out)
                .with_compression(ParquetCompression::Snappy)
                .batched(schema)?,
        ),
        OutputFormat::Arrow => Box::new(ArrowWriter::new(out, schema)?),
        OutputFormat::Jsonl => Box::new(JsonLines { out }),
        OutputFormat::Xlsx => Box::new(Xlsx::new(out, schema)?),
    })
}

impl<W: Write> ResultWriter for polars::io::csv::write::BatchedWriter<W> {
    fn write(&mut self, batch: &DataFrame) -> PolarsResult<()> {
        self.write_batch(batch)
    }
    fn finish(mut self: Box<Self>) -> PolarsResult<()> {
        polars::io::csv::write::BatchedWriter::finish(&mut self)
    }
}

impl<W: Write> ResultWriter for polars::io::parquet::write::BatchedWriter<W> {
    fn write(&mut self, batch: &DataFrame) -> PolarsResult<()> {
        self.write_batch(batch)
    }
    fn finish(self: Box<Self>) -> PolarsResult<()> {
        polars::io::parquet::write::BatchedWriter::finish(&self).map(|_| ())
    }
}

/// An Arrow IPC file, with the oldest compatible layout (large strings, not views) so every
/// Arrow reader opens it.
struct ArrowWriter<W: Write> {
    writer: polars_arrow::io::ipc::write::FileWriter<W>,
}

/// Large strings and plain arrays rather than views: every Arrow reader opens those.
fn arrow_compat() -> CompatLevel {
    CompatLevel::oldest()
}

impl<W: Write> ArrowWriter<W> {
    fn new(out: W, schema: &Schema) -> PolarsResult<ArrowWriter<W>> {
        let schema = schema.to_arrow(arrow_compat());
        let writer = polars_arrow::io::ipc::write::FileWriter::try_new(
            out,
            std::sync::Arc::new(schema),
            None,
            polars_arrow::io::ipc::write::WriteOptions { compression: None },
        )?;
        Ok(ArrowWriter { writer })
    }
}

impl<W: Write> ResultWriter for ArrowWriter<W> {
    fn write(&mut self, batch: &DataFrame) -> PolarsResult<()> {
        let mut batch = batch.clone();
        batch.align_chunks();
        for chunk in batch.iter_chunks(arrow_compat(), true) {
            self.writer.write(&chunk, None)?;
        }
        Ok(())
    }
    fn finish(mut self: Box<Self>) -> PolarsResult<()> {
        self.writer.finish()
    }
}

/// One JSON object per row, keyed by column name.
struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> ResultWriter for JsonLines<W> {
    fn write(&mut self, batch: &DataFrame) -> PolarsResult<()> {
        // Keys in column order (a JSON map would sort them).
        let keys: Vec<Vec<u8>> = batch
            .get_column_names()
            .iter()
            .map(|n| serde_json::to_vec(n.as_str()))
            .collect::<Result<_, _>>()
            .map_err(to_polars)?;
        let columns = batch.columns();
        let mut line = Vec::with_capacity(256);
        for r in 0..batch.height() {
            line.clear();
            line.push(b'{');
            for (i, (key, column)) in keys.iter().zip(columns).enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                line.extend_from_slice(key);
                line.push(b':');
                serde_json::to_writer(&mut line, &json_value(&column.get(r)?)).map_err(to_polars)?;
            }
            line.extend_from_slice(b"}\n");
            self.out.write_all(&line)?;
        }
        Ok(())
    }
    fn finish(mut self: Box<Self>) -> PolarsResult<()> {
        Ok(self.out.flush()?)
    }
}

fn to_polars(e: impl std::fmt::Display) -> PolarsError {
    PolarsError::ComputeError(e.to_string().into())
}

/// Most rows a worksheet holds, the header included.
pub const XLSX_MAX_ROWS: u64 = 1_048_576;

/// An xlsx workbook of one sheet, built row by row in constant memory (the writer keeps rows
/// in a temporary file), then copied out whole: a zip's directory comes last.
struct Xlsx<W: Write> {
    out: W,
    workbook: rust_xlsxwriter::Workbook,
    row: u32,
    date: rust_xlsxwriter::Format,
}

impl<W: Write> Xlsx<W> {
    fn new(out: W, schema: &Schema) -> PolarsResult<Xlsx<W>> {
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let sheet = workbook.add_worksheet_with_constant_memory().map_err(to_polars)?;
        for (c, name) in schema.iter_names().enumerate() {
            sheet.write_string(0, c as u16, name.as_str()).map_err(to_polars)?;
        }
        Ok(Xlsx {
            out,
            workbook,
            row: 1,
            date: rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
        })
    }
}

/// Days from Excel's epoch (1899-12-30) to 1970-01-01.
const EXCEL_UNIX_EPOCH: f64 = 25_569.0;

impl<W: Write> ResultWriter for Xlsx<W> {
    fn write(&mut self, batch: &DataFrame) -> PolarsResult<()> {
        if self.row as u64 + batch.height() as u64 > XLSX_MAX_ROWS {
            return Err(to_polars(format!(
                "an xlsx sheet holds at most {} rows; this result has more",
                XLSX_MAX_ROWS - 1
            )));
        }
        let sheet = self.workbook.worksheet_from_index(0).map_err(to_polars)?;
        for r in 0..batch.height() {
            for (c, column) in batch.columns().iter().enumerate() {
                let (row, col) = (self.row, c as u16);
                let written = match column.get(r)? {
                    AnyValue::Null => continue,
                    AnyValue::Boolean(b) => sheet.write_boolean(row, col, b),
                    AnyValue::String(s) => sheet.write_string(row, col, s),
                    AnyValue::Datetime(v, unit, _) | AnyValue::DatetimeOwned(v, unit, _) => {
                        let per_day = match unit {
                            TimeUnit::Nanoseconds => 86_400e9,
                            TimeUnit::Microseconds => 86_400e6,
                            TimeUnit::Milliseconds => 86_400e3,
                        };
                        sheet.write_number_with_format(row, col, v as f64 / per_day + EXCEL_UNIX_EPOCH, &self.date)
                    }
                    AnyValue::Date(days) => {
                        sheet.write_number_with_format(row, col, days as f64 + EXCEL_UNIX_EPOCH, &self.date)
                    }
                    v if v.is_primitive_numeric() => match v.extract::<f64>() {
                        Some(x) if x.is_finite() => sheet.write_number(row, col, x),
                        _ => continue,
                    },
                    other => sheet.write_string(row, col, other.to_string()),
                };
                written.map_err(to_polars)?;
            }
            self.row += 1;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> PolarsResult<()> {
        let mut file = tempfile::tempfile()?;
        self.workbook.save_to_writer(&mut file).map_err(to_polars)?;
        use std::io::Seek;
        file.rewind()?;
        std::io::copy(&mut file, &mut self.out)?;
        Ok(self.out.flush()?)
    }
}

/// The answer's rows so far: at most `limit`, then only whether there were more.
pub struct Rows {
    pub columns: Vec<AnswerColumn>,
    pub rows: Vec<Vec<Json>>,
    pub truncated: bool,
    limit: usize,
}

impl Rows {
    pub fn new(schema: &Schema, limit: usize) -> Rows {
        Rows {
            columns: schema
                .iter()
                .map(|(name, dtype)| AnswerColumn {
                    name: name.to_string(),
                    dtype: pandas_dtype(dtype),
                })
                .collect(),
            rows: Vec::new(),
            truncated: false,
            limit,
        }
    }

    /// Forgets the rows taken (the query is run again).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.truncated = false;
    }

    /// Takes rows of `batch` up to the limit; false once it is reached and more came.
    pub fn take(&mut self, batch: &DataFrame) -> PolarsResult<bool> {
        let columns = batch.columns();
        for r in 0..batch.height() {
            if self.rows.len() == self.limit {
                self.truncated = true;
                return Ok(false);
            }
            let row = columns
                .iter()
                .map(|c| c.get(r).map(|v| json_value(&v)))
                .collect::<PolarsResult<Vec<Json>>>()?;
            self.rows.push(row);
        }
        Ok(true)
    }
}

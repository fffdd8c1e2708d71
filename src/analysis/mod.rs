//! Dataset analysis engine: one bounded-memory pass over a CSV/TSV file producing a pandas-compatible [`Profile`].
//!
//! Layout: `reader` (encoding, delimiter and title-line sniffing, record-size guard), `header` (pandas column
//! naming), `infer` (value classification and the dtype lattice), `iso` (ISO-8601 dates),
//! `sketch` (bounded distinct counter, top values, reservoir), `column` (per-column state and
//! its final statistics), `scan` (the record loop: one thread tokenizes, all cores analyze
//! columns, results identical to a single-threaded pass), `summary` (Markdown rendering).

mod column;
mod header;
mod infer;
mod iso;
mod preview;
mod reader;
mod scan;
mod sketch;
mod summary;
mod typed;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

/// The stored file's format, decided by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
}

impl Format {
    /// `"csv"` or `"tsv"`, case-insensitive, without the dot.
    pub fn from_extension(ext: &str) -> Option<Format> {
        let ext = ext.strip_prefix('.').unwrap_or(ext);
        if ext.eq_ignore_ascii_case("csv") {
            Some(Format::Csv)
        } else if ext.eq_ignore_ascii_case("tsv") {
            Some(Format::Tsv)
        } else {
            None
        }
    }
}

/// Everything the service knows about a dataset's shape and content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub row_count: u64,
    pub column_count: u64,
    /// `"utf-8"`, `"utf-8-sig"` (UTF-8 with BOM), `"windows-1252"`, `"utf-16-le"` or `"utf-16-be"`;
    /// absent for binary formats (Parquet, Arrow, workbooks).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encoding: String,
    /// `","`, `";"`, `"\t"` or `"|"`; absent for formats that are not delimited text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub delimiter: String,
    /// 1-based line of the header. Above 1 when blank lines or title lines (a spreadsheet's
    /// caption, a portal's notes) precede it; those are not read as data. 0 when the file has
    /// no header row (its first line is numbers and dates like the rows below): the columns
    /// are then named `0`, `1`, … as pandas' `header=None` names them.
    #[serde(default = "first_line")]
    pub header_line: u64,
    /// Lines at the end of the table (notes such as "Source: …", and lines of delimiters
    /// between them) that were not read as rows.
    #[serde(default)]
    pub footer_lines: u64,
    pub columns: Vec<ColumnProfile>,
    /// Workbooks: the sheet that is the table (the first that holds data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// Workbooks: every sheet with its shape, in workbook order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sheets: Vec<SheetShape>,
    /// Parquet: row groups; Arrow IPC: record batches (how the file was read, piece by piece).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u64>,
}

/// One sheet of a workbook: its data rows (below the header) and columns; zero for an empty sheet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SheetShape {
    pub name: String,
    pub rows: u64,
    pub columns: u64,
}

/// Profiles stored before `header_line` existed had their header on the first line.
fn first_line() -> u64 {
    1
}

/// One of a column's most frequent values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopValue {
    pub value: String,
    pub count: u64,
}

/// Per-column statistics. Optional fields are present only where they fit the dtype.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnProfile {
    /// pandas naming: duplicates `a`, `a.1`; empty header cell `Unnamed: N`.
    pub name: String,
    /// `int64`, `uint64`, `float64`, `bool`, `datetime64[ns]` or `object`.
    pub dtype: String,
    pub null_count: u64,
    /// Distinct non-missing values (exact unless `unique_count_is_estimate`).
    pub unique_count: u64,
    pub unique_count_is_estimate: bool,
    /// Numbers as JSON numbers (`"inf"`/`"-inf"` as strings); dates as ISO strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
    /// Numeric columns only; absent when not finite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Sample standard deviation (ddof = 1, as pandas); needs two values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// `[q1, median, q3]` with linear interpolation (pandas' default); numbers or ISO strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quartiles: Option<Vec<serde_json::Value>>,
    /// True when quartiles come from a bounded sample rather than every value.
    #[serde(default)]
    pub quartiles_are_estimate: bool,
    /// The five most frequent non-missing values, most frequent first.
    #[serde(default)]
    pub top_values: Vec<TopValue>,
    /// True when a value that only became frequent late in a very diverse column may be missing
    /// from `top_values` (the counts shown are still exact).
    #[serde(default)]
    pub top_values_are_estimate: bool,
}

/// Why a file could not be analyzed. Messages are shown to API users.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("the file is empty")]
    Empty,
    /// `message` names the line, e.g. "line 7 has 5 fields but the header has 3".
    #[error("{message}")]
    Malformed { line: u64, message: String },
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),
}

pub use preview::{preview_reader, Preview};
pub use typed::{float_text, parse_iso, timestamp_text, Cell, ColumnBudget, Stats, TypedColumn};

/// Profile a stored file.
pub fn profile_path(path: &Path, format: Format) -> Result<Profile, AnalysisError> {
    let file = std::fs::File::open(path)?;
    profile_reader(file, format)
}

/// Profile any byte stream in one pass with bounded memory, on every core (the calling
/// thread reads; column work is shared with helper threads, see `scan`).
pub fn profile_reader<R: Read>(reader: R, format: Format) -> Result<Profile, AnalysisError> {
    profile_with(reader, format, scan::Config::for_this_machine())
}

fn profile_with<R: Read>(reader: R, format: Format, cfg: scan::Config) -> Result<Profile, AnalysisError> {
    let mut input = reader::open(reader, format)?;
    let mut record = csv::ByteRecord::new();

    let header_line = input.read_header(&mut record)?.ok_or(AnalysisError::Empty)?;
    let utf8 = reader::is_utf8(&record);
    let header_raw: Vec<Vec<u8>> = if input.headerless() {
        (0..record.len()).map(|i| i.to_string().into_bytes()).collect()
    } else {
        record.iter().map(|f| f.to_vec()).collect()
    };
    let ncols = header_raw.len();
    let budget = sketch::Budget::for_columns(ncols);
    let mut columns: Vec<column::ColumnState> = (0..ncols)
        .map(|i| column::ColumnState::new(&budget, i as u64))
        .collect();

    let scan::Scanned { rows, utf8 } = scan::scan(&mut input, &mut columns, utf8, cfg)?;

    let encoding = if let Some(label) = input.utf16_label() {
        label
    } else if !utf8 {
        "windows-1252"
    } else if input.bom() {
        "utf-8-sig"
    } else {
        "utf-8"
    };
    let decode = |b: &[u8]| -> String {
        if utf8 {
            String::from_utf8_lossy(b).into_owned()
        } else {
            encoding_rs::WINDOWS_1252.decode_without_bom_handling(b).0.into_owned()
        }
    };
    let names = header::pandas_names(header_raw.iter().map(|b| decode(b)).collect());
    let columns: Vec<ColumnProfile> = columns
        .into_iter()
        .zip(names)
        .map(|(state, name)| state.finish(name, rows, &decode))
        .collect();
    Ok(Profile {
        row_count: rows,
        column_count: ncols as u64,
        encoding: encoding.to_string(),
        delimiter: (input.delimiter() as char).to_string(),
        header_line,
        footer_lines: input.footer_lines(),
        columns,
        sheet: None,
        sheets: Vec::new(),
        chunks: None,
    })
}

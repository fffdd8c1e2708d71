//! Dataset analysis engine: one bounded-memory pass over delimited text producing a
//! pandas-compatible [`Profile`]: CSV/TSV files, and workbook sheets as tab-separated text
//! (`crate::formats`); the per-column statistics of the readers that type values themselves
//! (`typed`: Parquet, Arrow, JSON).
//!
//! Layout: `tokenize` (records and fields), `reader` (encoding, delimiter and title-line sniffing, where a table ends, record-size guard),
//! `table` (is the first line a header: the type rule), `header` (pandas column naming), `infer` (value classification and the dtype lattice), `dtype` (pandas' dtypes as a type), `iso` (ISO-8601 dates),
//! `sketch` (bounded distinct counter, top values, reservoir), `column` (per-column state and
//! its final statistics), `rows` (the profiled table's rows, typed, for queries), `scan` (the record loop: one thread tokenizes, all cores analyze
//! columns, results identical to a single-threaded pass), `summary` (Markdown rendering).

mod column;
mod dtype;
mod header;
mod infer;
mod iso;
mod preview;
mod reader;
mod rows;
mod scan;
mod sketch;
mod summary;
mod table;
mod tokenize;
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
    /// Lines at the end of the table (notes such as "Source: …", lines of delimiters between
    /// them, or a run of lines of delimiters only) that were not read as rows.
    #[serde(default)]
    pub footer_lines: u64,
    /// Non-blank lines that belong to no table: title, note or metadata lines above the first
    /// table, and lines wider than their table inside it (set aside, not read as rows).
    #[serde(default)]
    pub skipped_lines: u64,
    /// The file's other tables, when it holds several one below another (the profile describes
    /// the largest, by rows × columns), in file order.
    #[serde(default)]
    pub other_tables: Vec<TableExtent>,
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
    /// A line of group labels right above the header (`run-a,,run-b,` over `X,Y,X,Y`, a
    /// spreadsheet's merged cells): kept as context, neither the header nor a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_groups: Option<HeaderGroups>,
    /// Numbers written with a decimal comma (`7,5`) in a file not separated by commas. pandas'
    /// default reading keeps them as text (`object`, as the dtypes say); these columns are
    /// numbers when read with `decimal=","`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal: Option<DecimalMark>,
}

/// Group labels over the header's columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeaderGroups {
    /// 1-based line of the group labels (the line right above `header_line`).
    pub line: u64,
    /// Per column, the label over it: a label spans the empty cells to its right, as a merged
    /// cell does; empty where no label reaches.
    pub labels: Vec<String>,
}

/// The decimal mark numbers are written with, and the columns that are numbers with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecimalMark {
    /// `","`.
    pub separator: String,
    /// Columns whose every present value is an integer or a number with that mark, one at
    /// least with it (`7,5`, `1.234,5`: dots then group thousands).
    pub columns: Vec<String>,
}

impl Profile {
    /// A table read from a format that has no text layout to report (no title lines, footers
    /// or side tables): its header is the first row.
    pub fn of_columns(row_count: u64, columns: Vec<ColumnProfile>) -> Profile {
        Profile {
            row_count,
            column_count: columns.len() as u64,
            encoding: String::new(),
            delimiter: String::new(),
            header_line: 1,
            footer_lines: 0,
            skipped_lines: 0,
            other_tables: Vec::new(),
            columns,
            sheet: None,
            sheets: Vec::new(),
            chunks: None,
            header_groups: None,
            decimal: None,
        }
    }
}

/// One sheet of a workbook: its data rows (below the header) and columns; zero for an empty sheet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SheetShape {
    pub name: String,
    pub rows: u64,
    pub columns: u64,
}

/// Where one table of a file lies and its size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableExtent {
    /// 1-based line of its header, or of its first row when it has none.
    pub first_line: u64,
    /// Its last line: the line before the next table starts, or the file's last line.
    pub last_line: u64,
    /// 1-based line of its header; 0 when it has none (columns numbered from 0).
    pub header_line: u64,
    pub row_count: u64,
    pub column_count: u64,
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
    /// Binary content (a NUL byte in the first part of the file): no table to find.
    #[error("the file is binary, not text (a NUL byte at byte {offset})")]
    NotText { offset: u64 },
    /// `message` names the line, e.g. "line 7 has 5 fields but the header has 3".
    #[error("{message}")]
    Malformed { line: u64, message: String },
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),
}

pub use dtype::{bool_text, Dtype};
pub use preview::{preview_reader, Preview};
pub use rows::read_rows;
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

    let (header_line, first_line) = input.read_header(&mut record)?.ok_or(AnalysisError::Empty)?;
    let first_table_line = first_line;
    let mut utf8 = reader::is_utf8(&record);
    let width = record.len().max(input.columns());
    let mut start = TableStart {
        header: (!input.headerless()).then(|| record.iter().map(|f| f.to_vec()).collect()),
        ncols: width,
        header_line,
        first_line,
    };
    // The largest table so far, its column states kept unfinished (names and values are
    // decoded once the whole file's encoding is known), and every table's extent.
    let mut best: Option<(TableExtent, TableStart, Vec<column::ColumnState>, u64)> = None;
    let mut extents: Vec<TableExtent> = Vec::new();
    loop {
        let budget = sketch::Budget::for_columns(start.ncols);
        let comma = input.delimiter() == b',';
        let mut columns: Vec<column::ColumnState> = (0..start.ncols)
            .map(|i| column::ColumnState::new(&budget, i as u64))
            .map(|c| if comma { c.without_decimal_comma() } else { c })
            .collect();
        let scanned = scan::scan(&mut input, &mut columns, utf8, cfg)?;
        utf8 = scanned.utf8;
        let footer_lines = input.footer_lines();
        let next = input.take_table();
        let last_line = match &next {
            Some(records) => records[0].line - 1,
            None => input.last_line(),
        };
        let extent = TableExtent {
            first_line: start.first_line,
            last_line,
            header_line: start.header_line,
            row_count: scanned.rows,
            column_count: start.ncols as u64,
        };
        // The list is bounded like everything else kept while reading.
        if extents.len() <= MAX_TABLES_LISTED {
            extents.push(extent.clone());
        }
        let cells = |rows: u64, ncols: usize| rows.saturating_mul(ncols as u64);
        let larger = best
            .as_ref()
            .is_none_or(|(e, ..)| cells(scanned.rows, start.ncols) > cells(e.row_count, e.column_count as usize));
        if larger {
            best = Some((extent, start, columns, footer_lines));
        }
        let Some(records) = next else { break };
        start = next_table(&mut input, records, &mut utf8);
    }
    let Some((chosen, start, columns, footer_lines)) = best else {
        return Err(AnalysisError::Empty);
    };
    let rows = chosen.row_count;
    // Tables start on distinct lines.
    let mut other_tables: Vec<TableExtent> = extents
        .into_iter()
        .filter(|e| e.first_line != chosen.first_line)
        .collect();
    other_tables.truncate(MAX_TABLES_LISTED);

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
    let ncols = start.ncols;
    let raw_names: Vec<String> = match &start.header {
        // A header narrower than its rows names the first columns.
        Some(header) => (0..ncols)
            .map(|i| header.get(i).map(|b| decode(b)).unwrap_or_default())
            .collect(),
        None => (0..ncols).map(|i| i.to_string()).collect(),
    };
    let names = header::pandas_names(raw_names);
    let delimiter = input.delimiter();
    let decimal_columns: Vec<String> = columns
        .iter()
        .zip(&names)
        .filter(|(state, _)| delimiter != b',' && state.decimal_comma())
        .map(|(_, name)| name.clone())
        .collect();
    let decimal = (!decimal_columns.is_empty()).then(|| DecimalMark {
        separator: ",".to_string(),
        columns: decimal_columns,
    });
    // The group line belongs to the first table only.
    let header_groups = input
        .group_line()
        .filter(|_| start.first_line == first_table_line)
        .map(|(record, line)| {
            let mut label = String::new();
            let labels = (0..ncols)
                .map(|i| {
                    let cell = record.get(i).map(|b| decode(b)).unwrap_or_default();
                    if !cell.trim().is_empty() {
                        label = cell.trim().to_string();
                    }
                    label.clone()
                })
                .collect();
            HeaderGroups { line: *line, labels }
        });
    let columns: Vec<ColumnProfile> = columns
        .into_iter()
        .zip(names)
        .map(|(state, name)| state.finish(name, rows, &decode))
        .collect();
    Ok(Profile {
        row_count: rows,
        column_count: ncols as u64,
        encoding: encoding.to_string(),
        delimiter: (delimiter as char).to_string(),
        header_line: start.header_line,
        footer_lines,
        skipped_lines: input.skipped_lines(),
        other_tables,
        columns,
        sheet: None,
        sheets: Vec::new(),
        chunks: None,
        header_groups,
        decimal,
    })
}

/// At most this many other tables are listed in a profile (the first ones in the file).
const MAX_TABLES_LISTED: usize = 100;

/// A table's header (raw names, `None` when its columns are numbered) and where it starts.
struct TableStart {
    header: Option<Vec<Vec<u8>>>,
    ncols: usize,
    header_line: u64,
    first_line: u64,
}

/// Starts the table whose first records [`reader::Input::take_table`] gave: its first record
/// is its header when the type rule says so (see `table`), and the rest are its first rows.
fn next_table<R: Read>(
    input: &mut reader::Input<R>,
    records: Vec<reader::NumberedRecord>,
    utf8: &mut bool,
) -> TableStart {
    let kinds: Vec<Vec<table::Kind>> = records
        .iter()
        .map(|a| a.record.iter().map(table::kind).collect())
        .collect();
    let first = &records[0];
    let has_header =
        table::counts_columns(first.record.iter()) || table::is_header(&kinds[0], kinds[1..].iter().map(Vec::as_slice));
    let ncols = first.record.len();
    let first_line = first.line;
    let header = has_header.then(|| first.record.iter().map(|f| f.to_vec()).collect());
    if has_header {
        *utf8 = *utf8 && reader::is_utf8(&first.record);
    }
    let skip = has_header as usize;
    input.push_rows(records.into_iter().skip(skip).map(|a| a.record));
    TableStart {
        header,
        ncols,
        header_line: if has_header { first_line } else { 0 },
        first_line,
    }
}

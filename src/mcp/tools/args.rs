//! The tools' inputs and outputs, with the JSON schemas clients see.

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::text::one_line;
use crate::model::FileRecord;

// ----- inputs -----

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListFilesArgs {
    /// Only files whose name or description contains this text (case-insensitive).
    #[serde(default)]
    pub query: Option<String>,
    /// At most this many files (default 50; capped by the server's MCP_MAX_ROWS).
    #[serde(default)]
    pub limit: Option<i64>,
    /// The `next_cursor` of a previous answer, to list the files after it.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NameArgs {
    /// The file's name, exactly as list_files gives it.
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadRowsArgs {
    /// The file's name, exactly as list_files gives it.
    pub name: String,
    /// The first row to return, 0-based (default 0). Any row of the file can be reached.
    #[serde(default)]
    pub offset: Option<i64>,
    /// At most this many rows (default 100; capped by the server's MCP_MAX_ROWS).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only these columns, in this order (names as describe_file gives them). Default: all.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct QueryArgs {
    /// One SQL SELECT (or WITH … SELECT). The file is the table `data`; the user's other files are
    /// tables named by their file names in double quotes (`JOIN "regions 2024" USING (region)`).
    /// Table functions (read_csv, read_parquet, …) and every other statement are refused.
    pub sql: String,
    /// The file the SQL calls `data`. Give this or session_id, not both.
    #[serde(default)]
    pub name: Option<String>,
    /// Run on this session's active file instead (a UUID).
    #[serde(default)]
    pub session_id: Option<String>,
    /// At most this many rows in the answer (default and cap: the server's MCP_MAX_ROWS).
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SessionArgs {
    /// The chat session's id, a UUID.
    pub session_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SetActiveArgs {
    /// The chat session's id, a UUID.
    pub session_id: String,
    /// The file to make active in that session.
    pub name: String,
}

// ----- outputs -----

/// A file as listed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileInfo {
    pub name: String,
    /// The stored format: csv, tsv, parquet, arrow, json, jsonl, xlsx, ods, …
    pub format: String,
    pub size_bytes: u64,
    /// Rows of the table the summary describes.
    pub rows: u64,
    pub columns: u64,
    pub description: String,
    /// Last change (RFC 3339).
    pub updated: String,
}

impl FileInfo {
    pub(super) fn of(r: &FileRecord) -> FileInfo {
        FileInfo {
            name: r.file_name.clone(),
            format: r.extension.clone(),
            size_bytes: r.size_bytes,
            rows: r.row_count,
            columns: r.column_count,
            description: r.description.clone(),
            updated: r.to_read().updated_at,
        }
    }

    pub(super) fn line(&self) -> String {
        let mut line = format!(
            "- {} ({}, {} bytes, {} rows × {} columns, updated {})",
            self.name, self.format, self.size_bytes, self.rows, self.columns, self.updated
        );
        if !self.description.is_empty() {
            line.push_str(": ");
            line.push_str(&one_line(&self.description));
        }
        line.push('\n');
        line
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileList {
    /// The files of this page, oldest first.
    pub files: Vec<FileInfo>,
    /// How many files match (all pages).
    pub total: u64,
    /// Pass as `cursor` to list the next files; null when there are no more.
    pub next_cursor: Option<String>,
    /// True when more files match than this page holds.
    pub truncated: bool,
}

/// One column's statistics from the profile.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ColumnStats {
    pub name: String,
    /// pandas' dtype name: int64, float64, bool, datetime64[ns], object, …
    pub dtype: String,
    /// Missing (null) values.
    pub missing: u64,
    /// Distinct non-missing values.
    pub distinct: u64,
    /// True when `distinct` is an estimate.
    pub distinct_is_estimate: bool,
    #[schemars(schema_with = "scalar_schema")]
    pub min: Option<Value>,
    #[schemars(schema_with = "scalar_schema")]
    pub max: Option<Value>,
    /// Numeric columns only.
    pub mean: Option<f64>,
    /// The most frequent values, most frequent first.
    pub top_values: Vec<TopValue>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TopValue {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileDescription {
    pub file: FileInfo,
    /// The Markdown summary, exactly as the REST API gives it.
    pub summary: String,
    /// Per-column statistics, in column order.
    pub profile: Vec<ColumnStats>,
    /// True when the summary or the column list was cut to fit the server's MCP_MAX_CHARS.
    pub truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ColumnType {
    pub name: String,
    /// pandas' dtype name, as in the summary.
    pub dtype: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RowsPage {
    pub name: String,
    pub columns: Vec<ColumnType>,
    /// Rows as arrays of cells, in column order; dates and times as ISO text.
    #[schemars(schema_with = "rows_schema")]
    pub rows: Vec<Vec<Value>>,
    /// 0-based index of the first row here.
    pub offset: u64,
    /// Rows in `rows`.
    pub row_count: u64,
    /// Rows in the whole table.
    pub total_rows: u64,
    /// Pass as `offset` for the next page; null at the end of the table.
    pub next_offset: Option<u64>,
    /// True when the server's caps gave fewer rows than asked for.
    pub truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct QueryResult {
    pub columns: Vec<ColumnType>,
    /// Rows as arrays of cells, in column order; dates and times as ISO text.
    #[schemars(schema_with = "rows_schema")]
    pub rows: Vec<Vec<Value>>,
    /// Rows in `rows`.
    pub row_count: u64,
    /// True when the result has more rows than `rows` holds.
    pub truncated: bool,
    pub elapsed_ms: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ActiveFile {
    pub session_id: String,
    pub file: FileInfo,
    /// The file's Markdown summary.
    pub summary: String,
    /// True when the summary was cut to fit the server's MCP_MAX_CHARS.
    pub truncated: bool,
}

/// A min or max: a number, text (dates as ISO text), or null.
fn scalar_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [{ "type": "number" }, { "type": "string" }, { "type": "boolean" }, { "type": "null" }]
    })
}

/// Rows of cells: numbers, text, booleans, null, or (nested columns) arrays and objects.
fn rows_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "array",
            "items": {
                "anyOf": [
                    { "type": "number" },
                    { "type": "string" },
                    { "type": "boolean" },
                    { "type": "null" },
                    { "type": "array" },
                    { "type": "object" }
                ]
            }
        }
    })
}

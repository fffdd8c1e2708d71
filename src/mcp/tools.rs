//! The six MCP tools over [`FileService`]: inputs and outputs (with their JSON schemas), the
//! caps on every result (`truncated`, and in the text how to get the rest), the text
//! rendering beside the structured content, errors as tool errors with the API's `detail`,
//! and one metric and one log line per call.

use std::time::Instant;

use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{caller, FileMcp};
use crate::analysis::Profile;
use crate::error::Error;
use crate::metrics::metrics;
use crate::model::{FileRecord, ListQuery, UserId};
use crate::query::Answer;
use crate::service::QueryTarget;

/// Files listed by `list_files` when no limit is given, and at most.
const DEFAULT_LIST_LIMIT: usize = 50;
const MAX_LIST_LIMIT: usize = 1000;
/// Rows by `read_rows` when no limit is given (then capped by `MCP_MAX_ROWS`).
const DEFAULT_READ_LIMIT: usize = 100;
/// Records read from the catalog at a time while filtering a listing.
const LIST_PAGE: u32 = 1000;
/// Room kept in the character budget for a result's fixed parts and notes.
const OVERHEAD: usize = 600;

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
    fn of(r: &FileRecord) -> FileInfo {
        FileInfo {
            name: r.file_name.clone(),
            format: r.format.clone(),
            size_bytes: r.size_bytes,
            rows: r.row_count,
            columns: r.column_count,
            description: r.description.clone(),
            updated: r.to_read().updated_at,
        }
    }

    fn line(&self) -> String {
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

/// A tool's answer: the structured content, its text rendering, and whether it was cut.
struct Reply {
    structured: Value,
    text: String,
    truncated: bool,
}

impl Reply {
    fn new<T: Serialize>(value: &T, text: String, truncated: bool) -> Result<Reply, Error> {
        Ok(Reply {
            structured: serde_json::to_value(value).map_err(Error::internal)?,
            text,
            truncated,
        })
    }
}

#[tool_router(router = tool_router, vis = "pub(super)")]
impl FileMcp {
    #[tool(
        name = "list_files",
        title = "List files",
        description = "List the user's dataset files, oldest first: name, format, size, rows, columns, \
            description and last update. `query` keeps files whose name or description contains it \
            (case-insensitive). Paged: when `next_cursor` is not null, call again with `cursor` set to it.",
        output_schema = schema_for_output::<FileList>(),
        annotations(title = "List files", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_files(
        &self,
        Parameters(args): Parameters<ListFilesArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let started = Instant::now();
        let user = caller(&ctx);
        let result = match user {
            Some(user) => self.do_list_files(user, args).await,
            None => Err(unauthenticated()),
        };
        finish("list_files", user, started, result)
    }

    #[tool(
        name = "describe_file",
        title = "Describe a file",
        description = "Describe one file: its summary (Markdown, exactly as the REST API gives it), \
            description, and profile: for each column the dtype, missing values, distinct values, min, \
            max, mean and most frequent values. Use it before writing SQL for query.",
        output_schema = schema_for_output::<FileDescription>(),
        annotations(title = "Describe a file", read_only_hint = true, open_world_hint = false)
    )]
    async fn describe_file(
        &self,
        Parameters(args): Parameters<NameArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let started = Instant::now();
        let user = caller(&ctx);
        let result = match user {
            Some(user) => self.do_describe_file(user, args).await,
            None => Err(unauthenticated()),
        };
        finish("describe_file", user, started, result)
    }

    #[tool(
        name = "read_rows",
        title = "Read rows",
        description = "Read a page of rows of a file's table (the table the summary describes: same \
            header, delimiter, encoding and skipped lines), from any 0-based `offset`, with the total row \
            count. To read on, call again with `offset` set to `next_offset`. `columns` picks columns.",
        output_schema = schema_for_output::<RowsPage>(),
        annotations(title = "Read rows", read_only_hint = true, open_world_hint = false)
    )]
    async fn read_rows(
        &self,
        Parameters(args): Parameters<ReadRowsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let started = Instant::now();
        let user = caller(&ctx);
        let result = match user {
            Some(user) => self.do_read_rows(user, args).await,
            None => Err(unauthenticated()),
        };
        finish("read_rows", user, started, result)
    }

    #[tool(
        name = "query",
        title = "Run SQL",
        description = "Run one SQL SELECT over a file (the table `data`), given by `name` or as the active \
            file of `session_id`. The user's other files are tables named by their file names in double \
            quotes. Only one SELECT or WITH … SELECT; table functions such as read_csv are refused. \
            Answers hold at most `limit` rows; `truncated` says whether there were more: aggregate, \
            filter, or page with LIMIT/OFFSET.",
        output_schema = schema_for_output::<QueryResult>(),
        annotations(title = "Run SQL", read_only_hint = true, open_world_hint = false)
    )]
    async fn query(&self, Parameters(args): Parameters<QueryArgs>, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let started = Instant::now();
        let user = caller(&ctx);
        let result = match user {
            Some(user) => self.do_query(user, args).await,
            None => Err(unauthenticated()),
        };
        finish("query", user, started, result)
    }

    #[tool(
        name = "get_active_file",
        title = "Get the active file",
        description = "The file active in a chat session (a UUID), with its summary: the dataset the user \
            is working with in that session. Fails when the session has no active file.",
        output_schema = schema_for_output::<ActiveFile>(),
        annotations(title = "Get the active file", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_active_file(
        &self,
        Parameters(args): Parameters<SessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let started = Instant::now();
        let user = caller(&ctx);
        let result = match user {
            Some(user) => match self.service.get_active(user, &args.session_id).await {
                Ok(record) => active_reply(&args.session_id, &record, self.caps.max_chars),
                Err(e) => Err(e),
            },
            None => Err(unauthenticated()),
        };
        finish("get_active_file", user, started, result)
    }

    #[tool(
        name = "set_active_file",
        title = "Set the active file",
        description = "Make a file the active one of a chat session (a UUID): the same state the REST API \
            and the web page use, seen by them at once. Answers with the file and its summary.",
        output_schema = schema_for_output::<ActiveFile>(),
        annotations(
            title = "Set the active file",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn set_active_file(
        &self,
        Parameters(args): Parameters<SetActiveArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let started = Instant::now();
        let user = caller(&ctx);
        let result = match user {
            Some(user) => match self.service.set_active(user, &args.session_id, &args.name).await {
                Ok(record) => active_reply(&args.session_id, &record, self.caps.max_chars),
                Err(e) => Err(e),
            },
            None => Err(unauthenticated()),
        };
        finish("set_active_file", user, started, result)
    }
}

impl FileMcp {
    async fn do_list_files(&self, user: UserId, args: ListFilesArgs) -> Result<Reply, Error> {
        let limit = bounded(
            "limit",
            args.limit,
            DEFAULT_LIST_LIMIT,
            MAX_LIST_LIMIT.min(self.caps.max_rows),
        )?;
        let start = match &args.cursor {
            None => 0,
            Some(c) => c.parse::<u64>().map_err(|_| {
                Error::invalid(
                    "invalid_cursor",
                    format!("{c:?} is not a cursor list_files gave; leave it out to start over"),
                )
            })?,
        };
        let needle = args.query.as_deref().map(str::to_lowercase).filter(|q| !q.is_empty());
        let matches = |r: &FileRecord| match &needle {
            None => true,
            Some(q) => r.file_name.to_lowercase().contains(q) || r.description.to_lowercase().contains(q),
        };
        // The listing is read from the catalog a page at a time: only this answer's files are kept.
        let mut files = Vec::new();
        let mut json_len = OVERHEAD;
        let mut text_len = OVERHEAD;
        let mut total = 0u64;
        let mut before = 0u64;
        let mut next_cursor = None;
        let mut cut_by_chars = false;
        let mut offset = 0u64;
        loop {
            let query = ListQuery {
                limit: Some(LIST_PAGE),
                offset,
                name_prefix: None,
            };
            let (page, _) = self.service.list_files(user, query).await?;
            let read = page.len() as u64;
            for (i, record) in page.iter().enumerate() {
                let position = offset + i as u64;
                if !matches(record) {
                    continue;
                }
                total += 1;
                if position < start {
                    before += 1;
                    continue;
                }
                if next_cursor.is_some() || files.len() == limit {
                    next_cursor.get_or_insert(position.to_string());
                    continue;
                }
                let info = FileInfo::of(record);
                let (j, t) = (json_size(&info), info.line().len());
                if json_len + j > self.caps.max_chars || text_len + t > self.caps.max_chars {
                    cut_by_chars = true;
                    next_cursor = Some(position.to_string());
                    continue;
                }
                json_len += j + 1;
                text_len += t;
                files.push(info);
            }
            offset += read;
            if read < LIST_PAGE as u64 {
                break;
            }
        }
        let shown_from = before + 1;
        let mut text = match &needle {
            None => format!("{} of your {total} files", files.len()),
            Some(q) => format!("{} of the {total} files matching {q:?}", files.len()),
        };
        if !files.is_empty() {
            text.push_str(&format!(" (from #{shown_from}):\n"));
        } else {
            text.push_str(".\n");
        }
        for f in &files {
            text.push_str(&f.line());
        }
        let truncated = next_cursor.is_some();
        if let Some(cursor) = &next_cursor {
            let why = if cut_by_chars {
                format!(" (this page was cut to fit MCP_MAX_CHARS = {})", self.caps.max_chars)
            } else {
                String::new()
            };
            text.push_str(&format!(
                "\nTruncated: more files match{why}. Call list_files with cursor \"{cursor}\" (and the same query) for the next ones."
            ));
        }
        let list = FileList {
            total,
            files,
            next_cursor,
            truncated,
        };
        Reply::new(&list, text, truncated)
    }

    async fn do_describe_file(&self, user: UserId, args: NameArgs) -> Result<Reply, Error> {
        let record = self.service.get_file(user, &args.name).await?;
        let profile: Profile = serde_json::from_str(&record.profile_json)
            .map_err(|e| Error::internal(format!("the profile of {} does not parse: {e}", record.file_name)))?;
        let budget = self.caps.max_chars;
        let mut truncated = false;
        let file = FileInfo::of(&record);
        let mut text = format!(
            "# {}\n\n{} file, {} bytes, {} rows × {} columns, updated {}.\n",
            file.name, file.format, file.size_bytes, file.rows, file.columns, file.updated
        );
        if !file.description.is_empty() {
            text.push_str(&format!("Description: {}\n", one_line(&file.description)));
        }
        // The summary gets at most half the budget; the profile the rest.
        let summary = cut_to(&record.summary, budget / 2);
        if summary.len() < record.summary.len() {
            truncated = true;
        }
        text.push('\n');
        text.push_str(summary);
        text.push_str("\n\n## Profile\n\n| column | dtype | missing | distinct | min | max | mean | top values |\n|---|---|---|---|---|---|---|---|\n");
        let mut json_len = OVERHEAD + json_size(&file) + json_size(&summary);
        let mut text_len = OVERHEAD + text.len();
        let mut columns = Vec::new();
        for c in &profile.columns {
            let stats = ColumnStats {
                name: c.name.clone(),
                dtype: c.dtype.clone(),
                missing: c.null_count,
                distinct: c.unique_count,
                distinct_is_estimate: c.unique_count_is_estimate,
                min: c.min.clone(),
                max: c.max.clone(),
                mean: c.mean,
                top_values: c
                    .top_values
                    .iter()
                    .map(|t| TopValue {
                        value: t.value.clone(),
                        count: t.count,
                    })
                    .collect(),
            };
            let row = format!(
                "| {} | {} | {} | {}{} | {} | {} | {} | {} |\n",
                cell_text(&stats.name),
                stats.dtype,
                stats.missing,
                stats.distinct,
                if stats.distinct_is_estimate { " (est.)" } else { "" },
                stats.min.as_ref().map(cell).unwrap_or_default(),
                stats.max.as_ref().map(cell).unwrap_or_default(),
                stats.mean.map(|m| m.to_string()).unwrap_or_default(),
                stats
                    .top_values
                    .iter()
                    .map(|t| format!("{} ({})", cell_text(&t.value), t.count))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            let j = json_size(&stats);
            if json_len + j > budget || text_len + row.len() > budget {
                truncated = true;
                break;
            }
            json_len += j + 1;
            text_len += row.len();
            text.push_str(&row);
            columns.push(stats);
        }
        if truncated {
            text.push_str(&format!(
                "\nTruncated to fit MCP_MAX_CHARS = {budget}: {} of {} columns profiled{}. The whole summary is the \
                 resource {}; read_rows with `columns`, or query, give any column's values.",
                columns.len(),
                profile.columns.len(),
                if summary.len() < record.summary.len() {
                    ", summary cut"
                } else {
                    ""
                },
                super::resources::uri(&record.file_name),
            ));
        }
        let description = FileDescription {
            file,
            summary: summary.to_string(),
            profile: columns,
            truncated,
        };
        Reply::new(&description, text, truncated)
    }

    async fn do_read_rows(&self, user: UserId, args: ReadRowsArgs) -> Result<Reply, Error> {
        let offset = match args.offset {
            None => 0,
            Some(n) if n >= 0 => n as u64,
            Some(n) => {
                return Err(Error::invalid(
                    "invalid_offset",
                    format!("offset must be 0 or more, not {n}"),
                ))
            }
        };
        let asked = bounded("limit", args.limit, DEFAULT_READ_LIMIT, usize::MAX)?;
        let limit = asked.min(self.caps.max_rows);
        let record = self.service.get_file(user, &args.name).await?;
        let total = record.row_count;
        if offset > total || (offset == total && total > 0) {
            return Err(Error::invalid(
                "invalid_offset",
                format!(
                    "offset {offset} is past the end: {} has {total} rows (offsets 0 to {})",
                    record.file_name,
                    total.saturating_sub(1)
                ),
            ));
        }
        let select = match &args.columns {
            None => "*".to_string(),
            Some(columns) if columns.is_empty() => "*".to_string(),
            Some(columns) => {
                let profile: Profile = serde_json::from_str(&record.profile_json)
                    .map_err(|e| Error::internal(format!("the profile of {} does not parse: {e}", record.file_name)))?;
                if let Some(unknown) = columns.iter().find(|c| !profile.columns.iter().any(|p| &p.name == *c)) {
                    let names: Vec<&str> = profile.columns.iter().map(|p| p.name.as_str()).collect();
                    return Err(Error::invalid(
                        "unknown_column",
                        format!(
                            "{} has no column {unknown:?}; its columns are {}",
                            record.file_name,
                            names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                columns
                    .iter()
                    .map(|c| quote_identifier(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        // The engine is asked for the page alone (one row more tells whether the table goes on).
        let sql = format!("SELECT {select} FROM data LIMIT {} OFFSET {offset}", limit + 1);
        let answer = self
            .service
            .query(user, QueryTarget::File(&record.file_name), sql, limit)
            .await?;
        let (columns, rows, cut_by_chars, table) = fit_rows(answer, self.caps.max_chars);
        let returned = rows.len() as u64;
        let end = offset + returned;
        let next_offset = (end < total).then_some(end);
        let truncated = returned < (asked as u64).min(total - offset);
        let mut text = if returned == 0 {
            format!(
                "{} has no rows at offset {offset} (it has {total}).\n",
                record.file_name
            )
        } else {
            format!(
                "Rows {offset} to {} (0-based) of {total} in {}:\n\n{table}",
                end - 1,
                record.file_name
            )
        };
        if truncated {
            let cap = if cut_by_chars {
                format!("MCP_MAX_CHARS = {}", self.caps.max_chars)
            } else {
                format!("MCP_MAX_ROWS = {}", self.caps.max_rows)
            };
            text.push_str(&format!(
                "\nTruncated: {returned} of the {asked} rows asked for fit ({cap})."
            ));
        }
        match next_offset {
            Some(next) => text.push_str(&format!(
                "\nMore rows: call read_rows with offset {next} for the next page ({} rows left).",
                total - next
            )),
            None if returned > 0 => text.push_str("\nThis is the end of the table."),
            None => {}
        }
        let page = RowsPage {
            name: record.file_name.clone(),
            columns,
            rows,
            offset,
            row_count: returned,
            total_rows: total,
            next_offset,
            truncated,
        };
        Reply::new(&page, text, truncated)
    }

    async fn do_query(&self, user: UserId, args: QueryArgs) -> Result<Reply, Error> {
        let target = match (&args.name, &args.session_id) {
            (Some(name), None) => QueryTarget::File(name),
            (None, Some(session)) => QueryTarget::Active(session),
            _ => {
                return Err(Error::invalid(
                    "invalid_target",
                    "give exactly one of `name` (a file) and `session_id` (its active file)",
                ))
            }
        };
        let asked = bounded("limit", args.limit, self.caps.max_rows, usize::MAX)?;
        let limit = asked.min(self.caps.max_rows);
        let answer = self.service.query(user, target, args.sql, limit).await?;
        let more = answer.truncated;
        let elapsed_ms = answer.elapsed_ms;
        let (columns, rows, cut_by_chars, table) = fit_rows(answer, self.caps.max_chars);
        let truncated = more || cut_by_chars;
        let mut text = format!("{} rows ({elapsed_ms:.1} ms):\n\n{table}", rows.len());
        if truncated {
            let cap = if cut_by_chars {
                format!("cut to fit MCP_MAX_CHARS = {}", self.caps.max_chars)
            } else if asked > limit {
                format!("capped at MCP_MAX_ROWS = {}", self.caps.max_rows)
            } else {
                format!("limit {limit}")
            };
            text.push_str(&format!(
                "\nTruncated: the result has more rows than these {} ({cap}). Narrow the query (WHERE, GROUP BY, \
                 an aggregate), or page through it with ORDER BY … LIMIT n OFFSET k in the SQL.",
                rows.len()
            ));
        }
        let result = QueryResult {
            row_count: rows.len() as u64,
            columns,
            rows,
            truncated,
            elapsed_ms,
        };
        Reply::new(&result, text, truncated)
    }
}

/// The answer of `get_active_file` and `set_active_file`.
fn active_reply(session: &str, record: &FileRecord, budget: usize) -> Result<Reply, Error> {
    let file = FileInfo::of(record);
    let summary = cut_to(&record.summary, budget.saturating_sub(OVERHEAD + json_size(&file)) / 2);
    let truncated = summary.len() < record.summary.len();
    let mut text = format!("Active file of session {session}:\n{}\n{summary}", file.line());
    if truncated {
        text.push_str(&format!(
            "\n\nTruncated: the summary was cut to fit MCP_MAX_CHARS = {budget}; the whole summary is the resource {}.",
            super::resources::uri(&record.file_name)
        ));
    }
    let active = ActiveFile {
        session_id: session.to_string(),
        file,
        summary: summary.to_string(),
        truncated,
    };
    Reply::new(&active, text, truncated)
}

/// The answer's rows that fit in `budget` characters (as JSON and as a Markdown table), the
/// columns, whether rows were dropped for the budget, and the table's text.
fn fit_rows(answer: Answer, budget: usize) -> (Vec<ColumnType>, Vec<Vec<Value>>, bool, String) {
    let columns: Vec<ColumnType> = answer
        .columns
        .into_iter()
        .map(|c| ColumnType {
            name: c.name,
            dtype: c.dtype,
        })
        .collect();
    let mut table = String::new();
    if !columns.is_empty() {
        table.push('|');
        for c in &columns {
            table.push_str(&format!(" {} |", cell_text(&c.name)));
        }
        table.push_str("\n|");
        table.push_str(&"---|".repeat(columns.len()));
        table.push('\n');
    }
    let mut json_len = OVERHEAD + json_size(&columns);
    let mut text_len = OVERHEAD + table.len();
    let mut rows = Vec::with_capacity(answer.rows.len());
    let mut cut = false;
    for row in answer.rows {
        let mut line = String::from("|");
        for v in &row {
            line.push(' ');
            line.push_str(&cell(v));
            line.push_str(" |");
        }
        line.push('\n');
        let j = json_size(&row);
        if json_len + j > budget || text_len + line.len() > budget {
            cut = true;
            break;
        }
        json_len += j + 1;
        text_len += line.len();
        table.push_str(&line);
        rows.push(row);
    }
    (columns, rows, cut, table)
}

/// Records the call (metric and log line) and turns its result into the tool's answer:
/// structured content and text, or a tool error with the API's `detail`.
fn finish(tool: &'static str, user: Option<UserId>, started: Instant, result: Result<Reply, Error>) -> CallToolResult {
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let outcome = match &result {
        Ok(reply) if reply.truncated => "truncated",
        Ok(_) => "ok",
        Err(Error::Invalid { .. } | Error::NotFound(_) | Error::Conflict(_)) => "invalid",
        Err(Error::Unauthorized(_) | Error::Forbidden(_)) => "unauthorized",
        Err(Error::Timeout(_)) => "timeout",
        Err(Error::Busy(_)) => "busy",
        Err(_) => "error",
    };
    metrics().mcp_calls.with_label_values(&[tool, outcome]).inc();
    match result {
        Ok(reply) => {
            tracing::info!(target: "file_service::mcp", tool, user, outcome, elapsed_ms, "MCP tool call");
            let mut answer = CallToolResult::success(vec![ContentBlock::text(reply.text)]);
            answer.structured_content = Some(reply.structured);
            answer
        }
        Err(err) => {
            if let Error::Internal(cause) = &err {
                tracing::error!(error = ?cause, tool, "MCP tool call failed");
            }
            let detail = err.detail();
            tracing::info!(target: "file_service::mcp", tool, user, outcome, code = err.code(), elapsed_ms, detail = %detail, "MCP tool call");
            CallToolResult::error(vec![ContentBlock::text(detail)])
        }
    }
}

fn unauthenticated() -> Error {
    Error::Unauthorized("no authenticated user for this request".into())
}

/// An optional count argument: `default` when absent, else 1 to `max`.
fn bounded(what: &str, value: Option<i64>, default: usize, max: usize) -> Result<usize, Error> {
    match value {
        None => Ok(default.min(max)),
        Some(n) if n >= 1 => Ok((n as u64).min(max as u64) as usize),
        Some(n) => Err(Error::invalid(
            "invalid_limit",
            format!("{what} must be 1 or more, not {n}"),
        )),
    }
}

/// A column name as an SQL identifier: in double quotes, quotes inside doubled.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn json_size<T: Serialize + ?Sized>(value: &T) -> usize {
    serde_json::to_string(value).map(|s| s.len()).unwrap_or(0)
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
fn cut_to(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A value as a Markdown table cell.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => cell_text(s),
        other => cell_text(&other.to_string()),
    }
}

fn cell_text(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::AnswerColumn;

    fn answer(rows: usize) -> Answer {
        Answer {
            columns: vec![
                AnswerColumn {
                    name: "n".into(),
                    dtype: "int64".into(),
                },
                AnswerColumn {
                    name: "text | pipe".into(),
                    dtype: "object".into(),
                },
            ],
            rows: (0..rows)
                .map(|i| vec![Value::from(i), Value::from(format!("row {i}"))])
                .collect(),
            row_count: rows,
            truncated: false,
            elapsed_ms: 0.0,
        }
    }

    #[test]
    fn rows_are_cut_to_the_character_budget_as_json_and_as_text() {
        let (columns, rows, cut, table) = fit_rows(answer(10), 100_000);
        assert_eq!((columns.len(), rows.len(), cut), (2, 10, false));
        assert!(
            table.starts_with("| n | text \\| pipe |\n|---|---|\n| 0 | row 0 |\n"),
            "{table}"
        );
        let (_, rows, cut, table) = fit_rows(answer(10_000), 5_000);
        assert!(cut && !rows.is_empty() && rows.len() < 10_000);
        assert!(table.len() <= 5_000 && json_size(&rows) <= 5_000);
    }

    #[test]
    fn identifiers_are_quoted_and_text_cut_on_character_boundaries() {
        assert_eq!(quote_identifier("a \"b\""), "\"a \"\"b\"\"\"");
        assert_eq!(cut_to("héllo", 2), "h");
        assert_eq!(cut_to("héllo", 3), "hé");
        assert_eq!(cut_to("abc", 10), "abc");
        assert_eq!(cell(&Value::Null), "");
        assert_eq!(cell(&Value::from("a\nb|c")), "a b\\|c");
    }

    #[test]
    fn counts_default_and_are_bounded() {
        assert_eq!(bounded("limit", None, 50, 500).unwrap(), 50);
        assert_eq!(bounded("limit", Some(10_000), 50, 500).unwrap(), 500);
        assert!(bounded("limit", Some(0), 50, 500).is_err());
        assert!(bounded("limit", Some(-3), 50, 500).is_err());
    }

    #[test]
    fn every_tool_has_an_object_output_schema_and_the_right_hints() {
        let tools = FileMcp::tool_router().list_all();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        for expected in [
            "list_files",
            "describe_file",
            "read_rows",
            "query",
            "get_active_file",
            "set_active_file",
        ] {
            assert!(names.contains(&expected), "{names:?}");
        }
        assert_eq!(tools.len(), 6);
        for tool in &tools {
            let schema = tool.output_schema.as_ref().expect("an output schema");
            assert_eq!(
                schema.get("type").and_then(Value::as_str),
                Some("object"),
                "{}",
                tool.name
            );
            let read_only = tool.annotations.as_ref().and_then(|a| a.read_only_hint);
            assert_eq!(read_only, Some(tool.name != "set_active_file"), "{}", tool.name);
        }
    }
}

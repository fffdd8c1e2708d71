//! The six MCP tools over [`FileService`]: their definitions here, with one metric and one
//! log line per call and errors as tool errors with the API's `detail`; their inputs and
//! outputs (with their JSON schemas) in `args`; what each does, with the caps on every
//! result (`truncated`, and in the text how to get the rest), in `handlers`; the text
//! rendering beside the structured content in `text`.
//!
//! [`FileService`]: crate::service::FileService

mod args;
mod handlers;
mod text;

use std::time::Instant;

use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use serde::Serialize;
use serde_json::Value;

use super::{caller, FileMcp};
use crate::error::Error;
use crate::metrics::metrics;
use crate::model::UserId;
use args::*;
use handlers::active_reply;

/// Files listed by `list_files` when no limit is given, and at most.
const DEFAULT_LIST_LIMIT: usize = 50;
const MAX_LIST_LIMIT: usize = 1000;
/// Rows by `read_rows` when no limit is given (then capped by `MCP_MAX_ROWS`).
const DEFAULT_READ_LIMIT: usize = 100;
/// Records read from the catalog at a time while filtering a listing.
const LIST_PAGE: u32 = 1000;
/// Room kept in the character budget for a result's fixed parts and notes.
const OVERHEAD: usize = 600;

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

#[cfg(test)]
mod tests {
    use super::text::{cell, cut_to, fit_rows, json_size, quote_identifier};
    use super::*;
    use crate::query::{Answer, AnswerColumn};

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

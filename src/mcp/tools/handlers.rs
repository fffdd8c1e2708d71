//! What each tool does: the service calls, and the caps on every result (`truncated`, and
//! in the text how to get the rest).

use super::args::*;
use super::text::{cell, cell_text, cut_to, fit_rows, json_size, one_line, quote_identifier};
use super::{bounded, Reply, DEFAULT_LIST_LIMIT, DEFAULT_READ_LIMIT, LIST_PAGE, MAX_LIST_LIMIT, OVERHEAD};
use crate::analysis::Profile;
use crate::error::Error;
use crate::mcp::FileMcp;
use crate::model::{FileRecord, ListQuery, UserId};
use crate::service::QueryTarget;

impl FileMcp {
    pub(super) async fn do_list_files(&self, user: UserId, args: ListFilesArgs) -> Result<Reply, Error> {
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

    pub(super) async fn do_describe_file(&self, user: UserId, args: NameArgs) -> Result<Reply, Error> {
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
                crate::mcp::resources::uri(&record.file_name),
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

    pub(super) async fn do_read_rows(&self, user: UserId, args: ReadRowsArgs) -> Result<Reply, Error> {
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
            .query(user, QueryTarget::File(&record.file_name), sql, limit, 0)
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

    pub(super) async fn do_query(&self, user: UserId, args: QueryArgs) -> Result<Reply, Error> {
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
        let answer = self.service.query(user, target, args.sql, limit, 0).await?;
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
pub(super) fn active_reply(session: &str, record: &FileRecord, budget: usize) -> Result<Reply, Error> {
    let file = FileInfo::of(record);
    let summary = cut_to(&record.summary, budget.saturating_sub(OVERHEAD + json_size(&file)) / 2);
    let truncated = summary.len() < record.summary.len();
    let mut text = format!("Active file of session {session}:\n{}\n{summary}", file.line());
    if truncated {
        text.push_str(&format!(
            "\n\nTruncated: the summary was cut to fit MCP_MAX_CHARS = {budget}; the whole summary is the resource {}.",
            crate::mcp::resources::uri(&record.file_name)
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

//! Each of the caller's files' summary as an MCP resource (`text/markdown`), listed page by
//! page, readable by URI, and a template for any file name.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rmcp::model::{ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use rmcp::ErrorData;

use crate::error::Error;
use crate::model::{ListQuery, UserId};
use crate::service::FileService;

/// The URI of a file's summary, for any name.
pub const TEMPLATE: &str = "file-service://files/{name}/summary";
const PREFIX: &str = "file-service://files/";
const SUFFIX: &str = "/summary";
/// Resources in one `resources/list` page.
const PAGE: u32 = 100;

/// A name as one URI path segment: everything but unreserved characters escaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The URI of `name`'s summary.
pub fn uri(name: &str) -> String {
    format!("{PREFIX}{}{SUFFIX}", utf8_percent_encode(name, SEGMENT))
}

/// The file name a summary URI names.
fn name_of(uri: &str) -> Option<String> {
    let encoded = uri.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let name = percent_decode_str(encoded).decode_utf8().ok()?.into_owned();
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

pub fn template() -> ResourceTemplate {
    ResourceTemplate::new(TEMPLATE, "file summary")
        .with_title("A file's summary")
        .with_description(
            "The Markdown summary of one of your files (rows, columns and their dtypes), as the REST API \
             gives it; {name} is the file name, percent-encoded.",
        )
        .with_mime_type("text/markdown")
}

fn unauthenticated() -> ErrorData {
    ErrorData::invalid_request("no authenticated user for this request", None)
}

fn service_error(err: Error) -> ErrorData {
    if let Error::Internal(cause) = &err {
        tracing::error!(error = ?cause, "MCP resource request failed");
    }
    ErrorData::internal_error(err.detail(), None)
}

/// One page of the caller's files as summary resources, oldest first.
pub async fn list(
    service: &FileService,
    user: Option<UserId>,
    cursor: Option<String>,
) -> Result<ListResourcesResult, ErrorData> {
    let user = user.ok_or_else(unauthenticated)?;
    let offset = match cursor {
        None => 0,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| ErrorData::invalid_params(format!("{c:?} is not a cursor this server gave"), None))?,
    };
    let query = ListQuery {
        limit: Some(PAGE),
        offset,
        name_prefix: None,
    };
    let (files, total) = service.list_files(user, query).await.map_err(service_error)?;
    let next = offset + files.len() as u64;
    let resources = files
        .iter()
        .map(|f| {
            let description = if f.description.is_empty() {
                format!(
                    "{} file, {} rows × {} columns",
                    f.extension, f.row_count, f.column_count
                )
            } else {
                f.description.clone()
            };
            Resource::new(uri(&f.file_name), f.file_name.clone())
                .with_title(format!("{}: summary", f.file_name))
                .with_description(description)
                .with_mime_type("text/markdown")
                .with_size(f.summary.len() as u64)
        })
        .collect();
    let mut result = ListResourcesResult::with_all_items(resources);
    result.next_cursor = (next < total && !files.is_empty()).then(|| next.to_string());
    Ok(result)
}

/// The summary a URI names.
pub async fn read(service: &FileService, user: Option<UserId>, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let user = user.ok_or_else(unauthenticated)?;
    let not_found = |detail: String| ErrorData::resource_not_found(detail, Some(serde_json::json!({ "uri": uri })));
    let name =
        name_of(uri).ok_or_else(|| not_found(format!("{uri:?} is not a resource of this server; see {TEMPLATE}")))?;
    let record = match service.get_file(user, &name).await {
        Ok(record) => record,
        Err(Error::NotFound(detail)) => return Err(not_found(detail)),
        Err(e) => return Err(service_error(e)),
    };
    Ok(ReadResourceResult::new(vec![ResourceContents::text(
        record.summary,
        uri,
    )
    .with_mime_type("text/markdown")]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uris_carry_any_file_name() {
        for name in ["sales", "sales 2024", "é/x?", "a%b", "(v1).csv"] {
            let uri = uri(name);
            assert!(uri.starts_with(PREFIX) && uri.ends_with(SUFFIX), "{uri}");
            if name.contains('/') {
                assert_eq!(name_of(&uri), None);
            } else {
                assert_eq!(name_of(&uri).as_deref(), Some(name), "{uri}");
            }
        }
        assert_eq!(uri("sales 2024"), "file-service://files/sales%202024/summary");
        assert_eq!(name_of("file-service://files//summary"), None);
        assert_eq!(name_of("https://files/sales/summary"), None);
    }
}

//! Fuzzes a view's parameters (`where`, `orderby`, `q`, `columns`, offset and limit) over a
//! small table: the grammar of filters and sort keys, the literals typed by their column,
//! and the page, count and facets the engine makes of them.
//!
//! Input: two bytes for offset and limit, then the four texts separated by NUL bytes.
//! Properties: never a panic and never an internal error; a page holds
//! min(limit, matches - offset) rows, each as wide as its columns, and is that slice of
//! the whole view (ties keep the file's order, so pages never overlap); without `where`
//! and `q` every row matches; sorting only reorders the matching rows; the view's count
//! and its facets' count agree with the page's.
#![no_main]

mod common;

use file_service::query::view::{facets, page, row_count, Page, ViewSpec};
use file_service::query::{Cancel, QueryError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [offset, limit, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = text.split('\0').map(|p| Some(p.to_string()).filter(|p| !p.is_empty()));
    let spec = ViewSpec {
        filter: parts.next().flatten(),
        order_by: parts.next().flatten(),
        search: parts.next().flatten(),
        columns: parts.next().flatten(),
    };
    let (offset, limit) = (u64::from(offset % 48), usize::from(limit % 12) + 1);
    let table = common::table();
    let cancel = Cancel::default();

    let Some(shown) = ok(page(table, &spec, offset, limit, &cancel), &spec) else {
        return;
    };
    let matches = shown.total_rows;
    assert!(matches <= common::ROWS as u64, "{matches} matches of {} rows", common::ROWS);
    if spec.filter.as_deref().is_none_or(|t| t.trim().is_empty()) && spec.search.is_none() {
        assert_eq!(matches, common::ROWS as u64, "no filter, yet not every row matches");
    }
    let expected = (limit as u64).min(matches.saturating_sub(offset));
    assert_eq!(shown.rows.len() as u64, expected, "page rows at offset {offset}, limit {limit}");
    for row in &shown.rows {
        assert_eq!(row.len(), shown.columns.len(), "a row as wide as its columns");
    }

    let whole = ok(page(table, &spec, 0, common::ROWS, &cancel), &spec).expect("the whole view");
    assert_eq!(whole.total_rows, matches, "the count changed between pages");
    let slice = whole.rows.iter().skip(offset as usize).take(limit);
    assert!(slice.eq(shown.rows.iter()), "the page is not its slice of the whole view");

    if spec.order_by.is_some() {
        let unsorted = ViewSpec {
            order_by: None,
            ..spec.clone()
        };
        let plain = ok(page(table, &unsorted, 0, common::ROWS, &cancel), &unsorted).expect("the unsorted view");
        assert_eq!(sorted_rows(&plain), sorted_rows(&whole), "sorting changed the rows, not only their order");
    }

    let counted = row_count(table, &spec, &cancel).expect("the count of a view that paged");
    assert_eq!(counted, matches, "row_count and the page's count differ");
    if let Some(found) = ok(facets(table, &spec, spec.columns.as_deref(), 5, &cancel), &spec) {
        assert_eq!(found.total_rows, matches, "facets count other rows than the page");
    }
});

/// The answer, or `None` for a refusal with a reason; an internal error fails.
fn ok<T>(result: Result<T, QueryError>, spec: &ViewSpec) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(QueryError::Internal(e)) => panic!("internal error on {spec:?}: {e:#}"),
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "a refusal without a reason: {e:?}");
            None
        }
    }
}

fn sorted_rows(page: &Page) -> Vec<String> {
    let mut rows: Vec<String> = page.rows.iter().map(|r| serde_json::to_string(r).expect("JSON")).collect();
    rows.sort();
    rows
}

//! Fuzzes the SQL check (`query::check`) and the engine behind it: any text as the `sql` of
//! a query, run over a small table named `t` when the check accepts it.
//!
//! Properties: never a panic (the service's guards cover the whole path from the text to
//! the answer); the check gives the same verdict twice; an accepted text parses as exactly
//! one query and names each table once; a refusal says why; an accepted query over `t`
//! answers with at most the limit's rows, each as wide as its columns, and is never an
//! internal error unless the engine itself failed.
#![no_main]

mod common;

use file_service::query::{answer, check, Cancel, QueryError};
use libfuzzer_sys::fuzz_target;
use sqlparser::ast::Statement;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

const LIMIT: usize = 10;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let verdict = check(sql);
    assert_eq!(
        format!("{verdict:?}"),
        format!("{:?}", check(sql)),
        "the same text checked twice differs"
    );
    let checked = match verdict {
        Ok(checked) => checked,
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "a refusal without a reason: {e:?}");
            return;
        }
    };
    let statements = Parser::parse_sql(&GenericDialect, sql).expect("an accepted text parses");
    assert!(
        matches!(statements.as_slice(), [Statement::Query(_)]),
        "accepted but not one query: {statements:?}"
    );
    let mut names = checked.tables.clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), checked.tables.len(), "a table named twice: {:?}", checked.tables);

    if !checked.tables.iter().all(|name| name == "t") {
        return;
    }
    match answer(sql, std::slice::from_ref(common::table()), LIMIT, 0, &Cancel::default()) {
        Ok(answer) => {
            assert!(answer.rows.len() <= LIMIT, "{} rows past the limit", answer.rows.len());
            assert_eq!(answer.row_count, answer.rows.len());
            for row in &answer.rows {
                assert_eq!(row.len(), answer.columns.len(), "a row as wide as its columns");
            }
        }
        // The engine's own failure (it panicked on this plan in both engines) is reported
        // as internal; any other internal error on a user's query is a bug.
        Err(QueryError::Internal(e)) => assert!(
            format!("{e:#}").contains("the query engine failed"),
            "internal error on {sql:?}: {e:#}"
        ),
        Err(e) => assert!(!e.to_string().trim().is_empty(), "an error without a message: {e:?}"),
    }
});

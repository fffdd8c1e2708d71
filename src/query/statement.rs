//! Which SQL is run: one `SELECT` (or `WITH … SELECT`), no table functions that read files,
//! and the names of the tables it reads (the caller's files to register).

use std::ops::ControlFlow;

use sqlparser::ast::{ObjectName, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::QueryError;

/// A statement that passed the checks, with every table name it reads, as written
/// (unquoted; `"regions 2024"` gives `regions 2024`), without duplicates.
#[derive(Debug, PartialEq)]
pub struct Checked {
    pub tables: Vec<String>,
}

/// Parses `sql` as polars' SQL front end does (the generic dialect) and refuses what the
/// service does not run.
pub fn check(sql: &str) -> Result<Checked, QueryError> {
    if sql.trim().is_empty() {
        return Err(QueryError::Invalid("the sql is empty; send a SELECT statement".into()));
    }
    let statements = Parser::parse_sql(&GenericDialect, sql)
        .map_err(|e| QueryError::Invalid(format!("the SQL does not parse: {e}")))?;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => {
            return Err(QueryError::Invalid(
                "the sql holds no statement; send a SELECT statement".into(),
            ))
        }
        _ => {
            return Err(QueryError::NotAllowed(format!(
                "only one statement is run at a time; this holds {}",
                statements.len()
            )))
        }
    };
    if !matches!(statement, Statement::Query(_)) {
        return Err(QueryError::NotAllowed(format!(
            "only SELECT (or WITH … SELECT) queries are run; this is {}",
            statement_kind(statement)
        )));
    }
    let mut tables = Tables::default();
    if let ControlFlow::Break(refused) = statement.visit(&mut tables) {
        return Err(QueryError::NotAllowed(refused));
    }
    Ok(Checked { tables: tables.names })
}

/// The statement's first keywords, for the message (`DROP TABLE`, `COPY`, `SET`, …).
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second]
            if matches!(
                first.to_ascii_uppercase().as_str(),
                "CREATE" | "DROP" | "ALTER" | "SHOW"
            ) =>
        {
            format!("{} {}", first.to_ascii_uppercase(), second.to_ascii_uppercase())
        }
        [first, ..] => first.to_ascii_uppercase(),
        [] => "not a query".into(),
    }
}

/// Collects table names and refuses table functions (`read_csv('…')` and the like read
/// any file the server can see).
#[derive(Default)]
struct Tables {
    names: Vec<String>,
}

impl Visitor for Tables {
    type Break = String;

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        let function = |name: &dyn std::fmt::Display| {
            ControlFlow::Break(format!(
                "table functions are not run ({name}(…) would read files); name one of your files instead"
            ))
        };
        match factor {
            TableFactor::Table {
                name, args: Some(_), ..
            } => function(name),
            TableFactor::Table { .. } => ControlFlow::Continue(()),
            TableFactor::TableFunction { expr, .. } => function(expr),
            TableFactor::Function { name, .. } => function(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<String> {
        let parts: Vec<String> = relation
            .0
            .iter()
            .map(|part| match part.as_ident() {
                Some(ident) => ident.value.clone(),
                None => part.to_string(),
            })
            .collect();
        let name = parts.join(".");
        if !self.names.contains(&name) {
            self.names.push(name);
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        match check(sql) {
            Err(QueryError::NotAllowed(m)) => m,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn selects_pass_and_name_their_tables() {
        let c =
            check("SELECT a FROM data JOIN \"regions 2024\" USING (region) WHERE a IN (SELECT x FROM other)").unwrap();
        assert_eq!(c.tables, ["data", "regions 2024", "other"]);
        let c = check("WITH t AS (SELECT 1 AS x) SELECT * FROM t").unwrap();
        assert_eq!(c.tables, ["t"]);
    }

    #[test]
    fn everything_else_is_refused() {
        for sql in [
            "DROP TABLE data",
            "CREATE TABLE x AS SELECT 1",
            "INSERT INTO data VALUES (1)",
            "UPDATE data SET a = 1",
            "DELETE FROM data",
            "COPY data TO '/tmp/x'",
            "SET x = 1",
            "SHOW TABLES",
            "EXPLAIN SELECT 1",
            "TRUNCATE TABLE data",
            "ATTACH DATABASE 'x' AS y",
            "SELECT 1; SELECT 2",
        ] {
            refused(sql);
        }
        assert!(refused("DROP TABLE data").contains("DROP TABLE"));
        for sql in [
            "SELECT * FROM read_csv('/etc/passwd')",
            "SELECT * FROM data WHERE a IN (SELECT * FROM read_parquet('x.parquet'))",
            "SELECT * FROM read_ipc('x')",
            "SELECT * FROM read_json('x')",
        ] {
            assert!(refused(sql).contains("table functions"), "{sql}");
        }
    }

    #[test]
    fn syntax_errors_are_invalid() {
        assert!(matches!(check("SELEC 1"), Err(QueryError::Invalid(_))));
        assert!(matches!(check("  "), Err(QueryError::Invalid(_))));
    }
}

//! A view's `where`, `orderby` and `q` as the engine's expressions: parsed with the SQL
//! parser, only a small grammar accepted, every literal typed by the column it meets.
//!
//! Nothing a client sends becomes SQL text: the parse tree is walked and each node that
//! is allowed (column names, literals, comparisons, `AND`/`OR`/`NOT`, `IN`, `BETWEEN`,
//! `LIKE`/`ILIKE`, `IS [NOT] NULL`) is built as an expression; anything else is refused
//! with what is allowed.

use polars::prelude::*;
use sqlparser::ast::{BinaryOperator, Expr as Sql, OrderByExpr, UnaryOperator, Value};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::QueryError;

/// Longest `where`, `orderby` or `q` taken.
pub(super) const MAX_TEXT: usize = 8 * 1024;
/// Most values an `IN` list may hold.
const MAX_IN_LIST: usize = 1_000;

const ALLOWED: &str = "a filter may use column names, literals, comparisons (= <> != < <= > >=), \
     AND, OR, NOT, IN (…), BETWEEN … AND …, LIKE, ILIKE and IS [NOT] NULL";

/// One sort key of `orderby`.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub column: String,
    pub descending: bool,
    pub nulls_last: bool,
}

/// `where` as a predicate over a table with `schema`.
pub fn parse_where(text: &str, schema: &Schema) -> Result<Expr, QueryError> {
    let tree = parse(text, "where", |p| p.parse_expr())?;
    match operand(&tree, schema)? {
        Operand::Predicate(e) => Ok(e),
        Operand::Column(name, DataType::Boolean) => Ok(col(name.as_str())),
        _ => Err(QueryError::Invalid(format!(
            "where must be a condition (such as price > 10), not {tree}"
        ))),
    }
}

/// `orderby` as sort keys: column names, each with `ASC` (the default) or `DESC` and
/// optionally `NULLS FIRST`/`NULLS LAST` (nulls sort last by default, as in DuckDB).
pub fn parse_order_by(text: &str, schema: &Schema) -> Result<Vec<SortKey>, QueryError> {
    let keys: Vec<OrderByExpr> = parse(text, "orderby", |p| {
        p.parse_comma_separated(|p| p.parse_order_by_expr())
    })?;
    keys.iter()
        .map(|key| {
            if key.with_fill.is_some() {
                return Err(QueryError::NotAllowed(
                    "orderby takes column names with ASC or DESC".into(),
                ));
            }
            let Operand::Column(column, _) = operand(&key.expr, schema)? else {
                return Err(QueryError::NotAllowed(format!(
                    "orderby takes column names with ASC or DESC, not {}",
                    key.expr
                )));
            };
            Ok(SortKey {
                column,
                descending: key.options.asc == Some(false),
                nulls_last: key.options.nulls_first != Some(true),
            })
        })
        .collect()
}

/// The columns of `columns=`: comma-separated names as the header has them; a name
/// holding a comma or a double quote is written in double quotes, a quote in it doubled
/// (`"net, after tax",region`), as in CSV and SQL.
pub fn parse_columns(text: &str, schema: &Schema) -> Result<Vec<String>, QueryError> {
    if text.len() > MAX_TEXT {
        return Err(too_long("columns"));
    }
    let names: Vec<String> = split_names(text)?
        .iter()
        .map(|n| resolve(n, schema))
        .collect::<Result<_, _>>()?;
    if names.is_empty() {
        return Err(QueryError::Invalid("columns names no column".into()));
    }
    Ok(names)
}

/// The names of a comma-separated list, quoted ones unquoted; unquoted names are trimmed
/// and empty ones dropped.
fn split_names(text: &str) -> Result<Vec<String>, QueryError> {
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'"').is_some() {
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => name.push('"'),
                    Some('"') => break,
                    Some(c) => name.push(c),
                    None => {
                        return Err(QueryError::Invalid(format!(
                            "columns has a quoted name without its closing quote: {text:?}"
                        )))
                    }
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(QueryError::Invalid(format!(
                    "columns has text after the quoted name {name:?}; separate names with commas"
                )));
            }
            names.push(name);
        } else {
            let mut name = String::new();
            while let Some(c) = chars.next_if(|c| *c != ',') {
                name.push(c);
            }
            let name = name.trim();
            if !name.is_empty() {
                names.push(name.to_string());
            }
        }
        if chars.next().is_none() {
            return Ok(names);
        }
    }
}

fn parse<T>(
    text: &str,
    what: &str,
    rule: impl FnOnce(&mut Parser<'_>) -> Result<T, sqlparser::parser::ParserError>,
) -> Result<T, QueryError> {
    if text.len() > MAX_TEXT {
        return Err(too_long(what));
    }
    let dialect = GenericDialect;
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| QueryError::Invalid(format!("{what} does not parse: {e}")))?;
    let tree = rule(&mut parser).map_err(|e| QueryError::Invalid(format!("{what} does not parse: {e}")))?;
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(QueryError::Invalid(format!(
            "{what} does not parse: unexpected {} after the end",
            rest.token
        )));
    }
    Ok(tree)
}

pub(super) fn too_long(what: &str) -> QueryError {
    QueryError::Invalid(format!("{what} is longer than {MAX_TEXT} bytes"))
}

/// What a node of the tree is, once checked.
enum Operand {
    Column(String, DataType),
    Literal(Literal),
    Predicate(Expr),
}

enum Literal {
    Number(String),
    Text(String),
    Bool(bool),
    Null,
}

fn operand(node: &Sql, schema: &Schema) -> Result<Operand, QueryError> {
    Ok(match node {
        Sql::Nested(inner) => operand(inner, schema)?,
        Sql::Identifier(ident) => {
            let name = resolve(&ident.value, schema)?;
            let dtype = schema.get(name.as_str()).cloned().unwrap_or(DataType::Null);
            Operand::Column(name, dtype)
        }
        Sql::Value(value) => Operand::Literal(match &value.value {
            Value::Number(n, _) => Literal::Number(n.clone()),
            Value::SingleQuotedString(s) => Literal::Text(s.clone()),
            Value::Boolean(b) => Literal::Bool(*b),
            Value::Null => Literal::Null,
            other => return Err(not_allowed(&other.to_string())),
        }),
        Sql::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match operand(expr, schema)? {
            Operand::Literal(Literal::Number(n)) if !n.starts_with('-') => {
                Operand::Literal(Literal::Number(format!("-{n}")))
            }
            _ => return Err(not_allowed(&node.to_string())),
        },
        Sql::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Operand::Predicate(predicate(expr, schema)?.not()),
        Sql::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => Operand::Predicate(predicate(left, schema)?.and(predicate(right, schema)?)),
            BinaryOperator::Or => Operand::Predicate(predicate(left, schema)?.or(predicate(right, schema)?)),
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq => {
                let (l, r) = typed_pair(operand(left, schema)?, operand(right, schema)?)?;
                Operand::Predicate(match op {
                    BinaryOperator::Eq => l.eq(r),
                    BinaryOperator::NotEq => l.neq(r),
                    BinaryOperator::Lt => l.lt(r),
                    BinaryOperator::LtEq => l.lt_eq(r),
                    BinaryOperator::Gt => l.gt(r),
                    _ => l.gt_eq(r),
                })
            }
            _ => return Err(not_allowed(&op.to_string())),
        },
        Sql::IsNull(inner) => Operand::Predicate(value(operand(inner, schema)?, None)?.is_null()),
        Sql::IsNotNull(inner) => Operand::Predicate(value(operand(inner, schema)?, None)?.is_not_null()),
        Sql::InList { expr, list, negated } => {
            if list.len() > MAX_IN_LIST {
                return Err(QueryError::Invalid(format!(
                    "an IN list may hold at most {MAX_IN_LIST} values"
                )));
            }
            let subject = operand(expr, schema)?;
            let mut any: Option<Expr> = None;
            for item in list {
                let (l, r) = typed_pair(same(&subject), operand(item, schema)?)?;
                let eq = l.eq(r);
                any = Some(match any {
                    Some(a) => a.or(eq),
                    None => eq,
                });
            }
            let any = any.unwrap_or_else(|| lit(false));
            Operand::Predicate(if *negated { any.not() } else { any })
        }
        Sql::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let subject = operand(expr, schema)?;
            let (a, lo) = typed_pair(same(&subject), operand(low, schema)?)?;
            let (b, hi) = typed_pair(subject, operand(high, schema)?)?;
            let within = a.gt_eq(lo).and(b.lt_eq(hi));
            Operand::Predicate(if *negated { within.not() } else { within })
        }
        Sql::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => Operand::Predicate(like(expr, pattern, *negated, false, schema)?),
        Sql::ILike {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => Operand::Predicate(like(expr, pattern, *negated, true, schema)?),
        other => return Err(not_allowed(&other.to_string())),
    })
}

fn predicate(node: &Sql, schema: &Schema) -> Result<Expr, QueryError> {
    match operand(node, schema)? {
        Operand::Predicate(e) => Ok(e),
        Operand::Column(name, DataType::Boolean) => Ok(col(name.as_str())),
        Operand::Literal(Literal::Bool(b)) => Ok(lit(b)),
        _ => Err(QueryError::Invalid(format!("{node} is not a condition"))),
    }
}

/// The same operand again (a column or literal is cheap to rebuild; a predicate is cloned).
fn same(operand: &Operand) -> Operand {
    match operand {
        Operand::Column(n, d) => Operand::Column(n.clone(), d.clone()),
        Operand::Predicate(e) => Operand::Predicate(e.clone()),
        Operand::Literal(l) => Operand::Literal(match l {
            Literal::Number(n) => Literal::Number(n.clone()),
            Literal::Text(t) => Literal::Text(t.clone()),
            Literal::Bool(b) => Literal::Bool(*b),
            Literal::Null => Literal::Null,
        }),
    }
}

/// Both sides of a comparison, a literal typed by the column on the other side.
fn typed_pair(left: Operand, right: Operand) -> Result<(Expr, Expr), QueryError> {
    let left_type = match &left {
        Operand::Column(_, d) => Some(d.clone()),
        _ => None,
    };
    let right_type = match &right {
        Operand::Column(_, d) => Some(d.clone()),
        _ => None,
    };
    Ok((value(left, right_type.as_ref())?, value(right, left_type.as_ref())?))
}

/// An operand as an expression; a literal next to a column of `dtype` takes its type.
fn value(operand: Operand, dtype: Option<&DataType>) -> Result<Expr, QueryError> {
    Ok(match operand {
        Operand::Column(name, _) => col(name.as_str()),
        Operand::Predicate(e) => e,
        Operand::Literal(literal) => typed_literal(literal, dtype)?,
    })
}

fn typed_literal(literal: Literal, dtype: Option<&DataType>) -> Result<Expr, QueryError> {
    let number = |n: &str| -> Result<Expr, QueryError> {
        if let Ok(i) = n.parse::<i64>() {
            return Ok(lit(i));
        }
        n.parse::<f64>()
            .map(lit)
            .map_err(|_| QueryError::Invalid(format!("{n} is not a number")))
    };
    Ok(match (literal, dtype) {
        (Literal::Null, Some(d)) => lit(NULL).cast(d.clone()),
        (Literal::Null, None) => lit(NULL),
        (Literal::Bool(b), _) => lit(b),
        (Literal::Number(n), Some(d)) if d.is_string() => lit(n),
        (Literal::Number(n), Some(d)) if d.is_temporal() => {
            return Err(QueryError::Invalid(format!(
                "{n} is a number, and the column holds dates or times: write the date as text ('2024-01-31')"
            )))
        }
        (Literal::Number(n), _) => number(&n)?,
        (Literal::Text(t), Some(d)) if d.is_primitive_numeric() => number(t.trim())?,
        (Literal::Text(t), Some(DataType::Boolean)) => match t.to_ascii_lowercase().as_str() {
            "true" => lit(true),
            "false" => lit(false),
            _ => return Err(QueryError::Invalid(format!("'{t}' is not true or false"))),
        },
        // A date compares as a date.
        (Literal::Text(t), Some(d @ (DataType::Date | DataType::Datetime(..)))) => when(&t)?.cast(d.clone()),
        (Literal::Text(t), _) => lit(t),
    })
}

/// `2024-01-31`, `2024-01-31 12:00:00` or `2024-01-31T12:00:00.5` as a date or time literal.
fn when(text: &str) -> Result<Expr, QueryError> {
    let text = text.trim();
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(lit(day));
    }
    for layout in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, layout) {
            return Ok(lit(time));
        }
    }
    Err(QueryError::Invalid(format!(
        "'{text}' is not a date or time; write it as '2024-01-31' or '2024-01-31 12:00:00'"
    )))
}

fn like(subject: &Sql, pattern: &Sql, negated: bool, ignore_case: bool, schema: &Schema) -> Result<Expr, QueryError> {
    let subject = match operand(subject, schema)? {
        Operand::Column(name, d) if d.is_string() => col(name.as_str()),
        Operand::Column(name, _) => col(name.as_str()).cast(DataType::String),
        _ => return Err(QueryError::Invalid("LIKE takes a column on its left".into())),
    };
    let Operand::Literal(Literal::Text(pattern)) = operand(pattern, schema)? else {
        return Err(QueryError::Invalid(
            "LIKE takes a text pattern ('%ab%') on its right".into(),
        ));
    };
    let mut regex = String::from(if ignore_case { "^(?is)" } else { "^(?s)" });
    for c in pattern.chars() {
        match c {
            '%' => regex.push_str(".*"),
            '_' => regex.push('.'),
            c => regex.push_str(&regex_escape(&c.to_string())),
        }
    }
    regex.push('$');
    let matches = subject.str().contains(lit(regex), true);
    Ok(if negated { matches.not() } else { matches })
}

/// `text` matched literally by a regular expression.
pub(super) fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // The characters the regex crate gives a meaning (its own `escape` set).
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A column named as the header has it, or, failing that, the one column whose name
/// differs only in case.
fn resolve(name: &str, schema: &Schema) -> Result<String, QueryError> {
    if schema.contains(name) {
        return Ok(name.to_string());
    }
    let mut alike = schema.iter_names().filter(|n| n.eq_ignore_ascii_case(name));
    match (alike.next(), alike.next()) {
        (Some(one), None) => Ok(one.to_string()),
        _ => {
            let names: Vec<String> = schema.iter_names().take(50).map(|n| format!("{n:?}")).collect();
            Err(QueryError::Invalid(format!(
                "no column named {name:?}; the columns are {} (quote names with spaces: \"unit price\")",
                names.join(", ")
            )))
        }
    }
}

fn not_allowed(what: &str) -> QueryError {
    QueryError::NotAllowed(format!("{what} is not allowed: {ALLOWED}"))
}

#[cfg(test)]
mod tests {
    use super::super::search::search;
    use super::*;

    #[test]
    fn column_lists_take_quoted_names_with_commas_and_quotes() {
        let names = |t: &str| split_names(t).unwrap();
        assert_eq!(names("a, b ,,c"), ["a", "b", "c"]);
        assert_eq!(names(r#""net, after tax",region"#), ["net, after tax", "region"]);
        assert_eq!(names(r#" "say ""hi""" , "x""#), [r#"say "hi""#, "x"]);
        assert!(split_names(r#""open"#).is_err());
        assert!(split_names(r#""a"b"#).is_err());
    }

    fn schema() -> Schema {
        Schema::from_iter([
            Field::new("region".into(), DataType::String),
            Field::new("unit price".into(), DataType::Float64),
            Field::new("qty".into(), DataType::Int64),
            Field::new("day".into(), DataType::Date),
            Field::new("paid".into(), DataType::Boolean),
        ])
    }

    fn frame() -> LazyFrame {
        df! {
            "region" => [Some("north"), Some("South"), None, Some("north")],
            "unit price" => [Some(1.5), Some(2.0), Some(10.0), None],
            "qty" => [1i64, 2, 3, 4],
            "day" => [
                chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
                chrono::NaiveDate::from_ymd_opt(2024, 2, 1).unwrap(),
                chrono::NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
                chrono::NaiveDate::from_ymd_opt(2024, 4, 1).unwrap(),
            ],
            "paid" => [true, false, true, false],
        }
        .unwrap()
        .lazy()
    }

    fn qty_where(text: &str) -> Vec<i64> {
        let filter = parse_where(text, &schema()).unwrap_or_else(|e| panic!("{text}: {e}"));
        let out = frame().filter(filter).select([col("qty")]).collect().unwrap();
        out.column("qty").unwrap().i64().unwrap().into_no_null_iter().collect()
    }

    #[test]
    fn conditions_filter_as_sql_would() {
        assert_eq!(qty_where("region = 'north' AND \"unit price\" > 1"), [1]);
        assert_eq!(qty_where("\"unit price\" IN (1.5, 10)"), [1, 3]);
        assert_eq!(qty_where("qty NOT IN (1, 2)"), [3, 4]);
        assert_eq!(qty_where("region IS NULL"), [3]);
        assert_eq!(qty_where("\"unit price\" is not null and not paid"), [2]);
        assert_eq!(qty_where("region LIKE 'n%'"), [1, 4]);
        assert_eq!(qty_where("region ILIKE 'SOUTH'"), [2]);
        assert_eq!(qty_where("region NOT LIKE '_orth'"), [2]);
        assert_eq!(qty_where("qty BETWEEN 2 AND 3"), [2, 3]);
        assert_eq!(qty_where("day >= '2024-02-01' AND day < '2024-04-01'"), [2, 3]);
        assert_eq!(qty_where("(qty = 1 OR qty = 4) AND region = 'north'"), [1, 4]);
        assert_eq!(qty_where("qty > -1 AND paid"), [1, 3]);
        assert_eq!(qty_where("QTY = '2'"), [2]);
    }

    #[test]
    fn anything_else_is_refused_with_what_is_allowed() {
        for text in [
            "region = lower('NORTH')",
            "qty IN (SELECT 1)",
            "qty + 1 > 2",
            "read_csv('/etc/passwd') IS NULL",
            "qty = 1; DROP TABLE data",
            "EXISTS (SELECT 1)",
            "day > 20240101",
            "day > 'yesterday'",
        ] {
            match parse_where(text, &schema()) {
                Err(QueryError::NotAllowed(m)) | Err(QueryError::Invalid(m)) => assert!(!m.is_empty(), "{text}"),
                other => panic!("{text} gave {:?}", other.map(|_| ())),
            }
        }
        let Err(QueryError::Invalid(m)) = parse_where("nope = 1", &schema()) else {
            panic!("unknown column")
        };
        assert!(m.contains("\"unit price\""), "{m}");
    }

    #[test]
    fn sort_keys_and_columns() {
        let keys = parse_order_by("\"unit price\" DESC, day NULLS FIRST", &schema()).unwrap();
        assert_eq!(
            keys,
            [
                SortKey {
                    column: "unit price".into(),
                    descending: true,
                    nulls_last: true
                },
                SortKey {
                    column: "day".into(),
                    descending: false,
                    nulls_last: false
                }
            ]
        );
        assert!(parse_order_by("qty + 1", &schema()).is_err());
        assert_eq!(
            parse_columns("qty, unit price", &schema()).unwrap(),
            ["qty", "unit price"]
        );
        assert!(parse_columns("qty,nope", &schema()).is_err());
    }

    #[test]
    fn search_looks_in_text_columns_only_ignoring_case_and_regex() {
        let hits = |q: &str| {
            let out = frame()
                .filter(search(q, &schema()).unwrap())
                .select([col("qty")])
                .collect()
                .unwrap();
            out.column("qty")
                .unwrap()
                .i64()
                .unwrap()
                .into_no_null_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(hits("NORTH"), [1, 4]);
        assert_eq!(hits("out"), [2]);
        assert_eq!(hits("1.5"), Vec::<i64>::new());
        assert_eq!(hits(".*"), Vec::<i64>::new());
    }
}

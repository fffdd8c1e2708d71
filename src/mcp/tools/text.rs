//! The text rendering of results: Markdown tables of rows cut to a character budget, and
//! the helpers that keep text on one line and within bounds.

use serde::Serialize;
use serde_json::Value;

use super::args::ColumnType;
use super::OVERHEAD;
use crate::query::Answer;

/// The answer's rows that fit in `budget` characters (as JSON and as a Markdown table), the
/// columns, whether rows were dropped for the budget, and the table's text.
pub(super) fn fit_rows(answer: Answer, budget: usize) -> (Vec<ColumnType>, Vec<Vec<Value>>, bool, String) {
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

/// A column name as an SQL identifier: in double quotes, quotes inside doubled.
pub(super) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) fn json_size<T: Serialize + ?Sized>(value: &T) -> usize {
    serde_json::to_string(value).map(|s| s.len()).unwrap_or(0)
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
pub(super) fn cut_to(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A value as a Markdown table cell.
pub(super) fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => cell_text(s),
        other => cell_text(&other.to_string()),
    }
}

pub(super) fn cell_text(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

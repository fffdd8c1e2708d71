//! A view's search (`q`): rows where any text column contains the text, ignoring case.

use polars::prelude::*;

use super::filter::{regex_escape, too_long, MAX_TEXT};
use super::QueryError;

/// `q`: rows where any text column contains `text`, ignoring case.
pub fn search(text: &str, schema: &Schema) -> Result<Expr, QueryError> {
    if text.len() > MAX_TEXT {
        return Err(too_long("q"));
    }
    let pattern = format!("(?i){}", regex_escape(text));
    Ok(schema
        .iter()
        .filter(|(_, dtype)| dtype.is_string())
        .map(|(name, _)| col(name.clone()).str().contains(lit(pattern.clone()), true))
        .reduce(|a, b| a.or(b))
        // No text column: nothing matches.
        .unwrap_or_else(|| lit(false)))
}

//! A view's search (`q`): rows where any text column contains the text, ignoring case.

use std::sync::Arc;

use polars::prelude::*;

use super::filter::{regex_escape, too_long, MAX_TEXT};
use super::QueryError;

/// `q`: rows where any text column contains `text`, ignoring case, as the case-insensitive
/// regular expression of the text would find it (see [`Needle`]).
pub fn search(text: &str, schema: &Schema) -> Result<Expr, QueryError> {
    if text.len() > MAX_TEXT {
        return Err(too_long("q"));
    }
    let needle = Arc::new(Needle::new(text)?);
    Ok(schema
        .iter()
        .filter(|(_, dtype)| dtype.is_string())
        .map(|(name, _)| {
            let needle = needle.clone();
            col(name.clone()).map_with_fmt_str(
                move |c| needle.hits(&c),
                |_, field| Ok(Field::new(field.name().clone(), DataType::Boolean)),
                "search",
            )
        })
        .reduce(|a, b| a.or(b))
        // No text column: nothing matches.
        .unwrap_or_else(|| lit(false)))
}

/// What `q` looks for. A case-insensitive regular expression runs a small automaton over
/// every byte of every cell, which made search the slowest part of a view. When both the
/// text sought and a cell are ASCII, ignoring ASCII case finds exactly what the regular
/// expression finds (the only other letters Unicode folds with ASCII ones, the Kelvin sign
/// and the long s, are not ASCII), and a byte search for the first letter is much faster;
/// any other cell still goes through the regular expression.
struct Needle {
    /// The text, ASCII-lowercased, when it is ASCII.
    ascii: Option<Vec<u8>>,
    regex: regex::Regex,
}

impl Needle {
    fn new(text: &str) -> Result<Needle, QueryError> {
        let regex = regex::Regex::new(&format!("(?i){}", regex_escape(text)))
            .map_err(|e| QueryError::Invalid(format!("q cannot be searched for: {e}")))?;
        Ok(Needle {
            ascii: text.is_ascii().then(|| text.to_ascii_lowercase().into_bytes()),
            regex,
        })
    }

    fn contains(&self, cell: &str) -> bool {
        match &self.ascii {
            Some(needle) if cell.is_ascii() => ascii_contains_ignoring_case(cell.as_bytes(), needle),
            _ => self.regex.is_match(cell),
        }
    }

    /// Whether each cell of a text column holds the text (null where the cell is null).
    fn hits(&self, column: &Column) -> PolarsResult<Column> {
        let cells = column.str()?;
        let hits: BooleanChunked = cells.iter().map(|cell| cell.map(|c| self.contains(c))).collect();
        Ok(hits.with_name(column.name().clone()).into_column())
    }
}

/// Whether `haystack` holds `needle` (ASCII, lowercased) ignoring ASCII case.
fn ascii_contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if haystack.len() < needle.len() {
        return false;
    }
    let last_start = haystack.len() - needle.len();
    let upper = first.to_ascii_uppercase();
    let mut from = 0;
    while from <= last_start {
        let Some(at) = memchr::memchr2(first, upper, &haystack[from..=last_start]) else {
            return false;
        };
        let start = from + at;
        if haystack[start + 1..start + needle.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        from = start + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_finds_what_the_case_insensitive_regex_finds() {
        let cells = [
            "",
            "damaged",
            "DAMAGED box",
            "a DaMaGeD",
            "damage",
            "dd",
            "kelvin \u{212A}",
            "\u{212A}",
            "K",
            "ſ",
            "s",
            "SS",
            "straße",
            "STRASSE",
            "Ünïcödé",
            "ünïcödé",
            "x.y",
            "x-y",
            "İi",
            "ı",
            "naïve DAMAGED",
        ];
        let needles = [
            "damaged", "DAMAGED", "d", "k", "s", "ss", "straße", "ünï", "x.y", ".", "-", "i", "ﬀ", "K", "ſ",
        ];
        for needle in needles {
            let fast = Needle::new(needle).unwrap();
            let regex = regex::Regex::new(&format!("(?i){}", regex_escape(needle))).unwrap();
            for cell in cells {
                assert_eq!(fast.contains(cell), regex.is_match(cell), "{needle:?} in {cell:?}");
            }
        }
        assert!(ascii_contains_ignoring_case(b"abc", b""));
        assert!(!ascii_contains_ignoring_case(b"ab", b"abc"));
        assert!(ascii_contains_ignoring_case(b"xxABC", b"abc"));
    }
}

//! Whether a table's first line is its header: cell kinds and the type rule (after DuckDB's
//! sniffer), used on the sniffed start of a file and on each further table met while streaming.
//!
//! The first line is data, not a header, when every cell of it fits its column's type in the
//! rows below: `1,1,di4-aN.wav,di,a,4,4,0.9597` over rows like it, `2/28/2008,1:00:00,NaN` over
//! dates and times. It is a header when some cell does not fit (`id` over numbers), when every
//! column holds text (nothing to tell them apart, so pandas' reading), when a cell is empty
//! (pandas' `Unnamed: N`), when all its numbers are years over columns that are not years
//! (`Industry,2019,2020`), or when it numbers the columns (`0,1,2`, as pandas writes a frame
//! without names).

use super::infer::{self, Value};

/// What a cell is, finer than the dtype where it helps tell a header from a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Empty or whitespace only.
    Empty,
    /// A pandas NA spelling (`NaN`, `NA`, …): fits any column.
    Missing,
    /// An integer from 1800 to 2100, written as four digits.
    Year,
    Int,
    /// Also a decimal comma (`1,5` in a semicolon file).
    Float,
    Bool,
    /// ISO-8601.
    Date,
    /// `2/28/2008`, `28.02.2008`: text to pandas, but a date to a reader.
    OtherDate,
    /// `1:00:00`, `13:45`, `1:00 PM`.
    Time,
    Text,
}

impl Kind {
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

const NUMBER: u16 = (1 << Kind::Year as u16) | (1 << Kind::Int as u16) | (1 << Kind::Float as u16);
const TEXT: u16 = 1 << Kind::Text as u16;
const FLOAT_OR_TEXT: u16 = (1 << Kind::Float as u16) | TEXT;

pub(super) fn kind(field: &[u8]) -> Kind {
    let t = infer::trim(field);
    if t.is_empty() {
        return Kind::Empty;
    }
    match infer::classify(field) {
        Value::Missing => Kind::Missing,
        Value::Bool(_) => Kind::Bool,
        Value::Int(v) if t.len() == 4 && (1800..=2100).contains(&v) => Kind::Year,
        Value::Int(_) | Value::UInt(_) | Value::BigInt => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Date(_) => Kind::Date,
        Value::Text => text_kind(t),
    }
}

/// Dates, times and decimal-comma numbers that pandas leaves as text.
fn text_kind(t: &[u8]) -> Kind {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let parts = |sep: u8| t.split(move |b| *b == sep).collect::<Vec<_>>();
    if t.len() <= 24 {
        // Date, optionally followed by a time: `2/28/2008 1:00`.
        let (date, time) = match t.iter().position(|b| *b == b' ') {
            Some(i) => (&t[..i], Some(infer::trim(&t[i + 1..]))),
            None => (t, None),
        };
        for sep in [b'/', b'.', b'-'] {
            let p: Vec<&[u8]> = date.split(|b| *b == sep).collect();
            let date_like = p.len() == 3
                && p.iter().all(|x| digits(x))
                && p[0].len() <= 4
                && p[1].len() <= 2
                && matches!(p[2].len(), 1 | 2 | 4)
                && (p[0].len() == 4 || p[2].len() >= 2);
            if date_like && time.is_none_or(is_time) {
                return Kind::OtherDate;
            }
        }
        if is_time(t) {
            return Kind::Time;
        }
        let p = parts(b',');
        let unsigned = t.strip_prefix(b"-").unwrap_or(t);
        let q: Vec<&[u8]> = unsigned.split(|b| *b == b',').collect();
        if p.len() == 2 && q.len() == 2 && digits(q[0]) && digits(q[1]) {
            return Kind::Float;
        }
    }
    Kind::Text
}

/// `1:00:00`, `13:45`, `01:02:03.5`, `1:00 PM`.
fn is_time(t: &[u8]) -> bool {
    let t = t
        .strip_suffix(b"AM")
        .or_else(|| t.strip_suffix(b"PM"))
        .or_else(|| t.strip_suffix(b"am"))
        .or_else(|| t.strip_suffix(b"pm"))
        .map_or(t, |s| s.trim_ascii_end());
    let p: Vec<&[u8]> = t.split(|b| *b == b':').collect();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let seconds = |s: &[u8]| {
        let mut it = s.splitn(2, |b| *b == b'.');
        it.next().is_some_and(|w| digits(w) && w.len() == 2) && it.next().is_none_or(digits)
    };
    matches!(p.len(), 2 | 3)
        && digits(p[0])
        && p[0].len() <= 2
        && digits(p[1])
        && p[1].len() == 2
        && (p.len() == 2 || seconds(p[2]))
}

/// Whether `first` is a header over `rows` (the kinds of the records below it in its table;
/// cells past a row's end are ignored). See the module doc for the rule; a line numbering the
/// columns is checked on its values by [`counts_columns`].
pub(super) fn is_header<'a>(first: &[Kind], rows: impl Iterator<Item = &'a [Kind]>) -> bool {
    if first.len() < 2 || first.contains(&Kind::Empty) {
        return true;
    }
    let mut columns = vec![0u16; first.len()];
    let mut any_row = false;
    for row in rows {
        any_row = true;
        for (mask, k) in columns.iter_mut().zip(row) {
            if !matches!(k, Kind::Empty | Kind::Missing) {
                *mask |= k.bit();
            }
        }
    }
    // A column with any text below is text (DuckDB's VARCHAR): when every column is, the
    // types cannot tell a header from a row (a units row under the header makes it so).
    if !any_row || columns.iter().all(|m| *m == 0 || *m & TEXT != 0) {
        return true;
    }
    let numbers: Vec<&Kind> = first.iter().filter(|k| k.bit() & NUMBER != 0).collect();
    let years_only = !numbers.is_empty() && numbers.iter().all(|k| **k == Kind::Year);
    !first.iter().zip(&columns).all(|(k, mask)| fits(*k, *mask, years_only))
}

/// Whether `first` is a header over `rows` because its types say so: it names every column,
/// some column below is typed (not text), and some cell of it does not fit its column's type.
/// Stricter than [`is_header`], which also keeps pandas' reading where the types cannot tell.
pub(super) fn names_typed_rows<'a>(first: &[Kind], rows: impl Iterator<Item = &'a [Kind]>) -> bool {
    if first.len() < 2 || first.iter().any(|k| *k != Kind::Text) {
        return false;
    }
    let mut columns = vec![0u16; first.len()];
    for row in rows {
        for (mask, k) in columns.iter_mut().zip(row) {
            if !matches!(k, Kind::Empty | Kind::Missing) {
                *mask |= k.bit();
            }
        }
    }
    // Text over a column of numbers, dates or booleans is a name.
    columns.iter().any(|m| *m != 0 && *m & TEXT == 0)
}

/// A line `0,1,2,…` (three columns or more): pandas' own header for a frame without column
/// names (`1,2,3,…` is too often a row).
pub(super) fn counts_columns<'a>(fields: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut n = 0u64;
    for f in fields {
        let Some(v) = std::str::from_utf8(f).ok().and_then(|s| s.trim().parse::<u64>().ok()) else {
            return false;
        };
        if v != n {
            return false;
        }
        n += 1;
    }
    n >= 3
}

/// Whether a first-line cell of kind `k` fits a column whose values below have the kinds in `mask`.
fn fits(k: Kind, mask: u16, years_only: bool) -> bool {
    if matches!(k, Kind::Empty | Kind::Missing) || mask == 0 {
        return true;
    }
    let family = if k.bit() & NUMBER != 0 { NUMBER } else { k.bit() };
    if mask & family == 0 {
        // Text over numbers, or a number over a column of text only (`1,2` over `3,x`).
        return false;
    }
    match k {
        // Years over values that are not years are a header of yearly columns.
        Kind::Year if years_only => mask == Kind::Year.bit(),
        // A fraction over whole numbers does not fit their type.
        Kind::Float => mask & FLOAT_OR_TEXT != 0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(line: &str) -> Vec<Kind> {
        line.split(',').map(|f| kind(f.as_bytes())).collect()
    }

    fn header(first: &str, rows: &[&str]) -> bool {
        let rows: Vec<Vec<Kind>> = rows.iter().map(|r| kinds(r)).collect();
        is_header(&kinds(first), rows.iter().map(Vec::as_slice))
    }

    #[test]
    fn kinds_of_cells() {
        assert_eq!(
            kinds("2/28/2008,1:00:00,NaN,28.02.2008,1:00 PM"),
            [Kind::OtherDate, Kind::Time, Kind::Missing, Kind::OtherDate, Kind::Time]
        );
        assert_eq!(
            kinds("1990,19900,0.5,2020-01-01,True, ,x"),
            [
                Kind::Year,
                Kind::Int,
                Kind::Float,
                Kind::Date,
                Kind::Bool,
                Kind::Empty,
                Kind::Text
            ]
        );
        assert_eq!(kind(b"1,5"), Kind::Float);
        assert_eq!(kind(b"1,234,5"), Kind::Text);
        assert_eq!(kind(b"di4-aN.wav"), Kind::Text);
    }

    #[test]
    fn first_line_like_the_rows_is_data() {
        let rows = ["2,1,di4-bN.wav,di,b,4,4,0.8113", "3,2,di7-aN.wav,du,a,7,4,0.5"];
        assert!(!header("1,1,di4-aN.wav,di,a,4,4,0.9597", &rows));
        assert!(header("id,run,file,speaker,take,a,b,score", &rows));
        assert!(!header(
            "2/28/2008,1:00:00,NaN",
            &["2/28/2008,2:00:00,0.5", "2/29/2008,3:00:00,1.5"]
        ));
        assert!(header("date,time,value", &["2/28/2008,2:00:00,0.5"]));
        // Years as the first column of data; years heading columns of values.
        assert!(!header("1990,0.5,0.7", &["1991,0.4,0.8", "1992,0.3,0.9"]));
        assert!(header("2019,2020", &["1.5,2.5", "3.5,4.5"]));
        assert!(header("Industry,2019,2020", &["Mining,1,2", "Retail,3,4"]));
        assert!(!header("2001,2002", &["2003,2004"]));
        // pandas' readings kept: all text, an empty cell, numbers over text only.
        assert!(header("name,city", &["Bob,Paris"]));
        // A units row under the header makes every column text.
        assert!(header("time,temp,flow", &["s,°C,l/min", "0,20.5,1.5", "1,20.7,1.4"]));
        assert!(header(",2", &["1,3"]));
        assert!(header("1,2", &["3,x"]));
        assert!(!header("1,2", &["3,4"]));
        // A fraction over whole numbers.
        assert!(header("0.5,1", &["1,2", "3,4"]));
    }

    #[test]
    fn a_line_of_names_over_typed_rows() {
        let names = |first: &str, rows: &[&str]| {
            let rows: Vec<Vec<Kind>> = rows.iter().map(|r| kinds(r)).collect();
            names_typed_rows(&kinds(first), rows.iter().map(Vec::as_slice))
        };
        assert!(names("X,Y,X,Y", &["0.1,0.2,0.3,0.4"]));
        assert!(names("day,min", &["2024-01-01,3"]));
        // Rows of text only, an empty cell, or a number in the line: the types cannot tell.
        assert!(!names("w,x", &["foo,bar"]));
        assert!(!names("run-a,", &["1,2"]));
        assert!(!names("id,2019", &["1,2"]));
        assert!(!names("X,Y", &[]));
    }

    #[test]
    fn column_numbers_are_recognized() {
        let fields = |s: &'static str| s.split(',').map(str::as_bytes);
        assert!(counts_columns(fields("0,1,2")));
        assert!(!counts_columns(fields("1,2,3,4")));
        assert!(!counts_columns(fields("1,2")));
        assert!(!counts_columns(fields("2,3,4")));
        assert!(!counts_columns(fields("0,1,3")));
    }
}

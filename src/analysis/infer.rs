//! What one raw field is (missing, bool, integer, float, date, text) under pandas' `read_csv`
//! rules, and the per-column type lattice that turns all of a column's values into a dtype.

use super::dtype::Dtype;
use super::iso::{self, IsoDate};

/// A classified field. Rules checked against pandas 3.1 `read_csv` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value {
    Missing,
    Bool(bool),
    /// Fits i64.
    Int(i64),
    /// Above i64::MAX, fits u64.
    UInt(u64),
    /// Integer syntax outside i64/u64: pandas keeps these as Python ints (object).
    BigInt,
    Float(f64),
    Date(IsoDate),
    Text,
}

/// pandas' default NA spellings (`keep_default_na=True`), matched exactly — pandas does not
/// strip spaces before this check (`" NA"` is text).
#[inline]
pub(super) fn is_na(f: &[u8]) -> bool {
    matches!(
        f,
        b"" | b"#N/A"
            | b"#N/A N/A"
            | b"#NA"
            | b"-1.#IND"
            | b"-1.#QNAN"
            | b"-NaN"
            | b"-nan"
            | b"1.#IND"
            | b"1.#QNAN"
            | b"<NA>"
            | b"N/A"
            | b"NA"
            | b"NULL"
            | b"NaN"
            | b"None"
            | b"n/a"
            | b"nan"
            | b"null"
    )
}

/// pandas' C parser skips ASCII whitespace around numbers (but not around NA, bool or inf).
#[inline]
pub(super) fn trim(f: &[u8]) -> &[u8] {
    let is_ws = |c: &u8| matches!(*c, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c');
    // Most fields have nothing to trim.
    if let (Some(a), Some(z)) = (f.first(), f.last()) {
        if !is_ws(a) && !is_ws(z) {
            return f;
        }
    }
    let start = f.iter().position(|c| !is_ws(c)).unwrap_or(f.len());
    let end = f.iter().rposition(|c| !is_ws(c)).map_or(start, |e| e + 1);
    &f[start..end.max(start)]
}

#[inline]
pub(super) fn classify(f: &[u8]) -> Value {
    // Most text starts with a letter that no NA spelling, number, date, `inf` or bool starts
    // with: decided by its first byte alone.
    if let Some(&first) = f.first() {
        if first.is_ascii_alphabetic() && !matches!(first | 0x20, b'n' | b'i' | b't' | b'f') {
            return Value::Text;
        }
    }
    if f.len() <= 8 && is_na(f) {
        return Value::Missing;
    }
    let t = trim(f);
    let Some(&first) = t.first() else {
        // Only whitespace: pandas keeps it as text.
        return Value::Text;
    };
    if first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.' {
        if let Some(v) = parse_number(t) {
            return v;
        }
        if t.len() >= 10 && first.is_ascii_digit() {
            if let Some(d) = iso::parse(t) {
                return Value::Date(d);
            }
        }
    }
    if (3..=9).contains(&f.len()) {
        if let Some(x) = parse_inf(f) {
            return Value::Float(x);
        }
        if let Some(b) = parse_bool(f) {
            return Value::Bool(b);
        }
    }
    Value::Text
}

/// `true`/`false` in any letter case (pandas compares case-insensitively; `T`, `yes`, `1` are not bools).
#[inline]
fn parse_bool(f: &[u8]) -> Option<bool> {
    if f.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if f.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// `inf`/`infinity` with optional sign, any case, no surrounding spaces.
#[inline]
fn parse_inf(f: &[u8]) -> Option<f64> {
    let (neg, body) = match f.first() {
        Some(b'-') => (true, &f[1..]),
        Some(b'+') => (false, &f[1..]),
        _ => (false, f),
    };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        Some(if neg { f64::NEG_INFINITY } else { f64::INFINITY })
    } else {
        None
    }
}

/// Mantissas up to 2^53 convert to f64 exactly.
const MAX_EXACT_MANTISSA: u64 = 1 << 53;
/// Powers of ten that are exact doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Integers (`[+-]digits`) and decimal floats (`[+-](d+[.d*]|.d+)([eE][+-]?d+)?`), already trimmed.
#[inline]
fn parse_number(t: &[u8]) -> Option<Value> {
    let (neg, body) = match t.first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() {
        return None;
    }
    // Integer fast path.
    let mut mag: u64 = 0;
    let mut overflow = false;
    let mut i = 0;
    while i < body.len() {
        let d = body[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if !overflow {
            match mag.checked_mul(10).and_then(|m| m.checked_add(d as u64)) {
                Some(m) => mag = m,
                None => overflow = true,
            }
        }
        i += 1;
    }
    if i == body.len() {
        return Some(if overflow {
            Value::BigInt
        } else if neg {
            if mag <= 1u64 << 63 {
                Value::Int((mag as i128).wrapping_neg() as i64)
            } else {
                Value::BigInt
            }
        } else if mag <= i64::MAX as u64 {
            Value::Int(mag as i64)
        } else {
            Value::UInt(mag)
        });
    }
    // Float grammar check, then the standard library's correctly rounded parser.
    let int_digits = i;
    let mut j = i;
    let mut frac_digits = 0;
    if body[j] == b'.' {
        j += 1;
        while j < body.len() && body[j].is_ascii_digit() {
            // The integer part's digits were accumulated above; go on with the fraction's.
            if !overflow {
                let d = (body[j] - b'0') as u64;
                match mag.checked_mul(10).and_then(|m| m.checked_add(d)) {
                    Some(m) => mag = m,
                    None => overflow = true,
                }
            }
            j += 1;
            frac_digits += 1;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if j == body.len() && !overflow && mag <= MAX_EXACT_MANTISSA && frac_digits < POW10.len() {
        // `d.ddd` with few digits: mantissa and power of ten are exact doubles, so one
        // division is correctly rounded, the same value `str::parse` gives (Clinger's fast path).
        let x = mag as f64 / POW10[frac_digits];
        return Some(Value::Float(if neg { -x } else { x }));
    }
    if j < body.len() && (body[j] == b'e' || body[j] == b'E') {
        j += 1;
        if j < body.len() && (body[j] == b'+' || body[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < body.len() && body[j].is_ascii_digit() {
            j += 1;
        }
        if j == exp_start {
            return None;
        }
    }
    if j != body.len() {
        return None;
    }
    let s = std::str::from_utf8(t).ok()?;
    s.parse::<f64>().ok().map(Value::Float)
}

const TEXT: u16 = 1;
const BOOL: u16 = 2;
const INT: u16 = 4;
const UINT: u16 = 8;
const NEG: u16 = 16;
const BIG: u16 = 32;
const FLOAT: u16 = 64;
const DATE: u16 = 128;
const DATE_TZ: u16 = 256;
const DATE_NAIVE: u16 = 512;

/// Which kinds of value a column has held; the dtype is decided from these once, at the end.
#[derive(Debug, Default, Clone)]
pub(super) struct Lattice {
    pub present: u64,
    pub missing: u64,
    flags: u16,
}

impl Lattice {
    #[inline]
    pub(super) fn observe(&mut self, v: &Value) {
        let flag = match v {
            Value::Missing => {
                self.missing += 1;
                return;
            }
            Value::Text => TEXT,
            Value::Bool(_) => BOOL,
            Value::Int(i) => INT | if *i < 0 { NEG } else { 0 },
            Value::UInt(_) => UINT,
            Value::BigInt => BIG,
            Value::Float(_) => FLOAT,
            Value::Date(d) => DATE | if d.has_tz { DATE_TZ } else { DATE_NAIVE },
        };
        self.present += 1;
        self.flags |= flag;
    }

    /// True once no later value can stop the column being `object`.
    pub(super) fn is_object_for_sure(&self) -> bool {
        self.flags & TEXT != 0
    }

    pub(super) fn dtype(&self, rows: u64) -> Dtype {
        let f = self.flags;
        if rows == 0 {
            return Dtype::Object;
        }
        if self.present == 0 {
            return Dtype::Float64;
        }
        if f & TEXT != 0 {
            return Dtype::Object;
        }
        let numeric = f & (INT | UINT | BIG | FLOAT) != 0;
        let kinds = numeric as u8 + (f & BOOL != 0) as u8 + (f & DATE != 0) as u8;
        if kinds > 1 {
            return Dtype::Object;
        }
        if f & BOOL != 0 {
            return if self.missing == 0 { Dtype::Bool } else { Dtype::Object };
        }
        if f & DATE != 0 {
            return if f & DATE_TZ != 0 && f & DATE_NAIVE != 0 {
                Dtype::Object
            } else {
                Dtype::Datetime
            };
        }
        // Numeric. Rules measured on pandas 3.1: beyond-u64 integers are always object, even
        // beside floats or NA; u64-only integers are object with a negative or an NA but
        // float64 beside a float.
        if f & BIG != 0 {
            return Dtype::Object;
        }
        if f & FLOAT != 0 {
            return Dtype::Float64;
        }
        if f & UINT != 0 {
            return if f & NEG != 0 || self.missing > 0 {
                Dtype::Object
            } else {
                Dtype::UInt64
            };
        }
        if self.missing > 0 {
            Dtype::Float64
        } else {
            Dtype::Int64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dtype_of(values: &[&str]) -> &'static str {
        let mut l = Lattice::default();
        for v in values {
            l.observe(&classify(v.as_bytes()));
        }
        l.dtype(values.len() as u64).as_str()
    }

    #[test]
    fn every_default_na_spelling_is_missing() {
        for s in [
            "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
            "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
        ] {
            assert_eq!(classify(s.as_bytes()), Value::Missing, "{s:?}");
        }
        for s in [" NA", "NA ", "NAN", "na", "Null", "none", "-"] {
            assert_ne!(classify(s.as_bytes()), Value::Missing, "{s:?}");
        }
    }

    #[test]
    fn numbers_like_pandas() {
        assert_eq!(classify(b" 1 "), Value::Int(1));
        assert_eq!(classify(b"\t7\t"), Value::Int(7));
        assert_eq!(classify(b"+1"), Value::Int(1));
        assert_eq!(classify(b"007"), Value::Int(7));
        assert_eq!(classify(b"-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(classify(b"18446744073709551615"), Value::UInt(u64::MAX));
        assert_eq!(classify(b"18446744073709551616"), Value::BigInt);
        assert_eq!(classify(b"-9223372036854775809"), Value::BigInt);
        assert_eq!(classify(b"1e5"), Value::Float(1e5));
        assert_eq!(classify(b"1E+05"), Value::Float(1e5));
        assert_eq!(classify(b".5"), Value::Float(0.5));
        assert_eq!(classify(b"5."), Value::Float(5.0));
        assert_eq!(classify(b"1e400"), Value::Float(f64::INFINITY));
        assert_eq!(classify(b"-Infinity"), Value::Float(f64::NEG_INFINITY));
        assert_eq!(classify(b"iNf"), Value::Float(f64::INFINITY));
        for s in [
            "1e",
            "e5",
            ".",
            "-",
            "+-1",
            "1_000",
            "0x1A",
            "1d5",
            "1,234",
            " inf",
            "1 2",
            "\u{2212}1",
        ] {
            assert_eq!(classify(s.as_bytes()), Value::Text, "{s:?}");
        }
    }

    #[test]
    fn bools_like_pandas() {
        assert_eq!(classify(b"True"), Value::Bool(true));
        assert_eq!(classify(b"tRuE"), Value::Bool(true));
        assert_eq!(classify(b"FALSE"), Value::Bool(false));
        for s in [" True", "T", "yes", "1"] {
            assert_ne!(classify(s.as_bytes()), Value::Bool(true), "{s:?}");
        }
    }

    #[test]
    fn lattice_matches_pandas_dtypes() {
        assert_eq!(dtype_of(&["1", "2"]), "int64");
        assert_eq!(dtype_of(&["1", ""]), "float64");
        assert_eq!(dtype_of(&["1", "NA"]), "float64");
        assert_eq!(dtype_of(&["1", "2.5"]), "float64");
        assert_eq!(dtype_of(&["1", "abc"]), "object");
        assert_eq!(dtype_of(&["", "NA"]), "float64");
        assert_eq!(dtype_of(&["True", "false"]), "bool");
        assert_eq!(dtype_of(&["True", "NA"]), "object");
        assert_eq!(dtype_of(&["True", "1"]), "object");
        assert_eq!(dtype_of(&["18446744073709551615", "1"]), "uint64");
        assert_eq!(dtype_of(&["18446744073709551615", "-1"]), "object");
        assert_eq!(dtype_of(&["18446744073709551615", "NA"]), "object");
        assert_eq!(dtype_of(&["18446744073709551615", "1.5"]), "float64");
        assert_eq!(dtype_of(&["18446744073709551616", "1"]), "object");
        assert_eq!(dtype_of(&["18446744073709551616", "1.5"]), "object");
        assert_eq!(dtype_of(&["inf", "1"]), "float64");
        assert_eq!(dtype_of(&["2024-01-01", "2024-01-02 10:00", ""]), "datetime64[ns]");
        assert_eq!(dtype_of(&["2024-01-01", "1"]), "object");
        assert_eq!(dtype_of(&["2024-01-01T00:00Z", "2024-01-01"]), "object");
        assert_eq!(dtype_of(&["2024-02-30"]), "object");
        assert_eq!(dtype_of(&[" ", "1"]), "object");
        let l = Lattice::default();
        assert_eq!(l.dtype(0).as_str(), "object", "header-only column");
    }
}

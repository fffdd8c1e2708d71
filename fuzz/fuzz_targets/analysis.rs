//! Fuzzes the CSV/TSV analysis (encoding and delimiter sniffing, reader, profile, summary, preview).
//!
//! Properties checked on every input, beyond "no panic":
//! - the same bytes give the same profile (or the same error) twice, and also when they
//!   arrive in small uneven chunks, as an upload streams them;
//! - header line + rows + footer lines never exceed the file's physical line count;
//! - the summary parses: the original's opening with the profile's counts, then exactly one
//!   `- **name**: `dtype`` line per column, in order, with a pandas dtype (line breaks in a
//!   name shown as `\n`, `\r`), then the end or the statistics heading;
//! - the profile survives its JSON round trip (it is stored as JSON);
//! - the preview has min(N, rows) rows as wide as its columns; when the profile's table is
//!   the file's first, they are the profile's columns and min(N, row_count) rows.
#![no_main]

use std::io::Read;

use file_service::analysis::{preview_reader, profile_reader, Format, Profile};
use libfuzzer_sys::fuzz_target;

const DTYPES: &[&str] = &["int64", "uint64", "float64", "bool", "datetime64[ns]", "object"];
const PREVIEW_ROWS: usize = 5;

fuzz_target!(|data: &[u8]| {
    let (format, bytes) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (Format::Tsv, rest),
        Some((_, rest)) => (Format::Csv, rest),
        None => return,
    };
    let first = outcome(profile_reader(bytes, format));
    let second = outcome(profile_reader(bytes, format));
    assert_eq!(first, second, "the same bytes analyzed twice differ");
    let chunked = outcome(profile_reader(Chunked::new(bytes), format));
    assert_eq!(first, chunked, "the same bytes in small chunks give another result");

    let Ok(profile) = profile_reader(bytes, format) else {
        return;
    };
    let lines = physical_lines(bytes, &profile.encoding);
    assert!(
        profile.header_line + profile.row_count + profile.footer_lines <= lines,
        "header line {} + {} rows + {} footer lines > {lines} lines",
        profile.header_line,
        profile.row_count,
        profile.footer_lines
    );
    assert_eq!(profile.column_count as usize, profile.columns.len());
    check_summary(&profile);

    let json = serde_json::to_string(&profile).expect("a profile serializes");
    let back: Profile = serde_json::from_str(&json).expect("a stored profile reads back");
    same_within_an_ulp(
        &serde_json::to_value(&profile).unwrap(),
        &serde_json::to_value(&back).unwrap(),
        "profile",
    );

    let preview = preview_reader(bytes, format, PREVIEW_ROWS, profile.encoding == "windows-1252")
        .expect("a file that profiles also previews");
    assert!(preview.rows.len() <= PREVIEW_ROWS);
    assert!(preview.rows.iter().all(|r| r.len() == preview.columns.len()));
    // The preview shows the file's first table; the profile describes the largest. They
    // agree when the profile's table is the first: the only one, or one with a header
    // line above every other table.
    let first_is_profiled = profile.other_tables.is_empty()
        || (profile.header_line > 0 && profile.other_tables.iter().all(|t| t.first_line > profile.header_line));
    if first_is_profiled {
        let names: Vec<&str> = profile.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(preview.columns, names, "preview and profile name the columns alike");
        assert_eq!(
            preview.rows.len() as u64,
            profile.row_count.min(PREVIEW_ROWS as u64),
            "preview row count"
        );
    }
});

/// The result as comparable text (f64 fields may be NaN, which `==` never equals).
fn outcome(result: Result<Profile, file_service::analysis::AnalysisError>) -> Result<String, String> {
    result
        .map(|p| serde_json::to_string(&p).expect("a profile serializes"))
        .map_err(|e| e.to_string())
}

/// Equal JSON trees, numbers within one unit in the last place: serde_json writes the
/// shortest text that reads back exactly, but its default parser (without the
/// `float_roundtrip` feature) may land one ulp off. The service itself never parses a
/// stored profile; it serves the text as written.
fn same_within_an_ulp(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= x.abs() * 2.5e-16, "{path}: {x} read back as {y}");
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same_within_an_ulp(x, y, &format!("{path}[{i}]"));
            }
        }
        (Object(x), Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{path}");
            for (k, v) in x {
                same_within_an_ulp(v, &y[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// Parses the summary as a consumer would, line by line, and checks it against the profile.
fn check_summary(profile: &Profile) {
    let summary = profile.summary();
    let opening = format!(
        "The dataset has **{} rows** and **{} columns**.\n\nIt contains the following features:\n\n",
        profile.row_count, profile.column_count
    );
    let rest = summary
        .strip_prefix(&opening)
        .unwrap_or_else(|| panic!("summary opening: {summary:?}"));
    let (features, after) = match rest.find("\n\n") {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let parsed: Vec<(&str, &str)> = if features.is_empty() {
        Vec::new()
    } else {
        features
            .split('\n')
            .map(|line| {
                let item = line
                    .strip_prefix("- **")
                    .and_then(|l| l.strip_suffix('`'))
                    .unwrap_or_else(|| panic!("feature line {line:?} in {summary:?}"));
                let (name, dtype) = item
                    .rsplit_once("**: `")
                    .unwrap_or_else(|| panic!("feature line {line:?}"));
                assert!(DTYPES.contains(&dtype), "dtype {dtype:?}");
                (name, dtype)
            })
            .collect()
    };
    // Line breaks in a name are shown escaped, so that the item stays on one line.
    let shown: Vec<String> = profile
        .columns
        .iter()
        .map(|c| c.name.replace('\r', "\\r").replace('\n', "\\n"))
        .collect();
    let expected: Vec<(&str, &str)> = shown
        .iter()
        .zip(&profile.columns)
        .map(|(name, c)| (name.as_str(), c.dtype.as_str()))
        .collect();
    assert_eq!(
        parsed, expected,
        "the feature list names each column once, in order: {summary:?}"
    );
    match after {
        None => assert!(profile.row_count == 0 || profile.columns.is_empty()),
        Some(after) => assert!(
            after.starts_with("\n\n## Statistics\n\n"),
            "after the features: {after:?}"
        ),
    }
}

/// Lines as a text editor counts them: `\n`, `\r\n` and a lone `\r` end one; text after
/// the last terminator is one more. UTF-16 is counted in code units.
fn physical_lines(bytes: &[u8], encoding: &str) -> u64 {
    let units: Vec<u16> = match encoding {
        "utf-16-le" | "utf-16-be" => {
            let le = encoding == "utf-16-le";
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|p| {
                    let (a, b) = (p[0], *p.get(1).unwrap_or(&0));
                    if le {
                        u16::from_le_bytes([a, b])
                    } else {
                        u16::from_be_bytes([a, b])
                    }
                })
                .collect();
            units
        }
        _ => bytes.iter().map(|&b| b as u16).collect(),
    };
    let (cr, lf) = (b'\r' as u16, b'\n' as u16);
    let mut lines = 0;
    let mut i = 0;
    while i < units.len() {
        if units[i] == cr {
            lines += 1;
            if units.get(i + 1) == Some(&lf) {
                i += 1;
            }
        } else if units[i] == lf {
            lines += 1;
        }
        i += 1;
    }
    if units.last().is_some_and(|&u| u != cr && u != lf) {
        lines += 1;
    }
    lines
}

/// Hands out the bytes in chunks of 1 to 7 bytes, as a network stream might.
struct Chunked<'a> {
    data: &'a [u8],
    step: usize,
}

impl<'a> Chunked<'a> {
    fn new(data: &'a [u8]) -> Self {
        Chunked { data, step: 0 }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step += 1;
        let n = (self.step * 5 % 7 + 1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

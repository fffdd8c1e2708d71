//! The rows of the table a profile describes, each field typed as its column's dtype: what
//! queries and conversions read, so they see exactly the table the summary describes (the
//! same header line, delimiter, encoding, title and footer lines, columns and dtypes).

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Read;

use super::infer::{classify, Value};
use super::reader::{self, Next};
use super::typed::Cell;
use super::{AnalysisError, Dtype, Format, Profile};

/// A field as its column's dtype holds it; a field the dtype cannot hold (never, for a file
/// that has not changed since it was profiled) is missing.
fn typed_cell<'a>(dtype: Dtype, field: &'a [u8], text: &'a str) -> Cell<'a> {
    let value = classify(field);
    match (dtype, value) {
        (_, Value::Missing) => Cell::Null,
        (Dtype::Object, _) => Cell::Text(text.as_bytes()),
        (Dtype::Int64, Value::Int(i)) => Cell::Int(i),
        (Dtype::UInt64, Value::Int(i)) => Cell::UInt(i as u64),
        (Dtype::UInt64, Value::UInt(u)) => Cell::UInt(u),
        (Dtype::Float64, Value::Int(i)) => Cell::Float(i as f64),
        (Dtype::Float64, Value::UInt(u)) => Cell::Float(u as f64),
        (Dtype::Float64, Value::Float(x)) => Cell::Float(x),
        (Dtype::Bool, Value::Bool(b)) => Cell::Bool(b),
        (Dtype::Datetime, Value::Date(d)) => Cell::Time {
            ns: d.ns,
            has_time: d.has_time,
        },
        _ => Cell::Null,
    }
}

/// Reads the rows of the table `profile` describes from `reader` (the same bytes the profile
/// was made from) and hands each to `row`, typed, in file order; `row` returns false to stop.
/// Returns how many rows were handed out.
///
/// The file may hold several tables; the profile's is the one not listed in its
/// `other_tables`, with its header line and width.
pub fn read_rows<R: Read>(
    reader: R,
    format: Format,
    profile: &Profile,
    row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
) -> Result<u64, AnalysisError> {
    let mut input = reader::open(reader, format)?;
    let mut record = csv::ByteRecord::new();
    let (header_line, first_line) = input.read_header(&mut record)?.ok_or(AnalysisError::Empty)?;
    let mut start = super::TableStart {
        header: None,
        ncols: record.len().max(input.columns()),
        header_line,
        first_line,
    };
    let others: HashSet<u64> = profile.other_tables.iter().map(|t| t.first_line).collect();
    let dtypes: Vec<Dtype> = profile.columns.iter().map(|c| Dtype::of(&c.dtype)).collect();
    let windows_1252 = profile.encoding == "windows-1252";
    let mut utf8 = !windows_1252;
    loop {
        let ours = !others.contains(&start.first_line)
            && start.ncols == dtypes.len()
            && start.header_line == profile.header_line;
        if ours {
            return emit(&mut input, &dtypes, windows_1252, profile.row_count, row);
        }
        while input.read_row(&mut record, start.ncols)? == Next::Row {}
        let Some(records) = input.take_table() else { break };
        start = super::next_table(&mut input, records, &mut utf8);
    }
    Err(AnalysisError::Malformed {
        line: 0,
        message: "the file no longer holds the table its summary describes; upload it again".into(),
    })
}

fn emit<R: Read>(
    input: &mut reader::Input<R>,
    dtypes: &[Dtype],
    windows_1252: bool,
    expected: u64,
    row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
) -> Result<u64, AnalysisError> {
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    while input.read_row(&mut record, dtypes.len())? == Next::Row {
        let texts: Vec<Cow<'_, str>> = dtypes
            .iter()
            .enumerate()
            .map(|(i, dtype)| {
                let field = record.get(i).unwrap_or(b"");
                if *dtype != Dtype::Object {
                    Cow::Borrowed("")
                } else if windows_1252 {
                    encoding_rs::WINDOWS_1252.decode_without_bom_handling(field).0
                } else {
                    String::from_utf8_lossy(field)
                }
            })
            .collect();
        let cells: Vec<Cell<'_>> = dtypes
            .iter()
            .enumerate()
            .map(|(i, d)| typed_cell(*d, record.get(i).unwrap_or(b""), &texts[i]))
            .collect();
        rows += 1;
        if !row(&cells) {
            return Ok(rows);
        }
    }
    if rows != expected {
        return Err(AnalysisError::Malformed {
            line: 0,
            message: format!("the file holds {rows} rows where its summary counted {expected}; upload it again"),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::profile_reader;

    fn rows_of(text: &[u8], format: Format) -> Vec<Vec<String>> {
        let profile = profile_reader(text, format).unwrap();
        let mut out = Vec::new();
        let n = read_rows(text, format, &profile, &mut |cells| {
            out.push(cells.iter().map(|c| format!("{c:?}")).collect());
            true
        })
        .unwrap();
        assert_eq!(n, profile.row_count);
        out
    }

    #[test]
    fn typed_as_the_profile_says() {
        let rows = rows_of(
            b"a,b,c,d,e\n1,2.5,x,true,2024-01-02\n2,,NA,false,2024-01-03 10:00\n",
            Format::Csv,
        );
        assert_eq!(
            rows[0],
            [
                "Int(1)",
                "Float(2.5)",
                "Text([120])",
                "Bool(true)",
                "Time { ns: 1704153600000000000, has_time: false }"
            ]
        );
        assert_eq!(rows[1][1], "Null");
        assert_eq!(rows[1][2], "Null");
    }

    #[test]
    fn title_lines_footer_and_windows_1252() {
        let text = b"Sales report,,\nQ1 2024,,\n\nname,amount,city\ncaf\xe9,1,Oslo\nth\xe9,2,Lyon\nbar,3,Rome\nbaz,4,Pisa\n\nSource: the shop,,\n";
        let profile = profile_reader(&text[..], Format::Csv).unwrap();
        assert_eq!(profile.encoding, "windows-1252");
        assert_eq!(
            (profile.header_line, profile.footer_lines, profile.row_count),
            (4, 1, 4)
        );
        let mut names = Vec::new();
        read_rows(&text[..], Format::Csv, &profile, &mut |cells| {
            if let Cell::Text(t) = cells[0] {
                names.push(String::from_utf8(t.to_vec()).unwrap());
            }
            true
        })
        .unwrap();
        assert_eq!(names, ["café", "thé", "bar", "baz"]);
    }

    #[test]
    fn the_profiled_table_of_several() {
        let mut text = String::from("a,b\n1,2\n3,4\n\n");
        text.push_str("x,y,z\n");
        for i in 0..20 {
            text.push_str(&format!("{i},{i},{i}\n"));
        }
        let profile = profile_reader(text.as_bytes(), Format::Csv).unwrap();
        assert_eq!(profile.column_count, 3);
        let rows = rows_of(text.as_bytes(), Format::Csv);
        assert_eq!(rows.len(), 20);
        assert_eq!(rows[19], ["Int(19)", "Int(19)", "Int(19)"]);
    }
}

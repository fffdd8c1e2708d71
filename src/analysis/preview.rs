//! The first rows of a dataset as text, read from the start of the file without loading it.

use std::io::Read;

use serde::Serialize;

use super::{header, reader, AnalysisError, Format};

/// `{"columns": [...], "rows": [[...], ...]}`: cells as they are written in the file;
/// `null` where a row has fewer fields than the header.
#[derive(Debug, Serialize, PartialEq)]
pub struct Preview {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Reads the header and up to `max_rows` rows of the file's first table (the profile may
/// describe a larger one further down; see `Profile::other_tables`). `windows_1252` decodes as
/// the profile found the file to be (the decision needs the whole file, so it is passed in).
pub fn preview_reader<R: Read>(
    reader: R,
    format: Format,
    max_rows: usize,
    windows_1252: bool,
) -> Result<Preview, AnalysisError> {
    let mut input = reader::open(reader, format)?;
    let mut record = csv::ByteRecord::new();
    let decode = |b: &[u8]| -> String {
        if windows_1252 {
            encoding_rs::WINDOWS_1252.decode_without_bom_handling(b).0.into_owned()
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    };
    input.read_header(&mut record)?.ok_or(AnalysisError::Empty)?;
    let ncols = record.len().max(input.columns());
    let columns = if input.headerless() {
        (0..ncols).map(|i| i.to_string()).collect()
    } else {
        header::pandas_names(
            (0..ncols)
                .map(|i| record.get(i).map(decode).unwrap_or_default())
                .collect(),
        )
    };
    let mut rows = Vec::new();
    while rows.len() < max_rows && input.read_row(&mut record, columns.len())? == reader::Next::Row {
        rows.push((0..columns.len()).map(|i| record.get(i).map(decode)).collect());
    }
    Ok(Preview { columns, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_rows_with_pandas_names_and_missing_cells() {
        let csv = "a,a,\n1,x,y\n\n2\n3,z,w\n";
        let p = preview_reader(csv.as_bytes(), Format::Csv, 2, false).unwrap();
        assert_eq!(p.columns, ["a", "a.1", "Unnamed: 2"]);
        assert_eq!(
            p.rows,
            vec![
                vec![Some("1".into()), Some("x".into()), Some("y".into())],
                vec![Some("2".into()), None, None]
            ]
        );
    }

    #[test]
    fn windows_1252_cells_decode() {
        let p = preview_reader(&b"name\ncaf\xe9\n"[..], Format::Csv, 10, true).unwrap();
        assert_eq!(p.rows, vec![vec![Some("café".into())]]);
    }
}

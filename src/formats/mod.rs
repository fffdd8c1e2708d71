//! Every format a dataset comes in, by extension: CSV/TSV through the streaming CSV engine
//! (`crate::analysis`), Parquet and Arrow IPC through polars' readers, JSON and JSON lines
//! streamed, workbooks through calamine. Each produces the same [`Profile`], with pandas'
//! dtype names for that format's default reader, and checks that the content is what the
//! extension says before reading it.
//!
//! Layout: `columnar` (Arrow arrays to typed cells, shared by `parquet` and `arrow`),
//! `parquet`, `arrow` (IPC file and stream), `json` (`.json`, `.jsonl`/`.ndjson`), `excel`.

mod arrow;
mod columnar;
mod excel;
mod json;
mod ods;
mod parquet;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::analysis::{self, AnalysisError, Preview, Profile};
pub use excel::Workbook;

/// A stored file's format, decided by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.csv` and `.tsv`: the CSV engine, which can read while the upload arrives.
    Text(analysis::Format),
    Parquet,
    /// `.arrow`, `.feather`, `.ipc`: an Arrow IPC file or stream.
    Arrow,
    /// `.json`: an array of records or an object of columns.
    Json,
    /// `.jsonl`, `.ndjson`: one record per line.
    JsonLines,
    Excel(Workbook),
}

/// Every accepted extension, for messages and the API description.
pub const EXTENSIONS: &[&str] = &[
    "csv", "tsv", "parquet", "arrow", "feather", "ipc", "json", "jsonl", "ndjson", "xlsx", "xlsm", "xls", "ods",
];

impl Format {
    /// From an extension, case-insensitive, with or without the dot.
    pub fn from_extension(ext: &str) -> Option<Format> {
        let ext = ext.strip_prefix('.').unwrap_or(ext).to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => Format::Text(analysis::Format::Csv),
            "tsv" => Format::Text(analysis::Format::Tsv),
            "parquet" => Format::Parquet,
            "arrow" | "feather" | "ipc" => Format::Arrow,
            "json" => Format::Json,
            "jsonl" | "ndjson" => Format::JsonLines,
            "xlsx" | "xlsm" => Format::Excel(Workbook::Xlsx),
            "xls" => Format::Excel(Workbook::Xls),
            "ods" => Format::Excel(Workbook::Ods),
            _ => return None,
        })
    }

    /// The CSV engine's format when this one can be analyzed while its bytes arrive; the
    /// others are analyzed once the whole file has landed (Parquet's footer is at its end).
    pub fn streaming(self) -> Option<analysis::Format> {
        match self {
            Format::Text(f) => Some(f),
            _ => None,
        }
    }

    /// The content type a download is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text(analysis::Format::Csv) => "text/csv; charset=utf-8",
            Format::Text(analysis::Format::Tsv) => "text/tab-separated-values; charset=utf-8",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Arrow => "application/vnd.apache.arrow.file",
            Format::Json => "application/json",
            Format::JsonLines => "application/x-ndjson",
            Format::Excel(Workbook::Xlsx) => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Excel(Workbook::Xls) => "application/vnd.ms-excel",
            Format::Excel(Workbook::Ods) => "application/vnd.oasis.opendocument.spreadsheet",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Text(_) => "delimited text",
            Format::Parquet => "Parquet",
            Format::Arrow => "Arrow IPC",
            Format::Json => "JSON",
            Format::JsonLines => "JSON lines",
            Format::Excel(Workbook::Xlsx) => "an xlsx workbook",
            Format::Excel(Workbook::Xls) => "an xls workbook",
            Format::Excel(Workbook::Ods) => "an ods spreadsheet",
        }
    }
}

/// Why a file could not be read as its format. Messages are shown to API users.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The bytes are not the format the extension names.
    #[error("{0}")]
    Mismatch(String),
    /// The right format, but damaged or truncated.
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Encrypted(String),
    /// A workbook without any data.
    #[error("{0}")]
    NoData(String),
    /// A preview asked for a sheet the workbook does not have.
    #[error("{0}")]
    NoSheet(String),
    /// The CSV engine's verdict (delimited text and workbooks).
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),
}

impl FormatError {
    /// A stable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            FormatError::Mismatch(_) => "content_mismatch",
            FormatError::Encrypted(_) => "encrypted_file",
            FormatError::NoData(_) => "no_data",
            FormatError::NoSheet(_) => "no_such_sheet",
            _ => "unreadable_file",
        }
    }
}

const ZIP: &[u8] = b"PK\x03\x04";
const OLE: &[u8] = &[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];

/// What the first bytes say a file is, for messages.
fn looks_like(head: &[u8]) -> &'static str {
    let text = head.iter().skip_while(|b| b.is_ascii_whitespace()).copied().next();
    if head.is_empty() {
        "the file is empty"
    } else if head.starts_with(b"PAR1") {
        "it is a Parquet file"
    } else if head.starts_with(arrow::FILE_MAGIC) {
        "it is an Arrow IPC file"
    } else if head.starts_with(ZIP) {
        "it is a zip archive (such as an xlsx or ods workbook)"
    } else if head.starts_with(OLE) {
        "it is an OLE compound file (such as an xls workbook)"
    } else if matches!(text, Some(b'{') | Some(b'[')) {
        "it looks like JSON"
    } else if head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || *b >= 0x80)
    {
        "it looks like text"
    } else {
        "its first bytes are not that format's"
    }
}

/// Checks that the content is what its extension says (magic bytes, or JSON's first
/// character), before any reader sees it.
pub fn check_content(file: &File, format: Format) -> Result<(), FormatError> {
    let mut file = rewound(file)?;
    let size = file.metadata()?.len();
    let mut head = vec![0u8; 512.min(size as usize)];
    file.read_exact(&mut head)?;
    let mismatch = |what: &str| {
        Err(FormatError::Mismatch(format!(
            "the content is not {}: {what}; {}",
            format.name(),
            looks_like(&head)
        )))
    };
    match format {
        Format::Text(_) => Ok(()),
        Format::Parquet => {
            if head.starts_with(b"PARE") {
                // The encrypted-footer layout starts and ends with PARE.
                return Err(FormatError::Encrypted(
                    "the Parquet file is encrypted (its footer is); it cannot be read without the key".into(),
                ));
            }
            if !head.starts_with(b"PAR1") {
                return mismatch("a Parquet file starts with PAR1");
            }
            let mut tail = [0u8; 4];
            if size < 12 {
                return Err(FormatError::Corrupt("the Parquet file is truncated (no footer)".into()));
            }
            file.seek(SeekFrom::End(-4))?;
            file.read_exact(&mut tail)?;
            match &tail {
                b"PAR1" => Ok(()),
                b"PARE" => Err(FormatError::Encrypted(
                    "the Parquet file is encrypted (its footer is); it cannot be read without the key".into(),
                )),
                _ => Err(FormatError::Corrupt(
                    "the Parquet file is truncated or damaged: it does not end with PAR1".into(),
                )),
            }
        }
        Format::Arrow => {
            if head.starts_with(b"FEA1") {
                return Err(FormatError::Mismatch(
                    "this is a Feather version 1 file, which is not supported; save it as Feather version 2 (Arrow IPC)"
                        .into(),
                ));
            }
            if head.starts_with(arrow::FILE_MAGIC) {
                let mut tail = [0u8; 6];
                if size < 12 {
                    return Err(FormatError::Corrupt("the Arrow file is truncated".into()));
                }
                file.seek(SeekFrom::End(-6))?;
                file.read_exact(&mut tail)?;
                return if tail == arrow::FILE_MAGIC {
                    Ok(())
                } else {
                    Err(FormatError::Corrupt(
                        "the Arrow file is truncated or damaged: it does not end with ARROW1".into(),
                    ))
                };
            }
            // A stream: the schema message, with (or, from old writers, without) its marker.
            if head.starts_with(arrow::STREAM_MARKER) || (head.len() >= 8 && head[..4] != [0; 4] && head[3] == 0) {
                Ok(())
            } else {
                mismatch("an Arrow IPC file starts with ARROW1, a stream with its schema message")
            }
        }
        Format::Json | Format::JsonLines => {
            let body = head.strip_prefix(b"\xef\xbb\xbf".as_slice()).unwrap_or(&head);
            match body.iter().find(|b| !b.is_ascii_whitespace()) {
                None => Err(FormatError::Corrupt("the file holds no JSON value".into())),
                Some(b'[') | Some(b'{') if format == Format::Json => Ok(()),
                Some(b'{') => Ok(()),
                Some(_) if format == Format::Json => mismatch("JSON data starts with [ or {"),
                Some(_) => mismatch("each line of JSON lines is an object starting with {"),
            }
        }
        Format::Excel(Workbook::Xlsx) | Format::Excel(Workbook::Ods) => {
            if head.starts_with(ZIP) {
                Ok(())
            } else if head.starts_with(OLE) && format == Format::Excel(Workbook::Xlsx) {
                // Excel saves a password-protected xlsx as an OLE file holding the encrypted package.
                let mut rest = Vec::new();
                rewound(&file)?.take(1 << 20).read_to_end(&mut rest)?;
                let marker: Vec<u8> = "EncryptedPackage"
                    .encode_utf16()
                    .flat_map(|u| u.to_le_bytes())
                    .collect();
                if rest.windows(marker.len()).any(|w| w == marker.as_slice()) {
                    Err(FormatError::Encrypted(
                        "the workbook is password-protected (encrypted); save it without a password".into(),
                    ))
                } else {
                    mismatch("an xlsx workbook is a zip archive")
                }
            } else {
                mismatch("a workbook of this kind is a zip archive")
            }
        }
        Format::Excel(Workbook::Xls) => {
            if head.starts_with(OLE) {
                Ok(())
            } else {
                mismatch("an xls workbook is an OLE compound file")
            }
        }
    }
}

/// Another handle on `file`, positioned at its start. Handles share the position, so
/// readers that take turns each start with this.
fn rewound(file: &File) -> std::io::Result<File> {
    let mut file = file.try_clone()?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Profile a stored file: its content checked against its format, then read.
pub fn profile_path(path: &Path, format: Format) -> Result<Profile, FormatError> {
    profile_file(&File::open(path)?, format)
}

/// Profile an open file (read from its start).
pub fn profile_file(file: &File, format: Format) -> Result<Profile, FormatError> {
    check_content(file, format)?;
    match format {
        Format::Text(f) => Ok(analysis::profile_reader(rewound(file)?, f)?),
        Format::Parquet => parquet::profile(file),
        Format::Arrow => arrow::profile(file),
        Format::Json => json::profile(file, false),
        Format::JsonLines => json::profile(file, true),
        Format::Excel(kind) => excel::profile(file, kind),
    }
}

/// The first `rows` rows of an open file. `windows_1252` is the profile's finding for
/// text files; `sheet` picks a workbook's sheet (default: the profile's `table_sheet`).
pub fn preview_file(
    file: &File,
    format: Format,
    rows: usize,
    windows_1252: bool,
    sheet: Option<&str>,
    table_sheet: Option<&str>,
) -> Result<Preview, FormatError> {
    if sheet.is_some() && !matches!(format, Format::Excel(_)) {
        return Err(FormatError::NoSheet("only workbooks have sheets".into()));
    }
    match format {
        Format::Text(f) => {
            let file = std::io::BufReader::new(rewound(file)?);
            Ok(analysis::preview_reader(file, f, rows, windows_1252)?)
        }
        Format::Parquet => parquet::preview(file, rows),
        Format::Arrow => arrow::preview(file, rows),
        Format::Json => json::preview(file, false, rows),
        Format::JsonLines => json::preview(file, true, rows),
        Format::Excel(kind) => excel::preview(file, kind, rows, sheet, table_sheet),
    }
}

/// Hands the rows of the table `profile` describes to `row`, each field typed as its column's
/// dtype, in order, until `row` returns false; returns how many rows were handed out. For
/// delimited text and workbooks (read through the CSV engine) and JSON; Parquet and Arrow
/// are read by the query engine itself.
pub fn read_rows(
    file: &File,
    format: Format,
    profile: &Profile,
    row: &mut dyn FnMut(&[analysis::Cell<'_>]) -> bool,
) -> Result<u64, FormatError> {
    match format {
        Format::Text(f) => {
            let file = std::io::BufReader::with_capacity(1 << 16, rewound(file)?);
            Ok(analysis::read_rows(file, f, profile, row)?)
        }
        Format::Excel(kind) => excel::read_rows(file, kind, profile, row),
        Format::Json => json::read_rows(file, false, profile, row),
        Format::JsonLines => json::read_rows(file, true, profile, row),
        Format::Parquet | Format::Arrow => Err(FormatError::Mismatch(
            "Parquet and Arrow files are read as they are stored".into(),
        )),
    }
}

/// Whether an `.arrow` file is an IPC file (rather than a stream).
pub fn is_arrow_file(file: &File) -> Result<bool, FormatError> {
    let mut head = [0u8; 6];
    let mut file = rewound(file)?;
    Ok(file.read_exact(&mut head).is_ok() && head == arrow::FILE_MAGIC)
}

/// Writes the record batches of an Arrow IPC stream to `out` as an IPC file.
pub fn arrow_stream_to_file(file: &File, out: &mut File) -> Result<(), FormatError> {
    arrow::stream_to_file(file, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn extensions_name_formats_case_insensitively() {
        assert_eq!(Format::from_extension(".PARQUET"), Some(Format::Parquet));
        assert_eq!(Format::from_extension("feather"), Some(Format::Arrow));
        assert_eq!(Format::from_extension("ndjson"), Some(Format::JsonLines));
        assert_eq!(Format::from_extension("xlsm"), Some(Format::Excel(Workbook::Xlsx)));
        assert_eq!(
            Format::from_extension("csv").and_then(Format::streaming),
            Some(analysis::Format::Csv)
        );
        assert_eq!(Format::from_extension("xlsb"), None);
        for ext in EXTENSIONS {
            assert!(Format::from_extension(ext).is_some(), "{ext}");
        }
    }

    #[test]
    fn content_must_match_the_extension() {
        let csv = file_with(b"a,b\n1,2\n");
        let e = check_content(&csv, Format::Parquet).unwrap_err();
        assert!(matches!(e, FormatError::Mismatch(_)), "{e}");
        assert!(e.to_string().contains("it looks like text"), "{e}");
        assert!(matches!(
            check_content(&csv, Format::Json),
            Err(FormatError::Mismatch(_))
        ));
        assert!(check_content(&file_with(b"\xef\xbb\xbf  [1]"), Format::Json).is_ok());
        assert!(check_content(&file_with(b"{\"a\":1}\n"), Format::JsonLines).is_ok());
        assert!(matches!(
            check_content(&file_with(b"PAR1 something PARE"), Format::Parquet),
            Err(FormatError::Encrypted(_))
        ));
        assert!(matches!(
            check_content(&file_with(b"PAR1 truncated here"), Format::Parquet),
            Err(FormatError::Corrupt(_))
        ));
        assert!(matches!(
            check_content(&file_with(b"PK\x03\x04 zip"), Format::Excel(Workbook::Xls)),
            Err(FormatError::Mismatch(_))
        ));
        assert!(matches!(
            check_content(&file_with(b"FEA1...."), Format::Arrow),
            Err(FormatError::Mismatch(_))
        ));
        assert!(check_content(&file_with(b"ARROW1\0\0 body ARROW1"), Format::Arrow).is_ok());
    }
}

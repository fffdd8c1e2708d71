//! Every format a dataset comes in, each one type implementing [`FileFormat`] in its own
//! file: CSV/TSV through the streaming CSV engine (`crate::analysis`), Parquet and Arrow IPC
//! through polars' readers, JSON and JSON lines streamed, workbooks through calamine. Each
//! owns its extensions, content type and content check, and produces the same [`Profile`],
//! with pandas' dtype names for that format's default reader. A new format is a new file
//! and one line in [`FORMATS`].
//!
//! Layout: `delimited` (`.csv`, `.tsv`), `columnar` (Arrow arrays to typed cells, shared by
//! `parquet` and `arrow`), `parquet`, `arrow` (IPC file and stream), `json` (`.json`,
//! `.jsonl`/`.ndjson`), `excel` (`.xlsx`, `.xlsm`, `.xls`, `.ods`) with `ods` (its streamed
//! row reader).

mod arrow;
mod columnar;
mod delimited;
mod excel;
mod json;
mod ods;
mod parquet;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::LazyLock;

use crate::analysis::{self, AnalysisError, Cell, Preview, Profile};
pub use excel::Workbook;

/// One format a dataset comes in (DataFusion's `FileFormat` is the model): what it is
/// called, how its content is recognized, and how it is profiled, previewed and read.
pub trait FileFormat: Send + Sync {
    /// The extensions that name it, lowercase, without the dot.
    fn extensions(&self) -> &'static [&'static str];

    /// A short, stable name: a columnar copy's key holds it (the same bytes read as another
    /// format are another table).
    fn key(&self) -> &'static str;

    /// What messages call it ("Parquet", "an xlsx workbook").
    fn name(&self) -> &'static str;

    /// The content type a download is served with.
    fn content_type(&self) -> &'static str;

    /// Whether the content is this format: `head` is its first bytes (up to 512), `file` the
    /// whole, for checks that look further.
    fn check_content(&self, head: &[u8], file: &File) -> Result<(), FormatError>;

    /// The profile of a file whose content has been checked (read from its start).
    fn profile(&self, file: &File) -> Result<Profile, FormatError>;

    /// The first rows of a file, as [`PreviewOptions`] asks.
    fn preview(&self, file: &File, options: &PreviewOptions<'_>) -> Result<Preview, FormatError>;

    /// Hands the rows of the table `profile` describes to `row`, each field typed as its
    /// column's dtype, in order, until `row` returns false; returns how many were handed out.
    fn read_rows(
        &self,
        file: &File,
        profile: &Profile,
        row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
    ) -> Result<u64, FormatError>;

    /// The CSV engine's format when a file can be analyzed while its bytes arrive; the
    /// others are analyzed once the whole file has landed (Parquet's footer is at its end).
    fn streaming(&self) -> Option<analysis::Format> {
        None
    }

    /// Whether a preview may name a sheet.
    fn has_sheets(&self) -> bool {
        false
    }

    /// The columnar layout the query engine scans this format's own bytes in; `None`: its
    /// rows are read into a Parquet copy.
    fn columnar(&self) -> Option<Columnar> {
        None
    }

    /// Whether `file` is scanned as it is stored (for formats with a [`FileFormat::columnar`]
    /// layout; an Arrow stream must first be written as a file).
    fn scans_as_stored(&self, _file: &File) -> Result<bool, FormatError> {
        Ok(false)
    }

    /// Writes `file` in its [`FileFormat::columnar`] layout to `out`.
    fn write_columnar(&self, _file: &File, _out: &mut File) -> Result<(), FormatError> {
        Err(FormatError::Mismatch(format!("{} is read row by row", self.name())))
    }
}

/// The columnar layouts the query engine scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columnar {
    Parquet,
    /// An Arrow IPC file.
    Ipc,
}

/// What a preview asks for. `windows_1252` is the profile's finding for text files; `sheet`
/// picks a workbook's sheet (default: the profile's `table_sheet`).
pub struct PreviewOptions<'a> {
    pub rows: usize,
    pub windows_1252: bool,
    pub sheet: Option<&'a str>,
    pub table_sheet: Option<&'a str>,
}

/// Every format, in the order messages list their extensions.
static FORMATS: &[&dyn FileFormat] = &[
    &delimited::Delimited(analysis::Format::Csv),
    &delimited::Delimited(analysis::Format::Tsv),
    &parquet::Parquet,
    &arrow::Arrow,
    &json::JsonFile { lines: false },
    &json::JsonFile { lines: true },
    &Workbook::Xlsx,
    &Workbook::Xls,
    &Workbook::Ods,
];

/// Every accepted extension, for messages and the API description.
pub static EXTENSIONS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| FORMATS.iter().flat_map(|f| f.extensions().iter().copied()).collect());

/// A stored file's format, decided by its extension: a handle on its [`FileFormat`].
#[derive(Clone, Copy)]
pub struct Format(&'static dyn FileFormat);

impl Format {
    /// From an extension, case-insensitive, with or without the dot.
    pub fn from_extension(ext: &str) -> Option<Format> {
        let ext = ext.strip_prefix('.').unwrap_or(ext).to_ascii_lowercase();
        FORMATS
            .iter()
            .find(|f| f.extensions().contains(&ext.as_str()))
            .map(|f| Format(*f))
    }
}

impl std::ops::Deref for Format {
    type Target = dyn FileFormat;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

/// Formats are told apart by their first extension (no two formats share one).
impl PartialEq for Format {
    fn eq(&self, other: &Format) -> bool {
        self.extensions()[0] == other.extensions()[0]
    }
}

impl Eq for Format {}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

/// The content is not `format`: `what` says what that format's content is like; the
/// message adds what the first bytes look like.
fn mismatch(format: &dyn FileFormat, what: &str, head: &[u8]) -> FormatError {
    FormatError::Mismatch(format!(
        "the content is not {}: {what}; {}",
        format.name(),
        looks_like(head)
    ))
}

/// For formats the query engine scans as stored, which have no row reader.
fn read_as_stored(format: &dyn FileFormat) -> FormatError {
    FormatError::Mismatch(format!("{} files are read as they are stored", format.name()))
}

/// Checks that the content is what its extension says (magic bytes, or JSON's first
/// character), before any reader sees it.
pub fn check_content(file: &File, format: Format) -> Result<(), FormatError> {
    let mut file = rewound(file)?;
    let size = file.metadata()?.len();
    let mut head = vec![0u8; 512.min(size as usize)];
    file.read_exact(&mut head)?;
    format.check_content(&head, &file)
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
    format.profile(file)
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
    if sheet.is_some() && !format.has_sheets() {
        return Err(FormatError::NoSheet("only workbooks have sheets".into()));
    }
    format.preview(
        file,
        &PreviewOptions {
            rows,
            windows_1252,
            sheet,
            table_sheet,
        },
    )
}

/// Hands the rows of the table `profile` describes to `row` (see [`FileFormat::read_rows`]).
/// For delimited text and workbooks (read through the CSV engine) and JSON; Parquet and
/// Arrow are read by the query engine itself.
pub fn read_rows(
    file: &File,
    format: Format,
    profile: &Profile,
    row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
) -> Result<u64, FormatError> {
    format.read_rows(file, profile, row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn format(ext: &str) -> Format {
        Format::from_extension(ext).unwrap()
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn extensions_name_formats_case_insensitively() {
        assert_eq!(Format::from_extension(".PARQUET"), Some(format("parquet")));
        assert_eq!(Format::from_extension("feather"), Some(format("arrow")));
        assert_eq!(Format::from_extension("ndjson"), Some(format("jsonl")));
        assert_eq!(Format::from_extension("xlsm"), Some(format("xlsx")));
        assert_ne!(format("csv"), format("tsv"));
        assert_eq!(format("csv").streaming(), Some(analysis::Format::Csv));
        assert_eq!(format("parquet").streaming(), None);
        assert_eq!(Format::from_extension("xlsb"), None);
        for ext in EXTENSIONS.iter() {
            assert!(Format::from_extension(ext).is_some(), "{ext}");
        }
        let mut all: Vec<_> = EXTENSIONS.clone();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), EXTENSIONS.len(), "one format per extension");
    }

    #[test]
    fn content_must_match_the_extension() {
        let csv = file_with(b"a,b\n1,2\n");
        let e = check_content(&csv, format("parquet")).unwrap_err();
        assert!(matches!(e, FormatError::Mismatch(_)), "{e}");
        assert!(e.to_string().contains("it looks like text"), "{e}");
        assert!(matches!(
            check_content(&csv, format("json")),
            Err(FormatError::Mismatch(_))
        ));
        assert!(check_content(&file_with(b"\xef\xbb\xbf  [1]"), format("json")).is_ok());
        assert!(check_content(&file_with(b"{\"a\":1}\n"), format("jsonl")).is_ok());
        assert!(matches!(
            check_content(&file_with(b"PAR1 something PARE"), format("parquet")),
            Err(FormatError::Encrypted(_))
        ));
        assert!(matches!(
            check_content(&file_with(b"PAR1 truncated here"), format("parquet")),
            Err(FormatError::Corrupt(_))
        ));
        assert!(matches!(
            check_content(&file_with(b"PK\x03\x04 zip"), format("xls")),
            Err(FormatError::Mismatch(_))
        ));
        assert!(matches!(
            check_content(&file_with(b"FEA1...."), format("arrow")),
            Err(FormatError::Mismatch(_))
        ));
        assert!(check_content(&file_with(b"ARROW1\0\0 body ARROW1"), format("arrow")).is_ok());
    }
}

//! Workbooks (`.xlsx`, `.xlsm`, `.xls`, `.ods`) through calamine, the reader polars'
//! `read_excel` uses. A sheet's cells are turned into tab-separated rows, as pandas'
//! `read_excel` turns them into values for its text parser, and analyzed by the CSV engine:
//! the same dtype rules, title lines, footers and statistics as a CSV export of the sheet.
//! `.xlsx` sheets are streamed cell by cell (calamine's cell reader) and `.ods` sheets row by
//! row (`ods.rs`), never held whole; `.xls` sheets are loaded whole (BIFF allows at most
//! 65,536 rows × 256 columns).

use std::fs::File;
use std::io::{BufReader, Read};

use calamine::{Data, DataRef, Reader, Xls, Xlsx};

use super::{mismatch, ods, rewound, FileFormat, FormatError, PreviewOptions, OLE, ZIP};
use crate::analysis::{self, Cell, Preview, Profile, SheetShape};

/// Which workbook reader a file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workbook {
    Xlsx,
    Xls,
    Ods,
}

impl FileFormat for Workbook {
    fn extensions(&self) -> &'static [&'static str] {
        match self {
            Workbook::Xlsx => &["xlsx", "xlsm"],
            Workbook::Xls => &["xls"],
            Workbook::Ods => &["ods"],
        }
    }

    fn key(&self) -> &'static str {
        "workbook"
    }

    fn name(&self) -> &'static str {
        match self {
            Workbook::Xlsx => "an xlsx workbook",
            Workbook::Xls => "an xls workbook",
            Workbook::Ods => "an ods spreadsheet",
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            Workbook::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Workbook::Xls => "application/vnd.ms-excel",
            Workbook::Ods => "application/vnd.oasis.opendocument.spreadsheet",
        }
    }

    /// xlsx and ods workbooks are zip archives, xls workbooks OLE compound files.
    fn check_content(&self, head: &[u8], file: &File) -> Result<(), FormatError> {
        match self {
            Workbook::Xls if head.starts_with(OLE) => Ok(()),
            Workbook::Xls => Err(mismatch(self, "an xls workbook is an OLE compound file", head)),
            Workbook::Xlsx | Workbook::Ods if head.starts_with(ZIP) => Ok(()),
            Workbook::Xlsx if head.starts_with(OLE) => {
                // Excel saves a password-protected xlsx as an OLE file holding the encrypted package.
                let mut rest = Vec::new();
                rewound(file)?.take(1 << 20).read_to_end(&mut rest)?;
                let marker: Vec<u8> = "EncryptedPackage"
                    .encode_utf16()
                    .flat_map(|u| u.to_le_bytes())
                    .collect();
                if rest.windows(marker.len()).any(|w| w == marker.as_slice()) {
                    Err(FormatError::Encrypted(
                        "the workbook is password-protected (encrypted); save it without a password".into(),
                    ))
                } else {
                    Err(mismatch(self, "an xlsx workbook is a zip archive", head))
                }
            }
            Workbook::Xlsx | Workbook::Ods => Err(mismatch(self, "a workbook of this kind is a zip archive", head)),
        }
    }

    fn profile(&self, file: &File) -> Result<Profile, FormatError> {
        profile(file, *self)
    }

    fn preview(&self, file: &File, options: &PreviewOptions<'_>) -> Result<Preview, FormatError> {
        preview(file, *self, options.rows, options.sheet, options.table_sheet)
    }

    fn read_rows(
        &self,
        file: &File,
        profile: &Profile,
        row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
    ) -> Result<u64, FormatError> {
        read_rows(file, *self, profile, row)
    }

    fn has_sheets(&self) -> bool {
        true
    }
}

enum Book {
    Xlsx(Xlsx<BufReader<File>>),
    Xls(Xls<BufReader<File>>),
    Ods(File),
}

fn unreadable(e: &dyn std::fmt::Display) -> FormatError {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("password") {
        FormatError::Encrypted("the workbook is password-protected (encrypted); save it without a password".into())
    } else {
        FormatError::Corrupt(format!("the workbook is damaged or not readable: {text}"))
    }
}

fn open(file: &File, kind: Workbook) -> Result<Book, FormatError> {
    let reader = BufReader::new(super::rewound(file)?);
    Ok(match kind {
        Workbook::Xlsx => Book::Xlsx(Xlsx::new(reader).map_err(|e| unreadable(&e))?),
        Workbook::Xls => Book::Xls(Xls::new(reader).map_err(|e| unreadable(&e))?),
        Workbook::Ods => {
            drop(reader);
            // Checks the archive, mimetype and encryption now, as the other readers do.
            ods::read(file, None, &mut |_| false)?;
            Book::Ods(super::rewound(file)?)
        }
    })
}

impl Book {
    fn sheet_names(&self) -> Result<Vec<String>, FormatError> {
        Ok(match self {
            Book::Xlsx(b) => b.sheet_names(),
            Book::Xls(b) => b.sheet_names(),
            Book::Ods(file) => {
                let mut names = Vec::new();
                ods::read(file, None, &mut |visit| {
                    if let ods::Visit::Sheet(name) = visit {
                        names.push(name.to_string());
                    }
                    true
                })?;
                names
            }
        })
    }

    /// Calls `row` with each row of the sheet from the first, blank ones included, as cell
    /// texts (`None` for an empty cell; trailing empty cells left out).
    fn for_each_row(&mut self, sheet: &str, row: &mut dyn FnMut(&[Option<String>]) -> bool) -> Result<(), FormatError> {
        match self {
            Book::Xlsx(book) => {
                let mut cells = book.worksheet_cells_reader(sheet).map_err(|e| unreadable(&e))?;
                let mut current: Vec<Option<String>> = Vec::new();
                let mut at = 0u32;
                while let Some(cell) = cells.next_cell().map_err(|e| unreadable(&e))? {
                    let (r, c) = cell.get_position();
                    let Some(text) = text_ref(cell.get_value()) else {
                        continue;
                    };
                    while at < r {
                        // The rows before this cell's (blank ones included) are complete.
                        if !row(&current) {
                            return Ok(());
                        }
                        current.clear();
                        at += 1;
                    }
                    let c = c as usize;
                    if current.len() <= c {
                        current.resize(c + 1, None);
                    }
                    current[c] = Some(text);
                }
                if !current.is_empty() {
                    row(&current);
                }
                Ok(())
            }
            Book::Xls(book) => {
                let range = book.worksheet_range(sheet).map_err(|e| unreadable(&e))?;
                range_rows(&range, row);
                Ok(())
            }
            Book::Ods(file) => {
                let mut current: Vec<Option<String>> = Vec::new();
                ods::read(file, Some(sheet), &mut |visit| match visit {
                    ods::Visit::Sheet(_) => true,
                    ods::Visit::Row(cells) => {
                        current.clear();
                        current.extend(cells.iter().map(|c| c.as_ref().and_then(text)));
                        row(&current)
                    }
                })
            }
        }
    }
}

/// A whole-sheet range (the `.xls` reader loads sheets whole) as rows from the first.
fn range_rows(range: &calamine::Range<Data>, row: &mut dyn FnMut(&[Option<String>]) -> bool) {
    let Some((top, left)) = range.start() else { return };
    for _ in 0..top {
        if !row(&[]) {
            return;
        }
    }
    let mut current: Vec<Option<String>> = Vec::new();
    for cells in range.rows() {
        current.clear();
        current.resize(left as usize, None);
        current.extend(cells.iter().map(text));
        while current.last().is_some_and(Option::is_none) {
            current.pop();
        }
        if !row(&current) {
            return;
        }
    }
}

/// A cell as pandas' `read_excel` hands it to its parser: whole numbers as integers,
/// dates as ISO date-times, booleans and errors as their text.
fn text(data: &Data) -> Option<String> {
    match data {
        Data::Empty => None,
        Data::Int(i) => Some(i.to_string()),
        Data::Float(x) => Some(number(*x)),
        Data::String(s) => Some(s.clone()),
        Data::Bool(b) => Some(analysis::bool_text(*b).into()),
        Data::DateTime(d) => Some(datetime(d)),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Some(s.clone()),
        Data::Error(e) => Some(e.to_string()),
    }
}

fn text_ref(data: &DataRef<'_>) -> Option<String> {
    match data {
        DataRef::Empty => None,
        DataRef::Int(i) => Some(i.to_string()),
        DataRef::Float(x) => Some(number(*x)),
        DataRef::String(s) => Some(s.clone()),
        DataRef::SharedString(s) => Some(s.to_string()),
        DataRef::Bool(b) => Some(analysis::bool_text(*b).into()),
        DataRef::DateTime(d) => Some(datetime(d)),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Some(s.clone()),
        DataRef::Error(e) => Some(e.to_string()),
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        format!("{}", x as i64)
    } else {
        analysis::float_text(x)
    }
}

/// Dates and date-times as ISO text; a time of day or a duration (no date) as `HH:MM:SS`,
/// which pandas keeps as text (`datetime.time`).
fn datetime(d: &calamine::ExcelDateTime) -> String {
    let (y, mo, day, h, mi, s, ms) = d.to_ymd_hms_milli();
    if d.is_duration() || d.as_f64() < 1.0 {
        return format!("{h:02}:{mi:02}:{s:02}");
    }
    if ms > 0 {
        format!("{y:04}-{mo:02}-{day:02} {h:02}:{mi:02}:{s:02}.{ms:03}")
    } else if h == 0 && mi == 0 && s == 0 {
        format!("{y:04}-{mo:02}-{day:02}")
    } else {
        format!("{y:04}-{mo:02}-{day:02} {h:02}:{mi:02}:{s:02}")
    }
}

/// A sheet's extent: rows holding a value and the widest row (from column A).
#[derive(Debug, Default, Clone, Copy)]
struct Extent {
    rows: u64,
    width: usize,
}

fn extent(book: &mut Book, sheet: &str) -> Result<Extent, FormatError> {
    let mut e = Extent::default();
    book.for_each_row(sheet, &mut |cells| {
        if !cells.is_empty() {
            e.rows += 1;
            e.width = e.width.max(cells.len());
        }
        true
    })?;
    Ok(e)
}

/// Rows of a sheet as tab-separated text, padded to the sheet's width like a spreadsheet's
/// own export, produced as the CSV engine reads (one row at a time).
struct SheetText<'a> {
    pending: Vec<u8>,
    pos: usize,
    next: Box<dyn FnMut() -> Option<Vec<u8>> + 'a>,
}

impl Read for SheetText<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.pending.len() {
            match (self.next)() {
                Some(line) => {
                    self.pending = line;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One row as a tab-separated line, quoted where a cell holds a tab, quote or line break.
fn tsv_line(cells: &[Option<String>], width: usize) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(b'\t')
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    if cells.iter().all(Option::is_none) {
        return b"\n".to_vec();
    }
    let record: Vec<&str> = (0..width.max(cells.len()))
        .map(|i| cells.get(i).and_then(|c| c.as_deref()).unwrap_or(""))
        .collect();
    let _ = w.write_record(&record);
    w.into_inner().unwrap_or_default()
}

/// Runs `analyze` over the sheet's rows as TSV text. The sheet is read on a helper thread
/// that hands rows over a short queue, so only a few rows are in memory at a time.
fn with_sheet_text<T>(
    file: &File,
    kind: Workbook,
    sheet: &str,
    width: usize,
    analyze: impl FnOnce(SheetText<'_>) -> T,
) -> Result<T, FormatError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(256);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<(), FormatError> {
            let mut book = open(file, kind)?;
            book.for_each_row(sheet, &mut |cells| tx.send(tsv_line(cells, width)).is_ok())
        });
        let text = SheetText {
            pending: Vec::new(),
            pos: 0,
            next: Box::new(move || rx.recv().ok()),
        };
        let out = analyze(text);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(FormatError::Corrupt("the workbook reader failed".into())));
        read.map(|()| out)
    })
}

fn profile(file: &File, kind: Workbook) -> Result<Profile, FormatError> {
    let mut book = open(file, kind)?;
    let names = book.sheet_names()?;
    let mut extents = Vec::with_capacity(names.len());
    for name in &names {
        extents.push(extent(&mut book, name)?);
    }
    drop(book);
    // The table is the first sheet with a header and a row, else the first with anything.
    let table = extents
        .iter()
        .position(|e| e.rows >= 2)
        .or_else(|| extents.iter().position(|e| e.rows >= 1))
        .ok_or_else(|| FormatError::NoData("the workbook has no data: every sheet is empty".into()))?;
    let sheet = names[table].clone();
    let width = extents[table].width;
    let mut profile = with_sheet_text(file, kind, &sheet, width, |text| {
        analysis::profile_reader(text, analysis::Format::Tsv)
    })??;
    profile.encoding = String::new();
    profile.delimiter = String::new();
    profile.sheets = names
        .iter()
        .zip(&extents)
        .enumerate()
        .map(|(i, (name, e))| {
            if i == table {
                SheetShape {
                    name: name.clone(),
                    rows: profile.row_count,
                    columns: profile.column_count,
                }
            } else {
                SheetShape {
                    name: name.clone(),
                    rows: e.rows.saturating_sub(1),
                    columns: e.width as u64,
                }
            }
        })
        .collect();
    profile.sheet = Some(sheet);
    Ok(profile)
}

/// The typed rows of the sheet the profile calls the table, read as the profile read them
/// (the sheet as tab-separated text through the CSV engine).
fn read_rows(
    file: &File,
    kind: Workbook,
    profile: &Profile,
    row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
) -> Result<u64, FormatError> {
    let sheet = profile
        .sheet
        .clone()
        .ok_or_else(|| FormatError::NoData("the workbook's summary names no sheet".into()))?;
    let width = extent(&mut open(file, kind)?, &sheet)?.width;
    with_sheet_text(file, kind, &sheet, width, |text| {
        analysis::read_rows(text, analysis::Format::Tsv, profile, row)
    })?
    .map_err(FormatError::from)
}

/// The first rows of `sheet` (default: the sheet the profile calls the table, else the first
/// sheet with data), read as the profile reads them.
fn preview(
    file: &File,
    kind: Workbook,
    rows: usize,
    sheet: Option<&str>,
    table: Option<&str>,
) -> Result<Preview, FormatError> {
    let mut book = open(file, kind)?;
    let names = book.sheet_names()?;
    let sheet = match sheet.or(table) {
        Some(name) => names.iter().find(|n| n.as_str() == name).cloned().ok_or_else(|| {
            FormatError::NoSheet(format!(
                "the workbook has no sheet named {name:?}; its sheets: {names:?}"
            ))
        })?,
        None => names
            .first()
            .cloned()
            .ok_or_else(|| FormatError::NoData("the workbook has no sheets".into()))?,
    };
    let width = extent(&mut book, &sheet)?.width;
    drop(book);
    if width == 0 {
        return Ok(Preview {
            columns: Vec::new(),
            rows: Vec::new(),
        });
    }
    with_sheet_text(file, kind, &sheet, width, |text| {
        analysis::preview_reader(text, analysis::Format::Tsv, rows, false)
    })?
    .map_err(FormatError::from)
}

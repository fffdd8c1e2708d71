//! Byte input: encoding (BOM, UTF-16), delimiter and title-line sniffing, and a guard that bounds one record's size.

use super::{infer, AnalysisError, Format};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Chain, Cursor, Read};

/// A record longer than this is refused: it is almost always a quote that never closes, and
/// without the bound the csv reader would buffer the rest of the file.
pub(super) const MAX_RECORD_BYTES: u64 = 16 << 20;
/// How far we look for the end of the first line when sniffing.
const SNIFF_LIMIT: usize = 1 << 20;
/// How much of the start of the file the sniffer reads (more if the first line is longer).
const SNIFF_BYTES: usize = 64 << 10;
/// Records of that start the sniffer looks at.
const SNIFF_RECORDS: usize = 200;
/// Title or note lines above the header are looked for among this many records.
const MAX_PREAMBLE: usize = 30;
/// At most this many note lines at the end of a table are dropped as its footer.
const MAX_FOOTER: usize = 10;
const CSV_BUFFER: usize = 1 << 16;

/// Marker error raised by [`Guard`] so it can be told apart from real I/O errors.
#[derive(Debug)]
struct RecordTooLong;
impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("record too long")
    }
}
impl std::error::Error for RecordTooLong {}

/// Counts bytes handed to the csv reader and fails once the current record has grown too long.
///
/// It also counts newlines and keeps a copy of the last chunk, because csv's own record
/// positions are taken before blank lines are skipped and so cannot name the right line.
/// csv reads through a `BufReader`, which refills only when its buffer is used up, so any
/// position the parser has reached lies inside the last chunk.
struct Guard<R> {
    inner: R,
    consumed: u64,
    limit: Cell<u64>,
    newlines: u64,
    chunk: Vec<u8>,
    chunk_start: u64,
    byte_before_chunk: Option<u8>,
    /// Start offset of the record being read; its line is resolved before its chunk is dropped.
    pending: Cell<u64>,
    resolved: Cell<(u64, u64)>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.consumed > self.limit.get() {
            return Err(io::Error::other(RecordTooLong));
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            let pending = self.pending.get();
            if pending >= self.chunk_start && self.resolved.get().0 != pending {
                self.resolved.set((pending, self.line_of_next_content(pending)));
            }
            let data = &buf[..n];
            self.byte_before_chunk = self.chunk.last().copied().or(self.byte_before_chunk);
            self.chunk_start = self.consumed;
            self.chunk.clear();
            self.chunk.extend_from_slice(data);
            self.newlines += count_newlines(data);
            self.consumed += n as u64;
        }
        Ok(n)
    }
}

impl<R> Guard<R> {
    fn offset_in_chunk(&self, pos: u64) -> usize {
        (pos.saturating_sub(self.chunk_start) as usize).min(self.chunk.len())
    }

    /// Line of `pos`, also when `pos` was the pending record start and its chunk is gone.
    fn line_of_record_start(&self, pos: u64) -> u64 {
        match self.resolved.get() {
            (p, line) if p == pos && pos < self.chunk_start => line,
            _ => self.line_of_next_content(pos),
        }
    }

    /// Line of the first non-blank byte at or after `pos` (within the current chunk).
    fn line_of_next_content(&self, pos: u64) -> u64 {
        let rest = &self.chunk[self.offset_in_chunk(pos)..];
        let blank = rest.iter().take_while(|b| matches!(**b, b'\n' | b'\r' | b' ' | b'\t'));
        self.line_at(pos) + blank.filter(|b| **b == b'\n').count() as u64
    }

    /// 1-based line on which byte offset `pos` lies.
    fn line_at(&self, pos: u64) -> u64 {
        let after = &self.chunk[self.offset_in_chunk(pos)..];
        1 + self.newlines - after.iter().filter(|b| **b == b'\n').count() as u64
    }

    fn byte_before(&self, pos: u64) -> Option<u8> {
        match self.offset_in_chunk(pos) {
            0 => self.byte_before_chunk,
            i => self.chunk.get(i - 1).copied(),
        }
    }
}

type Source<R> = Guard<Chain<Cursor<Vec<u8>>, Transcode<Chain<Cursor<Vec<u8>>, R>>>>;

/// A csv reader over the (BOM-stripped, UTF-16-decoded) input plus what was detected about it.
pub(super) struct Input<R: Read> {
    rdr: csv::Reader<Source<R>>,
    bom: bool,
    utf16: Option<&'static encoding_rs::Encoding>,
    delimiter: u8,
    /// Non-blank records above the header (a spreadsheet's title, a portal's notes).
    preamble: usize,
    headerless: bool,
    /// Note-like lines held back by [`Input::read_row`] until a row below them shows they are
    /// data, and the ones being handed out after that.
    held: VecDeque<csv::ByteRecord>,
    /// How many of the held lines are notes (the rest are lines of delimiters).
    held_notes: usize,
    releasing: VecDeque<csv::ByteRecord>,
    rows: u64,
    footer: u64,
}

impl<R: Read> Input<R> {
    pub(super) fn bom(&self) -> bool {
        self.bom
    }

    /// `"utf-16-le"` or `"utf-16-be"` when the file was UTF-16 (it is read as UTF-8 then).
    pub(super) fn utf16_label(&self) -> Option<&'static str> {
        self.utf16.map(|e| {
            if e == encoding_rs::UTF_16BE {
                "utf-16-be"
            } else {
                "utf-16-le"
            }
        })
    }

    pub(super) fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// Rows [`Input::read_row`] has handed out.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// Lines of notes below the table that [`Input::read_row`] dropped.
    pub(super) fn footer_lines(&self) -> u64 {
        self.footer
    }

    /// Next data row of a table of `ncols` columns; `false` at the end of the input.
    ///
    /// Blank lines are skipped. Lines that may be a footer (see [`FooterLine`]) are held
    /// back: if a row follows, they are handed out in order as pandas reads them; at the end
    /// of the input they are the table's footer and are dropped, as long as they are at most
    /// [`MAX_FOOTER`] lines with at least one note, and there are twice as many rows as notes.
    pub(super) fn read_row(&mut self, rec: &mut csv::ByteRecord, ncols: usize) -> Result<bool, AnalysisError> {
        loop {
            if let Some(held) = self.releasing.pop_front() {
                *rec = held;
                self.rows += 1;
                return Ok(true);
            }
            if !self.read_record(rec)? {
                let n = self.held.len() as u64;
                let notes = self.held_notes as u64;
                if notes > 0 && n <= MAX_FOOTER as u64 && self.rows >= 2 * notes {
                    self.footer = n;
                } else {
                    self.releasing.append(&mut self.held);
                    if !self.releasing.is_empty() {
                        continue;
                    }
                }
                return Ok(false);
            }
            if is_blank(rec) {
                continue;
            }
            if ncols >= 2 && self.held.len() < MAX_FOOTER {
                if let Some(line) = footer_line(rec, ncols) {
                    self.held_notes += (line == FooterLine::Note) as usize;
                    self.held.push_back(rec.clone());
                    continue;
                }
            }
            if self.held.is_empty() {
                self.rows += 1;
                return Ok(true);
            }
            // The held lines were rows after all: they come first, then this one.
            self.releasing.append(&mut self.held);
            self.releasing.push_back(rec.clone());
            self.held_notes = 0;
        }
    }

    /// Reads the header: the first non-blank record below any title lines the sniffer found.
    /// Returns its 1-based line, or `None` when the input holds no record at all. In a file
    /// without a header the line is 0 and the record is also the first row [`Input::read_row`]
    /// hands out; the caller names the columns (see [`Input::headerless`]).
    pub(super) fn read_header(&mut self, rec: &mut csv::ByteRecord) -> Result<Option<u64>, AnalysisError> {
        let mut above = self.preamble;
        loop {
            if !self.read_record(rec)? {
                return Ok(None);
            }
            if is_blank(rec) {
                continue;
            }
            if above > 0 {
                above -= 1;
                continue;
            }
            if self.headerless {
                self.releasing.push_back(rec.clone());
                return Ok(Some(0));
            }
            return Ok(Some(self.record_line(rec)));
        }
    }

    /// The file has no header row: its first record is data (numbers and dates over a table
    /// of numbers and dates, as an instrument writes it).
    pub(super) fn headerless(&self) -> bool {
        self.headerless
    }

    /// The 1-based line on which the record just read starts (as a text editor counts lines).
    pub(super) fn record_line(&self, rec: &csv::ByteRecord) -> u64 {
        let end = self.rdr.position().byte();
        let guard = self.rdr.get_ref();
        let mut last = guard.line_at(end);
        if guard.byte_before(end) == Some(b'\n') {
            last -= 1;
        }
        let embedded = rec.as_slice().iter().filter(|b| **b == b'\n').count() as u64;
        last.saturating_sub(embedded).max(1)
    }

    /// Next record (blank lines are skipped by csv-core); `false` at end of input.
    pub(super) fn read_record(&mut self, rec: &mut csv::ByteRecord) -> Result<bool, AnalysisError> {
        // Where this record starts (give or take blank lines): a runaway quote is reported
        // there, not where reading stopped.
        let start = self.rdr.position().byte();
        match self.rdr.read_byte_record(rec) {
            Ok(more) => {
                let end = self.rdr.position().byte();
                let guard = self.rdr.get_ref();
                guard.limit.set(end + MAX_RECORD_BYTES);
                guard.pending.set(end);
                Ok(more)
            }
            Err(err) => {
                let line = err
                    .position()
                    .map(|p| p.line())
                    .unwrap_or_else(|| self.rdr.position().line());
                match err.into_kind() {
                    csv::ErrorKind::Io(io_err) => {
                        let too_long = io_err.get_ref().is_some_and(|e| e.is::<RecordTooLong>());
                        if too_long {
                            let line = self.rdr.get_ref().line_of_record_start(start);
                            Err(AnalysisError::Malformed {
                                line,
                                message: format!(
                                    "line {line}: a record is longer than {} MiB; a quoted field is probably never closed",
                                    MAX_RECORD_BYTES >> 20
                                ),
                            })
                        } else {
                            Err(AnalysisError::Io(io_err))
                        }
                    }
                    other => Err(AnalysisError::Malformed {
                        line,
                        message: format!("line {line}: {other:?}"),
                    }),
                }
            }
        }
    }
}

/// Number of `\n` bytes, in blocks small enough for byte-wide counters (which vectorize well).
fn count_newlines(data: &[u8]) -> u64 {
    let mut blocks = data.chunks_exact(128);
    let mut n = 0u64;
    for block in &mut blocks {
        n += block.iter().map(|b| (*b == b'\n') as u8).sum::<u8>() as u64;
    }
    n + blocks.remainder().iter().filter(|b| **b == b'\n').count() as u64
}

/// Reads the start of the input, detects its encoding, delimiter and header, and returns a
/// reader over all of it.
pub(super) fn open<R: Read>(mut inner: R, format: Format) -> Result<Input<R>, AnalysisError> {
    let mut raw = Vec::new();
    let mut complete = fill_prefix(&mut inner, &mut raw)?;
    let utf16 = sniff_utf16(&raw);
    let (decoded, mut prefix) = match utf16 {
        None => (Transcode::plain(Cursor::new(Vec::new()).chain(inner)), raw),
        Some(encoding) => {
            let mut decoded = Transcode::utf16(Cursor::new(raw).chain(inner), encoding);
            let mut prefix = Vec::new();
            complete = fill_prefix(&mut decoded, &mut prefix)?;
            (decoded, prefix)
        }
    };
    let bom = prefix.starts_with(b"\xEF\xBB\xBF");
    if bom {
        prefix.drain(..3);
    }
    let Layout {
        delimiter,
        preamble,
        headerless,
    } = sniff_layout(&prefix, complete, format);
    let source = Guard {
        inner: Cursor::new(prefix).chain(decoded),
        consumed: 0,
        limit: Cell::new(MAX_RECORD_BYTES),
        newlines: 0,
        chunk: Vec::with_capacity(CSV_BUFFER),
        chunk_start: 0,
        byte_before_chunk: None,
        pending: Cell::new(0),
        resolved: Cell::new((u64::MAX, 0)),
    };
    let rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quoting(true)
        .double_quote(true)
        .buffer_capacity(CSV_BUFFER)
        .from_reader(source);
    Ok(Input {
        rdr,
        bom,
        utf16,
        delimiter,
        preamble,
        headerless,
        held: VecDeque::new(),
        held_notes: 0,
        releasing: VecDeque::new(),
        rows: 0,
        footer: 0,
    })
}

/// Reads [`SNIFF_BYTES`] (more until the first non-blank line is complete, at most
/// [`SNIFF_LIMIT`]); `true` when that is the whole input.
fn fill_prefix<R: Read>(inner: &mut R, prefix: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    loop {
        let enough = prefix.len() >= SNIFF_BYTES && first_line(prefix).is_some();
        if enough || prefix.len() >= SNIFF_LIMIT {
            return Ok(false);
        }
        let n = match inner.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(true);
        }
        prefix.extend_from_slice(&chunk[..n]);
    }
}

/// UTF-16 by its BOM, or without one when one byte of nearly every pair is zero (Excel's
/// "Unicode text" export is UTF-16LE with a BOM; some instruments write it without).
fn sniff_utf16(raw: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    if raw.starts_with(b"\xFF\xFE") {
        return Some(encoding_rs::UTF_16LE);
    }
    if raw.starts_with(b"\xFE\xFF") {
        return Some(encoding_rs::UTF_16BE);
    }
    let pairs = raw.len().min(4096) / 2;
    if pairs < 2 {
        return None;
    }
    let zeros = |parity: usize| (0..pairs).filter(|i| raw[2 * i + parity] == 0).count();
    let (even, odd) = (zeros(0), zeros(1));
    // Text that is mostly ASCII has a zero high byte in (nearly) every code unit.
    let mostly = |n: usize| n * 10 >= pairs * 9;
    let few = |n: usize| n * 20 <= pairs;
    if mostly(odd) && few(even) {
        Some(encoding_rs::UTF_16LE)
    } else if mostly(even) && few(odd) {
        Some(encoding_rs::UTF_16BE)
    } else {
        None
    }
}

/// UTF-16 input decoded to UTF-8 as it is read (so the rest of the engine sees UTF-8), or
/// the input as it is.
struct Transcode<R> {
    inner: R,
    decoder: Option<encoding_rs::Decoder>,
    raw: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Transcode<R> {
    fn plain(inner: R) -> Self {
        Transcode {
            inner,
            decoder: None,
            raw: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    fn utf16(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Transcode {
            decoder: Some(encoding.new_decoder_with_bom_removal()),
            raw: vec![0; 1 << 16],
            ..Transcode::plain(inner)
        }
    }
}

impl<R: Read> Read for Transcode<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(decoder) = self.decoder.as_mut() else {
            return self.inner.read(buf);
        };
        // Callers read in blocks of kilobytes; a character needs at most 4 bytes of room.
        debug_assert!(buf.len() >= 4);
        loop {
            if self.start == self.end {
                if self.eof {
                    return Ok(0);
                }
                self.end = match self.inner.read(&mut self.raw) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                self.start = 0;
                self.eof = self.end == 0;
            }
            let (_, read, written, _) = decoder.decode_to_utf8(&self.raw[self.start..self.end], buf, self.eof);
            self.start += read;
            if written > 0 || self.eof {
                return Ok(written);
            }
        }
    }
}

/// Where the table starts and how its fields are separated.
#[derive(Debug, PartialEq)]
struct Layout {
    delimiter: u8,
    preamble: usize,
    /// The first record is data: columns are numbered, as pandas' `header=None` names them.
    headerless: bool,
}

/// The delimiter by pandas' rule plus ours (comma unless the first line has none but has
/// `;`, tab or `|`), and title lines above the header.
///
/// Title lines are looked for only when the first line is much narrower than the rows below
/// it, or the rows have more fields than it (pandas refuses such a file). The header is then
/// the first record that (a) has at least two fields, is not all numbers and does not start
/// with `#`, (b) is wider than every line above it that does not start with `#`, and (c) has
/// its width as the most common width of the sniffed records below it that have a delimiter,
/// and at least 80% of those at more than half its width and no wider.
/// With another delimiter than the first line's, the header line must sniff to it too; of
/// several delimiters that find a table below title lines, the widest table wins.
///
/// Without title lines, the first line's delimiter is kept unless another delimiter splits
/// every sniffed record alike and the first one splits at most half of them like the header,
/// or splits them into fewer fields. Last, a first line of numbers and dates over rows of
/// numbers and dates is data, not a header.
fn sniff_layout(prefix: &[u8], complete: bool, format: Format) -> Layout {
    let first = match format {
        Format::Tsv => b'\t',
        Format::Csv => sniff_delimiter(prefix),
    };
    let others: &[u8] = match format {
        Format::Tsv => &[],
        Format::Csv => &[b',', b';', b'\t', b'|'],
    };
    // (fields, delimiter) of the delimiter other than the first that splits every record alike
    // into the most fields.
    let mut consistent: Option<(usize, u8)> = None;
    // (table width, layout) of the widest table found below title lines.
    let mut titled: Option<(usize, Layout)> = None;
    // The first delimiter's records when it splits most of them like the header.
    let mut plain: Option<Vec<Shape>> = None;
    for delimiter in std::iter::once(first).chain(others.iter().copied().filter(|d| *d != first)) {
        let records = shapes(prefix, complete, delimiter);
        let (matching, total) = consistency(&records);
        if let Some(preamble) = find_header(&records) {
            let header = &records[preamble];
            let sniffs_alike = sniff_delimiter(&prefix[header.span.clone()]) == delimiter;
            let wider = titled.as_ref().is_none_or(|(width, _)| header.width > *width);
            // Another delimiter's title lines only count when the first one gives no table.
            if (delimiter == first || (sniffs_alike && plain.is_none())) && wider {
                let layout = Layout {
                    delimiter,
                    preamble,
                    headerless: false,
                };
                titled = Some((header.width, layout));
            }
            continue;
        }
        let fields = records.first().map_or(0, |r| r.fields);
        if delimiter == first {
            if matching * 2 > total {
                plain = Some(records);
            }
        } else if fields >= 2 && total >= 3 && matching == total && consistent.is_none_or(|(f, _)| fields > f) {
            consistent = Some((fields, delimiter));
        }
    }
    if let Some((_, layout)) = titled {
        return layout;
    }
    let first_fields = plain.as_ref().and_then(|r| r.first()).map_or(0, |r| r.fields);
    let delimiter = match consistent {
        // Another delimiter splits every record alike: where the first line's delimiter
        // splits most rows unlike the header, or splits them alike into fewer fields (a
        // tab-separated export whose names and values hold commas), it is the delimiter.
        Some((fields, other)) if plain.is_none() || fields > first_fields => {
            return Layout {
                delimiter: other,
                preamble: 0,
                headerless: false,
            };
        }
        _ => first,
    };
    let headerless = plain.as_deref().is_some_and(is_headerless);
    Layout {
        delimiter,
        preamble: 0,
        headerless,
    }
}

/// The first record is data, not a header: every cell of it is a number or date, not all of
/// them years, and every record below with a delimiter is numbers and dates too at its width.
fn is_headerless(records: &[Shape]) -> bool {
    let Some((first, below)) = records.split_first() else {
        return false;
    };
    let rows: Vec<&Shape> = below.iter().filter(|r| r.fields > 1).collect();
    first.fields >= 2
        && first.numeric
        && first.full
        && !first.years
        && !rows.is_empty()
        && rows.iter().all(|r| r.numeric && r.width <= first.fields)
}

/// How many sniffed records have as many fields as the first one, of how many.
fn consistency(records: &[Shape]) -> (usize, usize) {
    let Some(first) = records.first() else {
        return (0, 0);
    };
    let matching = records.iter().filter(|r| r.fields == first.fields).count();
    (matching, records.len())
}

/// What the sniffer needs to know of one non-blank record.
#[derive(Debug)]
struct Shape {
    fields: usize,
    /// Fields up to the last non-empty one (trailing empty cells of a spreadsheet row ignored).
    width: usize,
    comment: bool,
    /// Starts with a value and every value is a number or an ISO date: a data row, not a header.
    numeric: bool,
    /// No empty field.
    full: bool,
    /// Every field is a year (1800–2100): a header over yearly columns can look like this.
    years: bool,
    /// The record's bytes in the prefix (with any blank lines before it).
    span: std::ops::Range<usize>,
}

fn shapes(prefix: &[u8], complete: bool, delimiter: u8) -> Vec<Shape> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(prefix);
    let mut rec = csv::ByteRecord::new();
    let mut out = Vec::new();
    let mut start = 0;
    while out.len() < SNIFF_RECORDS {
        if !matches!(rdr.read_byte_record(&mut rec), Ok(true)) {
            // The last record may be cut off where the prefix ends.
            if !complete {
                out.pop();
            }
            break;
        }
        let end = rdr.position().byte() as usize;
        if !is_blank(&rec) {
            let is_value = |f: &[u8]| {
                std::str::from_utf8(f).is_ok_and(|s| s.trim().parse::<f64>().is_ok())
                    || super::iso::parse(f.trim_ascii()).is_some()
            };
            out.push(Shape {
                fields: rec.len(),
                width: width(&rec),
                comment: rec.get(0).is_some_and(|f| f.starts_with(b"#")),
                numeric: rec.get(0).is_some_and(|f| !f.is_empty()) && rec.iter().all(|f| f.is_empty() || is_value(f)),
                full: rec.iter().all(|f| !f.is_empty()),
                years: rec.iter().all(|f| {
                    std::str::from_utf8(f)
                        .is_ok_and(|s| s.trim().parse::<u16>().is_ok_and(|y| (1800..=2100).contains(&y)))
                }),
                span: start..end,
            });
        }
        start = end;
    }
    out
}

/// How many records precede the header, when the first record is a title rather than the header.
fn find_header(records: &[Shape]) -> Option<usize> {
    let (first, below) = records.split_first()?;
    let typical = most_common(below.iter().map(|r| r.width))?;
    let narrow = first.width * 2 <= typical;
    let overflows = below.iter().any(|r| r.width > first.fields);
    if !(narrow || overflows) {
        return None;
    }
    (1..=MAX_PREAMBLE.min(records.len().saturating_sub(2))).find(|&s| {
        let header = &records[s];
        let width = header.width;
        if width < 2 || header.numeric || header.comment {
            return false;
        }
        if records[..s].iter().any(|r| r.width >= width && !r.comment) {
            return false;
        }
        // Lines without a delimiter (notes, or rows with one value) say nothing of the width.
        let body: Vec<&Shape> = records[s + 1..].iter().filter(|r| r.fields > 1).collect();
        let fitting = body
            .iter()
            .filter(|r| r.width <= header.fields && r.width * 2 > width)
            .count();
        most_common(body.iter().map(|r| r.width)) == Some(width) && fitting * 5 >= body.len() * 4
    })
}

fn most_common(values: impl Iterator<Item = usize>) -> Option<usize> {
    let mut counts = std::collections::BTreeMap::new();
    for v in values {
        *counts.entry(v).or_insert(0usize) += 1;
    }
    counts.into_iter().max_by_key(|&(v, n)| (n, v)).map(|(v, _)| v)
}

/// The first non-blank line if it is complete, quote-aware (a newline inside quotes does not end it).
fn first_line(buf: &[u8]) -> Option<&[u8]> {
    first_line_impl(buf, false)
}

/// Like [`first_line`], but the end of `buf` also ends a line (for sniffing a short or cut-off prefix).
fn first_line_or_rest(buf: &[u8]) -> Option<&[u8]> {
    first_line_impl(buf, true)
}

fn first_line_impl(buf: &[u8], end_is_eol: bool) -> Option<&[u8]> {
    let is_blank = |l: &[u8]| l.iter().all(|c| *c == b' ' || *c == b'\t');
    let mut start = 0;
    let mut in_quotes = false;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' | b'\r' if !in_quotes => {
                let line = &buf[start..i];
                if is_blank(line) {
                    start = i + 1;
                } else {
                    return Some(line);
                }
            }
            _ => {}
        }
    }
    let rest = &buf[start.min(buf.len())..];
    (end_is_eol && !is_blank(rest)).then_some(rest)
}

/// Comma unless the first line has none and has `;`, tab or `|` (the most frequent wins).
pub(super) fn sniff_delimiter(prefix: &[u8]) -> u8 {
    let line = first_line_or_rest(prefix).unwrap_or_default();
    let mut counts = [0usize; 4];
    let cands = [b',', b';', b'\t', b'|'];
    let mut in_quotes = false;
    for &b in line {
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            if let Some(k) = cands.iter().position(|c| *c == b) {
                counts[k] += 1;
            }
        }
    }
    if counts[0] > 0 {
        return b',';
    }
    let mut best = b',';
    let mut best_n = 0;
    for k in 1..4 {
        if counts[k] > best_n {
            best_n = counts[k];
            best = cands[k];
        }
    }
    best
}

/// pandas skips lines that are empty or only spaces/tabs; csv-core already drops empty ones.
pub(super) fn is_blank(rec: &csv::ByteRecord) -> bool {
    rec.len() == 1 && {
        let f = &rec[0];
        !f.is_empty() && f.iter().all(|c| *c == b' ' || *c == b'\t')
    }
}

/// A line below the table that may be part of its footer rather than a row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FooterLine {
    /// A note: a line with fewer fields than the header (so not padded by the exporter), at
    /// most half of them used, whose first cell is text with a space, a `:` or a leading
    /// `#` (`Source: BLS`, `Note: in EUR, excl. VAT`); or a line padded to the table's
    /// width with only a label in its first cell (`Source: finance,,,,`).
    Note,
    /// Only delimiters: a row of missing values to pandas, a spacer around notes to a reader.
    Empty,
}

fn footer_line(rec: &csv::ByteRecord, ncols: usize) -> Option<FooterLine> {
    // Most rows have a value in their last column (checked first: this runs on every row).
    if rec.get(ncols - 1).is_some_and(|f| !f.is_empty()) {
        return None;
    }
    let width = width(rec);
    if width == 0 {
        return Some(FooterLine::Empty);
    }
    let text = rec[0].trim_ascii();
    if width * 2 > ncols || infer::classify(text) != infer::Value::Text {
        return None;
    }
    let label = text.starts_with(b"#") || text.contains(&b':');
    let sentence = text.iter().any(|b| matches!(b, b' ' | b'\t'));
    let note = if rec.len() < ncols {
        label || sentence
    } else {
        width == 1 && label
    };
    note.then_some(FooterLine::Note)
}

/// Fields up to the last non-empty one (a spreadsheet row's trailing empty cells ignored).
fn width(rec: &csv::ByteRecord) -> usize {
    rec.iter().rposition(|f| !f.is_empty()).map_or(0, |i| i + 1)
}

/// Whether every field is valid UTF-8 (fields are checked one by one so that two halves of
/// an invalid sequence in neighbouring fields cannot pass as one character).
pub(super) fn is_utf8(rec: &csv::ByteRecord) -> bool {
    rec.as_slice().is_ascii() || rec.iter().all(|f| std::str::from_utf8(f).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_semicolon_tab_pipe_and_prefers_comma() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1;2;3\n"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc\n"), b'\t');
        assert_eq!(sniff_delimiter(b"a|b|c"), b'|');
        assert_eq!(sniff_delimiter(b"a,b;c\n"), b',');
        assert_eq!(sniff_delimiter(b"single\n1\n"), b',');
        // Delimiters inside quotes do not count.
        assert_eq!(sniff_delimiter(b"\"a;b\"|c\n"), b'|');
        // Leading blank lines are skipped.
        assert_eq!(sniff_delimiter(b"\n  \na;b\n"), b';');
        // Whitespace-only lines never decide the delimiter.
        assert_eq!(sniff_delimiter(b"\r\n  \n\t\n"), b',');
        assert_eq!(sniff_delimiter(b"x;y"), b';');
    }

    #[test]
    fn blank_record_detection() {
        let mut r = csv::ByteRecord::new();
        r.push_field(b"  \t");
        assert!(is_blank(&r));
        let mut r = csv::ByteRecord::new();
        r.push_field(b"");
        assert!(!is_blank(&r), "a quoted empty line is a row of missing values");
        let mut r = csv::ByteRecord::new();
        r.push_field(b" ");
        r.push_field(b" ");
        assert!(!is_blank(&r));
    }

    #[test]
    fn record_lines_count_blank_lines_and_embedded_newlines() {
        for (text, want) in [
            (&b"h\n1\n\n\n2\n\"a\nb\"\n\n3"[..], vec![1u64, 2, 5, 6, 9]),
            (&b"h\r\n1\r\n\r\n2\r\n\"a\r\nb\"\r\n3\r\n"[..], vec![1, 2, 4, 5, 7]),
        ] {
            let mut input = open(text, Format::Csv).expect("open");
            let mut rec = csv::ByteRecord::new();
            let mut got = vec![];
            while input.read_record(&mut rec).expect("read") {
                got.push(input.record_line(&rec));
            }
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(text));
        }
        // Lines stay right across buffer refills.
        let mut big = b"h\n".to_vec();
        for _ in 0..100_000 {
            big.extend_from_slice(b"x\n\n");
        }
        let mut input = open(&big[..], Format::Csv).expect("open");
        let mut rec = csv::ByteRecord::new();
        let mut n = 0u64;
        assert!(input.read_record(&mut rec).expect("header"));
        while input.read_record(&mut rec).expect("read") {
            assert_eq!(input.record_line(&rec), 2 + 2 * n);
            n += 1;
        }
        assert_eq!(n, 100_000);
    }

    #[test]
    fn guard_refuses_runaway_quote() {
        let mut data = b"a,b\n\n1,\"never closed\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', (MAX_RECORD_BYTES + (1 << 20)) as usize));
        let mut input = open(&data[..], Format::Csv).expect("open");
        let mut rec = csv::ByteRecord::new();
        assert!(input.read_record(&mut rec).expect("header"));
        match input.read_record(&mut rec) {
            Err(AnalysisError::Malformed { line, message }) => {
                assert_eq!(line, 3, "{message}");
                assert!(message.contains("never closed"), "{message}");
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }
}

//! Byte input: encoding (BOM, UTF-16), delimiter and title-line sniffing, and a guard that bounds one record's size.

use super::table::{self, Kind};
use super::tokenize::{ReadError, Tokenizer};
use super::{infer, AnalysisError, Format};
use std::collections::VecDeque;
use std::io::{self, Chain, Cursor, Read};

/// A record longer than this is refused: it is almost always a quote that never closes, and
/// without the bound the rest of the file would be read into one record.
pub(super) const MAX_RECORD_BYTES: u64 = 16 << 20;
/// How far we look for the end of the first line when sniffing.
const SNIFF_LIMIT: usize = 1 << 20;
/// How much of the start of the file the sniffer reads (more if the first line is longer).
const SNIFF_BYTES: usize = 128 << 10;
/// Records of that start the sniffer looks at.
const SNIFF_RECORDS: usize = 500;
/// Title, note or metadata lines above the header are looked for among this many records.
const MAX_PREAMBLE: usize = 100;
/// At most this many note lines at the end of a table are dropped as its footer.
const MAX_FOOTER: usize = 10;
/// Consecutive records with one field count, wider than the table or at most half its width,
/// that start another table. Shorter runs of wider lines are set aside; of narrower ones, rows.
const TABLE_RUN: usize = 5;

type Source<R> = Chain<Cursor<Vec<u8>>, Transcode<Chain<Cursor<Vec<u8>>, R>>>;

/// Records of the (BOM-stripped, UTF-16-decoded) input plus what was detected about it.
///
/// Besides reading records it finds where the table ends: notes and lines of delimiters below
/// it (its footer), lines wider than it (set aside), and another table below it (see
/// [`Input::read_row`]).
pub(super) struct Input<R: Read> {
    rdr: Tokenizer<Source<R>>,
    bom: bool,
    utf16: Option<&'static encoding_rs::Encoding>,
    delimiter: u8,
    /// Non-blank records above the header (a spreadsheet's title, a portal's notes, metadata).
    preamble: usize,
    headerless: bool,
    /// The table's width when its header line is narrower than its rows (0: the header's).
    columns: usize,
    /// The line right above the header groups its columns (see [`Layout::group_above`]).
    group_above: bool,
    /// That line's fields and 1-based line, once [`Input::read_header`] has read it.
    group: Option<(csv::ByteRecord, u64)>,
    /// The first column of the table holds numbers, dates or booleans and no text below the
    /// header (in the sniffed start): a line whose only cell is text there is a note.
    typed_first: bool,
    /// Note-like lines held back by [`Input::read_row`] until a row below them shows they are
    /// data, and the ones being handed out after that.
    held: VecDeque<Held>,
    /// How many of the held lines are notes (the rest are lines of delimiters).
    held_notes: usize,
    /// How many of those notes are single words (see [`FooterLine::Word`]).
    held_words: usize,
    releasing: VecDeque<Held>,
    /// Records with one field count unlike the table's, held while they may start another table.
    ahead: Vec<Ahead>,
    /// Records of a run that did not become a table, to be read again in order.
    replay: VecDeque<Ahead>,
    /// The records that start the next table, once a run has confirmed it.
    next_table: Option<Vec<Ahead>>,
    /// Rows and footer lines of the current table.
    rows: u64,
    footer: u64,
    /// Lines wider than their table that were set aside (the whole file).
    set_aside: u64,
}

/// A held-back line: a note, or a run of lines of delimiters only (kept as a count).
#[derive(Debug)]
enum Held {
    Record(csv::ByteRecord),
    Empty(u64),
}

/// A record read ahead, with the line it starts on.
#[derive(Debug)]
pub(super) struct Ahead {
    pub(super) record: csv::ByteRecord,
    pub(super) line: u64,
    /// Read again after its run failed: it may not start a run a second time.
    replayed_first: bool,
}

/// What [`Input::read_row`] found.
#[derive(Debug, PartialEq)]
pub(super) enum Next {
    /// A row of the table (in the record passed in).
    Row,
    /// The end of the input.
    End,
    /// Another table starts here: [`Input::take_table`] has its first records.
    Table,
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

    /// Rows [`Input::read_row`] has handed out in the current table.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// Lines of notes below the current table that [`Input::read_row`] dropped.
    pub(super) fn footer_lines(&self) -> u64 {
        self.footer
    }

    /// Non-blank lines that belong to no table: those above the first table's header (or
    /// first row), and lines wider than their table.
    pub(super) fn skipped_lines(&self) -> u64 {
        (self.preamble - self.group.is_some() as usize) as u64 + self.set_aside
    }

    /// The line of group labels right above the header, with its 1-based line number.
    pub(super) fn group_line(&self) -> Option<&(csv::ByteRecord, u64)> {
        self.group.as_ref()
    }

    /// The table's width when the sniffer found its header line narrower than its rows.
    pub(super) fn columns(&self) -> usize {
        self.columns
    }

    /// The last line of the input read so far (at its end: the file's last line).
    pub(super) fn last_line(&self) -> u64 {
        self.rdr.last_line()
    }

    /// Next data row of a table of `ncols` columns.
    ///
    /// Blank lines are skipped. Lines that may be a footer (see [`FooterLine`]) are held
    /// back: if a row follows, they are handed out in order as pandas reads them; at the end
    /// of the input they are the table's footer and are dropped, as long as they are at most
    /// [`MAX_FOOTER`] notes and there are twice as many rows as notes. A run of lines of
    /// delimiters only at the very end is padding, whatever its length, unless the table has
    /// no other row.
    ///
    /// A record with more fields than the table whose extra fields hold more than whitespace,
    /// or with at most half its fields, may start another table: it and the records after it
    /// are held until [`TABLE_RUN`] records with its field count in a row confirm that (then
    /// [`Next::Table`]), or one with another count ends the run: the wider lines of it are set
    /// aside, the narrower ones are rows.
    pub(super) fn read_row(&mut self, rec: &mut csv::ByteRecord, ncols: usize) -> Result<Next, AnalysisError> {
        loop {
            if self.release(rec) {
                self.rows += 1;
                return Ok(Next::Row);
            }
            if self.next_table.is_some() {
                return Ok(Next::Table);
            }
            let (line, replayed_first) = match self.replay.pop_front() {
                Some(a) => {
                    *rec = a.record;
                    (Some(a.line), a.replayed_first)
                }
                None if self.read_record(rec)? => (None, false),
                None => {
                    if !self.ahead.is_empty() {
                        self.abandon_run();
                        continue;
                    }
                    self.end_of_table(false);
                    if self.releasing.is_empty() {
                        return Ok(Next::End);
                    }
                    continue;
                }
            };
            if is_blank(rec) {
                continue;
            }
            let n = rec.len();
            if n == ncols {
                if let Some(first) = self.ahead.first() {
                    if first.record.len() != n {
                        self.break_run(rec, line);
                        continue;
                    }
                }
            } else if let Some(first) = self.ahead.first() {
                if first.record.len() == n {
                    let line = line.unwrap_or_else(|| self.record_line(rec));
                    self.ahead.push(Ahead {
                        record: rec.clone(),
                        line,
                        replayed_first: false,
                    });
                    if self.ahead.len() >= TABLE_RUN {
                        // The held lines above the new table are the old one's footer.
                        self.end_of_table(true);
                        self.next_table = Some(std::mem::take(&mut self.ahead));
                    }
                } else {
                    self.break_run(rec, line);
                }
                continue;
            } else {
                let wider = n > ncols && has_extra_data(rec, ncols);
                if (wider || (n >= 2 && 2 * n <= ncols)) && !replayed_first {
                    let line = line.unwrap_or_else(|| self.record_line(rec));
                    self.ahead.push(Ahead {
                        record: rec.clone(),
                        line,
                        replayed_first: false,
                    });
                    continue;
                }
                if wider {
                    self.set_aside += 1;
                    continue;
                }
            }
            if ncols >= 2 {
                match footer_line(rec, ncols, self.typed_first) {
                    Some(FooterLine::Empty) => {
                        match self.held.back_mut() {
                            Some(Held::Empty(k)) => *k += 1,
                            _ => self.held.push_back(Held::Empty(1)),
                        }
                        continue;
                    }
                    Some(note @ (FooterLine::Note | FooterLine::Word)) if self.held_notes < MAX_FOOTER => {
                        self.held_notes += 1;
                        self.held_words += (note == FooterLine::Word) as usize;
                        self.held.push_back(Held::Record(rec.clone()));
                        continue;
                    }
                    _ => {}
                }
            }
            if self.held.is_empty() {
                self.rows += 1;
                return Ok(Next::Row);
            }
            // The held lines were rows after all: they come first, then this one.
            self.releasing.append(&mut self.held);
            self.releasing.push_back(Held::Record(rec.clone()));
            self.held_notes = 0;
            self.held_words = 0;
        }
    }

    /// The fast path of [`Input::read_row`] for the common case: nothing is held back or read
    /// ahead, and the next record is a row of exactly `ncols` fields that cannot be a footer
    /// line. Such a row is appended to `data` and `ends` in the tokenizer's layout (see
    /// [`RowView`]) and counted. Otherwise nothing is appended and `false` is returned; the
    /// record, if one was read, is the next one [`Input::read_row`] sees, so the caller goes on
    /// with that.
    #[inline]
    pub(super) fn read_plain_row(
        &mut self,
        data: &mut Vec<u8>,
        ends: &mut Vec<u32>,
        ncols: usize,
    ) -> Result<bool, AnalysisError> {
        let quiet = self.releasing.is_empty()
            && self.next_table.is_none()
            && self.replay.is_empty()
            && self.ahead.is_empty()
            && self.held.is_empty();
        if !quiet {
            return Ok(false);
        }
        let (start, first_end) = (data.len(), ends.len());
        if !self.rdr.read_into(data, ends).map_err(read_error)? {
            return Ok(false);
        }
        let row = RowView {
            data,
            start,
            ends: &ends[first_end..],
        };
        let plain = row.count() == ncols
            && !is_blank(&row)
            && (ncols < 2 || footer_line(&row, ncols, self.typed_first).is_none());
        if plain {
            self.rows += 1;
            return Ok(true);
        }
        let mut record = csv::ByteRecord::new();
        for i in 0..row.count() {
            record.push_field(row.field(i));
        }
        data.truncate(start);
        ends.truncate(first_end);
        let line = self.rdr.record_line();
        self.replay.push_front(Ahead {
            record,
            line,
            replayed_first: false,
        });
        Ok(false)
    }

    /// Hands out the next released line, if any.
    fn release(&mut self, rec: &mut csv::ByteRecord) -> bool {
        match self.releasing.front_mut() {
            None => false,
            Some(Held::Empty(k)) => {
                // A line of delimiters only: one empty field reads as missing in every column.
                rec.clear();
                rec.push_field(b"");
                *k -= 1;
                if *k == 0 {
                    self.releasing.pop_front();
                }
                true
            }
            Some(Held::Record(_)) => {
                if let Some(Held::Record(r)) = self.releasing.pop_front() {
                    *rec = r;
                }
                true
            }
        }
    }

    /// The held lines at the end of a table: its footer, or rows. Below the last table the
    /// footer rules apply (see [`Input::read_row`]); above another table they are all footer.
    fn end_of_table(&mut self, another_follows: bool) {
        let notes = self.held_notes as u64;
        // Single words are notes only beside a note that is one on its own.
        let sure = self.held_notes > self.held_words;
        self.held_notes = 0;
        self.held_words = 0;
        let lines =
            |held: &VecDeque<Held>| -> u64 { held.iter().map(|h| if let Held::Empty(k) = h { *k } else { 1 }).sum() };
        let trailing_empty = match self.held.back() {
            Some(Held::Empty(k)) => *k,
            _ => 0,
        };
        let footer =
            another_follows || (sure && self.rows >= 2 * notes) || (notes == 0 && trailing_empty > 0 && self.rows > 0);
        if footer {
            self.footer += lines(&self.held);
            self.held.clear();
            return;
        }
        // Notes that are rows after all; the lines of delimiters after them are still padding.
        if trailing_empty > 0 && (self.rows > 0 || self.held.len() > 1) {
            self.held.pop_back();
            self.footer += trailing_empty;
        }
        self.releasing.append(&mut self.held);
    }

    /// The run read ahead was not a table: its records are read again, then `rec`.
    fn break_run(&mut self, rec: &csv::ByteRecord, line: Option<u64>) {
        let line = line.unwrap_or_else(|| self.record_line(rec));
        self.replay.push_front(Ahead {
            record: rec.clone(),
            line,
            replayed_first: false,
        });
        self.abandon_run();
    }

    fn abandon_run(&mut self) {
        let run = std::mem::take(&mut self.ahead);
        for (i, mut a) in run.into_iter().enumerate().rev() {
            a.replayed_first = i == 0;
            self.replay.push_front(a);
        }
    }

    /// The first records of the table that [`Next::Table`] announced; the counts of rows and
    /// footer lines start again for it.
    pub(super) fn take_table(&mut self) -> Option<Vec<Ahead>> {
        let table = self.next_table.take()?;
        self.typed_first = false;
        self.rows = 0;
        self.footer = 0;
        Some(table)
    }

    /// Hands `records` out as the next rows (the first rows of a table read ahead).
    pub(super) fn push_rows(&mut self, records: impl Iterator<Item = csv::ByteRecord>) {
        self.releasing.extend(records.map(Held::Record));
    }

    /// Reads the header: the first non-blank record below any title lines the sniffer found.
    /// Returns the header's 1-based line and the line the table starts on, or `None` when the
    /// input holds no record at all. In a file without a header the header line is 0 and the
    /// record is also the first row [`Input::read_row`] hands out; the caller names the
    /// columns (see [`Input::headerless`]).
    pub(super) fn read_header(&mut self, rec: &mut csv::ByteRecord) -> Result<Option<(u64, u64)>, AnalysisError> {
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
                if above == 0 && self.group_above {
                    let line = self.record_line(rec);
                    self.group = Some((rec.clone(), line));
                }
                continue;
            }
            let line = self.record_line(rec);
            if self.headerless {
                self.releasing.push_back(Held::Record(rec.clone()));
                return Ok(Some((0, line)));
            }
            return Ok(Some((line, line)));
        }
    }

    /// The file has no header row: its first record is data (numbers and dates over a table
    /// of numbers and dates, as an instrument writes it).
    pub(super) fn headerless(&self) -> bool {
        self.headerless
    }

    /// The 1-based line on which the record just read starts (as a text editor counts lines).
    pub(super) fn record_line(&self, _rec: &csv::ByteRecord) -> u64 {
        self.rdr.record_line()
    }

    /// Next record (empty lines are skipped); `false` at end of input.
    pub(super) fn read_record(&mut self, rec: &mut csv::ByteRecord) -> Result<bool, AnalysisError> {
        self.rdr.read_record(rec).map_err(read_error)
    }
}

fn read_error(e: ReadError) -> AnalysisError {
    match e {
        ReadError::Io(e) => AnalysisError::Io(e),
        // Almost always a quote that never closes: without the bound the rest of the
        // file would be read into one field.
        ReadError::TooLong { line } => AnalysisError::Malformed {
            line,
            message: format!(
                "line {line}: a record is longer than {} MiB; a quoted field is probably never closed",
                MAX_RECORD_BYTES >> 20
            ),
        },
    }
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
    if let Some(at) = prefix.iter().position(|b| *b == 0) {
        return Err(AnalysisError::NotText { offset: at as u64 });
    }
    let Layout {
        delimiter,
        preamble,
        headerless,
        columns,
        group_above,
        typed_first,
    } = sniff_layout(&prefix, complete, format);
    let rdr = Tokenizer::new(Cursor::new(prefix).chain(decoded), delimiter, MAX_RECORD_BYTES);
    Ok(Input {
        rdr,
        bom,
        utf16,
        delimiter,
        preamble,
        headerless,
        columns,
        group_above,
        group: None,
        typed_first,
        held: VecDeque::new(),
        held_notes: 0,
        held_words: 0,
        releasing: VecDeque::new(),
        ahead: Vec::new(),
        replay: VecDeque::new(),
        next_table: None,
        rows: 0,
        footer: 0,
        set_aside: 0,
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
    /// The table's width when its header line is narrower than its rows; 0 otherwise.
    columns: usize,
    /// The record right above the header (the last of the preamble) is a line of group
    /// labels over the header's columns (see [`group_line`]).
    group_above: bool,
    /// See [`Input::typed_first`].
    typed_first: bool,
}

impl Layout {
    fn plain(delimiter: u8, headerless: bool) -> Layout {
        Layout {
            delimiter,
            preamble: 0,
            headerless,
            columns: 0,
            group_above: false,
            typed_first: false,
        }
    }
}

/// The delimiter by pandas' rule plus ours (comma unless the first line has none but has
/// `;`, tab or `|`), the lines above the table, and whether it has a header.
///
/// Lines above the table are looked for only when the first line is much narrower than the
/// rows below it, or the rows have more fields than it (pandas refuses such a file). The
/// table then starts at the first record that (a) has at least two fields, (b) is wider than
/// every line above it that does not start with `#`, and (c) has its width as the most common
/// width of the sniffed records below it that have a delimiter, and at least 80% of those at
/// more than half its width and no wider; but a run of [`TABLE_RUN`] lines alike above it
/// (not `#` comments) is a table of its own and comes first. That record is the header if it
/// is one by the type rule of [`table`]; `#` lines at the table's width directly above a
/// header are skipped (`# units: s, V, A` over `time,voltage,current`). If the table starts
/// with a row, the line above is its header when it names more than half the table's columns
/// (or is padded to its width) and is one by the type rule; else the columns are numbered
/// (`569,30,malignant,benign` above rows of 31 numbers).
/// With another delimiter than the first line's, the start line must sniff to it too; of
/// several delimiters that find a table below other lines, the widest table wins.
///
/// Without lines above, the first line's delimiter is kept unless another delimiter splits
/// every sniffed record alike and the first one splits at most half of them like the header,
/// or splits them into fewer fields. Last, the type rule says whether the first line is a header.
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
    // (table width, layout) of the widest table found below other lines.
    let mut titled: Option<(usize, Layout)> = None;
    // (cells, layout) of the largest table another delimiter finds below a first line that
    // the first delimiter reads as the header of a table (a title that contains the delimiter).
    let mut rival: Option<(usize, Layout)> = None;
    // The first delimiter's records when it splits most of them like the header.
    let mut plain: Option<Vec<Shape>> = None;
    for delimiter in std::iter::once(first).chain(others.iter().copied().filter(|d| *d != first)) {
        let records = shapes(prefix, complete, delimiter);
        let (matching, total) = consistency(&records);
        if let Some(start) = find_table(&records) {
            let header = &records[start];
            let sniffs_alike = sniff_delimiter(&prefix[header.span.clone()]) == delimiter;
            let wider = titled.as_ref().is_none_or(|(width, _)| header.width > *width);
            // Another delimiter's lines above a table only count when the first one gives no table.
            if (delimiter == first || (sniffs_alike && plain.is_none())) && wider {
                titled = Some((
                    header.width,
                    with_context(&records, layout_below(&records, start, delimiter)),
                ));
            } else if delimiter != first && sniffs_alike && plain.is_some() {
                let rows = records[start + 1..]
                    .iter()
                    .filter(|r| r.fields == header.fields)
                    .count();
                let cells = header.width * rows;
                if rival.as_ref().is_none_or(|(c, _)| cells > *c) {
                    rival = Some((cells, with_context(&records, layout_below(&records, start, delimiter))));
                }
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
    // Two delimiters read consistent rows: the one with more columns over more rows wins
    // (DuckDB's rule), and the other's first line is a title.
    // Only when the first line holds its delimiter and does not name typed rows below it
    // (then it is the header), and the other table has a header of its own.
    if let (Some((cells, layout)), Some(records)) = (rival, plain.as_deref()) {
        let matching = records.iter().filter(|r| r.fields == first_fields).count();
        if first_fields >= 2
            && cells > first_fields * matching
            && !layout.headerless
            && !names_typed_rows(records, 0, first_fields)
        {
            return layout;
        }
    }
    let delimiter = match consistent {
        // Another delimiter splits every record alike: where the first line's delimiter
        // splits most rows unlike the header, or splits them alike into fewer fields (a
        // tab-separated export whose names and values hold commas), it is the delimiter.
        Some((fields, other)) if plain.is_none() || fields > first_fields => {
            return Layout::plain(other, false);
        }
        _ => first,
    };
    let headerless = plain
        .as_deref()
        .is_some_and(|records| records.len() >= 2 && !is_header_at(records, 0, records[0].fields));
    let layout = Layout::plain(delimiter, headerless);
    match plain.as_deref() {
        Some(records) if delimiter == first => with_context(records, layout),
        _ => layout,
    }
}

/// Adds what the records say about the table's header beyond where it is: a line of group
/// labels over it (see [`group_line`]), and whether its first column is typed.
fn with_context(records: &[Shape], mut layout: Layout) -> Layout {
    if layout.headerless {
        return layout;
    }
    let h = layout.preamble;
    let Some(header) = records.get(h) else {
        return layout;
    };
    let width = header.fields.max(layout.columns);
    if group_line(header, width) && h + 1 < records.len() && names_typed_rows(records, h + 1, width) {
        // The first line found is the group line: the header is the line below it.
        layout.preamble = h + 1;
        layout.group_above = true;
    } else if h >= 1 && group_line(&records[h - 1], width) && names_typed_rows(records, h, width) {
        layout.group_above = true;
    }
    let h = layout.preamble;
    let mut first = 0u16;
    // Rows that use more than half the table (not the notes that may end it).
    for r in records[h + 1..]
        .iter()
        .filter(|r| r.fields > 1 && r.width <= width && r.width * 2 > width)
    {
        if let Some(k) = r.kinds.first() {
            if !matches!(k, Kind::Empty | Kind::Missing) {
                first |= 1 << *k as u16;
            }
        }
    }
    layout.typed_first = first != 0 && first & (1 << Kind::Text as u16) == 0;
    layout
}

/// A line of group labels over a header of `width` fields (`run-a,,run-b,` over `X,Y,X,Y`, or
/// a spreadsheet's merged cells `,Temperature,,Pressure,`): as many fields as the header, at
/// least two labels, all text, and fewer distinct labels than columns (a label spans the
/// empty cells to its right, or repeats over each of its columns).
fn group_line(r: &Shape, width: usize) -> bool {
    let labels = r.kinds.iter().filter(|k| **k != Kind::Empty).count();
    !r.comment
        && r.fields == width
        && labels >= 2
        && r.kinds.iter().all(|k| matches!(k, Kind::Empty | Kind::Text))
        && r.distinct_labels < width
}

/// Whether `records[at]` names the columns of the typed rows below it (see
/// [`table::names_typed_rows`]), over the sniffed records below with a delimiter and no wider
/// than the table.
fn names_typed_rows(records: &[Shape], at: usize, width: usize) -> bool {
    let first = &records[at];
    first.fields == width && {
        let rows = records[at + 1..]
            .iter()
            .filter(|r| r.fields > 1 && r.width <= width)
            .map(|r| r.kinds.as_slice());
        table::names_typed_rows(&first.kinds, rows)
    }
}

/// The header (or first row) of a table that [`find_table`] found starting at `start`.
fn layout_below(records: &[Shape], start: usize, delimiter: u8) -> Layout {
    let width = records[start].fields;
    let mut at = start;
    while records[at].comment
        && records.get(at + 1).is_some_and(|next| next.width == records[at].width)
        && is_header_at(records, at + 1, width)
    {
        at += 1;
    }
    if is_header_at(records, at, width) {
        return Layout {
            delimiter,
            preamble: at,
            headerless: false,
            columns: 0,
            group_above: false,
            typed_first: false,
        };
    }
    if let Some(above) = at.checked_sub(1).map(|i| &records[i]) {
        // Its names cover more than half the table, or it is padded to the table's width
        // (`a,b,,` over rows of four: pandas' `Unnamed: 2`, `Unnamed: 3`).
        let fits = !above.comment
            && above.width >= 2
            && above.fields <= width
            && (above.width * 2 > width || above.fields == width);
        if fits && is_header_at(records, at - 1, width) {
            return Layout {
                delimiter,
                preamble: at - 1,
                headerless: false,
                columns: width,
                group_above: false,
                typed_first: false,
            };
        }
    }
    Layout {
        delimiter,
        preamble: at,
        headerless: true,
        columns: 0,
        group_above: false,
        typed_first: false,
    }
}

/// Whether `records[at]` is the header of the table of `width` columns below it, by the type
/// rule of [`table`] over the sniffed records below with a delimiter and no wider than the table.
fn is_header_at(records: &[Shape], at: usize, width: usize) -> bool {
    let first = &records[at];
    if first.counts_columns {
        return true;
    }
    let rows = records[at + 1..]
        .iter()
        .filter(|r| r.fields > 1 && r.width <= width)
        .map(|r| r.kinds.as_slice());
    table::is_header(&first.kinds, rows)
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
    /// What each field is, for the header rule.
    kinds: Vec<Kind>,
    /// The fields are `0,1,2,…` or `1,2,3,…`.
    counts_columns: bool,
    /// Distinct non-empty fields, counted for the records that may be a group line above a
    /// header (near the top, all text); else the field count.
    distinct_labels: usize,
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
            let kinds: Vec<Kind> = rec.iter().map(table::kind).collect();
            let distinct_labels =
                if out.len() <= MAX_PREAMBLE && kinds.iter().all(|k| matches!(k, Kind::Empty | Kind::Text)) {
                    let mut labels: Vec<&[u8]> = rec.iter().map(|f| f.trim_ascii()).filter(|f| !f.is_empty()).collect();
                    labels.sort_unstable();
                    labels.dedup();
                    labels.len()
                } else {
                    rec.len()
                };
            out.push(Shape {
                fields: rec.len(),
                width: width(&rec),
                comment: rec.get(0).is_some_and(|f| f.starts_with(b"#")),
                kinds,
                counts_columns: table::counts_columns(rec.iter()),
                distinct_labels,
                span: start..end,
            });
        }
        start = end;
    }
    out
}

/// How many records precede the table, when the first record is a title (or the start of
/// metadata) rather than the table's header or first row. See [`sniff_layout`].
fn find_table(records: &[Shape]) -> Option<usize> {
    let (first, below) = records.split_first()?;
    let typical = most_common(below.iter().map(|r| r.width))?;
    // A first line of several fields whose count no line below has is a title (or metadata),
    // when the line below it names the columns of the typed rows under it and most lines
    // with a delimiter below are as wide as that line.
    let unmatched = first.fields >= 2 && !first.comment && below.iter().all(|r| r.fields != first.fields);
    if unmatched && records.len() >= 3 {
        let second = &records[1];
        let body: Vec<&Shape> = records[2..].iter().filter(|r| r.fields > 1).collect();
        let fitting = body
            .iter()
            .filter(|r| r.width <= second.fields && r.width * 2 > second.fields)
            .count();
        if second.width == typical && names_typed_rows(records, 1, second.fields) && fitting * 5 >= body.len() * 4 {
            return Some(1);
        }
    }
    let narrow = first.width * 2 <= typical;
    let overflows = below.iter().any(|r| r.width > first.fields);
    if !(narrow || overflows) {
        return None;
    }
    let start = (1..=MAX_PREAMBLE.min(records.len().saturating_sub(2))).find(|&s| {
        let start = &records[s];
        let width = start.width;
        if width < 2 {
            return false;
        }
        if records[..s].iter().any(|r| r.width >= width && !r.comment) {
            return false;
        }
        // Lines without a delimiter (notes, or rows with one value) say nothing of the width.
        let body: Vec<&Shape> = records[s + 1..].iter().filter(|r| r.fields > 1).collect();
        let fitting = body
            .iter()
            .filter(|r| r.width <= start.fields && r.width * 2 > width)
            .count();
        most_common(body.iter().map(|r| r.width)) == Some(width) && fitting * 5 >= body.len() * 4
    })?;
    // A table above it (a run of lines alike that are not `#` comments) is the first table;
    // the rest is found while reading (see `Input::read_row`).
    let alike = |a: &Shape, b: &Shape| a.fields == b.fields && b.width >= 2 && !b.comment;
    let above = (0..start).find(|&r| {
        records[r].width >= 2
            && !records[r].comment
            && (r..r + TABLE_RUN).all(|i| i < start && alike(&records[r], &records[i]))
    });
    Some(above.unwrap_or(start))
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

/// The fields of one record: a `csv::ByteRecord`, or a row just written into a batch.
pub(super) trait Fields {
    fn count(&self) -> usize;
    /// Field `i`, which must exist.
    fn field(&self, i: usize) -> &[u8];
}

impl Fields for csv::ByteRecord {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline]
    fn field(&self, i: usize) -> &[u8] {
        &self[i]
    }
}

/// A record as [`Tokenizer::read_into`] wrote it: fields one byte apart in `data` from
/// `start`, ending at `ends`.
pub(super) struct RowView<'a> {
    pub data: &'a [u8],
    pub start: usize,
    pub ends: &'a [u32],
}

impl Fields for RowView<'_> {
    #[inline]
    fn count(&self) -> usize {
        self.ends.len()
    }
    #[inline]
    fn field(&self, i: usize) -> &[u8] {
        let lo = if i == 0 {
            self.start
        } else {
            self.ends[i - 1] as usize + 1
        };
        &self.data[lo..self.ends[i] as usize]
    }
}

/// pandas skips lines that are empty or only spaces/tabs; the tokenizer already drops empty ones.
pub(super) fn is_blank(rec: &impl Fields) -> bool {
    rec.count() == 1 && {
        let f = rec.field(0);
        !f.is_empty() && f.iter().all(|c| *c == b' ' || *c == b'\t')
    }
}

/// A line below the table that may be part of its footer rather than a row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FooterLine {
    /// A note: a line with fewer fields than the header (so not padded by the exporter), at
    /// most half of them used, whose first cell is text with a space, a `:` or a leading
    /// `#` (`Source: BLS`, `Note: in EUR, excl. VAT`); or a line padded to the table's
    /// width with only a label in its first cell (`Source: finance,,,,`); or, below a table
    /// whose first column is typed, a line whose only cell is text in that column
    /// (`Confidential`, `Confidential,,,,`).
    Note,
    /// Only delimiters: a row of missing values to pandas, a spacer around notes to a reader.
    Empty,
    /// A single word of text in the first cell of a table of three columns or more
    /// (`Confidential`): a note when a [`FooterLine::Note`] is held with it, else a row (a
    /// last row with only its first value).
    Word,
}

fn footer_line(rec: &impl Fields, ncols: usize, typed_first: bool) -> Option<FooterLine> {
    // Most rows have a value in their last column (checked first: this runs on every row).
    if ncols <= rec.count() && !rec.field(ncols - 1).is_empty() {
        return None;
    }
    let width = width(rec);
    if width == 0 {
        return Some(FooterLine::Empty);
    }
    let text = rec.field(0).trim_ascii();
    if width * 2 > ncols || infer::classify(text) != infer::Value::Text {
        return None;
    }
    let label = text.starts_with(b"#") || text.contains(&b':');
    let sentence = text.iter().any(|b| matches!(b, b' ' | b'\t'));
    let note = if width == 1 && typed_first {
        true
    } else if rec.count() < ncols {
        label || sentence
    } else {
        width == 1 && label
    };
    if note {
        Some(FooterLine::Note)
    } else if width == 1 && ncols >= 3 {
        Some(FooterLine::Word)
    } else {
        None
    }
}

/// Whether the fields of `rec` past the table's `ncols` hold more than whitespace (a trailing
/// delimiter, or a quoted line break after it, is no data).
fn has_extra_data(rec: &csv::ByteRecord, ncols: usize) -> bool {
    rec.iter().skip(ncols).any(|f| !f.trim_ascii().is_empty())
}

/// Fields up to the last non-blank one (a spreadsheet row's trailing empty cells ignored, and
/// a trailing field of whitespace only, such as a quoted line break).
fn width(rec: &impl Fields) -> usize {
    (0..rec.count())
        .rposition(|i| !rec.field(i).trim_ascii().is_empty())
        .map_or(0, |i| i + 1)
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

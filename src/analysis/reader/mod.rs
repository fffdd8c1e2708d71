//! Byte input: the records of a delimited file, with where its table ends (footer lines,
//! lines set aside, another table below) and a guard that bounds one record's size. The
//! encoding is found by `encoding` (BOM, UTF-16), the delimiter and the lines above the
//! table by `layout`.

mod encoding;
mod layout;

use std::collections::VecDeque;
use std::io::{Chain, Cursor, Read};

use super::tokenize::{ReadError, Tokenizer};
use super::{infer, AnalysisError, Format};
use encoding::{sniff_utf16, Transcode};
use layout::{fill_prefix, sniff_layout, Layout};

/// A record longer than this is refused: it is almost always a quote that never closes, and
/// without the bound the rest of the file would be read into one record.
pub(super) const MAX_RECORD_BYTES: u64 = 16 << 20;
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
    held: VecDeque<MaybeFooter>,
    /// How many of the held lines are notes (the rest are lines of delimiters).
    held_notes: usize,
    /// How many of those notes are single words (see [`FooterLine::Word`]).
    held_words: usize,
    releasing: VecDeque<MaybeFooter>,
    /// Records with one field count unlike the table's, held while they may start another table.
    ahead: Vec<NumberedRecord>,
    /// Records of a run that did not become a table, to be read again in order.
    replay: VecDeque<NumberedRecord>,
    /// The records that start the next table, once a run has confirmed it.
    next_table: Option<Vec<NumberedRecord>>,
    /// Rows and footer lines of the current table.
    rows: u64,
    footer: u64,
    /// Lines wider than their table that were set aside (the whole file).
    set_aside: u64,
}

/// A line below the table held back while it may be the table's footer: a note, or a run
/// of lines of delimiters only (kept as a count).
#[derive(Debug)]
enum MaybeFooter {
    Note(csv::ByteRecord),
    EmptyLines(u64),
}

/// A record with the line it starts on, read ahead while it may start another table.
#[derive(Debug)]
pub(super) struct NumberedRecord {
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
                    self.ahead.push(NumberedRecord {
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
                    self.ahead.push(NumberedRecord {
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
                            Some(MaybeFooter::EmptyLines(k)) => *k += 1,
                            _ => self.held.push_back(MaybeFooter::EmptyLines(1)),
                        }
                        continue;
                    }
                    Some(note @ (FooterLine::Note | FooterLine::Word)) if self.held_notes < MAX_FOOTER => {
                        self.held_notes += 1;
                        self.held_words += (note == FooterLine::Word) as usize;
                        self.held.push_back(MaybeFooter::Note(rec.clone()));
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
            self.releasing.push_back(MaybeFooter::Note(rec.clone()));
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
        self.replay.push_front(NumberedRecord {
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
            Some(MaybeFooter::EmptyLines(k)) => {
                // A line of delimiters only: one empty field reads as missing in every column.
                rec.clear();
                rec.push_field(b"");
                *k -= 1;
                if *k == 0 {
                    self.releasing.pop_front();
                }
                true
            }
            Some(MaybeFooter::Note(_)) => {
                if let Some(MaybeFooter::Note(r)) = self.releasing.pop_front() {
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
        let lines = |held: &VecDeque<MaybeFooter>| -> u64 {
            held.iter()
                .map(|h| if let MaybeFooter::EmptyLines(k) = h { *k } else { 1 })
                .sum()
        };
        let trailing_empty = match self.held.back() {
            Some(MaybeFooter::EmptyLines(k)) => *k,
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
        self.replay.push_front(NumberedRecord {
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
    pub(super) fn take_table(&mut self) -> Option<Vec<NumberedRecord>> {
        let table = self.next_table.take()?;
        self.typed_first = false;
        self.rows = 0;
        self.footer = 0;
        Some(table)
    }

    /// Hands `records` out as the next rows (the first rows of a table read ahead).
    pub(super) fn push_rows(&mut self, records: impl Iterator<Item = csv::ByteRecord>) {
        self.releasing.extend(records.map(MaybeFooter::Note));
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
                self.releasing.push_back(MaybeFooter::Note(rec.clone()));
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

//! Splits delimited text into records, a field at a time, eight bytes per step.
//!
//! The rules are csv-core's with the settings this engine always used (quotes on, `""`
//! inside quotes is a quote, no escape character, no comments): `\r`, `\n` or `\r\n` ends a
//! record and empty lines are skipped; a quote opens a quoted field only at the start of a
//! field, elsewhere it is text; after a closing quote, text up to the next delimiter joins
//! the field (`"a"b` is `ab`); a quote never closed runs to the end of the input. csv-core
//! walks a state machine byte by byte; here `memchr` (SIMD) finds the end of each line,
//! then each delimiter in it, and the closing quote of a quoted field. The tests below
//! check both give the same records, at every buffer size.

use std::cell::Cell;
use std::io::{self, Read};

/// Bytes read from the input at a time.
const BUFFER: usize = 256 << 10;
const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

pub(super) enum ReadError {
    /// A record ran past the size limit; it starts on this line.
    TooLong {
        line: u64,
    },
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

pub(super) struct Tokenizer<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Valid bytes in `buf`, and the next one to look at.
    end: usize,
    pos: usize,
    /// Offset in the input of `buf[0]`.
    offset: u64,
    eof: bool,
    delimiter: u8,
    /// A record whose bytes run more than this past the end of the one before is refused.
    max_record: u64,
    /// Where the previous record ended (the guard counts from there).
    prev_end: u64,
    /// Offset of the first byte of the last record read, and its line once known.
    record_start: u64,
    record_line: Cell<Option<u64>>,
    in_record: bool,
    /// Newlines counted before offset `counted.0` (lazily, for line numbers).
    counted: Cell<(u64, u64)>,
    /// The input's last byte so far (the file's last line has no newline when it is not one).
    last_byte: Option<u8>,
    /// A record read for [`Self::read_record`], before it becomes a `ByteRecord`.
    scratch: Vec<u8>,
    scratch_ends: Vec<u32>,
}

/// One bit (the high bit of its byte) for each byte of `word` equal to `byte`, exactly.
#[inline(always)]
fn matches(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * byte as u64);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

#[inline(always)]
fn is_line_end(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

impl<R: Read> Tokenizer<R> {
    pub(super) fn new(inner: R, delimiter: u8, max_record: u64) -> Tokenizer<R> {
        Tokenizer::with_buffer(inner, delimiter, max_record, BUFFER)
    }

    fn with_buffer(inner: R, delimiter: u8, max_record: u64, buffer: usize) -> Tokenizer<R> {
        Tokenizer {
            inner,
            buf: vec![0; buffer].into_boxed_slice(),
            end: 0,
            pos: 0,
            offset: 0,
            eof: false,
            delimiter,
            max_record,
            prev_end: 0,
            record_start: 0,
            record_line: Cell::new(None),
            in_record: false,
            counted: Cell::new((0, 0)),
            last_byte: None,
            scratch: Vec::new(),
            scratch_ends: Vec::new(),
        }
    }

    /// Makes `buf[pos]` valid; false at the end of the input.
    #[inline]
    fn ready(&mut self) -> Result<bool, ReadError> {
        if self.pos < self.end {
            return Ok(true);
        }
        self.refill()
    }

    #[inline(never)]
    fn refill(&mut self) -> Result<bool, ReadError> {
        if self.eof {
            return Ok(false);
        }
        // The lines of what is dropped are counted first.
        if self.in_record && self.record_line.get().is_none() {
            self.record_line.set(Some(self.line_at(self.record_start)));
        }
        self.count_lines_to(self.offset + self.end as u64);
        if self.end > 0 {
            self.last_byte = Some(self.buf[self.end - 1]);
        }
        self.offset += self.end as u64;
        self.pos = 0;
        self.end = 0;
        if self.offset > self.prev_end + self.max_record {
            let line = match self.record_line.get() {
                Some(line) if self.in_record => line,
                // Still between records (a run of empty lines): where it has got to.
                _ => self.counted.get().1 + 1,
            };
            return Err(ReadError::TooLong { line });
        }
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn count_lines_to(&self, to: u64) {
        let (from, lines) = self.counted.get();
        if to <= from {
            return;
        }
        let a = (from.max(self.offset) - self.offset) as usize;
        let b = ((to - self.offset) as usize).min(self.end);
        self.counted.set((to, lines + count_newlines(&self.buf[a.min(b)..b])));
    }

    /// 1-based line of offset `at` (at or after what was counted, within the buffer).
    fn line_at(&self, at: u64) -> u64 {
        self.count_lines_to(at);
        self.counted.get().1 + 1
    }

    /// The 1-based line on which the last record read starts.
    pub(super) fn record_line(&self) -> u64 {
        if let Some(line) = self.record_line.get() {
            return line;
        }
        let line = self.line_at(self.record_start);
        self.record_line.set(Some(line));
        line
    }

    /// Newlines in the input so far, plus one when its last byte is not a newline: at the
    /// end of the input, the file's last line.
    pub(super) fn last_line(&self) -> u64 {
        self.count_lines_to(self.offset + self.end as u64);
        let last = if self.end > 0 {
            Some(self.buf[self.end - 1])
        } else {
            self.last_byte
        };
        self.counted.get().1 + last.is_some_and(|b| b != b'\n') as u64
    }

    /// Reads the next record into `rec`; false at the end of the input.
    pub(super) fn read_record(&mut self, rec: &mut csv::ByteRecord) -> Result<bool, ReadError> {
        rec.clear();
        let mut data = std::mem::take(&mut self.scratch);
        let mut ends = std::mem::take(&mut self.scratch_ends);
        data.clear();
        ends.clear();
        let more = self.read_into(&mut data, &mut ends);
        let mut start = 0;
        for &end in &ends {
            let end = end as usize;
            rec.push_field(&data[start..end]);
            start = end + 1;
        }
        self.scratch = data;
        self.scratch_ends = ends;
        more
    }

    /// Appends the next record's fields to `data`, one byte apart (any byte: the delimiter
    /// when the field was copied with it), and the end of each in `data` to `ends`; false at
    /// the end of the input (nothing appended).
    pub(super) fn read_into(&mut self, data: &mut Vec<u8>, ends: &mut Vec<u32>) -> Result<bool, ReadError> {
        // Line ends (and so empty lines) before a record are skipped.
        loop {
            if !self.ready()? {
                return Ok(false);
            }
            if !is_line_end(self.buf[self.pos]) {
                break;
            }
            self.pos += 1;
        }
        self.record_start = self.offset + self.pos as u64;
        self.record_line.set(None);
        self.in_record = true;
        let result = self.read_fields(data, ends);
        self.in_record = false;
        self.prev_end = self.offset + self.pos as u64;
        result.map(|()| true)
    }

    fn read_fields(&mut self, data: &mut Vec<u8>, ends: &mut Vec<u32>) -> Result<(), ReadError> {
        // `buf[span..pos]` belongs to the record and is not in `data` yet: runs of unquoted
        // fields are copied in one go, delimiters included (they are the bytes between fields).
        let mut span = self.pos;
        loop {
            if self.pos == self.end {
                data.extend_from_slice(&self.buf[span..self.end]);
                if !self.ready()? {
                    // A delimiter was the last byte: the record ends with an empty field.
                    ends.push(data.len() as u32);
                    return Ok(());
                }
                span = self.pos;
            }
            if self.buf[self.pos] == b'"' {
                data.extend_from_slice(&self.buf[span..self.pos]);
                self.pos += 1;
                if !self.quoted_field(data, ends)? {
                    return Ok(());
                }
                span = self.pos;
                continue;
            }
            // Unquoted fields: find where the line ends, then split it at delimiters until
            // a field opens with a quote (a quoted field may hold line ends).
            let start = self.pos;
            let line_end = memchr::memchr2(b'\n', b'\r', &self.buf[start..self.end]).map(|i| start + i);
            let stretch = line_end.unwrap_or(self.end);
            if self.split_line(start, stretch, span, data, ends) {
                continue;
            }
            if let Some(stop) = line_end {
                // A line end: left for the next record to skip.
                ends.push((data.len() + (stop - span)) as u32);
                data.extend_from_slice(&self.buf[span..stop]);
                self.pos = stop;
                return Ok(());
            }
            if self.pos == self.end {
                // A field starts with the next read (maybe with a quote).
                continue;
            }
            // The field goes on past what has been read.
            data.extend_from_slice(&self.buf[span..self.pos]);
            if !self.unquoted_field(data, ends)? {
                return Ok(());
            }
            span = self.pos;
        }
    }

    /// Ends the fields of `buf[start..stretch]` (no line end in it) at each delimiter, eight
    /// bytes per step, leaving `pos` at the start of the last field; true when a field opens
    /// with a quote (then `pos` is at that quote). `span` is where `data` stopped copying.
    #[inline(always)]
    fn split_line(&mut self, start: usize, stretch: usize, span: usize, data: &[u8], ends: &mut Vec<u32>) -> bool {
        let copied = data.len();
        let mut w = start;
        while w < stretch {
            let word = match self.buf.get(w..w + 8) {
                Some(bytes) => u64::from_le_bytes(bytes.try_into().expect("eight bytes")),
                None => {
                    let mut tail = [0u8; 8];
                    tail[..self.buf.len() - w].copy_from_slice(&self.buf[w..]);
                    u64::from_le_bytes(tail)
                }
            };
            let mut hits = matches(word, self.delimiter);
            if stretch - w < 8 {
                hits &= (1u64 << (8 * (stretch - w))) - 1;
            }
            while hits != 0 {
                let stop = w + (hits.trailing_zeros() / 8) as usize;
                ends.push((copied + (stop - span)) as u32);
                self.pos = stop + 1;
                if self.pos < stretch && self.buf[self.pos] == b'"' {
                    return true;
                }
                hits &= hits - 1;
            }
            w += 8;
        }
        false
    }

    /// Position of the first delimiter or line end in `buf[from..end]`, or `end`.
    #[inline(always)]
    fn find_stop(&self, from: usize) -> usize {
        let d = self.delimiter;
        let mut i = from;
        while i + 8 <= self.end {
            let word = u64::from_le_bytes(self.buf[i..i + 8].try_into().expect("eight bytes"));
            let hits = matches(word, d) | matches(word, b'\n') | matches(word, b'\r');
            if hits != 0 {
                return i + (hits.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        while i < self.end {
            let b = self.buf[i];
            if b == d || is_line_end(b) {
                return i;
            }
            i += 1;
        }
        self.end
    }

    /// An unquoted field, or the rest of one after its closing quote, copied into `data`
    /// piece by piece. Returns whether another field of the record follows.
    fn unquoted_field(&mut self, data: &mut Vec<u8>, ends: &mut Vec<u32>) -> Result<bool, ReadError> {
        loop {
            let stop = self.find_stop(self.pos);
            if stop < self.end {
                if self.buf[stop] == self.delimiter {
                    // The delimiter is copied too: it is the byte between this field and the next.
                    data.extend_from_slice(&self.buf[self.pos..=stop]);
                    ends.push(data.len() as u32 - 1);
                    self.pos = stop + 1;
                    return Ok(true);
                }
                // A line end: left for the next record to skip.
                data.extend_from_slice(&self.buf[self.pos..stop]);
                ends.push(data.len() as u32);
                self.pos = stop;
                return Ok(false);
            }
            data.extend_from_slice(&self.buf[self.pos..stop]);
            self.pos = stop;
            if !self.ready()? {
                ends.push(data.len() as u32);
                return Ok(false);
            }
        }
    }

    /// Ends a field whose text is in `data` at `buf[pos]`, a delimiter or a line end.
    #[inline]
    fn end_field(&mut self, data: &mut Vec<u8>, ends: &mut Vec<u32>) -> bool {
        ends.push(data.len() as u32);
        if self.buf[self.pos] == self.delimiter {
            data.push(self.delimiter);
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A quoted field, after its opening quote.
    fn quoted_field(&mut self, data: &mut Vec<u8>, ends: &mut Vec<u32>) -> Result<bool, ReadError> {
        loop {
            if !self.ready()? {
                // Never closed: the field runs to the end of the input.
                ends.push(data.len() as u32);
                return Ok(false);
            }
            let rest = &self.buf[self.pos..self.end];
            let Some(q) = memchr::memchr(b'"', rest) else {
                data.extend_from_slice(rest);
                self.pos = self.end;
                continue;
            };
            data.extend_from_slice(&rest[..q]);
            self.pos += q + 1;
            if !self.ready()? {
                ends.push(data.len() as u32);
                return Ok(false);
            }
            let next = self.buf[self.pos];
            if next == b'"' {
                // `""`: a quote inside the field.
                data.push(b'"');
                self.pos += 1;
            } else if next == self.delimiter || is_line_end(next) {
                return Ok(self.end_field(data, ends));
            } else {
                // Text after the closing quote joins the field, up to the next delimiter.
                return self.unquoted_field(data, ends);
            }
        }
    }
}

/// Number of `\n` bytes, in blocks small enough for byte-wide counters (which vectorize well).
pub(super) fn count_newlines(data: &[u8]) -> u64 {
    let mut blocks = data.chunks_exact(128);
    let mut n = 0u64;
    for block in &mut blocks {
        n += block.iter().map(|b| (*b == b'\n') as u8).sum::<u8>() as u64;
    }
    n + blocks.remainder().iter().filter(|b| **b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as csv-core reads them with the settings the engine used before this module.
    fn csv_records(data: &[u8], delimiter: u8) -> Vec<Vec<Vec<u8>>> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(data);
        rdr.byte_records()
            .map(|r| r.expect("csv reads any bytes").iter().map(<[u8]>::to_vec).collect())
            .collect()
    }

    fn records(data: &[u8], delimiter: u8, buffer: usize) -> Vec<Vec<Vec<u8>>> {
        let mut t = Tokenizer::with_buffer(data, delimiter, u64::MAX / 2, buffer);
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while matches!(t.read_record(&mut rec), Ok(true)) {
            out.push(rec.iter().map(<[u8]>::to_vec).collect());
        }
        out
    }

    #[test]
    fn splits_records_as_csv_core_does_at_any_buffer_size() {
        let pieces: &[&[u8]] = &[
            b",",
            b",",
            b";",
            b"\t",
            b"\"",
            b"\"",
            b"\"\"",
            b"\n",
            b"\r",
            b"\r\n",
            b" ",
            b"a",
            b"bc",
            b"12345678",
            b"\xc3\xa9",
            b"x,y",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..3000 {
            let len = (next() % 60) as usize;
            let data: Vec<u8> = (0..len)
                .flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].iter().copied())
                .collect();
            let delimiter = [b',', b';', b'\t'][case % 3];
            let want = csv_records(&data, delimiter);
            for buffer in [1, 2, 3, 7, 8, 9, 64, BUFFER] {
                assert_eq!(
                    records(&data, delimiter, buffer),
                    want,
                    "{:?} with a {buffer}-byte buffer",
                    String::from_utf8_lossy(&data)
                );
            }
        }
    }

    #[test]
    fn lines_of_records_and_the_last_line() {
        let data = b"h\n1\n\n\n2\n\"a\nb\"\n\n3";
        for buffer in [1, 3, BUFFER] {
            let mut t = Tokenizer::with_buffer(&data[..], b',', u64::MAX / 2, buffer);
            let mut rec = csv::ByteRecord::new();
            let mut lines = Vec::new();
            while t.read_record(&mut rec).unwrap_or(false) {
                lines.push(t.record_line());
            }
            assert_eq!(lines, [1, 2, 5, 6, 9], "{buffer}-byte buffer");
            assert_eq!(t.last_line(), 9);
        }
    }

    #[test]
    fn a_record_past_the_limit_is_refused_with_its_line() {
        let mut data = b"a\n\n\"open".to_vec();
        data.extend(std::iter::repeat_n(b'x', 100));
        let mut t = Tokenizer::with_buffer(&data[..], b',', 50, 8);
        let mut rec = csv::ByteRecord::new();
        assert!(matches!(t.read_record(&mut rec), Ok(true)));
        assert!(matches!(t.read_record(&mut rec), Err(ReadError::TooLong { line: 3 })));
    }
}

//! Byte input: UTF-8 BOM detection, delimiter sniffing, and a guard that bounds one record's size.

use super::{AnalysisError, Format};
use std::cell::Cell;
use std::io::{self, Chain, Cursor, Read};

/// A record longer than this is refused: it is almost always a quote that never closes, and
/// without the bound the csv reader would buffer the rest of the file.
pub(super) const MAX_RECORD_BYTES: u64 = 16 << 20;
/// How far we look for the end of the first line when sniffing.
const SNIFF_LIMIT: usize = 1 << 20;
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

type Source<R> = Guard<Chain<Cursor<Vec<u8>>, R>>;

/// A csv reader over the (BOM-stripped) input plus what was detected about it.
pub(super) struct Input<R: Read> {
    rdr: csv::Reader<Source<R>>,
    bom: bool,
    delimiter: u8,
}

impl<R: Read> Input<R> {
    pub(super) fn bom(&self) -> bool {
        self.bom
    }

    pub(super) fn delimiter(&self) -> u8 {
        self.delimiter
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

/// Reads the start of the input, detects BOM and delimiter, and returns a reader over all of it.
pub(super) fn open<R: Read>(mut inner: R, format: Format) -> Result<Input<R>, AnalysisError> {
    let mut prefix = Vec::new();
    fill_prefix(&mut inner, &mut prefix)?;
    let bom = prefix.starts_with(b"\xEF\xBB\xBF");
    if bom {
        prefix.drain(..3);
    }
    let delimiter = match format {
        Format::Tsv => b'\t',
        Format::Csv => sniff_delimiter(&prefix),
    };
    let source = Guard {
        inner: Cursor::new(prefix).chain(inner),
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
    Ok(Input { rdr, bom, delimiter })
}

/// Reads until the first non-blank line is complete (or EOF, or `SNIFF_LIMIT` bytes).
fn fill_prefix<R: Read>(inner: &mut R, prefix: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    loop {
        if first_line(prefix).is_some() || prefix.len() >= SNIFF_LIMIT {
            return Ok(());
        }
        let n = match inner.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        prefix.extend_from_slice(&chunk[..n]);
    }
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

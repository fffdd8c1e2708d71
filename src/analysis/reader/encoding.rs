//! The input's encoding: UTF-16 (with or without its BOM) decoded to UTF-8 as it is read,
//! so the rest of the engine sees UTF-8.

use std::io::{self, Read};

/// UTF-16 by its BOM, or without one when one byte of nearly every pair is zero (Excel's
/// "Unicode text" export is UTF-16LE with a BOM; some instruments write it without).
pub(super) fn sniff_utf16(raw: &[u8]) -> Option<&'static encoding_rs::Encoding> {
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
pub(super) struct Transcode<R> {
    inner: R,
    decoder: Option<encoding_rs::Decoder>,
    raw: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Transcode<R> {
    pub(super) fn plain(inner: R) -> Self {
        Transcode {
            inner,
            decoder: None,
            raw: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    pub(super) fn utf16(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
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

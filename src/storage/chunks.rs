//! A blocking reader over chunks that arrive on a channel: a bucket object's body, or an upload handed to its analysis while it lands.

use std::io::Read;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::Result;

/// Reads the chunks as they arrive; call it off the async runtime. The channel closing
/// is the end of the bytes; an `Err` chunk fails the read.
pub struct ChunkReader {
    chunks: mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
}

impl ChunkReader {
    pub fn new(chunks: mpsc::Receiver<Result<Bytes>>) -> ChunkReader {
        ChunkReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

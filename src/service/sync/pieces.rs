//! Sync contents sent in pieces (`Content-Range`): a send cut off keeps the bytes that
//! arrived as a stored part, so the next send goes on from there; once every byte is
//! there, the parts are read back through the intake, checked against the content's
//! SHA-256 and staged like a content sent whole.
//!
//! The parts of content `sha256` are `{sha256}-{start:020}-{token}`; how far a content got
//! is the run of parts that follow one another from byte 0. Parts of a send abandoned for
//! longer than staged bytes are kept go with the periodic sweep.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use uuid::Uuid;

use super::super::upload::{SizeLimit, Taken};
use super::super::FileService;
use super::check_sha256;
use crate::error::{Error, Result};

/// Where a piece of a content's bytes goes: from byte `start` of a content of `total` bytes.
#[derive(Debug, Clone, Copy)]
pub struct ContentRange {
    pub start: u64,
    pub total: u64,
}

/// How much of a content this instance has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContentProgress {
    /// Every byte is staged (or a file here already holds it).
    pub staged: bool,
    /// Bytes kept of a send in pieces that has not ended yet (0 when staged).
    pub offset: u64,
}

impl FileService {
    /// How much of content `sha256` is here.
    pub async fn content_progress(&self, sha256: &str) -> Result<ContentProgress> {
        let staged = self.missing_contents(vec![sha256.to_string()]).await?.is_empty();
        if staged {
            return Ok(ContentProgress { staged, offset: 0 });
        }
        let (offset, _) = self.content_pieces(sha256).await?;
        Ok(ContentProgress { staged, offset })
    }

    /// Receives the piece `range` of content `sha256` (see the module doc). Returns how
    /// much of it is here afterwards. A piece that does not start where the kept bytes end
    /// is refused (`OffsetMismatch`): [`FileService::content_progress`] says where.
    ///
    /// Runs on its own task: a sender that goes away drops the request, and what arrived
    /// must still be kept.
    pub async fn receive_content_piece<S>(
        self: &Arc<Self>,
        sha256: &str,
        range: ContentRange,
        chunks: S,
    ) -> Result<ContentProgress>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send + 'static,
    {
        let sha256 = sha256.to_string();
        self.to_completion(move |s| async move { s.receive_piece(&sha256, range, chunks).await })
            .await
    }

    async fn receive_piece<S>(&self, sha256: &str, range: ContentRange, chunks: S) -> Result<ContentProgress>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        check_sha256(sha256)?;
        let max = self.limits.max_upload_bytes;
        if range.total > max {
            return Err(Error::PayloadTooLarge(format!(
                "the content is larger than the limit of {max} bytes (MAX_UPLOAD_BYTES)"
            )));
        }
        let (offset, parts) = self.content_pieces(sha256).await?;
        if range.start != offset {
            return Err(Error::OffsetMismatch(format!(
                "this piece starts at byte {} but {offset} bytes of the content are here; send from there",
                range.start
            )));
        }
        let label = format!("sync content {sha256} from {}", range.start);
        let sink = self.with_storage(move |s| s.begin_upload(false, &label)).await?;
        let remaining = range.total - range.start;
        let limit = SizeLimit {
            max: remaining,
            refusal: format!(
                "the piece goes past the content's {} bytes; nothing of it was kept",
                range.total
            ),
            over_quota: false,
            sha1: false,
        };
        let Taken {
            upload: sink,
            kept,
            arrived,
        } = self.take_in(chunks, sink, None, &limit).await?;
        // Cut off: what arrived is kept for the next send; too long: nothing is.
        if kept == 0 || matches!(arrived, Err(Error::PayloadTooLarge(_))) {
            self.discard_upload(sink).await;
            arrived?;
            return Ok(ContentProgress { staged: false, offset });
        }
        let part = format!(
            "{sha256}-{:020}-{}",
            range.start,
            &Uuid::new_v4().simple().to_string()[..8]
        );
        self.keep_part(sink, part.clone()).await?;
        let offset = range.start + kept;
        if offset < range.total {
            arrived?;
            return Ok(ContentProgress { staged: false, offset });
        }
        let mut parts = parts;
        parts.push(part);
        let staged = self.stage_pieces(sha256, parts).await;
        let prefix = sha256.to_string();
        if let Err(e) = self.with_storage(move |s| s.remove_parts(&prefix)).await {
            tracing::warn!(error = %e.detail(), "could not remove the pieces of a staged content; the periodic sweep does");
        }
        staged?;
        Ok(ContentProgress {
            staged: true,
            offset: 0,
        })
    }

    /// The pieces of `sha256` that follow one another from byte 0, and where they end.
    async fn content_pieces(&self, sha256: &str) -> Result<(u64, Vec<String>)> {
        let prefix = sha256.to_string();
        let listed = self.with_storage(move |s| s.list_parts(&prefix)).await?;
        let mut pieces: Vec<(u64, String, u64)> = listed
            .into_iter()
            .filter_map(|(name, size)| {
                let start = name.split('-').nth(1)?.parse::<u64>().ok()?;
                Some((start, name, size))
            })
            .collect();
        // At one start, the longest piece (a piece re-sent after a cut is no shorter).
        pieces.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)));
        let (mut offset, mut chain) = (0u64, Vec::new());
        for (start, name, size) in pieces {
            if start == offset && size > 0 {
                offset += size;
                chain.push(name);
            }
        }
        Ok((offset, chain))
    }

    /// Reads the pieces back in order through the intake and stages them if they hash to
    /// `sha256`.
    async fn stage_pieces(&self, sha256: &str, parts: Vec<String>) -> Result<()> {
        let label = format!("sync content {sha256}");
        let sink = self.with_storage(move |s| s.begin_upload(false, &label)).await?;
        let limit = SizeLimit::upload(self.limits.max_upload_bytes, "content");
        let Taken {
            upload: sink, arrived, ..
        } = self.take_in(self.read_parts(parts), sink, None, &limit).await?;
        let checked = arrived.and_then(|arrived| match arrived.sha256 == sha256 {
            true => Ok(()),
            false => Err(Error::invalid(
                "hash_mismatch",
                format!(
                    "the pieces sent hash to {}, not {sha256}; nothing was kept: send the content again from byte 0",
                    arrived.sha256
                ),
            )),
        });
        if let Err(e) = checked {
            self.discard_upload(sink).await;
            return Err(e);
        }
        let sha = sha256.to_string();
        self.with_storage(move |_| {
            let mut sink = sink;
            sink.finish()?;
            sink.stage(&sha)
        })
        .await
    }
}

//! `file-service sync`: moves changes from one instance's feed to another instance over HTTP, resumably.
//!
//! One direction is always the same loop, whichever side is local: read the source's
//! feed from the checkpoint the destination keeps for it (skipping changes that came
//! from the destination), send the destination the bytes it lacks (asked by SHA-256,
//! streamed source → destination), then the batch of changes; the destination applies
//! them and moves its checkpoint. A run cut off anywhere starts again from the last
//! checkpoint; changes applied twice are recognised by their rev and skipped.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::catalog::{Change, ChangeOp};
use crate::service::ApplyReport;

/// Changes read per feed request.
const PAGE: u32 = 500;
/// Largest batch sent to `apply`, in bytes of JSON (the server takes up to 64 MiB).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Contents streamed from source to destination at once.
const BLOBS_IN_FLIGHT: usize = 4;
/// Contents up to this size are sent whole; larger ones in pieces that resume.
const WHOLE_CONTENT_MAX_BYTES: u64 = 1 << 20;
/// A content's send gives up after this many cuts in a row that got no further.
const MAX_PIECE_FAILURES: u32 = 20;
/// The most refusal reasons one direction's report keeps.
const MAX_REASONS: usize = 100;

/// How long one feed request waits for news in `--watch` mode.
const WATCH_WAIT_SECONDS: u64 = 30;

/// An instance's HTTP API and a token with the replicate scope for it.
#[derive(Clone)]
pub struct Endpoint {
    base: String,
    token: String,
    client: reqwest::Client,
}

/// What one direction transferred.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DirectionReport {
    /// Feed entries read (after skipping the destination's own).
    pub changes: u64,
    pub applied: u64,
    pub skipped: u64,
    pub conflicts: u64,
    pub rejected: u64,
    /// Why the destination refused each rejected change (e.g. a user's quota), at most
    /// [`MAX_REASONS`] of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<String>,
    /// Contents sent, and their bytes.
    pub blobs: u64,
    pub bytes: u64,
    /// Changes still waiting at the end (bytes unavailable, names held); the next run retries them.
    pub waiting: u64,
}

#[derive(Deserialize)]
struct Page {
    instance_id: String,
    last_seq: i64,
    more: bool,
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Checkpoint {
    instance_id: String,
    last_seq: i64,
}

#[derive(Serialize)]
struct Batch<'a> {
    source: &'a str,
    checkpoint: i64,
    r#final: bool,
    changes: &'a [Change],
}

impl Endpoint {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Endpoint> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Endpoint {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Sends a request and turns an error status into an error naming the server and its `detail`.
    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<reqwest::Response> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("{what}: cannot reach {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(body);
        bail!("{what}: {} answered {status}: {detail}", self.base)
    }

    /// This instance's id and its checkpoint for `source`.
    async fn checkpoint(&self, source: &str) -> anyhow::Result<Checkpoint> {
        let response = self
            .send(
                self.client.get(self.url(&format!("/sync/checkpoints/{source}"))),
                "reading the checkpoint",
            )
            .await?;
        Ok(response.json().await?)
    }

    async fn changes(&self, since: i64, wait: u64, exclude_origin: &str) -> anyhow::Result<Page> {
        let request = self
            .client
            // Instance ids are hex: nothing to escape.
            .get(self.url(&format!(
                "/changes?since={since}&limit={PAGE}&wait={wait}&exclude_origin={exclude_origin}"
            )))
            .timeout(Duration::from_secs(wait + 60));
        Ok(self.send(request, "reading the change feed").await?.json().await?)
    }

    async fn missing(&self, hashes: Vec<String>) -> anyhow::Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Missing {
            missing: Vec<String>,
        }
        let request = self
            .client
            .post(self.url("/sync/missing"))
            .json(&serde_json::json!({ "sha256": hashes }));
        let missing: Missing = self.send(request, "asking for missing contents").await?.json().await?;
        Ok(missing.missing)
    }

    /// How much of content `sha256` this instance has (see `GET /sync/blobs/{sha256}`).
    async fn content_progress(&self, sha256: &str) -> anyhow::Result<crate::service::sync::ContentProgress> {
        let request = self.client.get(self.url(&format!("/sync/blobs/{sha256}")));
        Ok(self
            .send(request, "asking how much of a content arrived")
            .await?
            .json()
            .await?)
    }

    async fn apply(&self, batch: &Batch<'_>) -> anyhow::Result<ApplyReport> {
        let request = self.client.post(self.url("/sync/apply")).json(batch);
        Ok(self.send(request, "applying changes").await?.json().await?)
    }
}

/// Moves every change of `source` that `dest` has not applied yet. With `watch`, keeps
/// going as changes arrive (until the process is stopped).
pub async fn transfer(source: &Endpoint, dest: &Endpoint, watch: bool) -> anyhow::Result<DirectionReport> {
    let source_id = source.checkpoint("-").await?.instance_id;
    let start = dest.checkpoint(&source_id).await?;
    if start.instance_id == source_id {
        bail!(
            "{} and {} are the same instance ({source_id}): nothing to sync",
            source.base,
            dest.base
        );
    }
    let mut report = DirectionReport::default();
    let mut since = start.last_seq;
    let mut waiting: Vec<Change> = Vec::new();
    let mut caught_up = false;
    loop {
        // Once caught up, a watching sync long-polls; changes still waiting are retried
        // with whatever comes next.
        let wait = if watch && caught_up { WATCH_WAIT_SECONDS } else { 0 };
        let page = source.changes(since, wait, &start.instance_id).await?;
        if page.instance_id != source_id {
            bail!("{} changed identity during the sync", source.base);
        }
        report.changes += page.changes.len() as u64;
        let (sent, bytes) = send_missing_contents(source, dest, &page.changes).await?;
        report.blobs += sent;
        report.bytes += bytes;
        let exhausted = !page.more;
        let mut batch: Vec<Change> = std::mem::take(&mut waiting);
        batch.extend(page.changes);
        let chunks = chunks_by_size(&batch);
        for (i, chunk) in chunks.iter().enumerate() {
            let last_chunk = i + 1 == chunks.len();
            let mut changes: Vec<Change> = std::mem::take(&mut waiting);
            changes.extend(chunk.iter().cloned());
            let checkpoint = if last_chunk {
                page.last_seq
            } else {
                chunk.last().map_or(since, |c| c.seq)
            };
            let applied = dest
                .apply(&Batch {
                    source: &source_id,
                    checkpoint,
                    r#final: exhausted && last_chunk,
                    changes: &changes,
                })
                .await?;
            report.applied += applied.applied;
            report.skipped += applied.skipped;
            report.conflicts += applied.conflicts;
            report.rejected += applied.rejected;
            for r in applied.rejections {
                if report.rejections.len() < MAX_REASONS {
                    report.rejections.push(format!(
                        "change {} (user {}, {:?}): {} ({})",
                        r.seq, r.user_id, r.file_name, r.detail, r.code
                    ));
                }
            }
            let deferred: HashSet<i64> = applied.deferred.into_iter().collect();
            waiting = changes.into_iter().filter(|c| deferred.contains(&c.seq)).collect();
        }
        since = page.last_seq;
        caught_up = exhausted;
        if exhausted && !watch {
            report.waiting = waiting.len() as u64;
            if !waiting.is_empty() {
                tracing::warn!(
                    count = waiting.len(),
                    "some changes wait for bytes the source no longer has or for a name in use; the next sync retries them"
                );
            }
            return Ok(report);
        }
    }
}

/// Sends `dest` the contents of these changes it holds nowhere, streamed from `source`,
/// a few at a time: small files are dominated by round trips, not bytes.
async fn send_missing_contents(source: &Endpoint, dest: &Endpoint, changes: &[Change]) -> anyhow::Result<(u64, u64)> {
    let upserts: Vec<&Change> = changes.iter().filter(|c| c.op == ChangeOp::Upsert).collect();
    if upserts.is_empty() {
        return Ok((0, 0));
    }
    let hashes: Vec<String> = upserts
        .iter()
        .map(|c| c.file.sha256.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let missing = dest.missing(hashes).await?;
    let sends = missing.iter().filter_map(|sha256| {
        let change = upserts.iter().find(|c| &c.file.sha256 == sha256)?;
        Some(send_content(source, dest, change, sha256))
    });
    let sent: Vec<Option<u64>> = futures_util::stream::iter(sends)
        .buffer_unordered(BLOBS_IN_FLIGHT)
        .try_collect()
        .await?;
    let sizes: Vec<u64> = sent.into_iter().flatten().collect();
    Ok((sizes.len() as u64, sizes.iter().sum()))
}

/// Streams one content from `source` to `dest`, in pieces that survive cut connections:
/// each try sends from where `dest` says the content got (`Content-Range`), reading the
/// source from there too (`Range`), so a cut on either side costs only the bytes in
/// flight. Returns the bytes sent; `None` if the source no longer has the content.
async fn send_content(
    source: &Endpoint,
    dest: &Endpoint,
    change: &Change,
    sha256: &str,
) -> anyhow::Result<Option<u64>> {
    let id = change.file.id;
    let size = change.file.size_bytes;
    let mut sent = 0u64;
    let mut failures = 0u32;
    let mut offset = 0u64;
    loop {
        match send_piece(source, dest, id, sha256, size, offset).await {
            Ok(Piece::Staged(bytes)) => return Ok(Some(sent + bytes)),
            Ok(Piece::Gone) => return Ok(None),
            Err(PieceError::Fatal(e)) => return Err(e),
            Err(PieceError::Cut(e)) => {
                failures += 1;
                if failures > MAX_PIECE_FAILURES {
                    return Err(e.context(format!("sending file {id}: cut off {failures} times")));
                }
                tracing::info!(file = %id, error = %e, failures, "content cut off; going on from where it got");
                tokio::time::sleep(Duration::from_millis(250 * u64::from(failures.min(8)))).await;
                // Where the destination got, however much of this try reached it.
                match dest.content_progress(sha256).await {
                    Ok(progress) if progress.staged => return Ok(Some(sent)),
                    Ok(progress) => {
                        if progress.offset > offset {
                            failures = 0; // it got further: only cuts in a row count
                        }
                        sent += progress.offset.saturating_sub(offset);
                        offset = progress.offset;
                    }
                    Err(e) => tracing::info!(file = %id, error = %e, "cannot ask the destination how far it got"),
                }
            }
        }
    }
}

/// A try at sending a content from byte `offset` ended.
enum Piece {
    /// Staged at the destination, after this many bytes of this try.
    Staged(u64),
    /// The source no longer has this content (changed or deleted: a later change carries it).
    Gone,
}

enum PieceError {
    /// The connection to either side failed: worth going on.
    Cut(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Sends the content's bytes from `offset` to its end as one piece.
async fn send_piece(
    source: &Endpoint,
    dest: &Endpoint,
    id: uuid::Uuid,
    sha256: &str,
    size: u64,
    offset: u64,
) -> Result<Piece, PieceError> {
    let mut download = source
        .client
        .get(source.url(&format!("/sync/files/{id}/content")))
        .bearer_auth(&source.token);
    if offset > 0 {
        download = download.header(reqwest::header::RANGE, format!("bytes={offset}-"));
    }
    let download = download
        .send()
        .await
        .with_context(|| format!("downloading file {id}: cannot reach {}", source.base))
        .map_err(PieceError::Cut)?;
    let status = download.status();
    if status.is_server_error() {
        return Err(PieceError::Cut(anyhow::anyhow!(
            "downloading file {id}: {} answered {status}",
            source.base
        )));
    }
    let partial = status == reqwest::StatusCode::PARTIAL_CONTENT;
    if !status.is_success() || (offset > 0 && !partial) {
        // Changed or deleted since the feed was read (a range past a new, shorter
        // content, or a whole new content instead of the range).
        tracing::info!(file = %id, %status, "content no longer available at the source");
        return Ok(Piece::Gone);
    }
    let length = size - offset;
    // A content of another length than the change says was written over the stored file
    // after the feed was read (its catalog entry may not show it yet): sending it under
    // this change's length would fail on every try.
    if download.content_length().is_some_and(|served| served != length) {
        tracing::info!(file = %id, expected = length, served = ?download.content_length(), "content changed at the source since the feed was read");
        return Ok(Piece::Gone);
    }
    let body = reqwest::Body::wrap_stream(download.bytes_stream());
    let mut upload = dest
        .client
        .put(dest.url(&format!("/sync/blobs/{sha256}")))
        .bearer_auth(&dest.token)
        .header(reqwest::header::CONTENT_LENGTH, length);
    // Small contents go whole: a cut costs little, and a piece costs the destination a
    // stored part to write, read back and remove.
    if size > WHOLE_CONTENT_MAX_BYTES || offset > 0 {
        upload = upload.header(
            reqwest::header::CONTENT_RANGE,
            format!("bytes {offset}-{}/{size}", size - 1),
        );
    }
    let response = upload
        .body(body)
        .send()
        .await
        .with_context(|| {
            format!(
                "sending file {id}: the connection to {} or {} was cut",
                source.base, dest.base
            )
        })
        .map_err(PieceError::Cut)?;
    let status = response.status();
    if status.is_success() {
        return Ok(Piece::Staged(length));
    }
    let detail = response.text().await.unwrap_or_default();
    match status.as_u16() {
        // The source's bytes changed under the download: a later change carries them.
        422 => {
            tracing::info!(file = %id, %detail, "content skipped");
            Ok(Piece::Gone)
        }
        // Another try got further meanwhile, or a server was busy: ask where it got.
        409 | 423 | 408 | 500..=599 => Err(PieceError::Cut(anyhow::anyhow!(
            "sending file {id}: {} answered {status}: {detail}",
            dest.base
        ))),
        _ => Err(PieceError::Fatal(anyhow::anyhow!(
            "sending file content: {} answered {status}: {detail}",
            dest.base
        ))),
    }
}

/// Splits changes into runs whose JSON stays under [`MAX_BATCH_BYTES`].
fn chunks_by_size(changes: &[Change]) -> Vec<&[Change]> {
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, change) in changes.iter().enumerate() {
        let len = serde_json::to_vec(change).map_or(0, |v| v.len());
        if i > start && size + len > MAX_BATCH_BYTES {
            chunks.push(&changes[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    chunks.push(&changes[start..]);
    chunks
}

/// The JSON line `--json` prints.
#[derive(Serialize)]
pub struct SyncReport {
    pub pulled: Option<DirectionReport>,
    pub pushed: Option<DirectionReport>,
    pub seconds: f64,
}

/// Runs the directions asked for: pull (`remote` → `local`), then push (`local` → `remote`).
pub async fn run(
    local: &Endpoint,
    from: Option<&Endpoint>,
    to: Option<&Endpoint>,
    watch: bool,
) -> anyhow::Result<SyncReport> {
    let started = Instant::now();
    if watch {
        // Both directions keep long-polling their source side by side.
        let pull = async {
            match from {
                Some(remote) => transfer(remote, local, true).await.map(Some),
                None => Ok(None),
            }
        };
        let push = async {
            match to {
                Some(remote) => transfer(local, remote, true).await.map(Some),
                None => Ok(None),
            }
        };
        let (pulled, pushed) = tokio::try_join!(pull, push)?;
        return Ok(SyncReport {
            pulled,
            pushed,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let pulled = match from {
        Some(remote) => Some(transfer(remote, local, false).await.context("pulling")?),
        None => None,
    };
    let pushed = match to {
        Some(remote) => Some(transfer(local, remote, false).await.context("pushing")?),
        None => None,
    };
    Ok(SyncReport {
        pulled,
        pushed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

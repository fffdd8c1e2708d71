//! Queries and conversions: which of the caller's files a statement may read (theirs, and
//! only theirs), the bounded number running at once, the deadline, and their metrics.

use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::FileService;
use crate::analysis::Profile;
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::metrics::metrics;
use crate::model::{FileRecord, UserId};
use crate::query::{self, Answer, Cancel, OutputFormat, QueryError, Table};
use crate::storage::Content;

/// The file a statement calls `data`.
pub enum QueryTarget<'a> {
    File(&'a str),
    /// The session's active file.
    Active(&'a str),
}

/// A result being written while it is sent: its first bytes, and the rest as they come
/// (an `Err` means the writing failed midway; the response is then cut short).
pub struct Download {
    pub content_type: &'static str,
    pub filename: String,
    pub first: Bytes,
    pub rest: mpsc::Receiver<std::result::Result<Bytes, String>>,
}

/// Bytes are handed to the response in pieces of about this size.
const PIECE_BYTES: usize = 256 * 1024;

/// A file a query reads, opened.
pub(super) struct Source {
    pub(super) table: String,
    pub(super) record: FileRecord,
    pub(super) content: Content,
}

impl FileService {
    /// Runs `sql` over the target file (the table `data`) and the caller's other files it
    /// names, and answers with `limit` rows of its result from row `offset` on.
    pub async fn query(
        &self,
        user: UserId,
        target: QueryTarget<'_>,
        sql: String,
        limit: usize,
        offset: u64,
    ) -> Result<Answer> {
        let started = Instant::now();
        let result = async {
            if !(1..=query::MAX_LIMIT).contains(&limit) {
                return Err(Error::invalid(
                    "invalid_limit",
                    format!("limit must be between 1 and {}, not {limit}", query::MAX_LIMIT),
                ));
            }
            let permit = self.query_permit()?;
            let checked = query::check(&sql).map_err(query_error)?;
            let sources = self.sources(user, target, &checked.tables).await?;
            let copies = self.copies.clone();
            let cancel = Cancel::default();
            let work = cancel.clone();
            let answer = self
                .with_deadline(&cancel, move || {
                    let _permit = permit;
                    let tables = prepare(&copies, sources, &work)?;
                    query::answer(&sql, &tables, limit, offset, &work)
                })
                .await?;
            metrics().query_rows.inc_by(answer.row_count as u64);
            tracing::info!(
                user,
                rows = answer.row_count,
                truncated = answer.truncated,
                tables = checked.tables.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "query answered"
            );
            Ok(Answer {
                elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
                ..answer
            })
        }
        .await;
        record_outcome(&result, started);
        result
    }

    /// Runs `sql` as [`FileService::query`] does and writes its whole result as `format`.
    pub async fn query_download(
        &self,
        user: UserId,
        target: QueryTarget<'_>,
        sql: String,
        format: OutputFormat,
    ) -> Result<Download> {
        let started = Instant::now();
        let result = async {
            if format == OutputFormat::Xlsx {
                return Err(Error::invalid(
                    "invalid_format",
                    "query results download as csv, parquet, jsonl or arrow; xlsx is for whole files",
                ));
            }
            let permit = self.query_permit()?;
            let checked = query::check(&sql).map_err(query_error)?;
            let sources = self.sources(user, target, &checked.tables).await?;
            let copies = self.copies.clone();
            self.start_download(permit, format, "query-result".into(), move |out, cancel| {
                let tables = prepare(&copies, sources, cancel)?;
                query::download(&sql, &tables, format, out, cancel)
            })
            .await
        }
        .await;
        record_outcome(&result, started);
        result
    }

    /// The whole file converted to `format`, typed as its profile says.
    pub async fn convert(&self, user: UserId, file_name: &str, format: OutputFormat) -> Result<Download> {
        let started = Instant::now();
        let result = async {
            let permit = self.query_permit()?;
            let (record, content) = self.open_content(user, file_name).await?;
            let filename = conversion_name(&record, format)?;
            let source = Source {
                table: "data".into(),
                record,
                content,
            };
            let copies = self.copies.clone();
            self.start_download(permit, format, filename, move |out, cancel| {
                let table = prepare(&copies, vec![source], cancel)?.remove(0);
                query::convert(&table, format, out, cancel)
            })
            .await
        }
        .await;
        record_outcome(&result, started);
        result
    }

    /// The download name a conversion of the file to `format` would have, or why it would be
    /// refused, without converting: what a `HEAD` of the conversion answers.
    pub async fn conversion_name(&self, user: UserId, file_name: &str, format: OutputFormat) -> Result<String> {
        conversion_name(&self.get_file(user, file_name).await?, format)
    }

    pub(super) fn query_permit(&self) -> Result<OwnedSemaphorePermit> {
        self.queries.clone().try_acquire_owned().map_err(|_| {
            Error::Busy(format!(
                "{} queries are already running; retry shortly (MAX_CONCURRENT_QUERIES)",
                self.limits.max_concurrent_queries
            ))
        })
    }

    /// The target file and every other file of the caller the statement names, opened.
    /// Names that are none of the caller's files are left to the engine, which answers
    /// that the table does not exist: another user's files are never looked up.
    async fn sources(&self, user: UserId, target: QueryTarget<'_>, tables: &[String]) -> Result<Vec<Source>> {
        let target = match target {
            QueryTarget::File(name) => name.to_string(),
            QueryTarget::Active(session) => self.get_active(user, session).await?.file_name.clone(),
        };
        let (record, content) = self.open_content(user, &target).await?;
        let mut sources = vec![Source {
            table: "data".into(),
            record,
            content,
        }];
        for name in tables {
            if name == "data" {
                continue;
            }
            match self.open_content(user, name).await {
                Ok((record, content)) => sources.push(Source {
                    table: name.clone(),
                    record,
                    content,
                }),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sources)
    }

    /// Runs `work` on the blocking pool; past the query timeout, `cancel` is set (the engine
    /// is interrupted, or the work stops at its next table or result batch: see
    /// [`Cancel`]) and the caller gets 408 at once.
    pub(super) async fn with_deadline<T: Send + 'static>(
        &self,
        cancel: &Cancel,
        work: impl FnOnce() -> std::result::Result<T, QueryError> + Send + 'static,
    ) -> Result<T> {
        let mut task = tokio::task::spawn_blocking(work);
        match tokio::time::timeout(self.limits.query_timeout, &mut task).await {
            Ok(done) => done
                .map_err(|e| Error::internal(format!("a query failed: {e}")))?
                .map_err(query_error),
            Err(_) => {
                cancel.cancel();
                stopped(task).await;
                Err(self.timed_out())
            }
        }
    }

    fn timed_out(&self) -> Error {
        Error::Timeout(format!(
            "the query ran longer than {} s and was stopped (QUERY_TIMEOUT_SECONDS); narrow it or try again later",
            self.limits.query_timeout.as_secs()
        ))
    }

    /// Starts `write` on the blocking pool, writing into pieces handed to the response.
    /// Until the first piece is ready the query timeout applies (and failures are proper
    /// error responses); after that the result streams to its end, or until the client
    /// goes away (then the work is stopped).
    pub(super) async fn start_download(
        &self,
        permit: OwnedSemaphorePermit,
        format: OutputFormat,
        filename: String,
        write: impl FnOnce(Pieces, &Cancel) -> std::result::Result<u64, QueryError> + Send + 'static,
    ) -> Result<Download> {
        let (pieces_tx, pieces_rx) = std::sync::mpsc::sync_channel::<Piece>(4);
        let (tx, mut rx) = mpsc::channel::<Piece>(4);
        let cancel = Cancel::default();
        let work = cancel.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let out = Pieces {
                buffer: Vec::with_capacity(PIECE_BYTES),
                tx: pieces_tx.clone(),
            };
            let started = Instant::now();
            let result = write(out, &work);
            match result {
                Ok(rows) => {
                    metrics().query_rows.inc_by(rows);
                    tracing::info!(
                        rows,
                        format = format.extension(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "query result written"
                    );
                }
                Err(e) => {
                    tracing::info!(error = %e, format = format.extension(), "query result not written");
                    let _ = pieces_tx.send(Piece::Failed(e));
                }
            }
        });
        // The engine's threads hand over pieces on a plain channel (they must not block
        // inside an async runtime); this thread forwards them to the response.
        let forward_cancel = cancel.clone();
        tokio::task::spawn_blocking(move || {
            while let Ok(piece) = pieces_rx.recv() {
                if tx.blocking_send(piece).is_err() {
                    // The client went away.
                    forward_cancel.cancel();
                    break;
                }
            }
        });
        let first = match tokio::time::timeout(self.limits.query_timeout, rx.recv()).await {
            Err(_) => {
                cancel.cancel();
                stopped(task).await;
                return Err(self.timed_out());
            }
            Ok(None) => Bytes::new(),
            Ok(Some(Piece::Bytes(bytes))) => bytes,
            Ok(Some(Piece::Failed(e))) => return Err(query_error(e)),
        };
        metrics().query_bytes.inc_by(first.len() as u64);
        let (body_tx, body_rx) = mpsc::channel(4);
        let mut sent = first.len() as u64;
        tokio::spawn(async move {
            while let Some(piece) = rx.recv().await {
                let item = match piece {
                    Piece::Bytes(bytes) => {
                        metrics().query_bytes.inc_by(bytes.len() as u64);
                        sent += bytes.len() as u64;
                        Ok(bytes)
                    }
                    Piece::Failed(e) => {
                        tracing::warn!(error = %e, "a download stopped midway");
                        Err(e.to_string())
                    }
                };
                if body_tx.send(item).await.is_err() {
                    cancel.cancel();
                    tracing::info!(bytes = sent, "query download stopped: the client went away");
                    return;
                }
            }
            tracing::info!(bytes = sent, "query download sent");
        });
        Ok(Download {
            content_type: format.content_type(),
            filename,
            first,
            rest: body_rx,
        })
    }
}

/// Waits (a bounded while) for cancelled work to stop, so that by the time the client hears
/// of the timeout its slot is free again.
async fn stopped<T>(task: tokio::task::JoinHandle<T>) {
    if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
        tracing::warn!("a cancelled query was still running {} s later", STOP_GRACE.as_secs());
    }
}

/// How long a timed-out request waits for its work to stop.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the writing thread hands over.
enum Piece {
    Bytes(Bytes),
    Failed(QueryError),
}

/// A writer that hands its bytes over in pieces of [`PIECE_BYTES`]; fails once the
/// response is gone, which stops the query.
pub struct Pieces {
    buffer: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<Piece>,
}

impl Pieces {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(PIECE_BYTES)));
        self.tx
            .send(Piece::Bytes(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= PIECE_BYTES {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Drop for Pieces {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// Each source as a table the engine scans (building columnar copies where needed).
pub(super) fn prepare(
    copies: &query::ColumnarCache,
    sources: Vec<Source>,
    cancel: &Cancel,
) -> std::result::Result<Vec<Table>, QueryError> {
    let mut tables = Vec::with_capacity(sources.len());
    for source in sources {
        if cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        let format = Format::from_extension(&source.record.extension).ok_or_else(|| {
            QueryError::Unreadable(format!("the stored format {:?} has no reader", source.record.extension))
        })?;
        let profile: Profile = serde_json::from_str(&source.record.profile_json).map_err(|e| {
            QueryError::Internal(anyhow::anyhow!(
                "the profile of {} does not parse: {e}",
                source.record.file_name
            ))
        })?;
        let file = copies.prepare(format, &profile, &source.record.sha256, source.content)?;
        tables.push(Table {
            name: source.table,
            file,
        });
    }
    Ok(tables)
}

/// The download name of `record` converted to `format`, once the file fits that format (an
/// xlsx sheet's row limit). Conversions and their `HEAD` both ask this.
fn conversion_name(record: &FileRecord, format: OutputFormat) -> Result<String> {
    if format == OutputFormat::Xlsx && record.row_count >= query::XLSX_MAX_ROWS {
        return Err(Error::invalid(
            "too_many_rows",
            format!(
                "an xlsx sheet holds at most {} rows and this file has {}; choose csv or parquet",
                query::XLSX_MAX_ROWS - 1,
                record.row_count
            ),
        ));
    }
    Ok(format!("{}.{}", record.file_name, format.extension()))
}

pub(super) fn query_error(e: QueryError) -> Error {
    match e {
        QueryError::NotAllowed(detail) => Error::invalid("query_not_allowed", detail),
        QueryError::Invalid(detail) => Error::invalid("invalid_query", detail),
        QueryError::Unreadable(detail) => Error::invalid("unreadable_file", detail),
        QueryError::Cancelled => Error::Timeout("the query was stopped".into()),
        QueryError::Internal(e) => Error::Internal(e),
    }
}

pub(super) fn record_outcome<T>(result: &Result<T>, started: Instant) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(Error::Invalid { .. }) | Err(Error::NotFound(_)) => "invalid",
        Err(Error::Timeout(_)) => "timeout",
        Err(Error::Busy(_)) => "busy",
        Err(_) => "error",
    };
    metrics().queries.with_label_values(&[outcome]).inc();
    metrics().query_seconds.observe(started.elapsed().as_secs_f64());
}

//! The sync routes: the change feed, file bytes by id, checkpoints, staging bytes and applying another instance's changes.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{body_chunks, decode, download, json, parse_json, BodyChunks, MapErrReject};
use crate::auth::Principal;
use crate::catalog::Change;
use crate::error::Error;
use crate::service::sync::{ContentRange, DEFAULT_LIMIT};
use crate::service::FileService;

/// Largest body of `POST /sync/apply` (a batch of records with their profiles).
const MAX_APPLY_BODY: u64 = 64 * 1024 * 1024;
/// Largest body of `POST /sync/missing`.
const MAX_MISSING_BODY: u64 = 4 * 1024 * 1024;

pub fn routes(service: Arc<FileService>, principal: BoxedFilter<(Principal,)>) -> BoxedFilter<(Response,)> {
    let with_service = warp::any().map(move || service.clone());

    let changes = warp::path!("api" / "v1" / "changes")
        .and(warp::get())
        .and(principal.clone())
        .and(with_service.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(
            |who: Principal, service: Arc<FileService>, params: Vec<(String, String)>| {
                async move {
                    let query = FeedQuery::parse(params)?;
                    let page = service
                        .changes(
                            query.since,
                            query.limit,
                            query.wait,
                            who.readable_user(),
                            query.exclude_origin,
                        )
                        .await?;
                    Ok::<_, Error>(json(StatusCode::OK, &page))
                }
                .map_err_reject()
            },
        );

    let content = warp::path!("api" / "v1" / "sync" / "files" / String / "content")
        .and(warp::get())
        .and(principal.clone())
        .and(with_service.clone())
        .and(warp::header::headers_cloned())
        .and_then(|id: String, who: Principal, service: Arc<FileService>, headers| {
            async move {
                let id = Uuid::parse_str(&decode(&id))
                    .map_err(|_| Error::NotFound(format!("no file with id {id:?} (ids are UUIDs)")))?;
                let (record, file) = service.open_by_id(who.readable_user(), id).await?;
                Ok::<_, Error>(download::respond(&record, file, &headers, false))
            }
            .map_err_reject()
        });

    let checkpoint = warp::path!("api" / "v1" / "sync" / "checkpoints" / String)
        .and(warp::get())
        .and(principal.clone())
        .and(with_service.clone())
        .and_then(|source: String, who: Principal, service: Arc<FileService>| {
            async move {
                who.require_replicate()?;
                let source = decode(&source);
                let (instance_id, last_seq) = service.checkpoint(&source).await?;
                Ok::<_, Error>(json(
                    StatusCode::OK,
                    &serde_json::json!({ "instance_id": instance_id, "source": source, "last_seq": last_seq }),
                ))
            }
            .map_err_reject()
        });

    let missing = warp::path!("api" / "v1" / "sync" / "missing")
        .and(warp::post())
        .and(principal.clone())
        .and(with_service.clone())
        .and(warp::body::content_length_limit(MAX_MISSING_BODY).and(warp::body::bytes()))
        .and_then(|who: Principal, service: Arc<FileService>, body: bytes::Bytes| {
            async move {
                who.require_replicate()?;
                #[derive(Deserialize)]
                struct Contents {
                    sha256: Vec<String>,
                }
                let body: Contents = parse_json(&body, "{\"sha256\": [\"…\"]}")?;
                let missing = service.missing_contents(body.sha256).await?;
                Ok::<_, Error>(json(StatusCode::OK, &serde_json::json!({ "missing": missing })))
            }
            .map_err_reject()
        });

    let put_content = warp::path!("api" / "v1" / "sync" / "blobs" / String)
        .and(warp::put())
        .and(principal.clone())
        .and(with_service.clone())
        .and(warp::header::optional::<String>("content-range"))
        .and(body_chunks())
        .and_then(
            |sha256: String, who: Principal, service: Arc<FileService>, range: Option<String>, chunks: BodyChunks| {
                async move {
                    who.require_replicate()?;
                    let sha256 = decode(&sha256);
                    let Some(range) = range else {
                        service.receive_content(&sha256, chunks).await?;
                        return Ok::<_, Error>(StatusCode::NO_CONTENT.into_response());
                    };
                    let progress = service
                        .receive_content_piece(&sha256, parse_content_range(&range)?, chunks)
                        .await?;
                    let mut response = StatusCode::NO_CONTENT.into_response();
                    response.headers_mut().insert("upload-offset", progress.offset.into());
                    Ok(response)
                }
                .map_err_reject()
            },
        );

    let content_progress = warp::path!("api" / "v1" / "sync" / "blobs" / String)
        .and(warp::get())
        .and(principal.clone())
        .and(with_service.clone())
        .and_then(|sha256: String, who: Principal, service: Arc<FileService>| {
            async move {
                who.require_replicate()?;
                let progress = service.content_progress(&decode(&sha256)).await?;
                Ok::<_, Error>(json(StatusCode::OK, &progress))
            }
            .map_err_reject()
        });

    let apply = warp::path!("api" / "v1" / "sync" / "apply")
        .and(warp::post())
        .and(principal)
        .and(with_service)
        .and(warp::body::content_length_limit(MAX_APPLY_BODY).and(warp::body::bytes()))
        .and_then(|who: Principal, service: Arc<FileService>, body: bytes::Bytes| {
            async move {
                who.require_replicate()?;
                #[derive(Deserialize)]
                struct Batch {
                    source: String,
                    checkpoint: i64,
                    #[serde(default)]
                    r#final: bool,
                    changes: Vec<Change>,
                }
                let batch: Batch = parse_json(
                    &body,
                    "{\"source\": \"<instance id>\", \"checkpoint\": N, \"final\": bool, \"changes\": [...]}",
                )?;
                let report = service
                    .apply_changes(&batch.source, batch.checkpoint, batch.r#final, batch.changes)
                    .await?;
                Ok::<_, Error>(json(StatusCode::OK, &report))
            }
            .map_err_reject()
        });

    super::first_of(vec![
        changes.boxed(),
        content.boxed(),
        checkpoint.boxed(),
        missing.boxed(),
        put_content.boxed(),
        content_progress.boxed(),
        apply.boxed(),
    ])
}

/// The query of `GET /changes`.
struct FeedQuery {
    since: i64,
    limit: u32,
    wait: Duration,
    exclude_origin: Option<String>,
}

impl FeedQuery {
    fn parse(params: Vec<(String, String)>) -> Result<FeedQuery, Error> {
        let mut query = FeedQuery {
            since: 0,
            limit: DEFAULT_LIMIT,
            wait: Duration::ZERO,
            exclude_origin: None,
        };
        for (key, value) in params {
            let number = |what: &'static str| {
                value.parse::<i64>().map_err(|_| {
                    Error::invalid(
                        match what {
                            "since" => "invalid_since",
                            "limit" => "invalid_limit",
                            _ => "invalid_wait",
                        },
                        format!("{what} must be a whole number, not {value:?}"),
                    )
                })
            };
            let not_negative = |what: &'static str, code: &'static str| {
                number(what).and_then(|n| {
                    if n < 0 {
                        Err(Error::invalid(code, format!("{what} must not be negative, not {n}")))
                    } else {
                        Ok(n)
                    }
                })
            };
            match key.as_str() {
                "since" => query.since = not_negative("since", "invalid_since")?,
                // Out-of-range values are refused by the service with the allowed range.
                "limit" => query.limit = number("limit")?.clamp(0, u32::MAX as i64) as u32,
                "wait" => query.wait = Duration::from_secs(not_negative("wait", "invalid_wait")?.min(3600) as u64),
                "exclude_origin" => query.exclude_origin = Some(value),
                _ => {}
            }
        }
        Ok(query)
    }
}

/// `Content-Range: bytes START-END/TOTAL` of a piece of a sync content.
fn parse_content_range(raw: &str) -> Result<ContentRange, Error> {
    let invalid = || {
        Error::invalid(
            "invalid_content_range",
            format!("Content-Range {raw:?} is not `bytes START-END/TOTAL`"),
        )
    };
    let spec = raw.trim().strip_prefix("bytes ").ok_or_else(invalid)?;
    let (span, total) = spec.split_once('/').ok_or_else(invalid)?;
    let (start, end) = span.split_once('-').ok_or_else(invalid)?;
    let parse = |v: &str| v.trim().parse::<u64>().map_err(|_| invalid());
    let (start, end, total) = (parse(start)?, parse(end)?, parse(total)?);
    if start > end || end >= total {
        return Err(invalid());
    }
    Ok(ContentRange { start, total })
}

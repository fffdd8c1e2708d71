//! Gives one user many tiny files through the API (concurrent but bounded), then measures
//! `GET /files/` latency over one keep-alive connection.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::multipart::{Form, Part};
use serde::Serialize;

use crate::data::tiny_csv;
use crate::hammer::{self, Target};
use crate::server::{self, Server};
use crate::upload::client;

/// Bound on populating, whatever the count: a slow catalog ends the section, not the run.
const POPULATE_TIMEOUT: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, Clone, Serialize)]
pub struct ListResult {
    pub files: usize,
    /// Files the user actually had when measured (populating may have failed or timed out).
    pub files_present: usize,
    pub populate_s: f64,
    pub populate_errors: u64,
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub response_bytes: u64,
    /// `GET /files/` right after a change to one of the files (a new description): the
    /// listing the server kept is stale, so this is a miss.
    pub after_change_p50_ms: f64,
    pub after_change_p99_ms: f64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Uploads files `from..to` for `user`, at most `concurrency` at once. Returns (created, errors).
pub async fn populate(
    server: &Server,
    user: i64,
    from: usize,
    to: usize,
    concurrency: usize,
) -> (usize, u64, Option<String>) {
    let client = client();
    let bearer = server::token(user);
    let session = uuid::Uuid::new_v4().to_string();
    let deadline = Instant::now() + POPULATE_TIMEOUT;
    let results: Vec<Result<(), String>> = futures_util::stream::iter(from..to)
        .map(|i| {
            let (client, bearer, session, url) =
                (client.clone(), bearer.clone(), session.clone(), server.url("/files/"));
            async move {
                if Instant::now() > deadline {
                    return Err("populate timeout".to_string());
                }
                upload_tiny(&client, &url, &bearer, &session, i).await
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    let first_error = results.iter().find_map(|r| r.clone().err());
    (created, (results.len() - created) as u64, first_error)
}

/// One tiny file for `user`, made active for `session`.
pub async fn upload_one(server: &Server, user: i64, session: &str) -> Result<(), String> {
    upload_tiny(&client(), &server.url("/files/"), &server::token(user), session, 0).await
}

async fn upload_tiny(client: &reqwest::Client, url: &str, bearer: &str, session: &str, i: usize) -> Result<(), String> {
    let form = Form::new()
        .text("file_name", format!("file-{i:05}"))
        .text("session_id", session.to_string())
        .text("description", format!("tiny file {i}"))
        .part("file", Part::text(tiny_csv(i)).file_name(format!("file-{i:05}.csv")));
    let resp = client
        .post(url)
        .bearer_auth(bearer)
        .multipart(form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match resp.status().as_u16() {
        201 => Ok(()),
        status => Err(format!("status {status}: {}", resp.text().await.unwrap_or_default())),
    }
}

/// Sequential `GET /files/` on one connection: latency, not throughput, is the question.
pub async fn measure(server: &Server, user: i64, max_samples: u64, duration: Duration) -> hammer::LoadResult {
    let target = Target {
        addr: server.addr,
        path: "/api/v1/files/".into(),
        bearer: format!("Bearer {}", server::token(user)),
    };
    // A few requests first so the first sample does not pay for connection set-up or cold caches.
    hammer::run(&target, 1, Duration::from_secs(2), 5).await;
    hammer::run(&target, 1, duration, max_samples).await
}

/// How many files the user's listing actually holds.
pub async fn count(server: &Server, user: i64) -> usize {
    let resp = client()
        .get(server.url("/files/"))
        .bearer_auth(server::token(user))
        .send()
        .await;
    match resp {
        Ok(resp) => resp
            .json::<Vec<serde_json::Value>>()
            .await
            .map(|v| v.len())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Changes made before each timed listing of [`after_change`].
const CHANGES: usize = 40;

/// Each of [`CHANGES`] rounds gives `file-00000` a new description, then times one
/// `GET /files/` (the whole body): latencies in µs, sorted, and how many rounds failed.
pub async fn after_change(server: &Server, user: i64) -> (Vec<u32>, u64) {
    let client = client();
    let bearer = server::token(user);
    let mut latencies = Vec::with_capacity(CHANGES);
    let mut errors = 0;
    for round in 0..CHANGES {
        let changed = client
            .patch(server.url("/files/file-00000"))
            .bearer_auth(&bearer)
            .json(&serde_json::json!({ "description": format!("changed {round}") }))
            .send()
            .await;
        if !changed.is_ok_and(|r| r.status().is_success()) {
            errors += 1;
            continue;
        }
        let started = Instant::now();
        let listed = match client.get(server.url("/files/")).bearer_auth(&bearer).send().await {
            Ok(resp) if resp.status().is_success() => resp.bytes().await.is_ok(),
            _ => false,
        };
        if listed {
            latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        } else {
            errors += 1;
        }
    }
    latencies.sort_unstable();
    (latencies, errors)
}

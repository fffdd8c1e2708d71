//! Upload + summarize of one CSV, its body streamed from disk (never held in memory), timed
//! from the first byte sent to the server's 201.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::server::{self, Server};

const CHUNK: usize = 256 * 1024;
/// Bound on one upload, whatever the size: a stuck server does not hang the run.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Serialize)]
pub struct UploadResult {
    pub size_mb: u64,
    pub bytes: u64,
    pub status: u16,
    /// From the request's start to the response's end.
    pub seconds: f64,
    pub mb_per_s: f64,
    /// From the request's start to the last body byte handed to the socket; the rest of
    /// `seconds` is what the server did after receiving (analysis, rename, catalog).
    pub body_sent_s: Option<f64>,
    /// Server CPU time (all threads) spent on the upload; above `seconds` means both cores worked.
    pub server_cpu_s: f64,
    pub idle_rss_mib: f64,
    pub peak_rss_mib: f64,
    pub row_count: Option<u64>,
    pub error: Option<String>,
    /// The whole file downloaded again (`GET /files/{name}/content`), streamed and dropped.
    pub download_s: Option<f64>,
    /// Peak RSS after the download.
    pub peak_rss_after_download_mib: Option<f64>,
    /// The same file through tus (`/api/v1/uploads/`) in one PATCH, from the creation to
    /// the last PATCH's 204 (the file committed, as the multipart upload's 201).
    pub tus_s: Option<f64>,
    /// The same through tus in PATCHes of 8 MiB, as a client on a bad link would send it.
    pub tus_chunked_s: Option<f64>,
}

/// Uploads `csv` as user `user` to a running server and reads its VmHWM right after.
pub async fn upload(server: &Server, user: i64, csv: &Path, size_mb: u64, idle_rss_mib: f64) -> UploadResult {
    let bytes = std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0);
    let sent_at = Arc::new(Mutex::new(None));
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let outcome = send(server, user, csv, size_mb, bytes, sent_at.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_mib = server.peak_rss_mib();
    let server_cpu_s = server.cpu_seconds() - cpu_before;
    let body_sent_s = sent_at
        .lock()
        .unwrap()
        .map(|t: Instant| t.duration_since(started).as_secs_f64());
    let (status, row_count, mut error) = match outcome {
        Ok((status, json)) if status == 201 => (status, json["row_count"].as_u64(), None),
        Ok((status, json)) => (status, None, Some(json.to_string())),
        Err(e) => (0, None, Some(e)),
    };
    let mut download_s = None;
    let mut peak_rss_after_download_mib = None;
    let (mut tus_s, mut tus_chunked_s) = (None, None);
    if status == 201 {
        match download(server, user, size_mb, bytes).await {
            Ok(s) => {
                download_s = Some(s);
                peak_rss_after_download_mib = Some(server.peak_rss_mib());
            }
            Err(e) => error = Some(e),
        }
        for (chunk, slot) in [(None, &mut tus_s), (Some(TUS_CHUNK), &mut tus_chunked_s)] {
            let name = format!("load-{size_mb}MB-tus-{}", chunk.unwrap_or(bytes));
            match tus_upload(server, user, csv, &name, bytes, chunk).await {
                Ok(s) => *slot = Some(s),
                Err(e) => error = Some(e),
            }
        }
    }
    UploadResult {
        size_mb,
        bytes,
        status,
        seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        body_sent_s,
        server_cpu_s,
        idle_rss_mib,
        peak_rss_mib,
        row_count,
        error,
        download_s,
        peak_rss_after_download_mib,
        tus_s,
        tus_chunked_s,
    }
}

/// PATCH size of the chunked tus upload.
const TUS_CHUNK: u64 = 8 << 20;

/// Uploads `csv` through tus as `name`: a creation, then PATCHes of `chunk` bytes (the
/// whole file in one without), each streamed from disk. The seconds from the creation to
/// the last PATCH's answer, which comes once the file is committed.
async fn tus_upload(
    server: &Server,
    user: i64,
    csv: &Path,
    name: &str,
    bytes: u64,
    chunk: Option<u64>,
) -> Result<f64, String> {
    use base64::Engine;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let metadata = format!(
        "file_name {},session_id {},description {},filename {}",
        b64(name),
        b64(&uuid::Uuid::new_v4().to_string()),
        b64("generated CSV through tus"),
        b64("load.csv")
    );
    let token = server::token(user);
    let started = Instant::now();
    let created = client()
        .post(server.url("/uploads/"))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", bytes)
        .header("Upload-Metadata", metadata)
        .send()
        .await
        .map_err(|e| format!("tus creation: {e}"))?;
    if created.status() != 201 {
        return Err(format!("tus creation: status {}", created.status()));
    }
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("tus creation: no Location")?
        .to_string();
    let url = format!("{}{location}", server.url("").trim_end_matches("/api/v1"));
    let mut offset = 0u64;
    while offset < bytes {
        let len = chunk.unwrap_or(bytes).min(bytes - offset);
        let mut file = tokio::fs::File::open(csv).await.map_err(|e| e.to_string())?;
        tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| e.to_string())?;
        let body = reqwest::Body::wrap_stream(file_chunks(file.take(len), Arc::new(Mutex::new(None))));
        let resp = client()
            .patch(&url)
            .bearer_auth(&token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Content-Length", len)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("tus PATCH at {offset}: {e}"))?;
        if resp.status() != 204 {
            let status = resp.status();
            return Err(format!(
                "tus PATCH at {offset}: status {status}: {}",
                resp.text().await.unwrap_or_default()
            ));
        }
        offset += len;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Downloads the uploaded file whole, dropping its bytes; the seconds it took.
async fn download(server: &Server, user: i64, size_mb: u64, bytes: u64) -> Result<f64, String> {
    let started = Instant::now();
    let mut resp = client()
        .get(server.url(&format!("/files/load-{size_mb}MB/content")))
        .bearer_auth(server::token(user))
        .send()
        .await
        .map_err(|e| format!("download: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("download: status {}", resp.status()));
    }
    let mut got = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("download: {e}"))? {
        got += chunk.len() as u64;
    }
    if got != bytes {
        return Err(format!("download: {got} bytes of {bytes}"));
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn send(
    server: &Server,
    user: i64,
    csv: &Path,
    size_mb: u64,
    bytes: u64,
    sent_at: Arc<Mutex<Option<Instant>>>,
) -> Result<(u16, serde_json::Value), String> {
    let file = tokio::fs::File::open(csv)
        .await
        .map_err(|e| format!("{}: {e}", csv.display()))?;
    let body = reqwest::Body::wrap_stream(file_chunks(file, sent_at));
    let part = Part::stream_with_length(body, bytes)
        .file_name("load.csv")
        .mime_str("text/csv")
        .map_err(|e| e.to_string())?;
    let form = Form::new()
        .text("file_name", format!("load-{size_mb}MB"))
        .text("session_id", uuid::Uuid::new_v4().to_string())
        .text("description", format!("generated {size_mb} MB CSV"))
        .part("file", part);
    let resp = client()
        .post(server.url("/files/"))
        .bearer_auth(server::token(user))
        .multipart(form)
        .send()
        .await
        .map_err(|e| format!("upload: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("response: {e}"))?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    ))
}

/// The file as a stream of chunks; notes the instant the last one was read.
fn file_chunks<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    file: R,
    sent_at: Arc<Mutex<Option<Instant>>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold((file, sent_at), |(mut file, sent_at)| async move {
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => {
                *sent_at.lock().unwrap() = Some(Instant::now());
                None
            }
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (file, sent_at)))
            }
            Err(e) => Some((Err(e), (file, sent_at))),
        }
    })
}

/// A client that never goes through a proxy: the benchmark only talks to 127.0.0.1.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(UPLOAD_TIMEOUT)
        .build()
        .expect("reqwest client")
}

//! `GET`/`HEAD /files/{name}/content`: a stored file's bytes with ETag, Last-Modified, conditional requests and single byte ranges.

use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::server::StreamFile;
use crate::model::FileRecord;
use crate::storage::Content;

/// Builds the response for a download of `record` whose bytes are open in `content`.
pub fn respond(record: &FileRecord, content: Content, request: &HeaderMap, head: bool) -> Response {
    let size = content.len().unwrap_or(record.size_bytes);
    let etag = format!("\"{}\"", record.sha256);
    let mut response = Response::default();
    let headers = response.headers_mut();
    set(headers, header::ETAG, &etag);
    set(
        headers,
        header::LAST_MODIFIED,
        &record.updated_at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    );
    set(headers, header::ACCEPT_RANGES, "bytes");
    set(headers, header::CONTENT_TYPE, content_type(&record.extension));
    set(
        headers,
        header::CONTENT_DISPOSITION,
        &content_disposition(&format!("{}.{}", record.file_name, record.extension)),
    );

    if request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &etag))
    {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    // If-Range: a range applies only while the client's copy is current.
    let range_allowed = request
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| range_allowed);
    let (start, len) = match range.map(|r| parse_range(r, size)) {
        None | Some(Range::Ignored) => (0, size),
        Some(Range::Unsatisfiable) => {
            let mut response = super::error_response(&crate::error::Error::invalid(
                "range_not_satisfiable",
                format!("the range is outside the file's {size} bytes"),
            ));
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            set(
                response.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            return response;
        }
        Some(Range::Bytes(start, end)) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(
                response.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{size}"),
            );
            (start, end - start + 1)
        }
    };
    set(response.headers_mut(), header::CONTENT_LENGTH, &len.to_string());
    if !head && len > 0 {
        response.extensions_mut().insert(StreamFile::new(content, start, len));
    }
    response.into_response()
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn content_type(format: &str) -> &'static str {
    crate::formats::Format::from_extension(format).map_or("application/octet-stream", |f| f.content_type())
}

/// RFC 6266: an ASCII fallback plus the exact UTF-8 name.
pub(super) fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| if c.is_ascii() && c != '"' && c != '\\' { c } else { '_' })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(filename, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn etag_matches(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

#[derive(Debug, PartialEq)]
enum Range {
    /// Not a single byte range we serve (several ranges, other units, garbage): send it all.
    Ignored,
    Unsatisfiable,
    /// Inclusive first and last byte.
    Bytes(u64, u64),
}

fn parse_range(header: &str, size: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return Range::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size.saturating_sub(1))),
            Err(_) => None,
        },
        (false, true) => first.parse::<u64>().ok().map(|f| (f, size.saturating_sub(1))),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(f), Ok(l)) if f <= l => Some((f, l.min(size.saturating_sub(1)))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Range::Ignored,
        Some((first, _)) if first >= size => Range::Unsatisfiable,
        Some((first, last)) => Range::Bytes(first, last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Bytes(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::Bytes(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::Bytes(90, 99));
        assert_eq!(parse_range("bytes=95-200", 100), Range::Bytes(95, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Ignored);
        assert_eq!(parse_range("items=0-1", 100), Range::Ignored);
        assert_eq!(parse_range("bytes=5-1", 100), Range::Ignored);
    }

    #[test]
    fn disposition_keeps_unicode_names() {
        assert_eq!(
            content_disposition("a b.csv"),
            "attachment; filename=\"a b.csv\"; filename*=UTF-8''a%20b%2Ecsv"
        );
        assert!(content_disposition("é.csv").starts_with("attachment; filename=\"_.csv\"; filename*=UTF-8''%C3%A9"));
    }
}

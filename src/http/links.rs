//! Share links: `POST`/`GET /files/{name}/links` and `DELETE /files/{name}/links/{id}` for the file's owner, and `GET`/`HEAD /links/{secret}`, the file's bytes for anyone holding the address.
//!
//! The address is absolute: `PUBLIC_URL` when it is set, else built from the request that
//! made the link (`X-Forwarded-Proto` and `X-Forwarded-Host` from a proxy in front, else
//! `Host`). A download answers as the
//! owner's own does (ETag, Range, conditional requests) and counts once per `GET` that
//! sends bytes (200 or 206): a `HEAD`, a 304 or a 416 counts nothing.

use std::sync::Arc;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{decode, download, first_of, json, json_body, parse_json, MapErrReject};
use crate::error::Error;
use crate::model::UserId;
use crate::service::FileService;

/// What a link's download says to caches: a browser may keep the bytes but must ask again
/// (so an expired or revoked link stops at once), and no shared cache keeps them.
const SHARED_CACHE_CONTROL: &str = "private, no-cache";

pub(super) fn routes(
    service: Arc<FileService>,
    user: BoxedFilter<(UserId,)>,
    public_url: Option<String>,
) -> BoxedFilter<(Response,)> {
    let public_url: Option<Arc<str>> = public_url.map(Into::into);
    let with_public_url = warp::any().map(move || public_url.clone());
    let with_service = warp::any().map(move || service.clone());
    let links = warp::path!("api" / "v1" / "files" / String / "links");
    let one_link = warp::path!("api" / "v1" / "files" / String / "links" / String);
    let shared = warp::path!("api" / "v1" / "links" / String);
    let get_or_head = warp::get().map(|| false).or(warp::head().map(|| true)).unify();

    let create = links
        .and(warp::post())
        .and(user.clone())
        .and(with_service.clone())
        .and(with_public_url)
        .and(warp::header::headers_cloned())
        .and(json_body())
        .and_then(
            |name: String,
             user,
             service: Arc<FileService>,
             public_url: Option<Arc<str>>,
             headers: HeaderMap,
             body: bytes::Bytes| {
                async move {
                    #[derive(Deserialize)]
                    #[serde(deny_unknown_fields)]
                    struct NewLink {
                        expires_in: Option<i64>,
                        max_downloads: Option<i64>,
                    }
                    let body: NewLink = parse_json(&body, "{\"expires_in\": seconds, \"max_downloads\"?: n}")?;
                    let made = service
                        .create_share_link(user, &decode(&name), body.expires_in, body.max_downloads)
                        .await?;
                    let mut answer = serde_json::to_value(&made.link).map_err(Error::internal)?;
                    let base = match public_url.as_deref() {
                        Some(url) => url.to_string(),
                        None => public_base(&headers),
                    };
                    answer["url"] = format!("{base}/api/v1/links/{}", made.secret).into();
                    Ok::<_, Error>(json(StatusCode::CREATED, &answer))
                }
                .map_err_reject()
            },
        );

    let list = links
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|name: String, user, service: Arc<FileService>| {
            async move {
                let links = service.share_links(user, &decode(&name)).await?;
                Ok::<_, Error>(json(StatusCode::OK, &links))
            }
            .map_err_reject()
        });

    let revoke = one_link
        .and(warp::delete())
        .and(user)
        .and(with_service.clone())
        .and_then(|name: String, id: String, user, service: Arc<FileService>| {
            async move {
                service.revoke_share_link(user, &decode(&name), &decode(&id)).await?;
                Ok::<_, Error>(StatusCode::NO_CONTENT.into_response())
            }
            .map_err_reject()
        });

    let download = shared
        .and(get_or_head)
        .and(with_service)
        .and(warp::header::headers_cloned())
        .and_then(
            |secret: String, head: bool, service: Arc<FileService>, headers: HeaderMap| {
                async move {
                    let (shared, content) = service.open_shared(&secret).await?;
                    let mut response = download::respond(&shared.record, content, &headers, head);
                    let sends_bytes = matches!(response.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
                    if !head && sends_bytes {
                        // Counted before the first byte leaves; refused, the open bytes are dropped.
                        service.count_shared_download(&shared).await?;
                    }
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static(SHARED_CACHE_CONTROL));
                    Ok::<_, Error>(response)
                }
                .map_err_reject()
            },
        );

    first_of(vec![create.boxed(), list.boxed(), revoke.boxed(), download.boxed()])
}

/// `scheme://host[:port]` of the address the client used: a proxy's `X-Forwarded-Proto`
/// and `X-Forwarded-Host` (their first values) when it sends them, else `Host`.
fn public_base(headers: &HeaderMap) -> String {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = match first("x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = first("x-forwarded-host")
        .filter(|h| is_authority(h))
        .or_else(|| first("host").filter(|h| is_authority(h)))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// A host name or address with an optional port, and nothing that could end the
/// authority part of a URL early.
fn is_authority(text: &str) -> bool {
    text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn addresses_follow_the_proxy_then_the_host() {
        assert_eq!(
            public_base(&headers(&[("host", "127.0.0.1:8002")])),
            "http://127.0.0.1:8002"
        );
        assert_eq!(
            public_base(&headers(&[
                ("host", "10.0.0.5:8002"),
                ("x-forwarded-proto", "https, http"),
                ("x-forwarded-host", "files.example.com"),
            ])),
            "https://files.example.com"
        );
        assert_eq!(
            public_base(&headers(&[
                ("host", "[::1]:8002"),
                ("x-forwarded-host", "evil.example/x?")
            ])),
            "http://[::1]:8002",
            "a forwarded host that is not one is not used"
        );
        assert_eq!(public_base(&HeaderMap::new()), "http://localhost");
    }
}

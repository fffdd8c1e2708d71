//! The desktop web page: its embedded assets (`src/web/`), served at `/` and `/ui/{asset}` with strict security headers.
//!
//! The page is plain HTML, CSS and JavaScript modules over the public API, compiled into
//! the binary so it works offline and needs no build step. Assets are revalidated on each
//! load (`Cache-Control: no-cache` + `ETag`), so a new binary's page is never mixed with an
//! old cached script, and an unchanged one costs a 304.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

/// The page's routes, as (method, path template): not API routes, so not in `openapi.json`.
pub const PAGE_ROUTES: &[(&str, &str)] = &[("GET", "/"), ("GET", "/ui/{asset}")];

/// Scripts and styles only from this origin (no inline script, no eval), API calls only
/// to it, never framed. SVG charts are built as DOM nodes, so no `data:` images either.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../web/index.html"),
};

/// Everything under `/ui/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/api.js"),
    },
    Asset {
        name: "markdown.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/markdown.js"),
    },
    Asset {
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/charts.js"),
    },
    Asset {
        name: "grid.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/grid.js"),
    },
    Asset {
        name: "explore.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/explore.js"),
    },
    Asset {
        name: "sql.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/sql.js"),
    },
    Asset {
        name: "share.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/share.js"),
    },
    // tus-js-client's browser build (npm tus-js-client 4.3.1, dist/tus.min.js, MIT; its
    // license beside it): the page's resumable uploads. It sets `window.tus`.
    Asset {
        name: "tus.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/vendor/tus.min.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../web/icon.svg"),
    },
];

/// A strong ETag per asset (quoted, first 128 bits of its SHA-256), computed once.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                (a.name, format!("\"{}\"", hex::encode(&digest[..16])))
            })
            .collect()
    });
    tags.iter()
        .find(|(name, _)| *name == asset.name)
        .map(|(_, tag)| tag.as_str())
        .expect("every asset has a tag")
}

/// `GET /` (the page) and `GET /ui/{asset}`; an unknown asset falls through to the API's 404.
pub fn routes() -> BoxedFilter<(Response,)> {
    let if_none_match = warp::header::optional::<String>("if-none-match");
    let index = warp::path::end()
        .and(warp::get())
        .and(if_none_match.clone())
        .map(|tag: Option<String>| respond(&INDEX, tag.as_deref()));
    let asset = warp::path!("ui" / String).and(warp::get()).and(if_none_match).and_then(
        |name: String, tag: Option<String>| async move {
            match ASSETS.iter().find(|a| a.name == name) {
                Some(asset) => Ok(respond(asset, tag.as_deref())),
                None => Err(warp::reject::not_found()),
            }
        },
    );
    index.or(asset).unify().boxed()
}

fn respond(asset: &'static Asset, if_none_match: Option<&str>) -> Response {
    let tag = etag(asset);
    let fresh = if_none_match.is_some_and(|h| h.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::ETAG, HeaderValue::from_static(tag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // For browsers without CSP frame-ancestors.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_loads_is_embedded() {
        // The page and scripts name assets by path; each must be one we serve.
        let mut referenced = Vec::new();
        for asset in std::iter::once(&INDEX).chain(ASSETS) {
            for part in asset.body.split("/ui/").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                    .collect();
                referenced.push(name);
            }
            for part in asset.body.split("from './").skip(1) {
                referenced.push(part.split('\'').next().unwrap().to_string());
            }
        }
        assert!(referenced.iter().any(|n| n == "app.js"), "{referenced:?}");
        for name in referenced {
            assert!(ASSETS.iter().any(|a| a.name == name), "{name} is not embedded");
        }
    }

    #[test]
    fn the_upload_picker_accepts_every_format_the_service_reads() {
        let accept = INDEX
            .body
            .split("accept=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the file input has an accept attribute");
        let listed: Vec<&str> = accept.split(',').map(|e| e.trim_start_matches('.')).collect();
        assert_eq!(listed, *crate::formats::EXTENSIONS);
    }

    #[test]
    fn etags_are_distinct_and_quoted() {
        let tags: std::collections::HashSet<&str> = std::iter::once(&INDEX).chain(ASSETS).map(etag).collect();
        assert_eq!(tags.len(), ASSETS.len() + 1);
        assert!(tags
            .iter()
            .all(|t| t.starts_with('"') && t.ends_with('"') && t.len() == 34));
    }
}

//! Share links against the real server, on the stack the suite runs on: made, used without
//! a token (Range, ETag, HEAD), listed without their secrets, and refused after expiry,
//! revocation, their last download, a content change and their file's delete; concurrent
//! downloads (on two replicas when the catalog is PostgreSQL) never pass a link's limit.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{enc, new_session, off_runtime, sales_csv, sha256_hex, status_json, Stack, TestServer};
use crate::sync_kinds::change_stored_content;

/// `POST /files/{name}/links` as `user` with `body`.
async fn make_link(server: &TestServer, user: i64, name: &str, body: Value) -> (u16, Value) {
    make_link_with(server, user, name, body, &[]).await
}

async fn make_link_with(
    server: &TestServer,
    user: i64,
    name: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = server
        .client
        .post(server.url(&format!("/files/{}/links", enc(name))))
        .bearer_auth(server.token(user))
        .json(&body);
    for (key, value) in headers {
        request = request.header(*key, *value);
    }
    status_json(request.send().await.expect("POST links")).await
}

/// A new link's address (asserting it was made).
async fn link_url(server: &TestServer, name: &str, body: Value) -> String {
    let (status, link) = make_link(server, 1, name, body).await;
    assert_eq!(status, 201, "{link}");
    link["url"].as_str().expect("url").to_string()
}

/// `GET` (or `HEAD`) of a link's address, without a token.
async fn fetch(server: &TestServer, url: &str, head: bool, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = if head {
        server.client.head(url)
    } else {
        server.client.get(url)
    };
    for (key, value) in headers {
        request = request.header(*key, *value);
    }
    request.send().await.expect("GET link")
}

/// Status and error code of a link's answer.
async fn refusal(server: &TestServer, url: &str) -> (u16, String) {
    let (status, body) = status_json(fetch(server, url, false, &[]).await).await;
    (status, body["code"].as_str().unwrap_or_default().to_string())
}

async fn links_of(server: &TestServer, name: &str) -> Value {
    let (status, links) = server.get(1, &format!("/files/{}/links", enc(name))).await;
    assert_eq!(status, 200, "{links}");
    links
}

/// The `expires_at` of link `id` of file "sales", as listed.
async fn listed_expiry(server: &TestServer, id: &Value) -> String {
    let links = links_of(server, "sales").await;
    let link = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == *id)
        .expect("listed");
    link["expires_at"].as_str().unwrap().to_string()
}

fn secret_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[tokio::test]
async fn a_link_downloads_without_a_token_until_it_is_revoked() {
    let server = TestServer::start().await;
    let bytes = sales_csv();
    assert_eq!(
        server.upload(1, "sales 2024", &new_session(), "s.csv", bytes).await.0,
        201
    );
    let (status, link) = make_link(
        &server,
        1,
        "sales 2024",
        json!({ "expires_in": 600, "max_downloads": 5 }),
    )
    .await;
    assert_eq!(status, 201, "{link}");
    let url = link["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{}/api/v1/links/", server.base)),
        "an absolute address on this server: {url}"
    );
    assert_eq!(secret_of(&url).len(), 43, "{url}");
    assert_eq!(
        (link["max_downloads"].as_u64(), link["downloads"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(link["state"], "active");
    let expires = chrono::DateTime::parse_from_rfc3339(link["expires_at"].as_str().unwrap()).unwrap();
    let lifetime = expires.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((590..=600).contains(&lifetime), "{link}");

    // The bytes, named after the file, with the owner's download's ETag and ranges.
    let resp = fetch(&server, &url, false, &[]).await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(resp.text().await.unwrap(), bytes);
    let etag = format!("\"{}\"", sha256_hex(bytes.as_bytes()));
    assert_eq!(headers["etag"].to_str().unwrap(), etag);
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("sales%202024%2Ecsv"));
    assert_eq!(headers["cache-control"], "private, no-cache");
    let resp = fetch(&server, &url, false, &[("range", "bytes=0-3")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.text().await.unwrap(), &bytes[..4]);
    // Neither a 304, a HEAD nor a 416 counts a download.
    assert_eq!(
        fetch(&server, &url, false, &[("if-none-match", &etag)]).await.status(),
        304
    );
    let head = fetch(&server, &url, true, &[]).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], bytes.len().to_string().as_str());
    assert_eq!(
        fetch(&server, &url, false, &[("range", "bytes=9999-")]).await.status(),
        416
    );

    // Listed with its downloads, never with its secret.
    let links = links_of(&server, "sales 2024").await;
    assert_eq!(links.as_array().unwrap().len(), 1, "{links}");
    assert_eq!(
        (links[0]["id"].clone(), links[0]["downloads"].as_u64()),
        (link["id"].clone(), Some(2))
    );
    assert!(links[0].get("url").is_none(), "{links}");
    assert!(!links.to_string().contains(secret_of(&url)), "{links}");
    assert_secret_kept_hashed(&server, secret_of(&url));

    // Revoked: 404 from now on, and gone from the list.
    let id = link["id"].as_str().unwrap();
    let path = format!("/files/{}/links/{id}", enc("sales 2024"));
    assert_eq!(server.delete(1, &path).await.0, 204);
    assert_eq!(refusal(&server, &url).await, (404, "not_found".to_string()));
    assert_eq!(fetch(&server, &url, true, &[]).await.status(), 404);
    assert_eq!(server.delete(1, &path).await.0, 404, "revoked once");
    assert_eq!(links_of(&server, "sales 2024").await, json!([]));

    // Behind a proxy, the address is the one the client used.
    let (status, link) = make_link_with(
        &server,
        1,
        "sales 2024",
        json!({ "expires_in": 60 }),
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "files.example.com"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{link}");
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with("https://files.example.com/api/v1/links/"),
        "{link}"
    );
    assert_eq!(link["max_downloads"], Value::Null);
}

#[tokio::test]
async fn public_url_names_the_links_address_whatever_the_request_says() {
    let server = TestServer::start_with(&[("PUBLIC_URL", "https://files.example.com/store/")]).await;
    assert_eq!(
        server.upload(1, "sales", &new_session(), "s.csv", sales_csv()).await.0,
        201
    );
    let (status, link) = make_link_with(
        &server,
        1,
        "sales",
        json!({ "expires_in": 60 }),
        &[("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "http")],
    )
    .await;
    assert_eq!(status, 201, "{link}");
    let url = link["url"].as_str().unwrap();
    let path = url
        .strip_prefix("https://files.example.com/store")
        .unwrap_or_else(|| panic!("not under PUBLIC_URL: {url}"));
    assert!(path.starts_with("/api/v1/links/"), "{url}");
    // A proxy that serves the service under /store strips it: the rest is this server's.
    let response = fetch(&server, &format!("{}{path}", server.base), false, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), sales_csv());
}

/// The catalog holds the secret's SHA-256, never the secret.
fn assert_secret_kept_hashed(server: &TestServer, secret: &str) {
    let hash = sha256_hex(secret.as_bytes());
    match &server.db {
        None => {
            let folder = server.data.path().join("data");
            let mut stored = Vec::new();
            for name in ["files.db", "files.db-wal"] {
                stored.extend(std::fs::read(folder.join(name)).unwrap_or_default());
            }
            let text = String::from_utf8_lossy(&stored);
            assert!(text.contains(&hash), "the secret's hash is in the catalog");
            assert!(!text.contains(secret), "the secret itself is not");
        }
        Some(db) => {
            let (hashed, plain) = off_runtime(|| {
                let mut c = db.connect();
                let mut count = |sql: &str, value: &str| -> i64 { c.query_one(sql, &[&value]).unwrap().get(0) };
                (
                    count("SELECT COUNT(*) FROM share_links WHERE secret_sha256 = $1", &hash),
                    count(
                        "SELECT COUNT(*) FROM share_links l WHERE strpos(l::text, $1) > 0",
                        secret,
                    ),
                )
            });
            assert_eq!((hashed, plain), (1, 0));
        }
    }
}

#[tokio::test]
async fn a_link_stops_at_its_expiry_and_its_last_download() {
    let server = TestServer::start().await;
    assert_eq!(
        server.upload(1, "sales", &new_session(), "s.csv", sales_csv()).await.0,
        201
    );

    let (status, brief) = make_link(&server, 1, "sales", json!({ "expires_in": 2 })).await;
    assert_eq!(status, 201, "{brief}");
    let (status, used) = make_link(&server, 1, "sales", json!({ "expires_in": 600, "max_downloads": 2 })).await;
    assert_eq!(status, 201, "{used}");
    let (brief_id, brief) = (brief["id"].clone(), brief["url"].as_str().unwrap().to_string());
    let (used_id, used) = (used["id"].clone(), used["url"].as_str().unwrap().to_string());
    assert_eq!(
        fetch(&server, &brief, false, &[]).await.status(),
        200,
        "served until it expires"
    );
    for _ in 0..2 {
        assert_eq!(fetch(&server, &used, false, &[]).await.status(), 200);
    }
    assert_eq!(refusal(&server, &used).await, (410, "link_used_up".to_string()));
    assert_eq!(fetch(&server, &used, true, &[]).await.status(), 410);

    let expires = chrono::DateTime::parse_from_rfc3339(&listed_expiry(&server, &brief_id).await).unwrap();
    let left = expires.signed_duration_since(chrono::Utc::now()).num_milliseconds();
    tokio::time::sleep(Duration::from_millis(left.max(0) as u64 + 50)).await;
    assert_eq!(refusal(&server, &brief).await, (410, "link_expired".to_string()));
    assert_eq!(fetch(&server, &brief, true, &[]).await.status(), 410);
    let links = links_of(&server, "sales").await;
    let listed = |id: &Value| {
        links
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == *id)
            .unwrap_or_else(|| panic!("{id} is not in {links}"))
            .clone()
    };
    assert_eq!(listed(&brief_id)["state"], "expired");
    let used_link = listed(&used_id);
    assert_eq!(
        (used_link["state"].as_str(), used_link["downloads"].as_u64()),
        (Some("used_up"), Some(2))
    );
}

#[tokio::test]
async fn concurrent_downloads_never_pass_a_links_limit() {
    let server = TestServer::start().await;
    // On PostgreSQL, half of the requests go to a replica sharing the catalog.
    let replica = match server.stack {
        Stack::Sqlite => None,
        _ => Some(server.replica(&[]).await),
    };
    assert_eq!(
        server.upload(1, "sales", &new_session(), "s.csv", sales_csv()).await.0,
        201
    );
    let url = link_url(&server, "sales", json!({ "expires_in": 600, "max_downloads": 3 })).await;
    let requests = (0..12).map(|i| {
        let target = match (&replica, i % 2) {
            (Some(replica), 1) => url.replace(&server.base, &replica.base),
            _ => url.clone(),
        };
        let client = server.client.clone();
        async move {
            let resp = client.get(&target).send().await.expect("GET link");
            let status = resp.status().as_u16();
            let body = resp.bytes().await.expect("body");
            (status, body)
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused = answers.iter().filter(|(status, _)| *status == 410).count();
    assert_eq!((served, refused), (3, 9), "{answers:?}");
    for (status, body) in &answers {
        if *status == 200 {
            assert_eq!(body.as_ref(), sales_csv().as_bytes());
        }
    }
    assert_eq!(links_of(&server, "sales").await[0]["downloads"], 3);
}

#[tokio::test]
async fn a_link_stops_when_its_files_content_changes_and_when_the_file_goes() {
    let server = TestServer::start().await;
    assert_eq!(
        server.upload(1, "sales", &new_session(), "s.csv", sales_csv()).await.0,
        201
    );
    let url = link_url(&server, "sales", json!({ "expires_in": 600 })).await;
    assert_eq!(fetch(&server, &url, false, &[]).await.status(), 200);

    // New bytes in storage (another program, or sync): the link never serves them.
    let changed = "date,product,sales\n2024-02-01,fig,9\n";
    change_stored_content(&server, 1, "sales", changed.as_bytes()).await;
    assert_eq!(refusal(&server, &url).await, (410, "link_content_changed".to_string()));
    assert_eq!(links_of(&server, "sales").await[0]["state"], "content_changed");

    // A link to the new content follows the file through a rename.
    let fresh = link_url(&server, "sales", json!({ "expires_in": 600 })).await;
    let resp = server
        .client
        .patch(server.url("/files/sales"))
        .bearer_auth(server.token(1))
        .json(&json!({ "file_name": "renamed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = fetch(&server, &fresh, false, &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("renamed"));
    assert_eq!(resp.text().await.unwrap(), changed);

    // Deleted: its links go with it, and a new file of the same name is not theirs.
    assert_eq!(server.delete(1, "/files/renamed").await.0, 200);
    assert_eq!(refusal(&server, &fresh).await, (404, "not_found".to_string()));
    assert_eq!(server.get(1, "/files/renamed/links").await.0, 404);
    assert_eq!(
        server
            .upload(1, "renamed", &new_session(), "s.csv", sales_csv())
            .await
            .0,
        201
    );
    assert_eq!(refusal(&server, &fresh).await, (404, "not_found".to_string()));
    assert_eq!(links_of(&server, "renamed").await, json!([]));
}

#[tokio::test]
async fn bad_link_requests_are_refused_with_what_is_wrong_and_make_nothing() {
    let server = TestServer::start().await;
    assert_eq!(
        server.upload(1, "sales", &new_session(), "s.csv", sales_csv()).await.0,
        201
    );
    for (body, code) in [
        (json!({}), "invalid_expires_in"),
        (json!({ "expires_in": 0 }), "invalid_expires_in"),
        (json!({ "expires_in": 2_592_001 }), "invalid_expires_in"),
        (json!({ "expires_in": -5 }), "invalid_expires_in"),
        (json!({ "expires_in": 60, "max_downloads": 0 }), "invalid_max_downloads"),
        (
            json!({ "expires_in": 60, "max_downloads": 1_000_001 }),
            "invalid_max_downloads",
        ),
        (json!({ "expires_in": 60, "secret": "mine" }), "invalid_body"),
        (json!({ "expires_in": "soon" }), "invalid_body"),
        (json!({ "expires_in": 1.5 }), "invalid_body"),
        (json!([60]), "invalid_body"),
    ] {
        let (status, answer) = make_link(&server, 1, "sales", body.clone()).await;
        assert_eq!((status, answer["code"].as_str()), (422, Some(code)), "{body}: {answer}");
        assert!(!answer["detail"].as_str().unwrap().is_empty(), "{answer}");
    }
    let resp = server
        .client
        .post(server.url("/files/sales/links"))
        .bearer_auth(server.token(1))
        .body("expires_in=60")
        .send()
        .await
        .unwrap();
    assert_eq!(status_json(resp).await.1["code"], "invalid_body");
    // Nothing was made by any of them.
    assert_eq!(links_of(&server, "sales").await, json!([]));

    // Another user's file, or none, is not found; without a token, 401.
    assert_eq!(make_link(&server, 2, "sales", json!({ "expires_in": 60 })).await.0, 404);
    assert_eq!(make_link(&server, 1, "nope", json!({ "expires_in": 60 })).await.0, 404);
    assert_eq!(server.get(2, "/files/sales/links").await.0, 404);
    let anonymous = server
        .client
        .post(server.url("/files/sales/links"))
        .json(&json!({ "expires_in": 60 }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Revoking: an id that is not one, or another user's link.
    let url = link_url(&server, "sales", json!({ "expires_in": 60 })).await;
    let (status, answer) = server.delete(1, "/files/sales/links/not-an-id").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("invalid_link_id")),
        "{answer}"
    );
    let id = links_of(&server, "sales").await[0]["id"].as_str().unwrap().to_string();
    assert_eq!(server.delete(2, &format!("/files/sales/links/{id}")).await.0, 404);
    assert_eq!(fetch(&server, &url, false, &[]).await.status(), 200, "still served");

    // An address no link has: 404, however it is spelled.
    let base = format!("{}/api/v1/links/", server.base);
    for secret in ["x".to_string(), "A".repeat(43), format!("{}=", secret_of(&url))] {
        assert_eq!(
            refusal(&server, &format!("{base}{secret}")).await,
            (404, "not_found".to_string())
        );
    }
}

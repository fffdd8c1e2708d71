//! Every route of the spec's table, with its success shape and each of its error codes.

use serde_json::Value;

use crate::harness::{new_session, sales_csv, TestServer};

const ORIGINAL_FIELDS: [&str; 4] = ["file_name", "storage_uri", "description", "summary"];

fn assert_file_read(v: &Value, name: &str) {
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    for f in ORIGINAL_FIELDS.iter().chain(&[
        "id",
        "size_bytes",
        "sha256",
        "format",
        "row_count",
        "column_count",
        "created_at",
    ]) {
        assert!(obj.contains_key(*f), "missing {f} in {v}");
    }
    assert!(
        !obj.contains_key("user_id") && !obj.contains_key("storage_type"),
        "private fields exposed: {v}"
    );
    assert_eq!(v["file_name"], name);
}

#[tokio::test]
async fn upload_list_activate_get_delete_round_trip() {
    let server = TestServer::start().await;
    let session = new_session();

    // Empty list, with and without the trailing slash.
    assert_eq!(server.get(1, "/files/").await, (200, serde_json::json!([])));
    assert_eq!(server.get(1, "/files").await, (200, serde_json::json!([])));

    let (status, created) = server.upload(1, "sales", &session, "sales.csv", sales_csv()).await;
    assert_eq!(status, 201, "{created}");
    assert_file_read(&created, "sales");
    assert_eq!(created["description"], "about sales");
    assert_eq!(created["format"], "csv");
    assert_eq!(created["size_bytes"], sales_csv().len());
    assert_eq!(created["row_count"], 3);
    assert_eq!(created["column_count"], 4);
    let summary = created["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(
            "The dataset has **3 rows** and **4 columns**.\n\nIt contains the following features:\n\n- **date**: `"
        ),
        "{summary}"
    );

    // Stored as {user}_{name}.{ext} with a local:// absolute URI (s3://bucket/key on the
    // S3 stack), bytes intact.
    match &server.bucket {
        Some(b) => {
            assert_eq!(
                created["storage_uri"],
                format!("s3://{}/{}/1_sales.csv", b.bucket, b.prefix)
            );
        }
        None => {
            let stored = server.storage_dir().canonicalize().unwrap().join("1_sales.csv");
            assert_eq!(created["storage_uri"], format!("local://{}", stored.display()));
        }
    }
    assert_eq!(server.read_stored("1_sales.csv"), sales_csv().as_bytes());
    let sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(sales_csv().as_bytes()));
    assert_eq!(created["sha256"], sha);

    // The upload made it active for its session.
    let (status, active) = server.get(1, &format!("/files/active/{session}")).await;
    assert_eq!(status, 200);
    assert_eq!(active, created);

    let (status, list) = server.get(1, "/files/").await;
    assert_eq!(status, 200);
    assert_eq!(list, serde_json::json!([created.clone()]));

    // Activate in another session.
    let other = new_session();
    let (status, body) = server.activate(1, &other, "sales").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, created);
    assert_eq!(server.get(1, &format!("/files/active/{other}")).await.0, 200);

    // Delete: record, bytes and every active entry go.
    let (status, deleted) = server.delete(1, "/files/sales").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["file_name"], "sales");
    assert!(!server.stored_files().contains(&"1_sales.csv".to_string()));
    assert_eq!(server.get(1, "/files/").await.1, serde_json::json!([]));
    for s in [&session, &other] {
        let (status, body) = server.get(1, &format!("/files/active/{s}")).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["code"], "not_found");
    }
    assert_eq!(server.delete(1, "/files/sales").await.0, 404);
    assert!(server.stored_files().is_empty(), "{:?}", server.stored_files());
}

#[tokio::test]
async fn list_is_oldest_first_and_activation_switches() {
    let server = TestServer::start().await;
    let session = new_session();
    for name in ["b", "a", "c"] {
        assert_eq!(server.upload(1, name, &session, "x.csv", sales_csv()).await.0, 201);
    }
    let (_, list) = server.get(1, "/files/").await;
    let names = crate::harness::file_names(&list);
    assert_eq!(names, ["b", "a", "c"]);
    // The last upload is active; activating another replaces it.
    assert_eq!(
        server.get(1, &format!("/files/active/{session}")).await.1["file_name"],
        "c"
    );
    assert_eq!(server.activate(1, &session, "a").await.0, 200);
    assert_eq!(
        server.get(1, &format!("/files/active/{session}")).await.1["file_name"],
        "a"
    );
    // Deleting a file that is not active leaves the active entry alone.
    assert_eq!(server.delete(1, "/files/c").await.0, 200);
    assert_eq!(
        server.get(1, &format!("/files/active/{session}")).await.1["file_name"],
        "a"
    );
}

/// Listings are served from a cache while the user's files stay the same: every kind of
/// change shows in the very next listing, with the cache warm before it.
#[tokio::test]
async fn every_change_shows_in_the_next_listing() {
    let server = TestServer::start().await;
    let session = new_session();
    let listed = |query: &'static str| {
        let server = &server;
        async move {
            let (status, list) = server.get(1, &format!("/files/{query}")).await;
            assert_eq!(status, 200, "{list}");
            list.as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}",
                        f["file_name"].as_str().unwrap(),
                        f["description"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert!(listed("").await.is_empty());
    assert_eq!(server.upload(1, "a", &session, "a.csv", sales_csv()).await.0, 201);
    assert_eq!(listed("").await, ["a:about a"]);
    assert_eq!(listed("").await, ["a:about a"], "served again unchanged");
    assert_eq!(server.upload(1, "b", &session, "b.csv", sales_csv()).await.0, 201);
    assert_eq!(listed("").await, ["a:about a", "b:about b"]);
    assert_eq!(listed("?limit=1&offset=1").await, ["b:about b"]);
    // Another user's change does not touch this listing; this user's rename does.
    assert_eq!(server.upload(2, "c", &session, "c.csv", sales_csv()).await.0, 201);
    let resp = server
        .client
        .patch(server.url("/files/a"))
        .bearer_auth(server.token(1))
        .json(&serde_json::json!({"file_name": "z", "description": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(listed("").await, ["z:renamed", "b:about b"]);
    assert_eq!(listed("?limit=1&offset=1").await, ["b:about b"]);
    assert_eq!(listed("?name_prefix=z").await, ["z:renamed"]);
    // A new description alone; a listing mended from the kept one has each file as it is
    // now, the same as its own lookup.
    let resp = server
        .client
        .patch(server.url("/files/b"))
        .bearer_auth(server.token(1))
        .json(&serde_json::json!({"description": "described"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(listed("").await, ["z:renamed", "b:described"]);
    let (_, list) = server.get(1, "/files/").await;
    for file in list.as_array().unwrap() {
        let (status, own) = server.get(1, &format!("/files/{}", file["file_name"].as_str().unwrap())).await;
        assert_eq!((status, file), (200, &own));
    }
    // The first file gone and one added: every kept record after it has moved.
    assert_eq!(server.upload(1, "c", &session, "c.csv", sales_csv()).await.0, 201);
    assert_eq!(listed("").await, ["z:renamed", "b:described", "c:about c"]);
    assert_eq!(server.delete(1, "/files/z").await.0, 200);
    assert_eq!(server.upload(1, "d", &session, "d.csv", sales_csv()).await.0, 201);
    assert_eq!(listed("").await, ["b:described", "c:about c", "d:about d"]);
    assert_eq!(server.delete(1, "/files/b").await.0, 200);
    assert_eq!(server.delete(1, "/files/d").await.0, 200);
    assert_eq!(listed("").await, ["c:about c"]);
    assert!(listed("?limit=1&offset=1").await.is_empty());
    let resp = server
        .client
        .get(server.url("/files/?limit=1"))
        .bearer_auth(server.token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "1");
    assert_eq!(resp.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn users_and_sessions_are_kept_apart() {
    let server = TestServer::start().await;
    let (s1, s2) = (new_session(), new_session());
    assert_eq!(server.upload(1, "sales", &s1, "s.csv", sales_csv()).await.0, 201);
    // Another user may use the same name; stored separately.
    assert_eq!(server.upload(2, "sales", &s1, "s.csv", "a,b\n1,2\n").await.0, 201);
    assert_eq!(server.stored_files(), ["1_sales.csv", "2_sales.csv"]);

    let (_, l1) = server.get(1, "/files/").await;
    let (_, l2) = server.get(2, "/files/").await;
    assert_eq!(l1.as_array().unwrap().len(), 1);
    assert_eq!(l2[0]["row_count"], 1);
    assert_ne!(l1[0]["id"], l2[0]["id"]);

    // The same session id under two users: each sees its own active file.
    assert_eq!(server.get(1, &format!("/files/active/{s1}")).await.1["row_count"], 3);
    assert_eq!(server.get(2, &format!("/files/active/{s1}")).await.1["row_count"], 1);
    // A session of user 1 without an active file stays empty.
    assert_eq!(server.get(1, &format!("/files/active/{s2}")).await.0, 404);
    // User 3 sees nothing of theirs and cannot activate or delete it.
    assert_eq!(server.get(3, &format!("/files/active/{s1}")).await.0, 404);
    assert_eq!(server.activate(3, &s1, "sales").await.0, 404);
    assert_eq!(server.delete(3, "/files/sales").await.0, 404);
    // User 2 deleting theirs leaves user 1's.
    assert_eq!(server.delete(2, "/files/sales").await.0, 200);
    assert_eq!(server.get(1, &format!("/files/active/{s1}")).await.0, 200);
    assert_eq!(server.stored_files(), ["1_sales.csv"]);
}

#[tokio::test]
async fn upload_errors_have_status_code_and_detail() {
    let server = TestServer::start().await;
    let session = new_session();
    assert_eq!(server.upload(1, "sales", &session, "s.csv", sales_csv()).await.0, 201);

    let (status, body) = server.upload(1, "sales", &session, "s.csv", sales_csv()).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("sales"));

    let cases: [(&str, &str, &str, &[u8], &str); 4] = [
        (
            "bad session",
            "x",
            "not-a-uuid",
            sales_csv().as_bytes(),
            "invalid_session_id",
        ),
        ("bad name", "a/b", &session, sales_csv().as_bytes(), "invalid_file_name"),
        (
            "unsupported extension",
            "notes",
            &session,
            b"hello",
            "unsupported_extension",
        ),
        ("empty file", "empty", &session, b"", "unreadable_file"),
    ];
    for (what, name, s, body, code) in cases {
        let filename = if code == "unsupported_extension" {
            "notes.txt"
        } else {
            "f.csv"
        };
        let (status, resp) = server.upload(1, name, s, filename, body).await;
        assert_eq!(status, 422, "{what}: {resp}");
        assert_eq!(resp["code"], code, "{what}: {resp}");
        assert!(
            !resp["detail"].as_str().unwrap_or_default().is_empty(),
            "{what}: {resp}"
        );
    }

    // Missing fields, one at a time.
    for missing in ["file_name", "session_id", "description", "file"] {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in [
            ("file_name", "m"),
            ("session_id", session.as_str()),
            ("description", "d"),
        ] {
            if k != missing {
                form = form.text(k, v.to_string());
            }
        }
        if missing != "file" {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(sales_csv().as_bytes()).file_name("m.csv"),
            );
        }
        let (status, resp) = server.upload_form(1, form).await;
        assert_eq!(status, 422, "missing {missing}: {resp}");
        assert!(
            resp["detail"].as_str().unwrap().contains(missing),
            "missing {missing}: {resp}"
        );
    }

    // Not multipart at all.
    let resp = server
        .client
        .post(server.url("/files/"))
        .bearer_auth(server.token(1))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);

    // Nothing but the first upload was stored or recorded.
    assert_eq!(server.stored_files(), ["1_sales.csv"]);
    assert_eq!(server.get(1, "/files/").await.1.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn parts_may_come_in_any_order() {
    let server = TestServer::start().await;
    let session = new_session();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(sales_csv().as_bytes()).file_name("S.CSV"),
        )
        .text("description", "file first")
        .text("session_id", session.clone())
        .text("file_name", "late name");
    let (status, body) = server.upload_form(1, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["file_name"], "late name");
    assert_eq!(server.stored_files(), ["1_late name.csv"]);
    assert_eq!(
        server.get(1, &format!("/files/active/{session}")).await.1["file_name"],
        "late name"
    );
}

#[tokio::test]
async fn active_routes_errors() {
    let server = TestServer::start().await;
    let session = new_session();
    let (status, body) = server.get(1, "/files/active/not-a-uuid").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_session_id")),
        "{body}"
    );
    let (status, body) = server.get(1, &format!("/files/active/{session}")).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.activate(1, &session, "nope").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, _) = server.activate(1, "nope", "nope").await;
    assert_eq!(status, 422);
    // A body without file_name, and one that is not JSON.
    for body in ["{}", "file_name=x"] {
        let resp = server
            .client
            .post(server.url(&format!("/files/active/{session}")))
            .bearer_auth(server.token(1))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{body}");
    }
    // Unknown routes and methods are JSON errors too.
    let resp = server.client.get(format!("{}/nope", server.base)).send().await.unwrap();
    let (status, body) = crate::harness::status_json(resp).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("route_not_found")),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
    assert_eq!(
        server
            .upload(1, "x", &session, "x.csv", crate::harness::sales_csv())
            .await
            .0,
        201
    );
    // Each with the methods its path does take, as RFC 9110's `Allow` must list them.
    for (method, path, allow) in [
        ("PUT", "/api/v1/files/".to_string(), "GET, POST"),
        ("DELETE", "/api/v1/files/".to_string(), "GET, POST"),
        ("POST", "/api/v1/files/x".to_string(), "GET, PATCH, DELETE"),
        ("PUT", format!("/api/v1/files/active/{session}"), "GET, POST, DELETE"),
        ("PATCH", format!("/api/v1/files/active/{session}"), "GET, POST, DELETE"),
        ("POST", "/api/v1/files/x/content".to_string(), "GET, HEAD"),
        ("DELETE", "/api/v1/files/x/profile".to_string(), "GET"),
        ("POST", "/healthz".to_string(), "GET"),
        ("PURGE", "/api/v1/files/x".to_string(), "GET, PATCH, DELETE"),
    ] {
        let resp = server
            .client
            .request(method.parse().unwrap(), format!("{}{path}", server.base))
            .bearer_auth(server.token(1))
            .send()
            .await
            .unwrap();
        let allowed = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        let (status, body) = crate::harness::status_json(resp).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (405, Some("method_not_allowed")),
            "{method} {path}: {body}"
        );
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}: Allow");
        assert!(body["detail"].is_string(), "{method} {path}: {body}");
    }
    // None of them touched the file.
    assert_eq!(server.get(1, "/files/x").await.0, 200);
    assert_eq!(
        server.get(1, &format!("/files/active/{session}")).await.1["file_name"],
        "x"
    );
}

#[tokio::test]
async fn names_that_could_escape_the_folder_are_refused() {
    let server = TestServer::start().await;
    let session = new_session();
    let outside_before = crate::harness::list_dir(server.data.path());
    let long = "x".repeat(129);
    let wide = "é".repeat(101); // 101 chars, 202 bytes
    for name in [
        "../evil",
        "a/b",
        "..",
        "a\\b",
        "nul\0byte",
        ".hidden",
        " leading",
        long.as_str(),
        wide.as_str(),
        "",
    ] {
        let (status, body) = server.upload(1, name, &session, "x.csv", sales_csv()).await;
        assert_eq!(status, 422, "{name:?}: {body}");
        assert_eq!(body["code"], "invalid_file_name", "{name:?}: {body}");
    }
    // 128 characters is still fine, and so are spaces, parentheses and any script.
    for name in [
        "x".repeat(128),
        "Sales 2024 (v2).final".into(),
        "é 中文_données-1".into(),
    ] {
        let (status, body) = server.upload(1, &name, &session, "x.csv", sales_csv()).await;
        assert_eq!(status, 201, "{name:?}: {body}");
    }
    assert_eq!(crate::harness::list_dir(server.data.path()), outside_before);
    assert_eq!(server.stored_files().len(), 3);
    // Percent-encoded names in the path work.
    let (status, body) = server
        .delete(1, "/files/%C3%A9%20%E4%B8%AD%E6%96%87_donn%C3%A9es-1")
        .await;
    assert_eq!(status, 200, "{body}");
    // And path tricks in DELETE find nothing.
    assert_eq!(server.delete(1, "/files/..%2F..%2Fetc%2Fpasswd").await.0, 404);
}

#[tokio::test]
async fn stray_bytes_in_storage_are_never_overwritten() {
    // Without the watcher, which would adopt the stray file (tested in `watch`).
    let server = TestServer::start_with(&[("WATCH_ENABLED", "false")]).await;
    server.put_stored("1_sales.csv", "keep,me\n1,2\n");
    let (status, body) = server.upload(1, "sales", &new_session(), "s.csv", sales_csv()).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("1_sales.csv"), "{body}");
    assert_eq!(server.read_stored("1_sales.csv"), b"keep,me\n1,2\n");
    assert_eq!(server.get(1, "/files/").await.1, serde_json::json!([]));
    assert_eq!(server.stored_files(), ["1_sales.csv"]);
}

//! The file API beyond the original contract: one file, download with ranges and ETags, rename and describe, paging, clearing the active file.

use sha2::{Digest, Sha256};

use crate::harness::{file_stream, new_session, sales_csv, sha256_hex, TestServer};

async fn download(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = server.client.get(server.url(path)).bearer_auth(server.token(1));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn get_one_file_and_its_content() {
    let server = TestServer::start().await;
    let (_, created) = server
        .upload(1, "sales 2024 é 中文", &new_session(), "s.csv", sales_csv())
        .await;
    let encoded = "/files/sales%202024%20%C3%A9%20%E4%B8%AD%E6%96%87";
    let (status, body) = server.get(1, encoded).await;
    assert_eq!((status, &body), (200, &created));
    assert_eq!(server.get(1, "/files/nope").await.0, 404);
    assert_eq!(server.get(2, encoded).await.0, 404, "another user's file");

    let resp = download(&server, &format!("{encoded}/content"), &[]).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    assert_eq!(h["content-length"], sales_csv().len().to_string().as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    let etag = format!("\"{}\"", created["sha256"].as_str().unwrap());
    assert_eq!(h["etag"], etag.as_str());
    assert!(h.contains_key("last-modified"));
    let disposition = h["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\""), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''sales%202024%20%C3%A9%20%E4%B8%AD%E6%96%87%2Ecsv"),
        "{disposition}"
    );
    assert_eq!(resp.text().await.unwrap(), sales_csv());

    // HEAD: same headers, no body.
    let resp = server
        .client
        .head(server.url(&format!("{encoded}/content")))
        .bearer_auth(server.token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], sales_csv().len().to_string().as_str());
    assert_eq!(resp.headers()["etag"], etag.as_str());
    assert!(resp.bytes().await.unwrap().is_empty());

    // If-None-Match with the current ETag: 304; with another: 200.
    let resp = download(&server, &format!("{encoded}/content"), &[("if-none-match", &etag)]).await;
    assert_eq!(resp.status(), 304);
    let resp = download(
        &server,
        &format!("{encoded}/content"),
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(download(&server, "/files/nope/content", &[]).await.status(), 404);
}

#[tokio::test]
async fn byte_ranges() {
    let server = TestServer::start().await;
    let body: String = (0..1000).map(|i| format!("{i},{}\n", i * 2)).collect();
    let body = format!("a,b\n{body}");
    server.upload(1, "r", &new_session(), "r.csv", body.clone()).await;
    let size = body.len();
    let cases = [
        ("bytes=0-9", 0, 9),
        ("bytes=100-199", 100, 199),
        (&*format!("bytes={}-", size - 5), size - 5, size - 1),
        ("bytes=-7", size - 7, size - 1),
        (&*format!("bytes=10-{}", size + 100), 10, size - 1),
    ];
    for (range, first, last) in cases {
        let resp = download(&server, "/files/r/content", &[("range", range)]).await;
        assert_eq!(resp.status(), 206, "{range}");
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {first}-{last}/{size}").as_str(),
            "{range}"
        );
        assert_eq!(
            resp.headers()["content-length"],
            (last - first + 1).to_string().as_str()
        );
        assert_eq!(resp.text().await.unwrap(), body[first..=last], "{range}");
    }
    let resp = download(&server, "/files/r/content", &[("range", &format!("bytes={size}-"))]).await;
    assert_eq!(resp.status(), 416);
    assert_eq!(resp.headers()["content-range"], format!("bytes */{size}").as_str());
    // Several ranges: the whole body.
    let resp = download(&server, "/files/r/content", &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), body);
    // If-Range with a stale ETag: the whole body.
    let resp = download(
        &server,
        "/files/r/content",
        &[("range", "bytes=0-1"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn rename_and_describe() {
    let server = TestServer::start().await;
    let (s1, s2) = (new_session(), new_session());
    let (_, created) = server.upload(1, "old", &s1, "o.csv", sales_csv()).await;
    server.upload(1, "taken", &s2, "t.csv", "a\n1\n").await;
    assert_eq!(server.activate(1, &s2, "old").await.0, 200);
    // Warm the cache of both sessions, so a stale cached copy would show.
    for s in [&s1, &s2] {
        assert_eq!(server.get(1, &format!("/files/active/{s}")).await.1["file_name"], "old");
    }

    let patch = |name: &str, body: serde_json::Value| {
        server
            .client
            .patch(server.url(&format!("/files/{name}")))
            .bearer_auth(server.token(1))
            .json(&body)
            .send()
    };
    let resp = patch(
        "old",
        serde_json::json!({"file_name": "new name", "description": "renamed"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let renamed: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(renamed["file_name"], "new name");
    assert_eq!(renamed["description"], "renamed");
    assert_eq!(renamed["id"], created["id"], "the id survives a rename");
    assert_eq!(renamed["sha256"], created["sha256"]);
    assert!(renamed["storage_uri"].as_str().unwrap().ends_with("/1_new name.csv"));
    assert_eq!(server.stored_files(), ["1_new name.csv", "1_taken.csv"]);
    assert_eq!(server.read_stored("1_new name.csv"), sales_csv().as_bytes());
    // Active in every session under its new name.
    for s in [&s1, &s2] {
        let (status, active) = server.get(1, &format!("/files/active/{s}")).await;
        assert_eq!((status, &active), (200, &renamed), "session {s}");
    }
    assert_eq!(server.get(1, "/files/old").await.0, 404);

    // Description only.
    let resp = patch("new%20name", serde_json::json!({"description": "just text"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        server.get(1, &format!("/files/active/{s1}")).await.1["description"],
        "just text"
    );

    // Errors: taken name 409 (nothing moved), bad name 422, empty body 422, absent 404.
    let resp = patch("new%20name", serde_json::json!({"file_name": "taken"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(server.stored_files(), ["1_new name.csv", "1_taken.csv"]);
    assert_eq!(
        patch("new%20name", serde_json::json!({"file_name": "../x"}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(patch("new%20name", serde_json::json!({})).await.unwrap().status(), 422);
    assert_eq!(
        patch("new%20name", serde_json::json!({"size": 1}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        patch("absent", serde_json::json!({"description": "x"}))
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn paging_and_prefix() {
    let server = TestServer::start().await;
    let session = new_session();
    for i in 0..12 {
        let name = if i % 2 == 0 {
            format!("even-{i:02}")
        } else {
            format!("odd-{i:02}")
        };
        assert_eq!(server.upload(1, &name, &session, "x.csv", "a\n1\n").await.0, 201);
    }
    let page = |q: &str| {
        let url = server.url(&format!("/files/?{q}"));
        let token = server.token(1);
        let client = server.client.clone();
        async move {
            let resp = client.get(url).bearer_auth(token).send().await.unwrap();
            let status = resp.status().as_u16();
            let total = resp
                .headers()
                .get("x-total-count")
                .map(|v| v.to_str().unwrap().to_string());
            let body: serde_json::Value = resp.json().await.unwrap();
            let names: Vec<String> = body
                .as_array()
                .map(|a| a.iter().map(|f| f["file_name"].as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (status, total, names)
        }
    };
    let (status, total, names) = page("limit=5&offset=2").await;
    assert_eq!((status, total.as_deref()), (200, Some("12")));
    assert_eq!(names, ["even-02", "odd-03", "even-04", "odd-05", "even-06"]);
    let (_, total, names) = page("name_prefix=odd-&limit=2&offset=4").await;
    assert_eq!(total.as_deref(), Some("6"));
    assert_eq!(names, ["odd-09", "odd-11"]);
    let (_, total, names) = page("").await;
    assert_eq!((total.as_deref(), names.len()), (Some("12"), 12));
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "offset=-1",
        "offset=9223372036854775808",
    ] {
        assert_eq!(page(bad).await.0, 422, "{bad}");
    }
}

#[tokio::test]
async fn clearing_the_active_file_is_idempotent() {
    let server = TestServer::start().await;
    let session = new_session();
    server.upload(1, "f", &session, "f.csv", sales_csv()).await;
    for _ in 0..2 {
        let resp = server
            .client
            .delete(server.url(&format!("/files/active/{session}")))
            .bearer_auth(server.token(1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        assert_eq!(server.get(1, &format!("/files/active/{session}")).await.0, 404);
    }
    let resp = server
        .client
        .delete(server.url("/files/active/nope"))
        .bearer_auth(server.token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    // The file itself is still there.
    assert_eq!(server.get(1, "/files/f").await.0, 200);
}

/// A download under way while its file is renamed and a new upload takes the old name:
/// the download is started (status and first bytes read) before the rename and finished
/// after the new upload, so the two really overlap. It must deliver exactly the bytes it
/// began with, and the two names then serve their own contents.
#[tokio::test]
async fn rename_racing_a_download_never_mixes() {
    let server = TestServer::start().await;
    // Larger than socket buffers, so most of it is still to be read from the file.
    let rows: Vec<u8> = (0..1_500_000u32)
        .flat_map(|i| format!("{i},{}\n", i % 7).into_bytes())
        .collect();
    let old = [b"a,b\n".as_slice(), &rows].concat();
    let old_sha = sha256_hex(&old);
    assert_eq!(
        server.upload(1, "race", &new_session(), "r.csv", old.clone()).await.0,
        201
    );
    for round in 0..3 {
        let (from, to) = if round % 2 == 0 {
            ("race", "race2")
        } else {
            ("race2", "race")
        };
        let mut resp = download(&server, &format!("/files/{from}/content"), &[]).await;
        assert_eq!(resp.status(), 200);
        let mut got = resp.chunk().await.unwrap().expect("a first chunk").to_vec();
        assert!(
            got.len() < old.len(),
            "round {round}: the whole file arrived before the rename"
        );

        let renamed = server
            .client
            .patch(server.url(&format!("/files/{from}")))
            .bearer_auth(server.token(1))
            .json(&serde_json::json!({ "file_name": to }))
            .send()
            .await
            .unwrap();
        assert_eq!(renamed.status(), 200);
        // A new upload takes the old name at once.
        let other = format!("a,b\nnew,{round}\n");
        assert_eq!(
            server.upload(1, from, &new_session(), "n.csv", other.clone()).await.0,
            201
        );

        while let Some(chunk) = resp.chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got.len(), old.len(), "round {round}: length");
        assert_eq!(sha256_hex(&got), old_sha, "round {round}: mixed bytes");
        let body = |name: &str| {
            let path = format!("/files/{name}/content");
            let server = &server;
            async move { download(server, &path, &[]).await.bytes().await.unwrap().to_vec() }
        };
        assert_eq!(body(from).await, other.as_bytes(), "round {round}: the new file");
        assert_eq!(sha256_hex(&body(to).await), old_sha, "round {round}: the renamed file");
        assert_eq!(server.delete(1, &format!("/files/{from}")).await.0, 200);
    }
}

#[tokio::test]
async fn profile_and_preview() {
    let server = TestServer::start().await;
    let csv =
        "id,price,when,ok,name\n1,1.5,2024-01-01,true,a\n2,,2024-02-01,false,b\n3,2.5,2024-03-01T10:00:00,true,\n";
    assert_eq!(server.upload(1, "p", &new_session(), "p.csv", csv).await.0, 201);
    let (status, profile) = server.get(1, "/files/p/profile").await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(
        (profile["row_count"].as_u64(), profile["column_count"].as_u64()),
        (Some(3), Some(5))
    );
    assert_eq!(profile["encoding"], "utf-8");
    assert_eq!(profile["delimiter"], ",");
    let dtypes: Vec<&str> = profile["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["dtype"].as_str().unwrap())
        .collect();
    assert_eq!(dtypes, ["int64", "float64", "datetime64[ns]", "bool", "object"]);
    assert_eq!(profile["columns"][1]["null_count"], 1);
    assert_eq!(profile["columns"][0]["max"], 3);

    let (status, preview) = server.get(1, "/files/p/preview?rows=2").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        preview["columns"],
        serde_json::json!(["id", "price", "when", "ok", "name"])
    );
    assert_eq!(
        preview["rows"],
        serde_json::json!([
            ["1", "1.5", "2024-01-01", "true", "a"],
            ["2", "", "2024-02-01", "false", "b"]
        ])
    );
    assert_eq!(
        server.get(1, "/files/p/preview").await.1["rows"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for bad in ["rows=0", "rows=1001", "rows=x"] {
        assert_eq!(server.get(1, &format!("/files/p/preview?{bad}")).await.0, 422, "{bad}");
    }
    assert_eq!(server.get(1, "/files/nope/profile").await.0, 404);
    assert_eq!(server.get(2, "/files/p/preview").await.0, 404);
}

#[tokio::test]
async fn a_spreadsheet_export_in_utf16_with_title_and_notes_is_read_as_its_table() {
    let server = TestServer::start().await;
    // Excel "Unicode text": UTF-16LE with a BOM, tab-separated, a caption above the header
    // and a source line below the table.
    let text = "Quarterly sales\t\t\n\nregion\tq1\tq2\nNord\t1\t2\nS\u{fc}d\t3\t4\nOst\t5\t6\n\nSource: sales team\n";
    let mut body = vec![0xFF, 0xFE];
    body.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
    assert_eq!(
        server.upload(1, "sales", &new_session(), "sales.csv", body).await.0,
        201
    );
    let (status, profile) = server.get(1, "/files/sales/profile").await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["encoding"], "utf-16-le");
    assert_eq!(profile["delimiter"], "\t");
    assert_eq!(
        (profile["header_line"].as_u64(), profile["footer_lines"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        (profile["row_count"].as_u64(), profile["column_count"].as_u64()),
        (Some(3), Some(3))
    );
    let (_, preview) = server.get(1, "/files/sales/preview").await;
    assert_eq!(preview["columns"], serde_json::json!(["region", "q1", "q2"]));
    assert_eq!(preview["rows"][1], serde_json::json!(["S\u{fc}d", "3", "4"]));
    assert_eq!(preview["rows"].as_array().unwrap().len(), 3);
    let (_, file) = server.get(1, "/files/sales").await;
    let summary = file["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("The dataset has **3 rows** and **3 columns**."),
        "{summary}"
    );
    assert!(summary.contains("- **q1**: `int64`"), "{summary}");
}

/// The server's peak resident memory so far (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_200_mb_file_downloads_byte_for_byte_with_flat_memory() {
    use futures_util::StreamExt;
    // The upload's own memory: nothing made in the background after it (the table made
    // ahead holds batches of its own; see Performance, "Speed, round three").
    let server = TestServer::start_with(&[("QUERY_TABLES_AHEAD", "false")]).await;
    // Generated on disk and streamed up, so neither side holds it in memory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let mut hasher = Sha256::new();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let header = b"id,value\n";
        std::io::Write::write_all(&mut out, header).unwrap();
        hasher.update(header);
        let mut written = header.len();
        let mut i = 0u64;
        while written < 200_000_000 {
            let line = format!("{i},{}\n", i % 9973);
            std::io::Write::write_all(&mut out, line.as_bytes()).unwrap();
            hasher.update(line.as_bytes());
            written += line.len();
            i += 1;
        }
    }
    let expected = format!("{:x}", hasher.finalize());
    let file = tokio::fs::File::open(&path).await.unwrap();
    let size = file.metadata().await.unwrap().len();
    let body = reqwest::Body::wrap_stream(file_stream(file));
    let form = reqwest::multipart::Form::new()
        .text("file_name", "big")
        .text("session_id", new_session())
        .text("description", "200 MB")
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(body, size).file_name("big.csv"),
        );
    let (status, created) = server.upload_form(1, form).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["sha256"], expected);

    let resp = download(&server, "/files/big/content", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
    let mut stream = resp.bytes_stream();
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(received, size);
    assert_eq!(format!("{:x}", hasher.finalize()), expected);
    // Memory stays flat: far below the file's size (it is ~30 MB in practice).
    let peak = peak_rss_kib(server.pid());
    println!("200 MB upload + download: server peak RSS {} MiB", peak / 1024);
    assert!(peak < 120 * 1024, "server peak RSS {peak} KiB for a 200 MB file");
}

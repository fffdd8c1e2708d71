//! Sync: an edge on SQLite and a hub on the suite's stack exchange records,
//! bytes, renames, deletes and conflicts through `file-service sync` and the sync routes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{
    enc, file_stream, get_content, new_session, replicate_token, sales_csv, status_json, Stack, TestServer,
};

/// How long one `file-service sync` may take before the test gives up on it.
pub(crate) const SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// The arguments of `file-service sync` run on `edge` against `hub` (see [`sync`]).
pub(crate) fn sync_args(edge: &TestServer, hub: &TestServer, pull: bool, push: bool) -> Vec<String> {
    let mut args = vec!["sync".to_string()];
    if pull {
        args.extend(["--from".into(), hub.base.clone()]);
    }
    if push {
        args.extend(["--to".into(), hub.base.clone()]);
    }
    args.extend([
        "--token".into(),
        replicate_token(),
        "--local".into(),
        edge.base.clone(),
        "--json".into(),
    ]);
    args
}

/// The record fields that must be the same on both sides of a sync (`storage_uri` is
/// local to an instance).
const SYNCED_FIELDS: [&str; 11] = [
    "id",
    "file_name",
    "description",
    "sha256",
    "size_bytes",
    "summary",
    "format",
    "row_count",
    "column_count",
    "created_at",
    "updated_at",
];

/// A user id no other test uses.
pub(crate) fn random_user() -> i64 {
    1000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as i64
}

pub(crate) async fn edge_and_hub() -> (TestServer, TestServer) {
    let edge = TestServer::start_on(Stack::Sqlite, None, None, &[]).await;
    let hub = TestServer::start().await;
    (edge, hub)
}

/// `file-service sync` run with the edge's configuration against the hub: `pull` adds
/// `--from hub`, `push` adds `--to hub` (both: two-way). Returns the `--json` report.
pub(crate) async fn sync(edge: &TestServer, hub: &TestServer, pull: bool, push: bool) -> Value {
    let args = sync_args(edge, hub, pull, push);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let report = edge.run_cli_json(&args, SYNC_TIMEOUT).await;
    eprintln!(
        "sync pull={pull} push={push}: {:.2}s wall, report {report}",
        started.elapsed().as_secs_f64()
    );
    check_report_shape(&report, pull, push);
    report
}

/// The report has a counters object for every direction run and null for the others.
fn check_report_shape(report: &Value, pull: bool, push: bool) {
    for (dir, ran) in [("pulled", pull), ("pushed", push)] {
        if ran {
            for k in ["changes", "applied", "skipped", "conflicts", "blobs", "bytes"] {
                assert!(report[dir][k].is_u64(), "{dir}.{k} in {report}");
            }
        } else {
            assert!(report[dir].is_null(), "{dir} should be null: {report}");
        }
    }
    assert!(report["seconds"].is_number(), "{report}");
}

pub(crate) fn n(report: &Value, dir: &str, key: &str) -> u64 {
    report[dir][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{dir}.{key} in {report}"))
}

/// `(status, JSON)` of a request with `token`.
pub(crate) async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = server.client.request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    status_json(req.send().await.expect("request")).await
}

pub(crate) async fn patch(server: &TestServer, user: i64, name: &str, body: Value) -> Value {
    let (status, rec) = call(
        server,
        "PATCH",
        &format!("/files/{}", enc(name)),
        &server.token(user),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "PATCH {name}: {rec}");
    rec
}

pub(crate) async fn upload(server: &TestServer, user: i64, name: &str, body: impl Into<Vec<u8>>) -> Value {
    let (status, rec) = server
        .upload(user, name, &new_session(), &format!("{name}.csv"), body)
        .await;
    assert_eq!(status, 201, "upload {name} for {user}: {rec}");
    rec
}

/// Every file of `user`, oldest first (all pages).
pub(crate) async fn list(server: &TestServer, user: i64) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let (status, page) = server
            .get(user, &format!("/files/?limit=1000&offset={}", all.len()))
            .await;
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        let done = page.len() < 1000;
        all.extend(page);
        if done {
            return all;
        }
    }
}

/// `user`'s files by name.
pub(crate) async fn by_name(server: &TestServer, user: i64) -> BTreeMap<String, Value> {
    let files = list(server, user).await;
    let map: BTreeMap<String, Value> = files
        .iter()
        .map(|f| (f["file_name"].as_str().unwrap().to_string(), f.clone()))
        .collect();
    assert_eq!(map.len(), files.len(), "duplicate names in a listing");
    map
}

/// `(id, file_name, sha256)` of each of `user`'s files.
pub(crate) async fn keys(server: &TestServer, user: i64) -> Vec<(String, String, String)> {
    let mut keys: Vec<_> = list(server, user)
        .await
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["file_name"].as_str().unwrap().to_string(),
                f["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// The two records agree on every synced field.
pub(crate) fn assert_same_record(a: &Value, b: &Value, what: &str) {
    for field in SYNCED_FIELDS {
        assert_eq!(a[field], b[field], "{what}: `{field}` differs:\n{a}\n{b}");
    }
}

pub(crate) async fn content(server: &TestServer, user: i64, name: &str) -> Vec<u8> {
    let resp = get_content(server, user, name, &[]).await;
    assert_eq!(resp.status(), 200, "content of {name} for {user} on {}", server.base);
    resp.bytes().await.unwrap().to_vec()
}

/// The instance id a server reports in its change feed.
pub(crate) async fn instance_id(server: &TestServer) -> String {
    let (status, feed) = call(server, "GET", "/changes?limit=1", &replicate_token(), None).await;
    assert_eq!(status, 200, "{feed}");
    let id = feed["instance_id"].as_str().unwrap_or_default().to_string();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "instance_id {id:?}"
    );
    id
}

/// Names of files under `dir` (recursively) that are sync or upload staging files.
fn staging_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else if name.starts_with(".blob-") || name.starts_with(".upload-") {
                found.push(e.path().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The server's storage folder holds exactly the files of its records (one per
/// record, under the name its `storage_uri` ends with) and nothing staged.
pub(crate) async fn assert_storage_matches(server: &TestServer, users: &[i64]) {
    let mut expected = BTreeSet::new();
    for &u in users {
        for f in list(server, u).await {
            let uri = f["storage_uri"].as_str().unwrap();
            expected.insert(uri.rsplit('/').next().unwrap().to_string());
        }
    }
    let stored: BTreeSet<String> = server.stored_files().into_iter().collect();
    assert_eq!(stored, expected, "storage folder of {} vs its records", server.base);
}

pub(crate) fn profile_csv(seed: u64) -> String {
    let mut s = String::from("day,city,temp,count\n");
    for i in 0..40u64 {
        s.push_str(&format!(
            "2024-02-{:02},{},{}.{},{}\n",
            1 + i % 28,
            ["oslo", "lima", "pune"][(i % 3) as usize],
            (i * 7 + seed) % 35,
            i % 10,
            i * seed
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_uploads_reach_the_hub_with_records_summaries_and_bytes() {
    let (edge, hub) = edge_and_hub().await;
    let (u1, u2) = (random_user(), random_user());
    let a = upload(&edge, u1, "sales", sales_csv()).await;
    let b = upload(&edge, u2, "weather é", profile_csv(3)).await;
    assert!(list(&hub, u1).await.is_empty() && list(&hub, u2).await.is_empty());

    let report = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&report, "pushed", "applied"), 2, "{report}");
    assert_eq!(n(&report, "pushed", "conflicts"), 0, "{report}");
    assert_eq!(n(&report, "pushed", "blobs"), 2, "{report}");
    let size = |r: &Value| r["size_bytes"].as_u64().unwrap();
    assert_eq!(n(&report, "pushed", "bytes"), size(&a) + size(&b), "{report}");

    for (user, name) in [(u1, "sales"), (u2, "weather é")] {
        let on_edge = list(&edge, user).await;
        let on_hub = list(&hub, user).await;
        assert_eq!(on_hub.len(), 1, "user {user} on the hub: {on_hub:?}");
        assert_eq!(on_edge.len(), 1);
        assert_same_record(&on_edge[0], &on_hub[0], name);
        assert!(!on_hub[0]["summary"].as_str().unwrap().is_empty());
        // One record: the single-file GET agrees with the listing.
        let (status, one) = hub.get(user, &format!("/files/{}", enc(name))).await;
        assert_eq!(status, 200, "{one}");
        assert_same_record(&one, &on_edge[0], name);
        assert_eq!(
            content(&hub, user, name).await,
            content(&edge, user, name).await,
            "{name}"
        );
        let profile = format!("/files/{}/profile", enc(name));
        let (s1, p_edge) = edge.get(user, &profile).await;
        let (s2, p_hub) = hub.get(user, &profile).await;
        assert_eq!((s1, s2), (200, 200), "{p_hub}");
        assert_eq!(p_edge, p_hub, "profile of {name}");
        // The other user does not see it.
        let other = if user == u1 { u2 } else { u1 };
        assert_eq!(hub.get(other, &format!("/files/{}", enc(name))).await.0, 404);
    }
    assert_eq!(content(&hub, u1, "sales").await, sales_csv().as_bytes());
    assert_storage_matches(&hub, &[u1, u2]).await;
    assert!(
        staging_files(hub.data.path()).is_empty(),
        "{:?}",
        staging_files(hub.data.path())
    );

    // The hub's feed names the edge as the origin; it holds the edge's checkpoint.
    let edge_id = instance_id(&edge).await;
    let hub_id = instance_id(&hub).await;
    assert_ne!(edge_id, hub_id);
    let (status, feed) = call(&hub, "GET", "/changes?since=0", &replicate_token(), None).await;
    assert_eq!(status, 200, "{feed}");
    let changes = feed["changes"].as_array().unwrap();
    let ids: BTreeSet<&str> = changes.iter().map(|c| c["file"]["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([a["id"].as_str().unwrap(), b["id"].as_str().unwrap()])
    );
    for c in changes {
        assert_eq!(c["op"], "upsert", "{c}");
        assert_eq!(c["file"]["origin"], edge_id.as_str(), "{c}");
    }
    let (_, edge_feed) = call(&edge, "GET", "/changes?since=0", &replicate_token(), None).await;
    let (status, checkpoint) = call(
        &hub,
        "GET",
        &format!("/sync/checkpoints/{edge_id}"),
        &replicate_token(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{checkpoint}");
    assert_eq!(checkpoint["source"], edge_id.as_str(), "{checkpoint}");
    assert_eq!(checkpoint["instance_id"], hub_id.as_str(), "{checkpoint}");
    assert_eq!(
        checkpoint["last_seq"], edge_feed["last_seq"],
        "{checkpoint} vs {edge_feed}"
    );

    // Pushing again sends nothing.
    let again = sync(&edge, &hub, false, true).await;
    for k in ["changes", "applied", "blobs", "bytes", "conflicts"] {
        assert_eq!(n(&again, "pushed", k), 0, "{k}: {again}");
    }
    assert_eq!(list(&hub, u1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn renames_deletes_and_descriptions_propagate_both_ways() {
    let (edge, hub) = edge_and_hub().await;
    let u = random_user();
    let r1 = upload(&edge, u, "r1", profile_csv(1)).await;
    upload(&edge, u, "r2", profile_csv(2)).await;
    let r3 = upload(&edge, u, "r3", profile_csv(3)).await;
    sync(&edge, &hub, false, true).await;
    assert_eq!(keys(&hub, u).await, keys(&edge, u).await);

    // On the edge: a rename, a delete, and a file renamed twice and described.
    patch(&edge, u, "r1", json!({"file_name": "r1 renamed"})).await;
    assert_eq!(edge.delete(u, "/files/r2").await.0, 200);
    patch(&edge, u, "r3", json!({"file_name": "r3 first"})).await;
    patch(
        &edge,
        u,
        "r3 first",
        json!({"file_name": "r3 second", "description": "twice"}),
    )
    .await;

    let report = sync(&edge, &hub, false, true).await;
    // One change per file at its latest state; renames need no bytes.
    assert_eq!(n(&report, "pushed", "changes"), 3, "{report}");
    assert_eq!(n(&report, "pushed", "applied"), 3, "{report}");
    assert_eq!(n(&report, "pushed", "blobs"), 0, "{report}");
    let hub_files = by_name(&hub, u).await;
    assert_eq!(
        hub_files.keys().map(String::as_str).collect::<Vec<_>>(),
        ["r1 renamed", "r3 second"],
        "hub after the push"
    );
    assert_eq!(hub_files["r1 renamed"]["id"], r1["id"]);
    assert_eq!(hub_files["r3 second"]["id"], r3["id"]);
    assert_eq!(hub_files["r3 second"]["description"], "twice");
    let edge_files = by_name(&edge, u).await;
    for name in ["r1 renamed", "r3 second"] {
        assert_same_record(&edge_files[name], &hub_files[name], name);
        assert_eq!(content(&hub, u, name).await, content(&edge, u, name).await, "{name}");
    }
    for gone in ["r1", "r2", "r3", "r3%20first"] {
        assert_eq!(hub.get(u, &format!("/files/{gone}")).await.0, 404, "{gone} on the hub");
    }
    assert_storage_matches(&hub, &[u]).await;

    // On the hub: a description, a rename and a new file; pulled to the edge.
    patch(&hub, u, "r1 renamed", json!({"description": "from the hub"})).await;
    patch(&hub, u, "r3 second", json!({"file_name": "r3 hub"})).await;
    upload(&hub, u, "r4", profile_csv(4)).await;
    let report = sync(&edge, &hub, true, false).await;
    assert_eq!(n(&report, "pulled", "applied"), 3, "{report}");
    assert_eq!(n(&report, "pulled", "conflicts"), 0, "{report}");
    assert_eq!(n(&report, "pulled", "blobs"), 1, "only r4's bytes: {report}");
    let edge_files = by_name(&edge, u).await;
    let hub_files = by_name(&hub, u).await;
    assert_eq!(
        edge_files.keys().map(String::as_str).collect::<Vec<_>>(),
        ["r1 renamed", "r3 hub", "r4"],
        "edge after the pull"
    );
    assert_eq!(edge_files["r1 renamed"]["description"], "from the hub");
    assert_eq!(edge_files["r3 hub"]["id"], r3["id"]);
    for name in ["r1 renamed", "r3 hub", "r4"] {
        assert_same_record(&edge_files[name], &hub_files[name], name);
        assert_eq!(content(&edge, u, name).await, content(&hub, u, name).await, "{name}");
    }
    assert_eq!(content(&edge, u, "r4").await, profile_csv(4).as_bytes());
    assert_storage_matches(&edge, &[u]).await;

    // The pulled changes are not pushed back to the hub they came from.
    let report = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&report, "pushed", "applied"), 0, "{report}");
    assert_eq!(n(&report, "pushed", "bytes"), 0, "{report}");
}

/// A CSV of about `size` bytes written to `path`; returns its SHA-256 (hex).
fn write_big_csv(path: &Path, size: usize) -> String {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let header = b"id,value,label\n";
    out.write_all(header).unwrap();
    hasher.update(header);
    let mut written = header.len();
    let mut i = 0u64;
    while written < size {
        let line = format!("{i},{},row{}\n", i % 9973, i % 97);
        out.write_all(line.as_bytes()).unwrap();
        hasher.update(line.as_bytes());
        written += line.len();
        i += 1;
    }
    out.flush().unwrap();
    format!("{:x}", hasher.finalize())
}

/// SHA-256 and length of a file's content as the server streams it.
async fn content_sha(server: &TestServer, user: i64, name: &str) -> (String, u64) {
    let resp = get_content(server, user, name, &[]).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (format!("{:x}", hasher.finalize()), len)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_killed_during_a_large_file_resumes_and_converges() {
    let (edge, hub) = edge_and_hub().await;
    let u = random_user();
    upload(&edge, u, "small", sales_csv()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let expected = write_big_csv(&path, 100_000_000);
    let file = tokio::fs::File::open(&path).await.unwrap();
    let size = file.metadata().await.unwrap().len();
    let form = reqwest::multipart::Form::new()
        .text("file_name", "big")
        .text("session_id", new_session())
        .text("description", "100 MB")
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(file_stream(file)), size)
                .file_name("big.csv"),
        );
    let (status, big) = edge.upload_form(u, form).await;
    assert_eq!(status, 201, "{big}");
    assert_eq!(big["sha256"], expected);

    // Push through a proxy that forwards the first 8 MB of requests and then holds the
    // rest: the hub is certainly part-way through receiving the big file when the sync is
    // SIGKILLed, whatever the machine's speed. On a folder its partial bytes are a staged
    // file; in a bucket they stream as parts of an upload (no local file), so there the
    // proxy having passed its 8 MB is the sign.
    let hub_on_bucket = Stack::from_env() == Stack::PostgresRedisS3;
    let proxy = StallingProxy::start(hub.base.trim_start_matches("http://"), 8 << 20).await;
    let token = replicate_token();
    let args = [
        "sync",
        "--to",
        proxy.url.as_str(),
        "--token",
        token.as_str(),
        "--local",
        edge.base.as_str(),
        "--json",
    ];
    let mut cmd = edge.cli(&args);
    cmd.stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start sync");
    // Drain its log so it never blocks on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let staged = loop {
        let staged = staging_files(hub.data.path());
        if !staged.is_empty() || hub_on_bucket && proxy.stalled() {
            break staged;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the sync ended ({status:?}) before the hub staged anything; its log:\n{}",
                log.await.unwrap()
            );
        }
        assert!(Instant::now() < deadline, "the hub never staged the big file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync finished through a stalled proxy"
    );
    child.start_kill().ok();
    let status = child.wait().await.unwrap();
    // The killed client's connections to the hub close with it.
    proxy.close();
    let _ = log.await.unwrap();
    eprintln!("killed the sync while the hub held {staged:?}; exit {status:?}");
    // Never half a file: the big file is absent on the hub or complete.
    let (status, rec) = hub.get(u, "/files/big").await;
    match status {
        404 => {}
        200 => assert_eq!(rec["sha256"], expected.as_str(), "{rec}"),
        s => panic!("GET big on the hub after the kill: {s} {rec}"),
    }

    // Run it again: it completes and both sides agree.
    let report = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&report, "pushed", "conflicts"), 0, "{report}");
    let on_hub = list(&hub, u).await;
    assert_eq!(on_hub.len(), 2, "{on_hub:?}");
    let big_on_hub: Vec<&Value> = on_hub.iter().filter(|f| f["file_name"] == "big").collect();
    assert_eq!(big_on_hub.len(), 1, "{on_hub:?}");
    assert_same_record(big_on_hub[0], &big, "big");
    assert_eq!(content_sha(&hub, u, "big").await, (expected.clone(), size));
    assert_eq!(keys(&hub, u).await, keys(&edge, u).await);
    // Nothing staged is left behind (the killed transfer's partial blob included).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !staging_files(hub.data.path()).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        staging_files(hub.data.path()).is_empty(),
        "left on the hub: {:?}",
        staging_files(hub.data.path())
    );
    assert!(
        staging_files(edge.data.path()).is_empty(),
        "{:?}",
        staging_files(edge.data.path())
    );
    assert_storage_matches(&hub, &[u]).await;

    // And a further push transfers nothing.
    let again = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&again, "pushed", "bytes"), 0, "{again}");
    assert_eq!(n(&again, "pushed", "applied"), 0, "{again}");
}

/// `name` is `<base> (conflict <origin8> <YYYY-MM-DD HH.MM.SS> <rev6>)`.
pub(crate) fn is_conflict_name(name: &str, base: &str, origin8: &str) -> bool {
    let prefix = format!("{base} (conflict {origin8} ");
    let Some(date) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(')')) else {
        return false;
    };
    let pattern = "dddd-dd-dd dd.dd.dd hhhhhh";
    date.len() == pattern.len()
        && date.chars().zip(pattern.chars()).all(|(c, p)| match p {
            'd' => c.is_ascii_digit(),
            'h' => c.is_ascii_hexdigit(),
            _ => c == p,
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn both_sides_change_the_same_name_and_both_versions_survive() {
    let (edge, hub) = edge_and_hub().await;
    let (u, v) = (random_user(), random_user());
    let a = upload(&edge, u, "a", profile_csv(1)).await;
    upload(&edge, u, "c", profile_csv(2)).await;
    sync(&edge, &hub, false, true).await;
    assert_eq!(keys(&hub, u).await, keys(&edge, u).await);

    // The same file described differently on both sides, and two different files
    // taking the name "b"; the hub's changes are the later ones. Another user's "b"
    // on the hub is no conflict.
    patch(&edge, u, "a", json!({"description": "edge says"})).await;
    let b_edge = upload(&edge, u, "b", profile_csv(10)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    patch(&hub, u, "a", json!({"description": "hub says"})).await;
    let b_hub = upload(&hub, u, "b", profile_csv(20)).await;
    let b_other = upload(&hub, v, "b", profile_csv(30)).await;
    assert_ne!(b_edge["sha256"], b_hub["sha256"]);

    let edge_id = instance_id(&edge).await;
    let report = sync(&edge, &hub, true, true).await;
    assert!(
        n(&report, "pulled", "conflicts") + n(&report, "pushed", "conflicts") >= 2,
        "two conflicts: {report}"
    );

    let on_edge = by_name(&edge, u).await;
    let on_hub = by_name(&hub, u).await;
    for (side, files) in [("edge", &on_edge), ("hub", &on_hub)] {
        assert_eq!(files.len(), 5, "{side}: {:?}", files.keys());
        // The later version (the hub's) keeps the name.
        assert_eq!(files["a"]["description"], "hub says", "{side}");
        assert_eq!(files["a"]["sha256"], a["sha256"], "{side}");
        assert_eq!(files["b"]["sha256"], b_hub["sha256"], "{side}");
        assert!(files.contains_key("c"), "{side}");
        // The edge's versions survive under conflict names.
        let a_copies: Vec<&String> = files
            .keys()
            .filter(|k| is_conflict_name(k, "a", &edge_id[..8]))
            .collect();
        assert_eq!(a_copies.len(), 1, "{side}: {:?}", files.keys());
        assert_eq!(files[a_copies[0]]["description"], "edge says", "{side}");
        assert_eq!(files[a_copies[0]]["sha256"], a["sha256"], "{side}");
        let b_copies: Vec<&String> = files
            .keys()
            .filter(|k| is_conflict_name(k, "b", &edge_id[..8]))
            .collect();
        assert_eq!(b_copies.len(), 1, "{side}: {:?}", files.keys());
        assert_eq!(files[b_copies[0]]["sha256"], b_edge["sha256"], "{side}");
    }
    let (ke, kh) = (keys(&edge, u).await, keys(&hub, u).await);
    assert_eq!(ke, kh, "both sides agree");
    let ids: BTreeSet<&String> = ke.iter().map(|k| &k.0).collect();
    assert_eq!(ids.len(), 5, "every version has its own id: {ke:?}");
    for name in on_edge.keys() {
        assert_same_record(&on_edge[name], &on_hub[name], name);
        assert_eq!(content(&edge, u, name).await, content(&hub, u, name).await, "{name}");
    }
    // The other user's "b" is just a file.
    let other_edge = list(&edge, v).await;
    assert_eq!(other_edge.len(), 1, "{other_edge:?}");
    assert_same_record(&other_edge[0], &b_other, "v's b");

    // Converged: another two-way sync changes nothing.
    let again = sync(&edge, &hub, true, true).await;
    for dir in ["pulled", "pushed"] {
        for k in ["applied", "conflicts", "blobs", "bytes"] {
            assert_eq!(n(&again, dir, k), 0, "{dir}.{k}: {again}");
        }
    }
    assert_eq!(keys(&edge, u).await, ke);
    assert_eq!(keys(&hub, u).await, ke);
}

/// Uploads `count` tiny distinct files per user in `users` on `server`, 8 at a time.
async fn upload_many(server: &TestServer, users: &[i64], count: usize, tag: &str) {
    let jobs: Vec<(i64, usize)> = users.iter().flat_map(|&u| (0..count).map(move |i| (u, i))).collect();
    let results: Vec<(u16, Value)> = futures_util::stream::iter(jobs)
        .map(|(u, i)| async move {
            let name = format!("{tag}-{i:04}");
            server
                .upload(
                    u,
                    &name,
                    &new_session(),
                    &format!("{name}.csv"),
                    format!("tag,user,i\n{tag},{u},{i}\n"),
                )
                .await
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (status, body) in results {
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_way_sync_of_1000_files_converges_and_a_second_sync_transfers_nothing() {
    let (edge, hub) = edge_and_hub().await;
    let users = [random_user(), random_user(), random_user(), random_user()];
    let started = Instant::now();
    upload_many(&edge, &users, 125, "edge").await;
    upload_many(&hub, &users, 125, "hub").await;
    eprintln!("uploaded 1,000 files (500 per side) in {:?}", started.elapsed());

    let started = Instant::now();
    let first = sync(&edge, &hub, true, true).await;
    let first_wall = started.elapsed();
    for dir in ["pulled", "pushed"] {
        assert_eq!(n(&first, dir, "applied"), 500, "{dir}: {first}");
        assert_eq!(n(&first, dir, "conflicts"), 0, "{dir}: {first}");
        assert_eq!(n(&first, dir, "blobs"), 500, "{dir}: {first}");
    }

    let mut total = 0;
    for &u in &users {
        let (ke, kh) = (keys(&edge, u).await, keys(&hub, u).await);
        assert_eq!(ke.len(), 250, "user {u} on the edge");
        assert_eq!(ke, kh, "user {u}: edge and hub differ");
        let names: BTreeSet<&String> = ke.iter().map(|k| &k.1).collect();
        let ids: BTreeSet<&String> = ke.iter().map(|k| &k.0).collect();
        assert_eq!((names.len(), ids.len()), (250, 250), "duplicates for user {u}");
        total += ke.len();
    }
    assert_eq!(total, 1000);
    // Spot-check bytes both ways.
    let u = users[0];
    assert_eq!(
        content(&edge, u, "hub-0007").await,
        format!("tag,user,i\nhub,{u},7\n").as_bytes()
    );
    assert_eq!(
        content(&hub, u, "edge-0099").await,
        format!("tag,user,i\nedge,{u},99\n").as_bytes()
    );

    let started = Instant::now();
    let second = sync(&edge, &hub, true, true).await;
    let second_wall = started.elapsed();
    for dir in ["pulled", "pushed"] {
        for k in ["changes", "applied", "conflicts", "blobs", "bytes"] {
            assert_eq!(n(&second, dir, k), 0, "{dir}.{k}: {second}");
        }
    }
    for &u in &users {
        assert_eq!(keys(&edge, u).await, keys(&hub, u).await);
        assert_eq!(list(&hub, u).await.len(), 250);
    }
    eprintln!(
        "1,000-file two-way sync: first {:.2}s (report {}s), second {:.2}s (report {}s)\nfirst report: {first}\nsecond report: {second}",
        first_wall.as_secs_f64(),
        first["seconds"],
        second_wall.as_secs_f64(),
        second["seconds"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ordinary_token_reads_only_its_own_changes() {
    let server = TestServer::start().await;
    let (a, b) = (random_user(), random_user());
    let fa = upload(&server, a, "mine", sales_csv()).await;
    let fb = upload(&server, b, "theirs", profile_csv(5)).await;
    let instance = instance_id(&server).await;

    let (status, feed_a) = server.get(a, "/changes").await;
    assert_eq!(status, 200, "{feed_a}");
    assert_eq!(feed_a["instance_id"], instance.as_str());
    let changes = feed_a["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{feed_a}");
    let c = &changes[0];
    assert_eq!(c["op"], "upsert");
    assert!(c["seq"].as_u64().is_some_and(|s| s > 0), "{c}");
    assert_eq!(c["file"]["id"], fa["id"]);
    assert_eq!(c["file"]["user_id"], a);
    assert_eq!(c["file"]["sha256"], fa["sha256"]);
    assert_eq!(c["file"]["origin"], instance.as_str());
    assert!(c["file"]["rev"].as_str().is_some_and(|r| !r.is_empty()), "{c}");
    assert!(c["file"]["rev_history"].is_array(), "{c}");
    assert!(c["file"]["profile"].is_object(), "{c}");

    let (status, feed_b) = server.get(b, "/changes?since=0&limit=1000").await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = feed_b["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["file"]["id"])
        .collect();
    assert_eq!(ids, [&fb["id"]], "B sees only B's file: {feed_b}");
    // A's change made later does not show in B's feed either.
    patch(&server, a, "mine", json!({"description": "later"})).await;
    let (_, feed_b2) = server.get(b, "/changes?since=0").await;
    assert!(
        feed_b2["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["file"]["user_id"] == b),
        "{feed_b2}"
    );
    // A replicate token sees both users.
    let (_, all) = call(&server, "GET", "/changes?since=0", &replicate_token(), None).await;
    let ids: BTreeSet<&str> = all["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["file"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([fa["id"].as_str().unwrap(), fb["id"].as_str().unwrap()]),
        "{all}"
    );

    // The sync routes are for replicate tokens (content: the owner too).
    let tb = server.token(b);
    for (method, path, body) in [
        ("GET", format!("/sync/checkpoints/{instance}"), None),
        ("GET", "/sync/checkpoints/x".to_string(), None),
        (
            "POST",
            "/sync/missing".to_string(),
            Some(json!({"sha256": [fa["sha256"]]})),
        ),
        (
            "POST",
            "/sync/apply".to_string(),
            Some(json!({"source": instance, "checkpoint": 0, "final": true, "changes": []})),
        ),
    ] {
        let (status, resp) = call(&server, method, &path, &tb, body).await;
        assert_eq!(status, 403, "{method} {path} with B's token: {resp}");
        assert!(resp["detail"].is_string(), "{method} {path}: {resp}");
    }
    // Another user's file by id is "no such file" (404), as every file route answers for
    // other users' files: an ordinary token learns nothing of what others hold.
    let path = format!("/sync/files/{}/content", fa["id"].as_str().unwrap());
    let (status, resp) = call(&server, "GET", &path, &tb, None).await;
    assert_eq!(status, 404, "GET {path} with B's token: {resp}");
    let resp = server
        .client
        .put(server.url(&format!("/sync/blobs/{}", fb["sha256"].as_str().unwrap())))
        .bearer_auth(&tb)
        .body(profile_csv(5))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The owner may read the content of their own file by id.
    let resp = server
        .client
        .get(server.url(&format!("/sync/files/{}/content", fa["id"].as_str().unwrap())))
        .bearer_auth(server.token(a))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), sales_csv().as_bytes());
    // No token at all: 401.
    let resp = server.client.get(server.url("/changes")).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // Bad parameters: 422 with a detail.
    for query in ["limit=0", "limit=1001", "wait=61", "since=-1", "limit=x"] {
        let (status, body) = server.get(a, &format!("/changes?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert!(
            body["detail"].is_string() || body["detail"].is_array(),
            "{query}: {body}"
        );
    }

    // Long poll with nothing new: waits (about) the second asked for, then answers empty.
    let (_, now_b) = server.get(b, "/changes?since=0").await;
    let last = now_b["last_seq"].as_u64().unwrap();
    let started = Instant::now();
    let (status, empty) = server.get(b, &format!("/changes?since={last}&wait=1")).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["changes"], json!([]), "{empty}");
    assert!(empty["last_seq"].as_u64().is_some_and(|s| s >= last), "{empty}");
    assert_eq!(empty["more"], false, "{empty}");
    eprintln!("wait=1 with nothing new answered after {waited:?}");
    assert!(waited >= Duration::from_millis(900), "did not wait: {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_wins_over_a_delete_on_the_other_side() {
    let (edge, hub) = edge_and_hub().await;
    let u = random_user();
    let d1 = upload(&edge, u, "d1", profile_csv(1)).await;
    let d2 = upload(&edge, u, "d2", profile_csv(2)).await;
    sync(&edge, &hub, false, true).await;
    assert_eq!(keys(&hub, u).await, keys(&edge, u).await);

    // d1: deleted on the hub, described on the edge. d2: the other way round.
    assert_eq!(hub.delete(u, "/files/d1").await.0, 200);
    patch(&edge, u, "d1", json!({"description": "edge edit"})).await;
    assert_eq!(edge.delete(u, "/files/d2").await.0, 200);
    patch(&hub, u, "d2", json!({"description": "hub edit"})).await;

    let report = sync(&edge, &hub, true, true).await;
    eprintln!("delete vs change: {report}");
    let on_edge = by_name(&edge, u).await;
    let on_hub = by_name(&hub, u).await;
    for (side, files) in [("edge", &on_edge), ("hub", &on_hub)] {
        assert_eq!(
            files.keys().map(String::as_str).collect::<Vec<_>>(),
            ["d1", "d2"],
            "{side}"
        );
        assert_eq!(files["d1"]["description"], "edge edit", "{side}");
        assert_eq!(files["d1"]["id"], d1["id"], "{side}");
        assert_eq!(files["d2"]["description"], "hub edit", "{side}");
        assert_eq!(files["d2"]["id"], d2["id"], "{side}");
    }
    for name in ["d1", "d2"] {
        assert_same_record(&on_edge[name], &on_hub[name], name);
    }
    assert_eq!(content(&hub, u, "d1").await, profile_csv(1).as_bytes());
    assert_eq!(content(&edge, u, "d2").await, profile_csv(2).as_bytes());
    assert_storage_matches(&hub, &[u]).await;
    assert_storage_matches(&edge, &[u]).await;

    let again = sync(&edge, &hub, true, true).await;
    for dir in ["pulled", "pushed"] {
        assert_eq!(n(&again, dir, "applied"), 0, "{dir}: {again}");
    }
    assert_eq!(keys(&edge, u).await, keys(&hub, u).await);
}

/// A TCP proxy to `target` that forwards what clients send until `budget` bytes in all
/// have passed, then holds everything further (answers still flow back).
struct StallingProxy {
    url: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    budget: usize,
}

impl StallingProxy {
    async fn start(target: &str, budget: usize) -> StallingProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let forwarded = std::sync::Arc::new(AtomicUsize::new(0));
        let (target, all, counted) = (target.to_string(), tasks.clone(), forwarded.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut upstream_read, mut upstream_write) = upstream.into_split();
                let forwarded = counted.clone();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let before = forwarded.fetch_add(n, Ordering::SeqCst);
                        let allowed = budget.saturating_sub(before).min(n);
                        if allowed > 0 && upstream_write.write_all(&buf[..allowed]).await.is_err() {
                            return;
                        }
                        if allowed < n {
                            // Hold the connection open, sending nothing more.
                            std::future::pending::<()>().await;
                        }
                    }
                });
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
                });
                all.lock().unwrap().extend([up, down]);
            }
        });
        tasks.lock().unwrap().push(accept);
        StallingProxy {
            url,
            tasks,
            forwarded,
            budget,
        }
    }

    /// Clients have sent the whole budget: from here on the proxy holds what they send.
    fn stalled(&self) -> bool {
        self.forwarded.load(std::sync::atomic::Ordering::SeqCst) >= self.budget
    }

    /// Stops accepting and closes every connection.
    fn close(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.close();
    }
}

/// The other way round from the suite's S3 stack (edge on a folder, hub on S3): an edge
/// on SQLite with its bytes in a bucket, a hub on SQLite and a local folder.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs TEST_S3_ENDPOINT and TEST_S3_BUCKET (run with --include-ignored)"]
async fn an_edge_on_s3_pushes_to_and_pulls_from_a_hub_on_a_folder() {
    let _ = crate::harness::require_service("TEST_S3_ENDPOINT", "an edge on S3");
    let bucket = crate::harness::Bucket::fresh("an edge on S3");
    let vars = bucket.server_env();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut edge = TestServer::start_on(Stack::Sqlite, None, None, &vars).await;
    edge.bucket = Some(bucket.clone());
    let hub = TestServer::start_on(Stack::Sqlite, None, None, &[]).await;
    let user = random_user();

    // Push: a small file and one of several parts, from the bucket to the folder.
    let dir = tempfile::tempdir().unwrap();
    let big_path = dir.path().join("big.csv");
    let big_sha = write_big_csv(&big_path, 12 << 20);
    let big = std::fs::read(&big_path).unwrap();
    let a = upload(&edge, user, "small", sales_csv()).await;
    let b = upload(&edge, user, "big", big.clone()).await;
    assert_eq!(b["sha256"], big_sha.as_str());
    let report = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&report, "pushed", "applied"), 2, "{report}");
    assert_eq!(n(&report, "pushed", "blobs"), 2, "{report}");
    let size = |r: &Value| r["size_bytes"].as_u64().unwrap();
    assert_eq!(n(&report, "pushed", "bytes"), size(&a) + size(&b), "{report}");
    let (on_edge, on_hub) = (by_name(&edge, user).await, by_name(&hub, user).await);
    assert_eq!(on_hub.keys().collect::<Vec<_>>(), ["big", "small"]);
    for name in ["big", "small"] {
        assert_same_record(&on_edge[name], &on_hub[name], name);
        assert!(on_edge[name]["storage_uri"].as_str().unwrap().starts_with("s3://"));
        assert!(on_hub[name]["storage_uri"].as_str().unwrap().starts_with("local://"));
    }
    assert!(content(&hub, user, "big").await == big, "the hub's bytes of big differ");
    assert_eq!(content(&hub, user, "small").await, sales_csv().as_bytes());
    assert_storage_matches(&hub, &[user]).await;

    // Pull: a new file and a rename made on the hub reach the bucket.
    let c = upload(&hub, user, "from hub", profile_csv(5)).await;
    patch(&hub, user, "small", json!({"file_name": "renamed"})).await;
    let report = sync(&edge, &hub, true, false).await;
    assert_eq!(n(&report, "pulled", "applied"), 2, "{report}");
    assert_eq!(n(&report, "pulled", "conflicts"), 0, "{report}");
    assert_eq!(n(&report, "pulled", "bytes"), size(&c), "{report}");
    let (on_edge, on_hub) = (by_name(&edge, user).await, by_name(&hub, user).await);
    assert_eq!(on_edge.keys().collect::<Vec<_>>(), ["big", "from hub", "renamed"]);
    for name in ["from hub", "renamed"] {
        assert_same_record(&on_edge[name], &on_hub[name], name);
        assert_eq!(
            content(&edge, user, name).await,
            content(&hub, user, name).await,
            "{name}"
        );
    }
    // The bucket holds exactly the edge's objects: nothing staged, nothing stale.
    assert_eq!(
        bucket.list(),
        [
            format!("{user}_big.csv"),
            format!("{user}_from hub.csv"),
            format!("{user}_renamed.csv")
        ]
    );
    assert_eq!(
        bucket.get(&format!("{user}_renamed.csv")).unwrap(),
        sales_csv().as_bytes()
    );

    // A delete on the edge leaves the bucket and reaches the hub's folder.
    assert_eq!(edge.delete(user, "/files/big").await.0, 200);
    let report = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&report, "pushed", "applied"), 1, "{report}");
    assert_eq!(hub.get(user, "/files/big").await.0, 404);
    assert_storage_matches(&hub, &[user]).await;
    assert_eq!(
        bucket.list(),
        [format!("{user}_from hub.csv"), format!("{user}_renamed.csv")]
    );

    // Both ways again: nothing to send.
    let again = sync(&edge, &hub, true, true).await;
    for dir in ["pulled", "pushed"] {
        assert_eq!(n(&again, dir, "applied"), 0, "{dir}: {again}");
        assert_eq!(n(&again, dir, "bytes"), 0, "{dir}: {again}");
    }
}

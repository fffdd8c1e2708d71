//! Crash recovery: work a killed process left half-done (an upload with its bytes in place,
//! a rename with both names stored, a delete with the record hidden) is resolved — by a
//! live replica without any restart, by the process itself when it restarts — and work of
//! a live process is never touched.
//!
//! The server stops each request at a chosen step (`FILE_SERVICE_FAULT_STALL`), so the
//! SIGKILL lands exactly mid-work.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{new_session, require_service, sales_csv, Stack, TestServer};

/// Uploads of `u1` (user 1), renames of `r1` (user 2) and deletes of `d1` (user 3) stop
/// half-way; nothing else does.
const STALLS: (&str, &str) = ("FILE_SERVICE_FAULT_STALL", "upload:u1,rename:r1,delete:d1");
const LEASE: (&str, &str) = ("LEASE_SECONDS", "2");
const U1: &str = "u1,x\n1,2\n3,4\n";

/// The files the stalled rename and delete work on (made through a server that does not
/// stall for them: uploads of `r1` and `d1` never do).
async fn prepare(server: &TestServer) {
    let session = new_session();
    assert_eq!(server.upload(2, "r1", &session, "r1.csv", sales_csv()).await.0, 201);
    assert_eq!(server.upload(3, "d1", &session, "d1.csv", sales_csv()).await.0, 201);
}

/// Starts the three stalling requests on `victim` and waits until each has reached its
/// step, as seen through `observer` (the victim itself or a replica).
async fn start_stalled_work(victim: &TestServer, observer: &TestServer) {
    let session = new_session();
    let requests = [
        victim
            .client
            .post(victim.url("/files/"))
            .bearer_auth(victim.token(1))
            .multipart(
                reqwest::multipart::Form::new()
                    .text("file_name", "u1")
                    .text("session_id", session.clone())
                    .text("description", "stalls before its commit")
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(U1.as_bytes()).file_name("u1.csv"),
                    ),
            ),
        victim
            .client
            .patch(victim.url("/files/r1"))
            .bearer_auth(victim.token(2))
            .json(&json!({"file_name": "r2"})),
        victim
            .client
            .delete(victim.url("/files/d1"))
            .bearer_auth(victim.token(3)),
    ];
    for request in requests {
        // These never answer: the server is killed while they wait.
        tokio::spawn(async move {
            let _ = request.timeout(Duration::from_secs(120)).send().await;
        });
    }

    // Each step is visible from outside: the upload's bytes in place, the new name linked,
    // the deleted file gone from the API while its bytes remain.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = victim.stored_files();
        let has = |name: &str| stored.iter().any(|s| s == name);
        let hidden = observer.get(3, "/files/d1").await.0 == 404;
        if has("1_u1.csv") && has("2_r2.csv") && has("2_r1.csv") && has("3_d1.csv") && hidden {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled requests did not reach their steps; storage {stored:?}; log:\n{}",
            victim.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `server` shows every piece of the killed work resolved, in the storage folder
/// of `owner` (the first server of replicas that share one): the upload completed (its
/// bytes were in place), the rename undone (its record never switched), the delete finished.
async fn resolved(server: &TestServer, owner: &TestServer) -> bool {
    let stored = owner.stored_files();
    let has = |name: &str| stored.iter().any(|s| s == name);
    // Each is logged once done in full (a delete's bytes go before its row, for example).
    let log = server.logs();
    let logged = [
        "completed an interrupted upload",
        "finished an interrupted rename",
        "completed an interrupted delete",
    ]
    .iter()
    .all(|line| log.contains(line));
    logged
        && server.get(1, "/files/u1").await.0 == 200
        && server.get(2, "/files/r1").await.0 == 200
        && server.get(2, "/files/r2").await.0 == 404
        && !has("2_r2.csv")
        && has("2_r1.csv")
        && !has("3_d1.csv")
}

async fn wait_resolved(server: &TestServer, owner: &TestServer, since: Instant, what: &str) {
    let deadline = since + Duration::from_secs(60);
    while !resolved(server, owner).await {
        assert!(
            Instant::now() < deadline,
            "{what}: abandoned work not resolved; storage {:?}; log:\n{}",
            owner.stored_files(),
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{what}: resolved {:.1} s after the kill", since.elapsed().as_secs_f64());
}

/// Nothing is lost and no name stays blocked: the completed upload has its bytes, the
/// names the rename and delete touched can be used again.
async fn assert_nothing_lost_or_blocked(server: &TestServer) {
    let resp = server
        .client
        .get(server.url("/files/u1/content"))
        .bearer_auth(server.token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), U1);
    let session = new_session();
    assert_eq!(server.upload(2, "r2", &session, "r2.csv", "a\n1\n").await.0, 201);
    assert_eq!(server.upload(3, "d1", &session, "d1.csv", "a\n1\n").await.0, 201);
    assert_eq!(server.upload(1, "u1", &session, "u1.csv", "a\n1\n").await.0, 409);
    let (_, list) = server.get(2, "/files/").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1", "r2"]);
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (run with --include-ignored)"]
async fn a_live_replica_resolves_a_dead_replicas_work_without_a_restart() {
    let db = require_service("TEST_DATABASE_URL", "recovery by a live replica");
    let mut victim = TestServer::start_on(Stack::Postgres, Some(&db), None, &[STALLS, LEASE]).await;
    let survivor = victim.replica(&[("FILE_SERVICE_FAULT_STALL", "")]).await;
    prepare(&survivor).await;
    start_stalled_work(&victim, &survivor).await;

    // While the victim lives, its work is its own: two full lease periods later, nothing
    // it started has been completed or undone by the survivor.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        survivor.get(1, "/files/u1").await.0,
        404,
        "a live replica's upload was taken over"
    );
    assert!(victim.stored_files().contains(&"2_r2.csv".to_string()));
    assert!(victim.stored_files().contains(&"3_d1.csv".to_string()));

    victim.kill();
    wait_resolved(&survivor, &victim, Instant::now(), "PostgreSQL, survivor").await;
    assert_nothing_lost_or_blocked(&survivor).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (run with --include-ignored)"]
async fn a_replica_killed_and_restarted_at_once_resolves_its_own_work() {
    let db = require_service("TEST_DATABASE_URL", "recovery by a restarted replica");
    let mut victim = TestServer::start_on(Stack::Postgres, Some(&db), None, &[STALLS, LEASE]).await;
    prepare(&victim).await;
    start_stalled_work(&victim, &victim).await;

    victim.kill();
    let killed = Instant::now();
    victim.restart();
    wait_resolved(&victim, &victim, killed, "PostgreSQL, restarted").await;
    assert_nothing_lost_or_blocked(&victim).await;
}

#[tokio::test]
async fn sqlite_resolves_a_killed_servers_work_as_it_starts() {
    let mut server = TestServer::start_on(Stack::Sqlite, None, None, &[STALLS]).await;
    prepare(&server).await;
    start_stalled_work(&server, &server).await;

    server.kill();
    server.restart();
    // Recovery runs before the server listens: resolved at the first request.
    assert!(
        resolved(&server, &server).await,
        "storage {:?}; log:\n{}",
        server.stored_files(),
        server.logs()
    );
    assert_nothing_lost_or_blocked(&server).await;
}

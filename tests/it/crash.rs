//! A crash (SIGKILL) with uploads, renames and deletes in flight, on the suite's stack: after a restart nothing acknowledged is lost, nothing is half there, and no name is blocked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{new_session, sha256_hex, TestServer};

/// A CSV of about `rows` × 12 bytes, different for every `seed`.
fn csv(seed: usize, rows: usize) -> Vec<u8> {
    let mut out = b"id,seed,value\n".to_vec();
    for i in 0..rows {
        out.extend_from_slice(format!("{i},{seed},{}\n", (i * 7 + seed) % 1000).as_bytes());
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Upload {
        name: String,
        session: String,
        sha256: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Delete {
        name: String,
    },
}

/// On every stack: a restarted server completes or undoes what the killed one left (its
/// lease ends with it), so no file stays unlisted and no name stays blocked.
#[tokio::test]
async fn sigkill_with_uploads_and_deletes_in_flight_loses_nothing_acknowledged() {
    sigkill_with_writes_in_flight(false).await;
}

/// A rename is noted in the catalog, then a hard link under the new name, the catalog
/// update, and the old name's removal: SIGKILL anywhere between leaves a note that recovery
/// finishes or undoes, never a second file or a blocked name.
#[tokio::test]
async fn sigkill_with_renames_in_flight_loses_nothing_acknowledged() {
    sigkill_with_writes_in_flight(true).await;
}

async fn sigkill_with_writes_in_flight(with_renames: bool) {
    // A short lease: on PostgreSQL, what the killed process left is taken over once its
    // lease has expired (SQLite takes it over at start).
    let mut server = TestServer::start_with(&[("LEASE_SECONDS", "2")]).await;
    let user = 1;
    let token = server.token(user);
    let mut seeded = BTreeMap::new();
    for i in 0..12 {
        for prefix in ["r", "d"].into_iter().filter(|p| with_renames || *p != "r") {
            let name = format!("{prefix}{i:02}");
            let body = csv(1000 + i, 200);
            assert_eq!(
                server
                    .upload(user, &name, &new_session(), "s.csv", body.clone())
                    .await
                    .0,
                201
            );
            seeded.insert(name, sha256_hex(&body));
        }
    }

    // One upload the test holds open: certainly in flight when the server dies.
    let (feed, mut fed) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let held = {
        let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| fed.poll_recv(cx)));
        let form = reqwest::multipart::Form::new()
            .text("file_name", "held")
            .text("session_id", new_session())
            .text("description", "held open")
            .part("file", reqwest::multipart::Part::stream(body).file_name("held.csv"));
        let request = server
            .client
            .post(server.url("/files/"))
            .bearer_auth(&token)
            .multipart(form);
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()).ok() })
    };
    feed.send(Ok(csv(7, 1000))).await.unwrap();

    // Many writes at once, each on its own connection; each remembers its answer.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let mut ops = Vec::new();
    for i in 0..24 {
        let session = new_session();
        let body = csv(i, 2000 + 300 * i);
        ops.push(Op::Upload {
            name: format!("u{i:02}"),
            session: session.clone(),
            sha256: sha256_hex(&body),
        });
    }
    for i in 0..12 {
        if with_renames {
            ops.push(Op::Rename {
                from: format!("r{i:02}"),
                to: format!("r{i:02}-renamed"),
            });
        }
        ops.push(Op::Delete {
            name: format!("d{i:02}"),
        });
    }
    for (i, op) in ops.iter().enumerate() {
        let (op, base, token, answered) = (op.clone(), server.url(""), token.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let request = match &op {
                Op::Upload { name, session, .. } => {
                    let form = reqwest::multipart::Form::new()
                        .text("file_name", name.clone())
                        .text("session_id", session.clone())
                        .text("description", "in flight")
                        .part(
                            "file",
                            reqwest::multipart::Part::bytes(csv(i, 2000 + 300 * i)).file_name("u.csv"),
                        );
                    client.post(format!("{base}/files/")).multipart(form)
                }
                Op::Rename { from, to } => client
                    .patch(format!("{base}/files/{from}"))
                    .json(&serde_json::json!({ "file_name": to })),
                Op::Delete { name } => client.delete(format!("{base}/files/{name}")),
            };
            let status = request
                .bearer_auth(token)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16());
            answered.fetch_add(1, Ordering::SeqCst);
            status
        }));
    }

    // Kill once the held upload is being written and some writes have been answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::SeqCst) < 6 || !server.upload_arriving().await {
        assert!(Instant::now() < deadline, "the writes never got going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    let in_flight_at_kill = ops.len() - answered.load(Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    drop(feed);
    assert_eq!(
        held.await.unwrap().filter(|s| *s < 500),
        None,
        "the held upload was answered"
    );
    eprintln!(
        "SIGKILL with {in_flight_at_kill} of {} writes unanswered, and one upload held open",
        ops.len()
    );

    server.restart();
    // Recovery is done once the storage folder holds exactly the listed files (at once on
    // SQLite; on PostgreSQL within two lease periods, and a dead upload's temporary file
    // once it is a minute old, since replicas may share the folder). The checks below then say whether
    // what it kept and dropped is right.
    let deadline = Instant::now() + Duration::from_secs(90);
    let listed = loop {
        let (status, list) = server.get(user, "/files/?limit=1000").await;
        assert_eq!(status, 200);
        let listed: BTreeMap<String, serde_json::Value> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["file_name"].as_str().unwrap().to_string(), f.clone()))
            .collect();
        let on_disk: BTreeSet<String> = server.stored_files().into_iter().collect();
        let expected: BTreeSet<String> = listed.keys().map(|n| format!("{user}_{n}.csv")).collect();
        if on_disk == expected || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    for (op, outcome) in ops.iter().zip(&outcomes) {
        let acknowledged = matches!(outcome, Some(s) if (200..300).contains(s));
        assert!(
            outcome.is_none() || acknowledged,
            "{op:?} failed before the kill: {outcome:?}"
        );
        match op {
            Op::Upload { name, session, sha256 } => {
                if acknowledged {
                    let record = listed
                        .get(name)
                        .unwrap_or_else(|| panic!("acknowledged upload {name} lost"));
                    assert_eq!(record["sha256"], sha256.as_str(), "{name}");
                    let (status, active) = server.get(user, &format!("/files/active/{session}")).await;
                    assert_eq!(
                        (status, &active["file_name"]),
                        (200, &serde_json::json!(name)),
                        "{active}"
                    );
                } else if let Some(record) = listed.get(name) {
                    assert_eq!(record["sha256"], sha256.as_str(), "{name}: another version");
                }
            }
            Op::Rename { from, to } => {
                let (old, new) = (listed.contains_key(from), listed.contains_key(to));
                assert!(old != new, "{from} → {to}: old listed {old}, new listed {new}");
                if acknowledged {
                    assert!(new, "acknowledged rename {from} → {to} lost");
                }
                let kept = if new { to } else { from };
                assert_eq!(listed[kept]["sha256"], seeded[from].as_str(), "{kept}");
            }
            Op::Delete { name } => {
                if acknowledged {
                    assert!(!listed.contains_key(name), "acknowledged delete of {name} undone");
                } else if let Some(record) = listed.get(name) {
                    assert_eq!(record["sha256"], seeded[name].as_str());
                }
            }
        }
    }
    assert!(!listed.contains_key("held"), "an upload that never finished is listed");

    // Nothing half there: every listed file serves exactly its bytes, the folder holds
    // exactly the listed files (no temporary file, no orphan), and nothing else is listed.
    for (name, record) in &listed {
        let resp = server
            .client
            .get(server.url(&format!("/files/{name}/content")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(sha256_hex(&bytes), record["sha256"].as_str().unwrap(), "{name}");
    }
    let on_disk: BTreeSet<String> = server.stored_files().into_iter().collect();
    let expected: BTreeSet<String> = listed.keys().map(|n| format!("{user}_{n}.csv")).collect();
    assert_eq!(on_disk, expected, "storage folder vs catalog");
    let known: BTreeSet<String> = ops
        .iter()
        .flat_map(|op| match op {
            Op::Upload { name, .. } | Op::Delete { name } => vec![name.clone()],
            Op::Rename { from, to } => vec![from.clone(), to.clone()],
        })
        .collect();
    for name in listed.keys() {
        assert!(known.contains(name), "{name} came from nowhere");
    }

    // No name is blocked: each one not listed can be uploaded now, each listed one deleted.
    for name in known.iter().chain(std::iter::once(&"held".to_string())) {
        if listed.contains_key(name) {
            let (status, body) = server.delete(user, &format!("/files/{name}")).await;
            assert_eq!(status, 200, "delete {name}: {body}");
        } else {
            let (status, body) = server.upload(user, name, &new_session(), "n.csv", csv(9, 3)).await;
            assert_eq!(status, 201, "the name {name} is blocked: {body}");
        }
    }
}

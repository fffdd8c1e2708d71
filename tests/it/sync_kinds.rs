//! Every kind of change, made on either side of an edge (SQLite) and a hub (the suite's
//! stack), reaches the other side and stays put.
//!
//! Rules checked for each case (one user per case, all cases on one pair of servers):
//! - after the direction that carries the change has run, both sides list the same
//!   `(id, name, sha256)` set, with the same records and bytes, and it is the expected one;
//! - a sync in the other direction run first does not undo the change on its side;
//! - a deleted file is gone on both sides and stays gone after a further two-way sync;
//! - a delete-and-recreate leaves exactly one file of that name, the new one;
//! - where only one side changed, no `(conflict …)` copy appears;
//! - once converged, a two-way sync applies nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{enc, sha256_hex, TestServer};
use crate::sync::{
    assert_same_record, by_name, content, edge_and_hub, n, patch, profile_csv, random_user, sync, upload,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Edge,
    Hub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The file is uploaded (the change is its creation).
    Create,
    /// The file's bytes are changed in the storage folder (or bucket); the watcher makes
    /// the new version.
    Content,
    Rename,
    Describe,
    Delete,
    /// Deleted, then a new file uploaded under the same name.
    DeleteRecreate,
}

/// The name every case changes, and the file that nobody changes.
const NAME: &str = "report";
const RENAMED: &str = "report renamed";
const BYSTANDER: &str = "other";

struct Case {
    kind: Kind,
    /// Where `report` was uploaded first (for `Create`, where it is uploaded).
    made_on: Side,
    /// Where the change is made.
    changed_on: Side,
    user: i64,
    /// The first and the new content of `report`.
    first: String,
    second: String,
    /// `report`'s id before the change (none for `Create`).
    id_before: Option<String>,
    /// What both sides must list once the change has travelled: name → (id, bytes).
    expected: BTreeMap<String, (String, Vec<u8>)>,
    /// The description `report` must end with (`Describe`).
    description: Option<String>,
}

impl Case {
    fn label(&self) -> String {
        let what = format!(
            "{:?} of a file made on the {:?}, changed on the {:?}",
            self.kind, self.made_on, self.changed_on
        );
        // The scenarios a delete carrying its creator's origin used to lose.
        match (self.kind, self.made_on, self.changed_on) {
            (Kind::Delete, Side::Edge, Side::Hub) => format!("{what} (hub deletes the edge's report)"),
            (Kind::DeleteRecreate, Side::Edge, Side::Hub) => {
                format!("{what} (hub deletes the edge's report and uploads a new one)")
            }
            _ => what,
        }
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |kind, made_on, changed_on| {
        let i = cases.len() as u64;
        cases.push(Case {
            kind,
            made_on,
            changed_on,
            user: random_user(),
            first: profile_csv(100 + i),
            // Longer than the first: see `change_stored_content`.
            second: format!("{}2024-03-01,oslo,1.0,{i}\n", profile_csv(100 + i)),
            id_before: None,
            expected: BTreeMap::new(),
            description: None,
        });
    };
    for side in [Side::Edge, Side::Hub] {
        add(Kind::Create, side, side);
    }
    for kind in [
        Kind::Content,
        Kind::Rename,
        Kind::Describe,
        Kind::Delete,
        Kind::DeleteRecreate,
    ] {
        for made_on in [Side::Edge, Side::Hub] {
            for changed_on in [Side::Edge, Side::Hub] {
                add(kind, made_on, changed_on);
            }
        }
    }
    cases
}

fn side<'a>(s: Side, edge: &'a TestServer, hub: &'a TestServer) -> &'a TestServer {
    match s {
        Side::Edge => edge,
        Side::Hub => hub,
    }
}

fn other(s: Side) -> Side {
    match s {
        Side::Edge => Side::Hub,
        Side::Hub => Side::Edge,
    }
}

/// Replaces the stored bytes of `user`'s `name` on `server` as another program would, and
/// waits until the server's record has caught up with them. The new bytes must differ in
/// size: the watcher takes a same-size write within a second of the record's last change
/// for a touch (its clock slack), and a record that arrived by sync carries the other
/// instance's date.
pub(crate) async fn change_stored_content(server: &TestServer, user: i64, name: &str, bytes: &[u8]) -> Value {
    let (status, before) = server.get(user, &format!("/files/{}", enc(name))).await;
    assert_eq!(status, 200, "{name} on {}: {before}", server.base);
    assert_ne!(
        before["size_bytes"].as_u64(),
        Some(bytes.len() as u64),
        "a content change in these tests changes the size"
    );
    server.put_stored(&format!("{user}_{name}.csv"), bytes.to_vec());
    let want = sha256_hex(bytes);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, rec) = server.get(user, &format!("/files/{}", enc(name))).await;
        if status == 200 && rec["sha256"] == want.as_str() {
            return rec;
        }
        if std::time::Instant::now() > deadline {
            let log = server.logs();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("file_service::request"))
                .rev()
                .take(40)
                .collect();
            panic!(
                "{name}'s new content never showed on {}: {status} {rec}\nstored: {:?}\nlog tail:\n{}",
                server.base,
                server.stored_files(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets up `report` (unless the case creates it) and the bystander for every case.
async fn prepare(cases: &mut [Case], edge: &TestServer, hub: &TestServer) {
    for case in cases.iter_mut() {
        let maker = side(case.made_on, edge, hub);
        upload(
            side(other(case.made_on), edge, hub),
            case.user,
            BYSTANDER,
            profile_csv(1),
        )
        .await;
        if case.kind != Kind::Create {
            let rec = upload(maker, case.user, NAME, case.first.clone()).await;
            case.id_before = Some(rec["id"].as_str().unwrap().to_string());
        }
    }
}

/// Makes each case's change on its side and notes what both sides must end with.
async fn change(cases: &mut [Case], edge: &TestServer, hub: &TestServer) {
    for case in cases.iter_mut() {
        let (server, u) = (side(case.changed_on, edge, hub), case.user);
        let mut expected = BTreeMap::from([(BYSTANDER.to_string(), (String::new(), profile_csv(1).into_bytes()))]);
        let before = case.id_before.clone().unwrap_or_default();
        match case.kind {
            Kind::Create => {
                let rec = upload(server, u, NAME, case.first.clone()).await;
                expected.insert(NAME.into(), (id_of(&rec), case.first.clone().into_bytes()));
            }
            Kind::Content => {
                let rec = change_stored_content(server, u, NAME, case.second.as_bytes()).await;
                assert_eq!(id_of(&rec), before, "a content change keeps the file");
                expected.insert(NAME.into(), (before, case.second.clone().into_bytes()));
            }
            Kind::Rename => {
                patch(server, u, NAME, json!({"file_name": RENAMED})).await;
                expected.insert(RENAMED.into(), (before, case.first.clone().into_bytes()));
            }
            Kind::Describe => {
                let description = format!("described on the {:?}", case.changed_on);
                patch(server, u, NAME, json!({"description": description})).await;
                case.description = Some(description);
                expected.insert(NAME.into(), (before, case.first.clone().into_bytes()));
            }
            Kind::Delete => {
                assert_eq!(
                    server.delete(u, &format!("/files/{NAME}")).await.0,
                    200,
                    "{}",
                    case.label()
                );
            }
            Kind::DeleteRecreate => {
                assert_eq!(
                    server.delete(u, &format!("/files/{NAME}")).await.0,
                    200,
                    "{}",
                    case.label()
                );
                let rec = upload(server, u, NAME, case.second.clone()).await;
                assert_ne!(id_of(&rec), before, "a new upload is a new file");
                expected.insert(NAME.into(), (id_of(&rec), case.second.clone().into_bytes()));
            }
        }
        case.expected = expected;
    }
}

fn id_of(rec: &Value) -> String {
    rec["id"].as_str().unwrap().to_string()
}

/// `server` lists exactly the case's expected files (the bystander by name and bytes).
async fn check_side(case: &Case, server: &TestServer, what: &str) -> BTreeMap<String, Value> {
    let label = case.label();
    let files = by_name(server, case.user).await;
    let names: Vec<&String> = files.keys().collect();
    assert!(
        names.iter().all(|n| !n.contains("(conflict")),
        "{label}, {what}: a conflict copy where only one side changed: {names:?}"
    );
    assert_eq!(
        names,
        case.expected.keys().collect::<Vec<_>>(),
        "{label}, {what}: names listed"
    );
    for (name, (id, bytes)) in &case.expected {
        let rec = &files[name];
        if !id.is_empty() {
            assert_eq!(rec["id"], id.as_str(), "{label}, {what}: id of {name}");
        }
        assert_eq!(
            rec["sha256"],
            sha256_hex(bytes).as_str(),
            "{label}, {what}: sha256 of {name}"
        );
        assert!(
            content(server, case.user, name).await == *bytes,
            "{label}, {what}: bytes of {name}"
        );
    }
    if let Some(description) = &case.description {
        assert_eq!(files[NAME]["description"], description.as_str(), "{label}, {what}");
    }
    for gone in [NAME, RENAMED] {
        if !case.expected.contains_key(gone) {
            let (status, body) = server.get(case.user, &format!("/files/{}", enc(gone))).await;
            assert_eq!(status, 404, "{label}, {what}: {gone} should be gone: {body}");
        }
    }
    files
}

/// Both sides list the case's expected files, with the same records.
async fn check_both(case: &Case, edge: &TestServer, hub: &TestServer, when: &str) {
    let on_edge = check_side(case, edge, &format!("edge, {when}")).await;
    let on_hub = check_side(case, hub, &format!("hub, {when}")).await;
    for name in on_edge.keys() {
        assert_same_record(
            &on_edge[name],
            &on_hub[name],
            &format!("{}, {when}: {name}", case.label()),
        );
    }
}

/// Runs every case with the two directions in the given order, then both again.
async fn every_kind_of_change(pull_first: bool) {
    let (edge, hub) = edge_and_hub().await;
    let mut cases = cases();
    prepare(&mut cases, &edge, &hub).await;
    sync(&edge, &hub, true, true).await;
    change(&mut cases, &edge, &hub).await;

    let order = if pull_first {
        [(Side::Hub, true, false), (Side::Edge, false, true)]
    } else {
        [(Side::Edge, false, true), (Side::Hub, true, false)]
    };
    for (step, (from, pull, push)) in order.into_iter().enumerate() {
        let report = sync(&edge, &hub, pull, push).await;
        let dir = if pull { "pulled" } else { "pushed" };
        assert_eq!(n(&report, dir, "conflicts"), 0, "{report}");
        assert_eq!(n(&report, dir, "waiting"), 0, "{report}");
        let when = format!("after the {dir} sync");
        for case in &cases {
            if case.changed_on == from || step == 1 {
                check_both(case, &edge, &hub, &when).await;
            } else {
                // Not carried yet: the side that made the change still has it.
                let changer = side(case.changed_on, &edge, &hub);
                check_side(case, changer, &format!("{:?}, {when}", case.changed_on)).await;
            }
        }
    }

    // Converged: both ways again applies nothing, and deleted files stay gone.
    let again = sync(&edge, &hub, true, true).await;
    for dir in ["pulled", "pushed"] {
        for k in ["applied", "conflicts", "waiting", "blobs"] {
            assert_eq!(n(&again, dir, k), 0, "{dir}.{k} of the further two-way sync: {again}");
        }
    }
    for case in &cases {
        check_both(case, &edge, &hub, "after a further two-way sync").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_change_made_on_either_side_reaches_the_other_pull_first() {
    every_kind_of_change(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_change_made_on_either_side_reaches_the_other_push_first() {
    every_kind_of_change(false).await;
}

/// The scenario of a delete made on the side that did not create the file, step by step
/// with nothing else going on: the edge uploads `report` and pushes it; the hub deletes
/// it; the edge pulls and no longer lists it; then the hub deletes and re-uploads
/// `report` (after the edge has it again) and both sides end with exactly the new one.
#[tokio::test(flavor = "multi_thread")]
async fn a_delete_made_on_the_hub_reaches_the_edge_that_created_the_file() {
    let (edge, hub) = edge_and_hub().await;
    let u = random_user();
    let first = upload(&edge, u, NAME, profile_csv(7)).await;
    sync(&edge, &hub, false, true).await;
    assert_eq!(hub.get(u, &format!("/files/{NAME}")).await.0, 200);

    assert_eq!(hub.delete(u, &format!("/files/{NAME}")).await.0, 200);
    let report = sync(&edge, &hub, true, false).await;
    assert_eq!(n(&report, "pulled", "applied"), 1, "the delete is applied: {report}");
    assert_eq!(
        edge.get(u, &format!("/files/{NAME}")).await.0,
        404,
        "the edge still lists it"
    );
    let again = sync(&edge, &hub, true, true).await;
    assert_eq!(n(&again, "pushed", "applied"), 0, "{again}");
    for server in [&edge, &hub] {
        assert!(by_name(server, u).await.is_empty(), "{}", server.base);
    }

    // Again from the edge; then the hub deletes and re-creates the name.
    let second = upload(&edge, u, NAME, profile_csv(8)).await;
    sync(&edge, &hub, true, true).await;
    assert_eq!(hub.delete(u, &format!("/files/{NAME}")).await.0, 200);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let third = upload(&hub, u, NAME, profile_csv(9)).await;
    sync(&edge, &hub, true, true).await;
    sync(&edge, &hub, true, true).await;
    for server in [&edge, &hub] {
        let files = by_name(server, u).await;
        assert_eq!(files.keys().collect::<Vec<_>>(), [NAME], "{}: {files:?}", server.base);
        assert_eq!(files[NAME]["id"], third["id"], "{}", server.base);
        assert_ne!(files[NAME]["id"], second["id"]);
        assert_ne!(files[NAME]["id"], first["id"]);
        assert_eq!(content(server, u, NAME).await, profile_csv(9).as_bytes());
    }
}

/// A file made on the edge and synced, then described on the edge (`edge_description`)
/// and later on the hub ("hub"); a push makes the hub keep the edge's version as a
/// conflict copy. Returns the edge, the hub, the user and the file's record.
async fn hub_keeps_a_copy_of_the_edges_version(
    seed: u64,
    edge_description: &str,
) -> (TestServer, TestServer, i64, Value) {
    let (edge, hub) = edge_and_hub().await;
    let u = random_user();
    let doc = upload(&edge, u, "doc", profile_csv(seed)).await;
    sync(&edge, &hub, true, true).await;
    patch(&edge, u, "doc", json!({"description": edge_description})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    patch(&hub, u, "doc", json!({"description": "hub"})).await;
    let pushed = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&pushed, "pushed", "conflicts"), 1, "{pushed}");
    (edge, hub, u, doc)
}

/// Concurrent descriptions of one file, the hub's the later: a push makes the hub keep
/// the edge's version as a conflict copy. The edge then changes the file again before it
/// pulls, so it meets a different conflict (its newer version against the hub's), which
/// its newer version wins. Both sides agree on two files: the edge's newest version under
/// the name and the hub's as a copy. The copy of the edge's first version is gone: the
/// file that kept the name descends from it, so it is that file's past, not a change of
/// its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_copy_made_on_the_hub_reaches_the_edge_that_changed_the_file_again() {
    let (edge, hub, u, doc) = hub_keeps_a_copy_of_the_edges_version(11, "edge first").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    patch(&edge, u, "doc", json!({"description": "edge second"})).await;

    sync(&edge, &hub, true, true).await;
    sync(&edge, &hub, true, true).await;
    let (on_edge, on_hub) = (by_name(&edge, u).await, by_name(&hub, u).await);
    assert_eq!(
        on_edge.keys().collect::<Vec<_>>(),
        on_hub.keys().collect::<Vec<_>>(),
        "edge and hub list different files"
    );
    for name in on_edge.keys() {
        assert_same_record(&on_edge[name], &on_hub[name], name);
    }
    // The latest version keeps the file and its name; the hub's survives as a copy.
    assert_eq!(on_edge["doc"]["id"], doc["id"]);
    assert_eq!(on_edge["doc"]["description"], "edge second");
    let descriptions: Vec<&Value> = on_edge.values().map(|f| &f["description"]).collect();
    assert!(
        descriptions.contains(&&json!("hub")),
        "the hub's version is lost: {on_edge:?}"
    );
    assert_eq!(
        on_edge.len(),
        2,
        "one copy, the hub's version, beside the file: {on_edge:?}"
    );
    assert!(on_edge
        .keys()
        .filter(|k| k.as_str() != "doc")
        .all(|k| k.starts_with("doc (conflict ")));
    assert!(
        !descriptions.contains(&&json!("edge first")),
        "the copy of the edge's first version stayed beside the version made from it: {on_edge:?}"
    );
}

/// Two files take the name `a`, the hub's the later. The edge pushes first, so the hub
/// keeps the edge's file under a conflict name; then the hub's own `a` is deleted before
/// the edge has seen it. The edge meets no clash at all, yet both sides must end with the
/// edge's file under one and the same name.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_clash_resolved_on_the_hub_alone_still_converges() {
    let (edge, hub) = edge_and_hub().await;
    let u = random_user();
    let mine = upload(&edge, u, "a", profile_csv(21)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    upload(&hub, u, "a", profile_csv(22)).await;
    let pushed = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&pushed, "pushed", "waiting"), 0, "{pushed}");
    let on_hub = by_name(&hub, u).await;
    assert_eq!(on_hub.len(), 2, "{on_hub:?}");
    assert_eq!(hub.delete(u, "/files/a").await.0, 200);

    sync(&edge, &hub, true, true).await;
    sync(&edge, &hub, true, true).await;
    let (on_edge, on_hub) = (by_name(&edge, u).await, by_name(&hub, u).await);
    assert_eq!(
        on_edge.keys().collect::<Vec<_>>(),
        on_hub.keys().collect::<Vec<_>>(),
        "edge and hub list different names"
    );
    assert_eq!(on_edge.len(), 1, "{on_edge:?}");
    for name in on_edge.keys() {
        assert_eq!(on_edge[name]["id"], mine["id"]);
        assert_same_record(&on_edge[name], &on_hub[name], name);
    }
}

/// The edge describes `doc`, the hub describes it later: a push makes the hub keep the
/// edge's version as a conflict copy. The edge, not having pulled, deletes `doc` — the
/// very version the copy keeps. The hub's later change wins over the delete, but the
/// deleted version must not come back as the copy, on either side.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_version_does_not_come_back_as_a_conflict_copy() {
    let (edge, hub, u, doc) = hub_keeps_a_copy_of_the_edges_version(31, "edge").await;
    assert_eq!(
        by_name(&hub, u).await.len(),
        2,
        "the hub keeps the edge's version as a copy"
    );
    assert_eq!(edge.delete(u, "/files/doc").await.0, 200);

    sync(&edge, &hub, true, true).await;
    sync(&edge, &hub, true, true).await;
    for server in [&edge, &hub] {
        let files = by_name(server, u).await;
        assert_eq!(files.keys().collect::<Vec<_>>(), ["doc"], "{}: {files:?}", server.base);
        assert_eq!(files["doc"]["id"], doc["id"]);
        assert_eq!(files["doc"]["description"], "hub", "{}", server.base);
    }
}

/// Both sides hold one file: the copy of the edge's version, under its conflict name.
async fn only_the_edges_version_as_a_copy_is_left(edge: &TestServer, hub: &TestServer, u: i64) {
    sync(edge, hub, true, true).await;
    sync(edge, hub, true, true).await;
    let (on_edge, on_hub) = (by_name(edge, u).await, by_name(hub, u).await);
    assert_eq!(
        on_edge.keys().collect::<Vec<_>>(),
        on_hub.keys().collect::<Vec<_>>(),
        "edge and hub list different files"
    );
    assert_eq!(on_edge.len(), 1, "{on_edge:?}");
    let (name, copy) = on_edge.iter().next().unwrap();
    assert!(name.starts_with("doc (conflict "), "{on_edge:?}");
    assert_eq!(copy["description"], "edge");
    assert_same_record(copy, &on_hub[name], name);
}

/// The edge describes `doc`, the hub describes it later: a push makes the hub keep the
/// edge's version as a conflict copy. The hub then deletes `doc` (its own, later version).
/// The edge, pulling, meets a delete of a version concurrent with its own and later: its
/// version lost that conflict, so the delete stands and the edge's version is the copy the
/// hub already holds, not a second `doc` beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_delete_of_the_version_that_won_a_conflict_leaves_the_copy_on_both_sides() {
    let (edge, hub, u, _) = hub_keeps_a_copy_of_the_edges_version(41, "edge").await;
    assert_eq!(hub.delete(u, "/files/doc").await.0, 200);
    only_the_edges_version_as_a_copy_is_left(&edge, &hub, u).await;
}

/// As above, but the hub deletes its later version before the edge's concurrent one has
/// reached it: whichever side hears of the conflict first, both end the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_concurrent_earlier_change_meets_a_delete_as_the_conflicts_loser() {
    let (edge, hub) = edge_and_hub().await;
    let u = random_user();
    upload(&edge, u, "doc", profile_csv(42)).await;
    sync(&edge, &hub, true, true).await;
    patch(&edge, u, "doc", json!({"description": "edge"})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    patch(&hub, u, "doc", json!({"description": "hub"})).await;
    assert_eq!(hub.delete(u, "/files/doc").await.0, 200);
    let pushed = sync(&edge, &hub, false, true).await;
    assert_eq!(n(&pushed, "pushed", "conflicts"), 1, "{pushed}");
    only_the_edges_version_as_a_copy_is_left(&edge, &hub, u).await;
}

/// The hub keeps the edge's version as a conflict copy, then deletes `doc` (its own, later
/// version). The edge, which has not heard of either, changes `doc` again, later than the
/// delete, and pushes: that change beats the delete, so the hub takes `doc` back as the
/// edge's newest version, which descends from the copy's. The copy is that version's past
/// and goes on both sides, although the hub no longer held the file when the version came.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_beats_a_delete_drops_the_copy_of_its_own_past() {
    let (edge, hub, u, doc) = hub_keeps_a_copy_of_the_edges_version(43, "edge first").await;
    assert_eq!(hub.delete(u, "/files/doc").await.0, 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
    patch(&edge, u, "doc", json!({"description": "edge second"})).await;
    sync(&edge, &hub, false, true).await;

    sync(&edge, &hub, true, true).await;
    sync(&edge, &hub, true, true).await;
    for server in [&edge, &hub] {
        let files = by_name(server, u).await;
        assert_eq!(files.keys().collect::<Vec<_>>(), ["doc"], "{}: {files:?}", server.base);
        assert_eq!(files["doc"]["id"], doc["id"]);
        assert_eq!(files["doc"]["description"], "edge second", "{}", server.base);
    }
    assert_same_record(&by_name(&edge, u).await["doc"], &by_name(&hub, u).await["doc"], "doc");
}

/// The hub describes `doc`, the edge describes it later and pulls: the edge keeps its
/// version and the hub's as a conflict copy, which the user deletes on the edge. The edge
/// then changes `doc` again and pushes: the hub meets the same conflict itself after it
/// has heard of the copy's delete (a delete of a file it never held). The copy stays
/// deleted on both sides.
#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_copy_deleted_before_the_other_side_meets_the_conflict_stays_deleted() {
    let (edge, hub) = edge_and_hub().await;
    let u = random_user();
    let doc = upload(&edge, u, "doc", profile_csv(44)).await;
    sync(&edge, &hub, true, true).await;
    patch(&hub, u, "doc", json!({"description": "hub"})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    patch(&edge, u, "doc", json!({"description": "edge"})).await;
    let pulled = sync(&edge, &hub, true, false).await;
    assert_eq!(n(&pulled, "pulled", "conflicts"), 1, "{pulled}");
    let copy = by_name(&edge, u)
        .await
        .into_keys()
        .find(|k| k.starts_with("doc (conflict "))
        .expect("the edge keeps the hub's version as a copy");
    assert_eq!(edge.delete(u, &format!("/files/{}", enc(&copy))).await.0, 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
    patch(&edge, u, "doc", json!({"description": "edge again"})).await;
    sync(&edge, &hub, false, true).await;

    sync(&edge, &hub, true, true).await;
    sync(&edge, &hub, true, true).await;
    for server in [&edge, &hub] {
        let files = by_name(server, u).await;
        assert_eq!(files.keys().collect::<Vec<_>>(), ["doc"], "{}: {files:?}", server.base);
        assert_eq!(files["doc"]["id"], doc["id"]);
        assert_eq!(files["doc"]["description"], "edge again", "{}", server.base);
    }
}

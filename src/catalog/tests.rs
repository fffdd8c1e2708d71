//! One contract, run against both catalog backends: SQLite in a temporary folder, and PostgreSQL on a fresh database when `TEST_DATABASE_URL` is given.

use std::collections::HashSet;

use chrono::Utc;
use uuid::Uuid;

use super::postgres::PostgresCatalog;
use super::sqlite::SqliteCatalog;
use super::{
    Catalog, ChangeOp, Leases, QuotaLimits, QuotaOverride, QuotaSetting, QuotaUsage, ResumableState, ResumableUpload,
    Settlement, ShareLink,
};
use crate::error::Error;
use crate::model::{new_rev, FileRecord, FileUpdate, ListQuery};

fn record(user: i64, name: &str, sha: &str) -> FileRecord {
    let now = Utc::now();
    FileRecord {
        id: Uuid::new_v4(),
        user_id: user,
        file_name: name.to_string(),
        storage_uri: format!("local:///s/{user}_{name}.csv"),
        storage_type: "local".into(),
        description: format!("about {name}"),
        summary: "The dataset has **1 rows** and **1 columns**.".into(),
        extension: "csv".into(),
        size_bytes: 10,
        sha256: sha.to_string(),
        row_count: 1,
        column_count: 1,
        profile_json: r#"{"columns":[]}"#.into(),
        created_at: now,
        updated_at: now,
        rev: new_rev(),
        rev_history: Vec::new(),
        origin: String::new(),
    }
}

fn names(c: &dyn Catalog, user: i64, query: &ListQuery) -> (Vec<String>, u64) {
    let (files, total) = c.list_files(user, query).unwrap();
    (files.into_iter().map(|f| f.file_name).collect(), total)
}

/// Uploads `name` all the way (reserve, commit) and returns the stored record.
fn add(c: &dyn Catalog, user: i64, name: &str, session: Option<Uuid>) -> FileRecord {
    let r = record(user, name, &format!("{:064x}", name.len() as u64 * 7919 + user as u64));
    c.reserve_upload(&r).unwrap();
    c.commit_upload(r.id, session).unwrap()
}

fn contract(c: &dyn Catalog) {
    // Migrations apply once and again without harm.
    c.migrate().unwrap();
    c.migrate().unwrap();
    c.ping().unwrap();
    let instance = c.instance_id().unwrap();
    assert!(!instance.is_empty());
    assert_eq!(c.instance_id().unwrap(), instance);

    let (u, other) = (1_i64, 2_i64);
    let s1 = Uuid::new_v4();

    // A reserved upload is invisible, claims its name, and blocks a second reservation.
    let pending = record(u, "sales", &"a".repeat(64));
    c.reserve_upload(&pending).unwrap();
    assert!(c.get_file(u, "sales").unwrap().is_none());
    assert!(c.name_claimed(u, "sales").unwrap());
    assert_eq!(names(c, u, &ListQuery::default()), (vec![], 0));
    assert!(matches!(
        c.reserve_upload(&record(u, "sales", &"b".repeat(64))),
        Err(Error::Conflict(_))
    ));
    // Another user may have the same name.
    add(c, other, "sales", None);
    // Aborted: the name is free again.
    c.abort_upload(pending.id).unwrap();
    assert!(!c.name_claimed(u, "sales").unwrap());

    // Committed with a session: visible, active, and in the change feed.
    let sales = add(c, u, "sales", Some(s1));
    assert_eq!(sales.file_name, "sales");
    assert_eq!(c.get_file(u, "sales").unwrap().unwrap().id, sales.id);
    assert_eq!(c.get_active(u, s1).unwrap().unwrap().id, sales.id);
    assert!(
        c.get_active(other, s1).unwrap().is_none(),
        "users never see each other's entries"
    );
    assert_eq!(c.get_by_id(sales.id).unwrap().unwrap().profile_json, sales.profile_json);
    assert_eq!(c.find_by_sha256(&sales.sha256).unwrap().map(|r| r.id), Some(sales.id));
    let unknown = "0".repeat(64);
    assert_eq!(
        c.held_sha256s(&[unknown.clone(), sales.sha256.clone(), unknown])
            .unwrap(),
        HashSet::from([sales.sha256.clone()])
    );
    assert!(c.held_sha256s(&[]).unwrap().is_empty());
    let feed = c.changes(0, 100, Some(u), None).unwrap();
    assert_eq!(feed.changes.len(), 1, "{feed:?}");
    assert_eq!(
        (feed.changes[0].op, feed.changes[0].file.id),
        (ChangeOp::Upsert, sales.id)
    );
    assert!(!feed.more);
    assert_eq!(feed.last_seq, feed.changes[0].seq);
    // A reader skips the changes of its own origin, and still moves past them.
    let origin = feed.changes[0].file.origin.clone();
    let own = c.changes(0, 100, Some(u), Some(&origin)).unwrap();
    assert!(own.changes.is_empty(), "{own:?}");
    assert_eq!(own.last_seq, feed.last_seq);

    // Listing: oldest first, paged, by prefix, with the total.
    for name in ["sales-b", "misc", "sales-c"] {
        add(c, u, name, None);
    }
    assert_eq!(
        names(c, u, &ListQuery::default()).0,
        ["sales", "sales-b", "misc", "sales-c"]
    );
    let page = ListQuery {
        limit: Some(2),
        offset: 1,
        name_prefix: Some("sales".into()),
    };
    assert_eq!(names(c, u, &page), (vec!["sales-b".to_string(), "sales-c".into()], 3));
    let listed = c.list_files(u, &ListQuery::default()).unwrap().0;
    assert!(
        listed.iter().all(|f| f.profile_json.is_empty()),
        "listings leave out the profile"
    );
    // The ids and revs of a listing, in its order, with its total; and records by id, as
    // listings read them (this user's visible ones only).
    let (revs, total) = c.list_revs(u, &page).unwrap();
    let paged = c.list_files(u, &page).unwrap().0;
    assert_eq!(total, 3);
    assert_eq!(revs, paged.iter().map(|f| (f.id, f.rev.clone())).collect::<Vec<_>>());
    let (all_revs, all) = c.list_revs(u, &ListQuery::default()).unwrap();
    assert_eq!((all_revs.len(), all), (4, 4));
    let wanted = [listed[3].id, listed[0].id, Uuid::new_v4()];
    let mut by_id = c.listed_by_id(u, &wanted).unwrap();
    by_id.sort_by_key(|f| f.file_name.clone());
    assert_eq!(by_id, vec![listed[0].clone(), listed[3].clone()]);
    assert!(c.listed_by_id(other, &wanted).unwrap().is_empty());
    assert!(c.listed_by_id(u, &[]).unwrap().is_empty());

    // Activation: a file of this user only; one active file per session.
    assert!(c.set_active(u, s1, "nope").unwrap().is_none());
    assert!(c.set_active(other, Uuid::new_v4(), "misc").unwrap().is_none());
    assert_eq!(c.set_active(u, s1, "misc").unwrap().unwrap().file_name, "misc");
    assert_eq!(c.get_active(u, s1).unwrap().unwrap().file_name, "misc");
    let s2 = Uuid::new_v4();
    c.set_active(u, s2, "misc").unwrap();

    // Rename: the active entries follow; a taken name is a conflict and changes nothing.
    let rename = |to: &str| FileUpdate {
        rename: Some((to.to_string(), format!("local:///s/{u}_{to}.csv"))),
        description: None,
    };
    assert!(matches!(
        c.update_file(u, "misc", &rename("sales")),
        Err(Error::Conflict(_))
    ));
    let (renamed, mut sessions) = c.update_file(u, "misc", &rename("misc2")).unwrap().unwrap();
    sessions.sort();
    let mut expected = vec![s1, s2];
    expected.sort();
    assert_eq!(sessions, expected);
    assert_eq!(renamed.file_name, "misc2");
    assert_ne!(renamed.rev, sales.rev);
    assert!(c.get_file(u, "misc").unwrap().is_none());
    assert_eq!(c.get_active(u, s2).unwrap().unwrap().file_name, "misc2");
    assert!(c.update_file(u, "nope", &rename("x")).unwrap().is_none());
    let described = FileUpdate {
        rename: None,
        description: Some("new words".into()),
    };
    let (after, _) = c.update_file(u, "misc2", &described).unwrap().unwrap();
    assert_eq!(
        (after.description.as_str(), after.file_name.as_str()),
        ("new words", "misc2")
    );

    // Delete: hidden at once, no longer active anywhere, the name claimed until finished.
    let (gone, mut sessions) = c.begin_delete(u, "misc2", None).unwrap().unwrap();
    sessions.sort();
    assert_eq!(sessions, expected);
    assert!(c.get_file(u, "misc2").unwrap().is_none());
    assert!(c.get_active(u, s1).unwrap().is_none());
    assert!(c.name_claimed(u, "misc2").unwrap());
    assert!(c.begin_delete(u, "misc2", None).unwrap().is_none());
    c.finish_delete(gone.id).unwrap();
    assert!(!c.name_claimed(u, "misc2").unwrap());
    assert_eq!(c.tombstone(gone.id).unwrap().map(|t| t.file_name), Some("misc2".into()));
    let last = c
        .changes(0, 100, Some(u), None)
        .unwrap()
        .changes
        .into_iter()
        .last()
        .unwrap();
    assert_eq!((last.op, last.file.id), (ChangeOp::Delete, gone.id));
    // A delete made here is this instance's change, whoever made the deleted version.
    assert_eq!(last.file.origin, c.instance_id().unwrap());
    assert_eq!(
        c.tombstone(gone.id).unwrap().map(|t| t.origin),
        Some(c.instance_id().unwrap())
    );
    // A delete of a file never held here is entered once, and never over a known file.
    let mut never = crate::model::SyncRecord::from_record(&gone, false);
    never.id = Uuid::new_v4();
    assert!(c.record_delete(&never).unwrap());
    assert!(!c.record_delete(&never).unwrap());
    assert_eq!(c.tombstone(never.id).unwrap().map(|t| t.rev), Some(never.rev.clone()));
    assert!(!c
        .record_delete(&crate::model::SyncRecord::from_record(&sales, false))
        .unwrap());
    assert!(!c
        .record_delete(&crate::model::SyncRecord::from_record(&gone, false))
        .unwrap());

    // Versions that arrived by sync, reserved and committed a batch at a time: only files
    // never known here (no record, no feed entry) under names nothing holds.
    let batch_user = 3_i64;
    let holder_of_name = add(c, batch_user, "held", None);
    let fresh = record(batch_user, "fresh", &"c".repeat(64));
    let mut known = record(batch_user, "known", &"d".repeat(64));
    known.id = never.id; // deleted elsewhere: its feed entry is here
    let taken = record(batch_user, "held", &"e".repeat(64));
    let mut same_id = record(batch_user, "same-id", &"f".repeat(64));
    same_id.id = holder_of_name.id;
    let reserved = c.reserve_unknown(&[fresh.clone(), known, taken, same_id]).unwrap();
    assert_eq!(reserved, vec![fresh.id]);
    assert!(c.get_file(batch_user, "fresh").unwrap().is_none()); // reserved, not yet visible
    assert!(c.name_claimed(batch_user, "fresh").unwrap());
    let feed_before = c.changes(0, 1000, Some(batch_user), None).unwrap().changes.len();
    assert_eq!(c.commit_uploads(&[fresh.id, Uuid::new_v4()]).unwrap(), vec![fresh.id]);
    assert_eq!(c.get_file(batch_user, "fresh").unwrap().map(|f| f.id), Some(fresh.id));
    let feed = c.changes(0, 1000, Some(batch_user), None).unwrap().changes;
    assert_eq!(feed.len(), feed_before + 1);
    assert_eq!(
        feed.last().map(|ch| (ch.op, ch.file.id)),
        Some((ChangeOp::Upsert, fresh.id))
    );
    // Once committed it is known: a second batch reserves nothing.
    assert!(c.reserve_unknown(&[fresh.clone()]).unwrap().is_empty());

    // Clearing an active entry is idempotent.
    c.set_active(u, s1, "sales").unwrap();
    c.clear_active(u, s1).unwrap();
    c.clear_active(u, s1).unwrap();
    assert!(c.get_active(u, s1).unwrap().is_none());

    // Every user's visible records; checkpoints start at 0 and keep what is set.
    let mut all: Vec<(i64, String)> = c
        .all_files()
        .unwrap()
        .into_iter()
        .map(|f| (f.user_id, f.file_name))
        .collect();
    all.sort();
    assert_eq!(
        all,
        [
            (1, "sales".to_string()),
            (1, "sales-b".into()),
            (1, "sales-c".into()),
            (2, "sales".into()),
            (3, "fresh".into()),
            (3, "held".into())
        ]
    );
    assert_eq!(c.checkpoint("elsewhere").unwrap(), 0);
    c.set_checkpoint("elsewhere", 42).unwrap();
    assert_eq!(c.checkpoint("elsewhere").unwrap(), 42);

    resumable_contract(c);
    share_links_contract(c);
    quotas_contract(c);
}

fn resumable(user: i64, name: &str, length: u64) -> ResumableUpload {
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
    ResumableUpload {
        id: Uuid::new_v4(),
        user_id: user,
        file_name: name.to_string(),
        session_id: Uuid::new_v4(),
        description: "parts".into(),
        filename: "parts.csv".into(),
        metadata: "filename cGFydHMuY3N2".into(),
        length,
        offset: 0,
        parts: Vec::new(),
        state: ResumableState::Receiving,
        error: None,
        created_at: now,
        expires_at: now + chrono::TimeDelta::hours(1),
    }
}

fn resumable_contract(c: &dyn Catalog) {
    c.renew_lease(std::time::Duration::from_secs(30)).unwrap();
    let mut up = resumable(7, "big", 10);
    c.create_resumable(&up).unwrap();
    // An unfinished upload claims its name among the user's unfinished uploads only.
    let err = c.create_resumable(&resumable(7, "big", 5)).unwrap_err();
    assert!(
        matches!(err, Error::UploadInProgress { id, .. } if id == up.id),
        "{err}"
    );
    c.create_resumable(&resumable(8, "big", 5)).unwrap();
    let read = c.get_resumable(up.id).unwrap().unwrap();
    assert_eq!(
        (read.offset, read.length, read.state),
        (0, 10, ResumableState::Receiving)
    );
    assert_eq!(
        (read.metadata.as_str(), read.created_at),
        (up.metadata.as_str(), up.created_at)
    );

    // One holder at a time, this process included; a part is recorded only by the holder
    // and only from the offset it started at.
    assert!(c.hold_resumable(up.id).unwrap());
    assert!(!c.hold_resumable(up.id).unwrap());
    up.offset = 4;
    up.parts = vec!["p0".into()];
    assert!(!c.record_part(&up, 1).unwrap(), "from the wrong offset");
    assert!(c.record_part(&up, 0).unwrap());
    assert!(!c.record_part(&up, 0).unwrap(), "recording let go of the upload");
    let read = c.get_resumable(up.id).unwrap().unwrap();
    assert_eq!((read.offset, read.parts.clone()), (4, vec!["p0".to_string()]));
    assert!(c.hold_resumable(up.id).unwrap());
    c.release_resumable(up.id).unwrap();
    // The last part makes it completing, still held; it cannot be removed then.
    assert!(c.hold_resumable(up.id).unwrap());
    up.offset = 10;
    up.parts.push("p4".into());
    assert!(c.record_part(&up, 4).unwrap());
    assert_eq!(
        c.get_resumable(up.id).unwrap().unwrap().state,
        ResumableState::Completing
    );
    assert!(c.remove_resumable(up.id).unwrap().is_none());
    // A live holder's completion is not taken over, unless every other process's is.
    assert!(c.claim_abandoned_resumables(false).unwrap().is_empty());
    c.finish_resumable(up.id, Some(r#"{"code":"unreadable_file","detail":"no"}"#))
        .unwrap();
    let read = c.get_resumable(up.id).unwrap().unwrap();
    assert_eq!(read.state, ResumableState::Failed);
    assert!(read.parts.is_empty() && read.error.as_deref().unwrap().contains("unreadable_file"));
    // Finished: its name is free again; forgetting it returns it.
    c.create_resumable(&resumable(7, "big", 3)).unwrap();
    assert_eq!(c.remove_resumable(up.id).unwrap().unwrap().id, up.id);
    assert!(c.get_resumable(up.id).unwrap().is_none());

    // Expired uploads are removed unless a live process holds them.
    let mut old = resumable(9, "old", 10);
    old.expires_at = Utc::now() - chrono::TimeDelta::seconds(5);
    c.create_resumable(&old).unwrap();
    let mut held = resumable(9, "held", 10);
    held.expires_at = old.expires_at;
    c.create_resumable(&held).unwrap();
    assert!(c.hold_resumable(held.id).unwrap());
    let expired: Vec<Uuid> = c.remove_expired_resumables().unwrap().iter().map(|u| u.id).collect();
    assert_eq!(expired, vec![old.id]);
    c.release_resumable(held.id).unwrap();
    assert_eq!(c.remove_expired_resumables().unwrap().len(), 1);
}

fn share_link(file: &FileRecord, max_downloads: Option<u64>, expires_in: chrono::TimeDelta) -> ShareLink {
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
    ShareLink {
        id: Uuid::new_v4(),
        file_id: file.id,
        user_id: file.user_id,
        sha256: file.sha256.clone(),
        max_downloads,
        downloads: 0,
        created_at: now,
        expires_at: now + expires_in,
    }
}

fn share_links_contract(c: &dyn Catalog) {
    let hour = chrono::TimeDelta::hours(1);
    let file = add(c, 11, "shared", None);
    let link = share_link(&file, Some(2), hour);
    assert!(c.create_share_link(&link, &"1".repeat(64)).unwrap());
    // Only for the owner's visible file, and only with the content it has now.
    assert!(!c
        .create_share_link(
            &ShareLink {
                user_id: 12,
                ..share_link(&file, None, hour)
            },
            &"2".repeat(64)
        )
        .unwrap());
    let stale = ShareLink {
        sha256: "f".repeat(64),
        ..share_link(&file, None, hour)
    };
    assert!(!c.create_share_link(&stale, &"3".repeat(64)).unwrap());
    let unlimited = share_link(&file, None, hour);
    assert!(c.create_share_link(&unlimited, &"4".repeat(64)).unwrap());
    // Oldest first; two made in the same millisecond may come in either order.
    let mut listed = c.share_links(11, file.id).unwrap();
    listed.sort_by_key(|l| l.id);
    let mut made = vec![link.clone(), unlimited.clone()];
    made.sort_by_key(|l| l.id);
    assert_eq!(listed, made);
    assert!(
        c.share_links(12, file.id).unwrap().is_empty(),
        "users never see each other's links"
    );

    // Found by its secret's hash, with its file.
    let (found, record) = c.share_link_by_secret(&"1".repeat(64)).unwrap().unwrap();
    assert_eq!(
        (found, record.id, record.sha256),
        (link.clone(), file.id, file.sha256.clone())
    );
    assert!(c.share_link_by_secret(&"9".repeat(64)).unwrap().is_none());

    // Counted up to its maximum, never past it.
    assert!(c.count_share_download(link.id).unwrap());
    assert!(c.count_share_download(link.id).unwrap());
    assert!(!c.count_share_download(link.id).unwrap());
    assert_eq!(c.share_link_by_secret(&"1".repeat(64)).unwrap().unwrap().0.downloads, 2);
    assert!(c.count_share_download(unlimited.id).unwrap());
    // An expired link counts nothing, and goes with the expired ones.
    let expired = share_link(&file, None, -chrono::TimeDelta::seconds(5));
    assert!(c.create_share_link(&expired, &"5".repeat(64)).unwrap());
    assert!(!c.count_share_download(expired.id).unwrap());
    assert_eq!(c.remove_expired_share_links(Utc::now()).unwrap(), 1);
    assert_eq!(c.share_links(11, file.id).unwrap().len(), 2);

    // Revoked: gone, once.
    assert!(!c.revoke_share_link(12, file.id, link.id).unwrap());
    assert!(c.revoke_share_link(11, file.id, link.id).unwrap());
    assert!(!c.revoke_share_link(11, file.id, link.id).unwrap());
    assert!(c.share_link_by_secret(&"1".repeat(64)).unwrap().is_none());

    // A file being deleted serves no link; deleted, it takes its links with it.
    let (deleted, _) = c.begin_delete(11, "shared", None).unwrap().unwrap();
    assert!(c.share_link_by_secret(&"4".repeat(64)).unwrap().is_none());
    c.finish_delete(deleted.id).unwrap();
    assert!(c.share_links(11, file.id).unwrap().is_empty());
    // Its secret may be used by a new link of another file (nothing of the old one is left).
    let again = add(c, 11, "shared", None);
    assert!(c
        .create_share_link(&share_link(&again, None, hour), &"4".repeat(64))
        .unwrap());
}

fn quotas_contract(c: &dyn Catalog) {
    let u = 21_i64;
    let unlimited = QuotaLimits::default();
    // No override: every limit is the configured default.
    assert_eq!(c.quota_override(u).unwrap(), QuotaOverride::default());
    assert_eq!(c.quota_usage(u).unwrap(), QuotaUsage::default());

    // Reserved uploads count as soon as they are reserved; files being deleted do not.
    let first = record(u, "q1", &"a".repeat(64));
    c.reserve_within_quota(&first, unlimited).unwrap();
    assert_eq!(c.quota_usage(u).unwrap(), QuotaUsage { bytes: 10, files: 1 });
    c.commit_upload(first.id, None).unwrap();
    add(c, u, "q2", None);
    assert_eq!(c.quota_usage(u).unwrap(), QuotaUsage { bytes: 20, files: 2 });
    let (gone, _) = c.begin_delete(u, "q2", None).unwrap().unwrap();
    assert_eq!(c.quota_usage(u).unwrap(), QuotaUsage { bytes: 10, files: 1 });
    c.finish_delete(gone.id).unwrap();

    // The configured defaults: 2 files, 25 bytes.
    let defaults = QuotaLimits {
        bytes: Some(25),
        files: Some(2),
    };
    let q3 = record(u, "q3", &"b".repeat(64));
    c.reserve_within_quota(&q3, defaults).unwrap();
    let refused = c.reserve_within_quota(&record(u, "q4", &"c".repeat(64)), defaults);
    assert!(matches!(refused, Err(Error::QuotaExceeded(_))), "{refused:?}");
    assert!(!c.name_claimed(u, "q4").unwrap(), "a refusal reserves nothing");
    // A taken name is still a conflict, not a quota refusal.
    let mut over = record(u, "q1", &"d".repeat(64));
    over.size_bytes = 1;
    assert!(matches!(
        c.reserve_within_quota(&over, QuotaLimits::default()),
        Err(Error::Conflict(_))
    ));

    // An override: files unlimited, 30 bytes; the default applies to what it leaves.
    let quota = QuotaOverride {
        bytes: QuotaSetting::Limit(30),
        files: QuotaSetting::Unlimited,
    };
    c.set_quota_override(u, &quota).unwrap();
    assert_eq!(c.quota_override(u).unwrap(), quota);
    assert_eq!(
        quota.apply(defaults),
        QuotaLimits {
            bytes: Some(30),
            files: None
        }
    );
    let q4 = record(u, "q4", &"c".repeat(64));
    c.reserve_within_quota(&q4, defaults).unwrap();
    let mut big = record(u, "q5", &"e".repeat(64));
    big.size_bytes = 1;
    let refused = c.reserve_within_quota(&big, defaults);
    assert!(
        matches!(refused, Err(Error::QuotaExceeded(_))),
        "30 of 30 bytes: {refused:?}"
    );
    // Other users are not affected by this user's override.
    let elsewhere = record(u + 1, "q5", &"e".repeat(64));
    c.reserve_within_quota(&elsewhere, defaults).unwrap();
    // Back to the defaults: the override is gone.
    c.set_quota_override(u, &QuotaOverride::default()).unwrap();
    assert_eq!(c.quota_override(u).unwrap(), QuotaOverride::default());
    // Leave nothing reserved for the leases' checks that follow.
    for reserved in [q3, q4, elsewhere] {
        c.abort_upload(reserved.id).unwrap();
    }
}

/// [`Records::settle_upload`](super::Records::settle_upload), on its own user (run after
/// [`contract`], whose feed counts it must not disturb).
fn settle_contract(c: &dyn Catalog) {
    let u = 77_i64;
    // Settling an upload whose commit's answer was lost: still pending, it is aborted
    // (name free); committed, its record comes back; unknown, it is aborted (nothing to keep).
    let unsure = record(u, "unsure", &"c".repeat(64));
    c.reserve_upload(&unsure).unwrap();
    assert!(matches!(c.settle_upload(unsure.id).unwrap(), Settlement::Aborted));
    assert!(!c.name_claimed(u, "unsure").unwrap());
    let landed = add(c, u, "landed", None);
    match c.settle_upload(landed.id).unwrap() {
        Settlement::Committed(r) => assert_eq!((r.id, r.file_name.as_str()), (landed.id, "landed")),
        other => panic!("a committed upload settled as {other:?}"),
    }
    assert!(
        c.get_by_id(landed.id).unwrap().is_some(),
        "settling never undoes a commit"
    );
    assert!(matches!(c.settle_upload(Uuid::new_v4()).unwrap(), Settlement::Aborted));
}

#[test]
fn sqlite_catalog_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteCatalog::open(&dir.path().join("files.db")).unwrap();
    contract(&catalog);
    settle_contract(&catalog);
    // Nothing unfinished is left by a run of complete operations: even taking over every
    // other process's work finds nothing.
    assert!(catalog.claim_abandoned(true).unwrap().is_empty());
}

#[test]
#[ignore = "needs TEST_DATABASE_URL (run with --include-ignored)"]
fn postgres_catalog_keeps_the_contract() {
    let admin = std::env::var("TEST_DATABASE_URL").expect("this test needs TEST_DATABASE_URL");
    let name = format!("fs_unit_{}", Uuid::new_v4().simple());
    let mut client = ::postgres::Client::connect(&admin, ::postgres::NoTls).expect("connect to TEST_DATABASE_URL");
    client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = match admin.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => format!("{server}/{name}"),
        _ => format!("{}/{name}", admin.trim_end_matches('/')),
    };
    let result = std::panic::catch_unwind(|| {
        let catalog = PostgresCatalog::open(&url).unwrap();
        contract(&catalog);
        settle_contract(&catalog);
    });
    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

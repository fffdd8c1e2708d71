//! Tests of the scale-out backends: the PostgreSQL schema and migrations, the Redis hash format, replicas that must never disagree, and Redis/PostgreSQL faults.
//!
//! Those that need `TEST_DATABASE_URL` and/or `TEST_REDIS_URL` are `#[ignore]`d with the
//! reason, so a plain `cargo test` lists them as not run; `--include-ignored` runs them
//! and fails loudly when a service is missing. The Redis fault tests run their own
//! `redis-server` on a free port, so they can kill it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use file_service::catalog::postgres::MIGRATION_LOCK;

use crate::harness::{new_session, off_runtime, require_redis_server, require_service, sales_csv, Stack, TestServer};

fn pg(test: &str) -> String {
    require_service("TEST_DATABASE_URL", test)
}

fn pg_and_redis(test: &str) -> (String, String) {
    (pg(test), require_service("TEST_REDIS_URL", test))
}

/// A user id no other test (or run) uses, so Redis keys never collide.
fn random_user() -> i64 {
    (rand::random::<u32>() as i64) + 1_000_000
}

fn redis_conn(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("redis connection")
}

fn hgetall(url: &str, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL").arg(key).query(&mut redis_conn(url)).unwrap()
}

/// A `redis-server` of this test's own on a free port, without persistence.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
    /// Where `SAVE` writes its snapshot, loaded again by the next start.
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = OwnRedis {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        r.spawn();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (install Redis to run this test)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ----- PostgreSQL schema, migrations, startup -----

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (run with --include-ignored)"]
async fn postgres_schema_keeps_the_original_table_and_replicas_migrate_together() {
    let admin = pg("postgres_schema_keeps_the_original_table");
    // Two processes start at once on a fresh database while this test holds the
    // migration lock: both must be seen waiting for it, and once it is released both
    // start and each migration is recorded once.
    let mut first = TestServer::prepare_on(Stack::Postgres, Some(&admin), None, &[]);
    let db = first.db.clone().unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (locked, is_locked) = std::sync::mpsc::channel::<()>();
    let holder = {
        let url = db.url.clone();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).unwrap();
            locked.send(()).unwrap();
            let _ = released.recv();
            c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).unwrap();
        })
    };
    is_locked.recv().unwrap();
    let mut second = first.replica_prepared(&[]);
    first.launch();
    second.launch();
    let waiting_on_migration_lock = || {
        let (url, name) = (db.url.clone(), db.name.clone());
        off_runtime(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            // A one-key advisory lock on a bigint is (classid, objid) = (high, low) halves.
            c.query_one(
                "SELECT COUNT(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                 WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = $1
                   AND l.classid::bigint = ($2::bigint >> 32) AND l.objid::bigint = ($2::bigint & 4294967295)",
                &[&name, &MIGRATION_LOCK],
            )
            .unwrap()
            .get::<_, i64>(0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting_on_migration_lock() < 2 {
        assert!(
            Instant::now() < deadline,
            "both servers never waited on the migration lock:\n{}\n{}",
            first.logs(),
            second.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    release.send(()).unwrap();
    holder.join().unwrap();
    first.wait_listening();
    second.wait_listening();
    assert_eq!(first.get(1, "/files/").await.0, 200);
    assert_eq!(second.get(1, "/files/").await.0, 200);

    let (columns, enum_labels, indexes, migrations) = off_runtime(|| {
        let mut c = db.connect();
        let columns: HashMap<String, String> = c
            .query(
                "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = 'files'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let labels: Vec<String> = c
            .query("SELECT unnest(enum_range(NULL::storage_type))::text", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let indexes: HashMap<String, String> = c
            .query(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('files', 'active_files')",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let migrations: i64 = c
            .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
            .unwrap()
            .get(0);
        (columns, labels, indexes, migrations)
    });
    // The original's columns, with compatible (widened) types.
    for (col, ty) in [
        ("id", "int8"),
        ("file_name", "varchar"),
        ("storage_uri", "varchar"),
        ("description", "text"),
        ("summary", "text"),
        ("storage_type", "storage_type"),
        ("user_id", "int8"),
        ("created_at", "timestamptz"),
    ] {
        assert_eq!(
            columns.get(col).map(String::as_str),
            Some(ty),
            "files.{col}: {columns:?}"
        );
    }
    // What the embedded catalog adds.
    for col in [
        "public_id",
        "size_bytes",
        "sha256",
        "profile",
        "state",
        "updated_at",
        "row_count",
        "column_count",
        "format",
        "rev",
        "rev_history",
        "origin",
        "holder",
    ] {
        assert!(columns.contains_key(col), "files.{col} missing: {columns:?}");
    }
    assert_eq!(enum_labels, ["local", "s3"]);
    assert!(indexes.contains_key("idx_files_user_id"), "{indexes:?}");
    assert!(indexes.contains_key("idx_files_listing"), "{indexes:?}");
    assert!(indexes["idx_files_user_filename"].contains("UNIQUE"), "{indexes:?}");
    assert!(indexes.contains_key("active_files_pkey"), "{indexes:?}");
    assert!(
        indexes.contains_key("idx_files_sha256"),
        "sync looks contents up by hash: {indexes:?}"
    );
    // 0001 the files, 0002 the change feed (sync), 0003 leases (crash recovery), 0004 the
    // `s3` storage type, 0005 deletes' origins and the hash index, 0006 resumable
    // uploads, 0007 share links, 0008 quota overrides, 0009 the listing's index: each
    // applied once by two processes.
    assert_eq!(migrations, 9);
}

#[tokio::test]
async fn postgres_unreachable_at_startup_fails_with_one_line_naming_database_url() {
    // No service needed: nothing listens on port 1.
    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(crate::harness::server_bin())
        .arg("serve")
        .current_dir(data.path())
        .env("DATABASE_URL", "postgres://postgres:hunter2-secret@127.0.0.1:1/files")
        .env("DATA_DIR", data.path())
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("SECRET_KEY", crate::harness::SECRET)
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "startup took {:?}",
        started.elapsed()
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("configuration error"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("DATABASE_URL") && line.contains("127.0.0.1:1"), "{line}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (run with --include-ignored)"]
async fn postgres_down_mid_run_gives_503_with_a_detail_and_recovers() {
    let admin = pg("postgres_down_mid_run_gives_503");
    // The password is ignored by trust auth but must never reach a log.
    let admin = admin.replacen("://postgres@", "://postgres:hunter2-secret@", 1);
    // Nothing made in the background after the upload: it would open catalog connections
    // just as the database is cut off.
    let server = TestServer::start_on(Stack::Postgres, Some(&admin), None, &[("QUERY_TABLES_AHEAD", "false")]).await;
    let db = server.db.clone().unwrap();
    let session = new_session();
    assert_eq!(
        server.upload(1, "sales", &session, "sales.csv", sales_csv()).await.0,
        201
    );

    // Cut the service off: no new connections, existing ones terminated. A connection the
    // server's pool was opening while the database was closed can still get in and show up
    // after the first sweep (the server opens connections in the background, e.g. to make
    // the upload's table ahead), so the sweep is repeated until none is left.
    let name = db.name.clone();
    let admin2 = admin.clone();
    let run_admin = move |sql: String| {
        let admin = admin2.clone();
        off_runtime(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
            c.batch_execute(&sql).unwrap();
        })
    };
    run_admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    let admin3 = admin.clone();
    let sweep_name = name.clone();
    off_runtime(move || {
        let mut c = postgres::Client::connect(&admin3, postgres::NoTls).unwrap();
        let mut clean_sweeps = 0;
        for _ in 0..100 {
            // Waits up to 5 s for each backend to end.
            let ended = c
                .query(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1",
                    &[&sweep_name],
                )
                .unwrap();
            clean_sweeps = if ended.is_empty() { clean_sweeps + 1 } else { 0 };
            if clean_sweeps == 3 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server's connections to {sweep_name} kept coming back");
    });
    for path in ["/files/".to_string(), format!("/files/active/{session}")] {
        let started = Instant::now();
        let (status, body) = server.get(1, &path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["code"], "unavailable");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("PostgreSQL"), "{detail}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path} took {:?}",
            started.elapsed()
        );
    }

    // It comes back: so does the service, by itself.
    run_admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    let (status, body) = server.get(1, &format!("/files/active/{session}")).await;
    assert_eq!((status, body["file_name"].as_str()), (200, Some("sales")), "{body}");

    // Gone for good (dropped): still 503, never a hang or a panic.
    db.drop_now();
    let (status, body) = server.get(1, "/files/").await;
    assert_eq!(status, 503, "{body}");
    assert!(!server.logs().contains("hunter2"), "{}", server.logs());
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}

// ----- Redis format -----

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn redis_hash_has_exactly_the_spec_fields_and_its_ttl_is_refreshed_on_read() {
    let (admin, redis_url) = pg_and_redis("redis_hash_has_exactly_the_spec_fields");
    let server = TestServer::start_on(
        Stack::PostgresRedis,
        Some(&admin),
        Some(&redis_url),
        &[("ACTIVE_FILE_TTL_SECONDS", "120")],
    )
    .await;
    let (user, session) = (random_user(), new_session());
    let (status, record) = server.upload(user, "sales", &session, "sales.csv", sales_csv()).await;
    assert_eq!(status, 201, "{record}");

    let key = format!("active_file:user{user}:session:{session}");
    let hash = hgetall(&redis_url, &key);
    let mut fields: Vec<&str> = hash.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "description",
            "file_name",
            "storage_type",
            "storage_uri",
            "summary",
            "user_id"
        ]
    );
    assert_eq!(hash["file_name"], "sales");
    assert_eq!(hash["storage_uri"], record["storage_uri"].as_str().unwrap());
    assert!(
        hash["storage_uri"].starts_with("local:///") && hash["storage_uri"].ends_with(&format!("/{user}_sales.csv"))
    );
    assert_eq!(hash["description"], "about sales");
    assert_eq!(hash["summary"], record["summary"].as_str().unwrap());
    assert!(hash["summary"].starts_with("The dataset has **3 rows** and **4 columns**."));
    assert_eq!(hash["storage_type"], "local");
    assert_eq!(hash["user_id"], user.to_string());

    let mut c = redis_conn(&redis_url);
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut c).unwrap();
    assert!((100..=120).contains(&ttl), "TTL {ttl}");
    // A read refreshes the TTL (of the hash a reader of the original format sees).
    let _: () = redis::cmd("EXPIRE").arg(&key).arg(30).query(&mut c).unwrap();
    let (status, active) = server.get(user, &format!("/files/active/{session}")).await;
    assert_eq!(status, 200);
    assert_eq!(active, record, "a cache hit returns the whole record");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut c).unwrap();
    assert!(ttl > 100, "TTL not refreshed: {ttl}");

    // A hash rewritten by another program (e.g. the original service) is not trusted
    // blindly: the catalog answers and the entry is rewritten.
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("file_name")
        .arg("other")
        .query(&mut c)
        .unwrap();
    let (status, active) = server.get(user, &format!("/files/active/{session}")).await;
    assert_eq!((status, active["file_name"].as_str()), (200, Some("sales")));
    assert_eq!(hgetall(&redis_url, &key)["file_name"], "sales");

    // Deleting the file removes the entry.
    assert_eq!(server.delete(user, "/files/sales").await.0, 200);
    assert!(hgetall(&redis_url, &key).is_empty());
}

// ----- replicas -----

/// Upload via one replica, list/activate/delete via the other; after every answer both
/// replicas (and the catalog) agree on the active file.
async fn replicas_agree(stack: Stack, admin: &str, redis: Option<&str>) {
    let a = TestServer::start_on(stack, Some(admin), redis, &[]).await;
    let b = a.replica(&[]).await;
    let (user, session) = (random_user(), new_session());
    let active = format!("/files/active/{session}");
    let both_say = |expected: Option<&'static str>| {
        let (a, b, active) = (&a, &b, active.clone());
        async move {
            for (name, server) in [("A", a), ("B", b)] {
                let (status, body) = server.get(user, &active).await;
                match expected {
                    Some(file) => assert_eq!(
                        (status, body["file_name"].as_str()),
                        (200, Some(file)),
                        "replica {name}: {body}"
                    ),
                    None => assert_eq!(status, 404, "replica {name} serves a stale active file: {body}"),
                }
            }
        }
    };
    for name in ["one", "two", "three"] {
        assert_eq!(
            a.upload(user, name, &session, &format!("{name}.csv"), sales_csv())
                .await
                .0,
            201
        );
    }
    both_say(Some("three")).await;
    let (status, list) = b.get(user, "/files/").await;
    assert_eq!(status, 200);
    let names = crate::harness::file_names(&list);
    assert_eq!(names, ["one", "two", "three"]);
    // The same name through the other replica is taken.
    assert_eq!(b.upload(user, "one", &session, "one.csv", sales_csv()).await.0, 409);

    // Alternate writers; read through both after every answer.
    for round in 0..10 {
        let (writer, file) = if round % 2 == 0 { (&b, "one") } else { (&a, "two") };
        assert_eq!(writer.activate(user, &session, file).await.0, 200);
        both_say(Some(file)).await;
    }
    // Concurrent activations from both replicas: afterwards they agree with each other.
    for _ in 0..10 {
        let (ra, rb) = tokio::join!(a.activate(user, &session, "one"), b.activate(user, &session, "two"));
        assert_eq!((ra.0, rb.0), (200, 200));
        let (sa, va) = a.get(user, &active).await;
        let (sb, vb) = b.get(user, &active).await;
        assert_eq!((sa, sb), (200, 200));
        assert_eq!(va["file_name"], vb["file_name"], "replicas disagree");
    }
    assert_eq!(b.activate(user, &session, "two").await.0, 200);
    both_say(Some("two")).await;
    assert_eq!(b.delete(user, "/files/two").await.0, 200);
    both_say(None).await;
    assert_eq!(a.activate(user, &session, "two").await.0, 404);
    assert_eq!(a.activate(user, &session, "three").await.0, 200);
    both_say(Some("three")).await;
    assert_eq!(a.delete(user, "/files/three").await.0, 200);
    both_say(None).await;
    // Listings follow every change made through the other replica, each replica's
    // listing cache warm before it.
    let both_list = |expected: &'static [&'static str]| {
        let (a, b) = (&a, &b);
        async move {
            for (name, server) in [("A", a), ("B", b)] {
                let (status, list) = server.get(user, "/files/").await;
                assert_eq!(status, 200);
                assert_eq!(crate::harness::file_names(&list), expected, "replica {name}: {list}");
            }
        }
    };
    both_list(&["one"]).await;
    assert_eq!(a.upload(user, "four", &session, "four.csv", sales_csv()).await.0, 201);
    both_list(&["one", "four"]).await;
    assert_eq!(b.delete(user, "/files/one").await.0, 200);
    both_list(&["four"]).await;

    // A graceful stop closes the PostgreSQL and Redis connections cleanly.
    let mut a = a;
    a.stop();
    a.wait_for_log("file-service stopped").await;
    assert!(!a.logs().contains("panicked"), "{}", a.logs());
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn two_replicas_on_postgres_and_redis_never_serve_a_stale_active_file() {
    let (admin, redis) = pg_and_redis("two_replicas_on_postgres_and_redis");
    replicas_agree(Stack::PostgresRedis, &admin, Some(&redis)).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (run with --include-ignored)"]
async fn two_replicas_on_postgres_without_redis_never_serve_a_stale_active_file() {
    let admin = pg("two_replicas_on_postgres_without_redis");
    replicas_agree(Stack::Postgres, &admin, None).await;
}

/// Replica A's cache write, after its catalog commit, is held back (fault injection);
/// meanwhile replica B deletes the file. Without a lock spanning both processes, A's
/// late write would put the deleted file back in Redis and every replica would serve it.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn a_late_cache_write_cannot_bring_back_a_file_another_replica_deleted() {
    let (admin, redis) = pg_and_redis("a_late_cache_write_cannot_bring_back");
    let b = TestServer::start_on(Stack::PostgresRedis, Some(&admin), Some(&redis), &[]).await;
    let a = b.replica(&[("FILE_SERVICE_FAULT_CACHE_PUT_DELAY_MS", "2000")]).await;
    let (user, session) = (random_user(), new_session());
    assert_eq!(b.upload(user, "old", &session, "old.csv", sales_csv()).await.0, 201);
    assert_eq!(
        b.upload(user, "new", &new_session(), "new.csv", sales_csv()).await.0,
        201
    );

    let key = format!("active_file:user{user}:session:{session}");
    let db = b.db.clone().unwrap();
    let session_id = uuid::Uuid::parse_str(&session).unwrap();
    let activate = a.activate(user, &session, "new");
    let delete = async {
        // Wait until A has committed the activation, then check that its cache write has
        // not happened yet (Redis still holds the old file): B's delete is sent inside
        // A's window, whatever the machine's speed.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let db = db.clone();
            let active: Option<String> = off_runtime(move || {
                db.connect()
                    .query_opt(
                        "SELECT f.file_name FROM active_files a JOIN files f ON f.id = a.file_id
                         WHERE a.user_id = $1 AND a.session_id = $2",
                        &[&user, &session_id],
                    )
                    .unwrap()
                    .map(|r| r.get(0))
            });
            if active.as_deref() == Some("new") {
                break;
            }
            assert!(Instant::now() < deadline, "A never committed the activation");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            hgetall(&redis, &key).get("file_name").map(String::as_str),
            Some("old"),
            "A's cache write came before B's delete: the race was not exercised"
        );
        b.delete(user, "/files/new").await
    };
    let (activated, deleted) = tokio::join!(activate, delete);
    assert_eq!(activated.0, 200, "{}", activated.1);
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    assert!(
        hgetall(&redis, &key).is_empty(),
        "Redis holds a deleted file: {:?}",
        hgetall(&redis, &key)
    );
    for server in [&a, &b] {
        let (status, body) = server.get(user, &format!("/files/active/{session}")).await;
        assert_eq!(status, 404, "a deleted file is served as active: {body}");
    }
}

// ----- Redis faults -----

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and redis-server (run with --include-ignored)"]
async fn redis_outage_falls_back_to_the_catalog_and_caching_resumes() {
    let admin = pg("redis_outage_falls_back_to_the_catalog");
    require_redis_server("redis fault test");
    let mut redis = OwnRedis::start();
    let server = TestServer::start_on(Stack::PostgresRedis, Some(&admin), Some(&redis.url()), &[]).await;
    let (user, session) = (1, new_session());
    let key = format!("active_file:user{user}:session:{session}");
    let active = format!("/files/active/{session}");
    assert_eq!(
        server.upload(user, "one", &session, "one.csv", sales_csv()).await.0,
        201
    );
    assert_eq!(hgetall(&redis.url(), &key)["file_name"], "one");

    redis.kill();
    // Every kind of request keeps working from the catalog, and promptly.
    let started = Instant::now();
    for round in 0..5 {
        assert_eq!(server.get(user, &active).await.0, 200);
        assert_eq!(
            server
                .upload(user, &format!("f{round}"), &session, "f.csv", sales_csv())
                .await
                .0,
            201
        );
        assert_eq!(server.get(user, &active).await.1["file_name"], format!("f{round}"));
        assert_eq!(server.activate(user, &session, "one").await.0, 200);
        assert_eq!(server.get(user, &active).await.1["file_name"], "one");
        assert_eq!(server.get(user, "/files/").await.0, 200);
        assert_eq!(server.delete(user, &format!("/files/f{round}")).await.0, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "requests were slow without Redis: {:?}",
        started.elapsed()
    );
    // The log reaches the test through a pipe and a reader thread: wait for the line
    // rather than race it.
    server.wait_for_log("active-file cache failed").await;
    let logs = server.logs();
    assert_eq!(
        logs.matches("active-file cache failed").count(),
        1,
        "the outage is logged once:\n{logs}"
    );
    // Ready, but degraded: the catalog serves while the cache is down.
    let readyz = || async {
        let resp = server
            .client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = readyz().await;
    assert_eq!((status, body["status"].as_str()), (200, Some("degraded")), "{body}");
    assert_eq!(
        (
            body["checks"]["cache"]["ok"].as_bool(),
            body["checks"]["catalog"]["ok"].as_bool()
        ),
        (Some(false), Some(true)),
        "{body}"
    );
    assert!(
        body["checks"]["cache"]["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );

    // Redis returns (empty): caching resumes by itself.
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(server.get(user, &active).await.0, 200);
        if hgetall(&redis.url(), &key).get("file_name").map(String::as_str) == Some("one") {
            break;
        }
        assert!(Instant::now() < deadline, "caching did not resume:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.wait_for_log("active-file cache is answering again").await;
    let (status, body) = readyz().await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "{body}");
}

/// Redis with persistence goes down, the active file changes meanwhile, and Redis comes
/// back with its snapshot, which still holds the old file. The service must delete that
/// entry before it trusts the cache again.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and redis-server (run with --include-ignored)"]
async fn a_change_made_while_redis_was_down_never_serves_the_old_file_after_it_returns() {
    let admin = pg("a_change_made_while_redis_was_down");
    require_redis_server("redis fault test");
    let mut redis = OwnRedis::start();
    let a = TestServer::start_on(Stack::PostgresRedis, Some(&admin), Some(&redis.url()), &[]).await;
    let (user, session) = (1, new_session());
    let active = format!("/files/active/{session}");
    let key = format!("active_file:user{user}:session:{session}");
    assert_eq!(a.upload(user, "old", &session, "old.csv", sales_csv()).await.0, 201);
    assert_eq!(
        a.upload(user, "new", &new_session(), "new.csv", sales_csv()).await.0,
        201
    );
    assert_eq!(a.get(user, &active).await.1["file_name"], "old");
    let _: () = redis::cmd("SAVE").query(&mut redis_conn(&redis.url())).unwrap();
    redis.kill();

    assert_eq!(a.activate(user, &session, "new").await.0, 200);
    redis.spawn();
    assert_eq!(
        hgetall(&redis.url(), &key)["file_name"],
        "old",
        "the snapshot was not reloaded"
    );
    // Until and after the cache is used again (past the pause that follows a failure),
    // never the old file.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reads_from_the_cache = 0;
    while reads_from_the_cache < 5 {
        let (status, body) = a.get(user, &active).await;
        assert_eq!(
            (status, body["file_name"].as_str()),
            (200, Some("new")),
            "stale after the outage: {body}"
        );
        if hgetall(&redis.url(), &key).get("file_name").map(String::as_str) == Some("new") {
            reads_from_the_cache += 1;
        }
        assert!(
            Instant::now() < deadline,
            "the cache was never rewritten:\n{}",
            a.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Fuzzes the upload path as a client reaches it: arbitrary bytes as the body of
//! `POST /api/v1/files/` (multipart, boundary `FUZZ`), answered by the real routes over a
//! real service (SQLite catalog, local storage folder in a temporary directory), driven
//! in-process with `warp::test`.
//!
//! Properties: never a panic and never a 5xx; every refusal is JSON with `detail` and
//! `code`; after any answer the storage folder holds no temporary file; a 201's stored file
//! is inside the storage folder and has the record's SHA-256 and size; after the accepted
//! file is deleted, the user has no file and the storage folder is empty (nothing
//! partial, no orphan record).
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use file_service::auth::Auth;
use file_service::config::Config;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use warp::filters::BoxedFilter;
use warp::http::Response;

const SECRET: &str = "fuzz-secret-0123456789abcdef";
/// Small, so the fuzzer reaches the 413 too.
const MAX_UPLOAD_BYTES: u64 = 2048;

struct Server {
    runtime: tokio::runtime::Runtime,
    routes: BoxedFilter<(warp::reply::Response,)>,
    storage: PathBuf,
    bearer: String,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // On tmpfs when there is one: the catalog and the uploads fsync. libFuzzer exits
        // without dropping statics, so the folder outlives the run: a recognizable name.
        let parent = match std::path::Path::new("/dev/shm").is_dir() {
            true => std::path::PathBuf::from("/dev/shm"),
            false => std::env::temp_dir(),
        };
        let dir = tempfile::Builder::new()
            .prefix("file-service-fuzz-multipart-")
            .tempdir_in(parent)
            .expect("temp dir");
        let storage = dir.path().join("storage");
        // Read as the service reads its own file, so keys added later keep their defaults.
        let config_path = dir.path().join("config.toml");
        std::fs::write(
            &config_path,
            format!(
                "bind_addr = \"127.0.0.1:0\"\n\
                 data_dir = {data:?}\n\
                 secret_key = {SECRET:?}\n\
                 max_upload_bytes = {MAX_UPLOAD_BYTES}\n\
                 max_concurrent_analyses = 1\n\
                 max_concurrent_uploads = 4\n\
                 upload_idle_timeout_seconds = 5\n\
                 shutdown_grace_seconds = 1\n\
                 [watch]\n\
                 enabled = false\n",
                data = dir.path().display().to_string(),
            ),
        )
        .expect("config file");
        let config = Config::load(Some(&config_path)).expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let service = runtime.block_on(file_service::app::build(&config)).expect("service");
        let auth = Auth::new(SECRET.as_bytes(), Algorithm::HS256);
        let bearer = format!("Bearer {}", auth.mint(1, 365 * 24 * 3600));
        let routes = file_service::http::routes(service, Arc::new(auth), &Default::default());
        let storage = storage.canonicalize().expect("storage folder");
        Server {
            runtime,
            routes,
            storage,
            bearer,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = server();
    s.runtime.block_on(async {
        let answer = warp::test::request()
            .method("POST")
            .path("/api/v1/files/")
            .header("authorization", &s.bearer)
            .header("content-type", "multipart/form-data; boundary=FUZZ")
            .body(data.to_vec())
            .reply(&s.routes)
            .await;
        let status = answer.status().as_u16();
        let body: serde_json::Value = serde_json::from_slice(answer.body())
            .unwrap_or_else(|_| panic!("{status} body is not JSON: {:?}", answer.body()));
        assert!(status < 500, "{status}: {body}");
        let leftovers = entries(&s.storage);
        assert!(
            leftovers.iter().all(|n| !n.starts_with('.')),
            "temporary files after a {status}: {leftovers:?}"
        );
        if status == 201 {
            let name = body["file_name"].as_str().expect("file_name");
            let path = format!(
                "/api/v1/files/{}",
                percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
            );
            // The stored bytes are read from the storage folder: downloads stream from the
            // server layer, which `warp::test` does not run.
            let uri = body["storage_uri"].as_str().expect("storage_uri");
            let stored = std::fs::read(uri.strip_prefix("local://").expect("a local:// URI")).expect("stored file");
            assert!(uri.starts_with(&format!("local://{}/", s.storage.display())), "{uri}");
            assert_eq!(body["size_bytes"].as_u64(), Some(stored.len() as u64));
            assert_eq!(
                body["sha256"].as_str(),
                Some(hex::encode(Sha256::digest(&stored)).as_str())
            );
            assert_eq!(get(s, "DELETE", &path).await.status(), 200, "delete {name:?}");
        } else {
            assert!(
                body["detail"].is_string() && body["code"].is_string(),
                "{status}: {body}"
            );
        }
        let listing = get(s, "GET", "/api/v1/files/").await;
        assert_eq!(listing.body().as_ref(), b"[]", "records left after a {status}");
        let left = entries(&s.storage);
        assert!(left.is_empty(), "storage holds {left:?} after a {status}");
    });
});

async fn get(s: &Server, method: &str, path: &str) -> Response<bytes::Bytes> {
    warp::test::request()
        .method(method)
        .path(path)
        .header("authorization", &s.bearer)
        .reply(&s.routes)
        .await
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("storage folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

//! Bearer-token checks: every way a token can be wrong gets 401 with `WWW-Authenticate: Bearer`.

use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::harness::{TestServer, SECRET};

fn sign(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
    encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

#[tokio::test]
async fn bad_tokens_get_401_with_www_authenticate() {
    let server = TestServer::start().await;
    let now = get_current_timestamp();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("not bearer", Some(format!("Basic {}", server.token(1)))),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "1", "exp": now - 10}), Algorithm::HS256, SECRET)
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "1"}), Algorithm::HS256, SECRET)
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                sign(json!({"exp": now + 60}), Algorithm::HS256, SECRET)
            )),
        ),
        (
            "sub not a number",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "alice", "exp": now + 60}), Algorithm::HS256, SECRET)
            )),
        ),
        (
            "sub zero",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": 0, "exp": now + 60}), Algorithm::HS256, SECRET)
            )),
        ),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                sign(
                    json!({"sub": "1", "exp": now + 60}),
                    Algorithm::HS256,
                    "some-other-secret-value"
                )
            )),
        ),
        (
            "alg mismatch",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "1", "exp": now + 60}), Algorithm::HS512, SECRET)
            )),
        ),
    ];
    for (what, header) in cases {
        for (method, path) in [
            ("GET", "/files/"),
            ("POST", "/files/"),
            ("GET", "/files/active/7d4a3f0e-9c1b-4a8e-bf6a-2f0f4b1f6c11"),
            ("DELETE", "/files/x"),
        ] {
            let mut req = server.client.request(method.parse().unwrap(), server.url(path));
            if let Some(h) = &header {
                req = req.header("authorization", h);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 401, "{what} {method} {path}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer", "{what}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["code"], "unauthorized", "{what}");
            assert!(!body["detail"].as_str().unwrap().is_empty(), "{what}");
        }
    }
}

#[tokio::test]
async fn sub_may_be_a_number_or_a_digit_string() {
    let server = TestServer::start().await;
    let now = get_current_timestamp();
    for sub in [json!(42), json!("42")] {
        let token = sign(json!({"sub": sub, "exp": now + 60}), Algorithm::HS256, SECRET);
        let resp = server
            .client
            .get(server.url("/files"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "sub {sub}");
    }
}

#[tokio::test]
async fn token_command_mints_a_token_the_server_accepts() {
    let server = TestServer::start().await;
    let out = std::process::Command::new(crate::harness::server_bin())
        .args(["token", "--user", "9", "--ttl", "5m"])
        .current_dir(server.data.path())
        .env("DATA_DIR", server.data.path().join("data"))
        .env("SECRET_KEY", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let resp = server
        .client
        .get(server.url("/files/"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn generated_secret_is_kept_owner_only_and_shared_with_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        std::process::Command::new(crate::harness::server_bin())
            .args(args)
            .current_dir(dir.path())
            .env_remove("SECRET_KEY")
            .env("DATA_DIR", &data)
            .output()
            .unwrap()
    };
    let first = run(&["token", "--user", "1"]);
    assert!(first.status.success());
    let secret_file = data.join("secret_key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(secret.len() >= 32);
    // The same secret is reused, so tokens from the command validate against it.
    let second = run(&["token", "--user", "1"]);
    let token = String::from_utf8(second.stdout).unwrap();
    let auth = file_service::auth::Auth::new(secret.trim().as_bytes(), Algorithm::HS256);
    assert_eq!(auth.user_from_token(token.trim()).await.unwrap(), 1);
}

#[test]
fn an_empty_secret_file_is_refused_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("secret_key"), "").unwrap();
    let out = std::process::Command::new(crate::harness::server_bin())
        .args(["token", "--user", "1"])
        .current_dir(dir.path())
        .env_remove("SECRET_KEY")
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SECRET_KEY") && stderr.contains("no usable secret"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no token signed with an empty key");
}

//! Tokens from an identity provider: a JWKS (and an OpenID discovery document) served over HTTP by the test, RS256, ES256 and EdDSA tokens, every refusal, the bounded refetch on unknown `kid`s, and a key rotation mid-test.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::harness::{sales_csv, TestServer};

const AUDIENCE: &str = "file-service-tests";

/// A private key made by `openssl genpkey`, and its public half as a JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    fn generate(kid: &str, alg: Algorithm) -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let args: &[&str] = match alg {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::EdDSA => &["-algorithm", "ed25519"],
            other => panic!("no key for {other:?}"),
        };
        let out = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let pem = std::fs::read(&path).unwrap();
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        SigningKey {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk,
        }
    }

    fn sign(&self, claims: Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    fn sign_as(&self, kid: &str, claims: Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_string());
        encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// The provider: `/jwks` (a key set the test can replace) and
/// `/.well-known/openid-configuration`, counting the fetches of each.
struct Provider {
    base: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    jwks_fetches: Arc<AtomicUsize>,
    discovery_fetches: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(keys: Vec<Jwk>) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let provider = Provider {
            base: base.clone(),
            keys: Arc::new(Mutex::new(keys)),
            jwks_fetches: Arc::default(),
            discovery_fetches: Arc::default(),
        };
        let (keys, jwks_fetches, discovery_fetches) = (
            provider.keys.clone(),
            provider.jwks_fetches.clone(),
            provider.discovery_fetches.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (keys, jwks_fetches, discovery_fetches, base) = (
                    keys.clone(),
                    jwks_fetches.clone(),
                    discovery_fetches.clone(),
                    base.clone(),
                );
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let body = match request.uri().path() {
                        "/jwks" => {
                            jwks_fetches.fetch_add(1, Ordering::SeqCst);
                            let set = JwkSet {
                                keys: keys.lock().unwrap().clone(),
                            };
                            Some(serde_json::to_vec(&set).unwrap())
                        }
                        "/.well-known/openid-configuration" => {
                            discovery_fetches.fetch_add(1, Ordering::SeqCst);
                            Some(
                                serde_json::to_vec(&json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}))
                                    .unwrap(),
                            )
                        }
                        _ => None,
                    };
                    let response = match body {
                        Some(body) => hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body))),
                        None => hyper::Response::builder().status(404).body(Full::new(Bytes::new())),
                    };
                    async move { Ok::<_, Infallible>(response.unwrap()) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        provider
    }

    fn server_env(&self, discovery: bool) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("JWT_ISSUER", self.base.clone()),
            ("JWT_AUDIENCE", AUDIENCE.to_string()),
            ("JWT_JWKS_MIN_REFRESH_SECONDS", "1".to_string()),
        ];
        if !discovery {
            env.push(("JWT_JWKS_URL", format!("{}/jwks", self.base)));
        }
        env
    }
}

async fn start_server(env: &[(&'static str, String)]) -> TestServer {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(&env).await
}

fn claims(provider: &Provider, user: Value) -> Value {
    json!({"sub": user, "iss": provider.base, "aud": AUDIENCE, "exp": get_current_timestamp() + 300})
}

/// The status and body of listing files with `token`.
async fn list_with(server: &TestServer, token: &str) -> (u16, Value) {
    let resp = server
        .client
        .get(server.url("/files/"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status == 401 {
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|h| h.to_str().unwrap().to_string());
        assert_eq!(challenge.as_deref(), Some("Bearer"), "a 401 names the scheme");
    }
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(claims))
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_of_the_provider_are_taken_beside_the_local_secrets() {
    let keys: Vec<SigningKey> = vec![
        SigningKey::generate("rsa-1", Algorithm::RS256),
        SigningKey::generate("ec-1", Algorithm::ES256),
        SigningKey::generate("ed-1", Algorithm::EdDSA),
    ];
    let provider = Provider::start(keys.iter().map(|k| k.jwk.clone()).collect()).await;
    let server = start_server(&provider.server_env(false)).await;

    // A file uploaded with the local secret's token for user 7 is seen with each
    // provider token whose `sub` is 7, and with no other user's.
    let (status, rec) = server
        .upload(7, "sales", &crate::harness::new_session(), "sales.csv", sales_csv())
        .await;
    assert_eq!(status, 201, "{rec}");
    for key in &keys {
        let (status, list) = list_with(&server, &key.sign(claims(&provider, json!("7")))).await;
        assert_eq!(status, 200, "{:?}: {list}", key.alg);
        assert_eq!(crate::harness::file_names(&list), ["sales"], "{:?}", key.alg);
        let (status, list) = list_with(&server, &key.sign(claims(&provider, json!(8)))).await;
        assert_eq!(status, 200, "{:?}: {list}", key.alg);
        assert!(crate::harness::file_names(&list).is_empty(), "{:?}: {list}", key.alg);
    }
    let (status, _) = list_with(&server, &server.token(7)).await;
    assert_eq!(status, 200, "the local secret's tokens stay valid");
    assert_eq!(
        provider.jwks_fetches.load(Ordering::SeqCst),
        1,
        "the key set is fetched once and kept"
    );
}

#[tokio::test]
async fn every_way_a_provider_token_can_be_wrong_is_401() {
    let rsa = SigningKey::generate("rsa-1", Algorithm::RS256);
    let ec = SigningKey::generate("ec-1", Algorithm::ES256);
    let stranger = SigningKey::generate("rsa-1", Algorithm::RS256);
    let provider = Provider::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let server = start_server(&provider.server_env(false)).await;
    let now = get_current_timestamp();
    let good = claims(&provider, json!("7"));
    let with = |changes: Value| {
        let mut c = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    // The RSA key's public half (as the provider publishes it) used as an HMAC secret: the
    // classic key confusion.
    let confused = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let public = serde_json::to_vec(&rsa.jwk).unwrap();
        encode(&header, &good, &EncodingKey::from_secret(&public)).unwrap()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "another audience",
            rsa.sign(with(json!({"aud": "someone-else"}))),
            "aud",
        ),
        ("no audience", rsa.sign(with(json!({"aud": null}))), "aud"),
        (
            "another issuer",
            rsa.sign(with(json!({"iss": "https://evil.example.com"}))),
            "iss",
        ),
        ("no issuer", rsa.sign(with(json!({"iss": null}))), "iss"),
        ("expired", rsa.sign(with(json!({"exp": now - 600}))), "expired"),
        ("no exp", rsa.sign(with(json!({"exp": null}))), "exp"),
        ("alg none", unsigned(&good), "not valid"),
        (
            "signed by a key the provider does not hold",
            stranger.sign(good.clone()),
            "signature",
        ),
        (
            "an unknown kid",
            rsa.sign_as("rsa-unknown", good.clone()),
            "does not publish",
        ),
        (
            "ES256 claimed for the RSA key",
            ec.sign_as("rsa-1", good.clone()),
            "is not for",
        ),
        ("HS256 with the public key as secret", confused, "signature"),
        (
            "a sub that is no user id",
            rsa.sign(with(json!({"sub": "c0ffee-uuid"}))),
            "JWT_USER_CLAIM",
        ),
    ];
    for (what, token, says) in cases {
        let (status, body) = list_with(&server, &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["code"], "unauthorized", "{what}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{what}: {detail:?} should mention {says:?}");
    }
    let (status, body) = list_with(&server, &rsa.sign(good.clone())).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn unknown_kids_refetch_the_keys_at_a_bounded_pace_and_a_rotation_is_followed() {
    let first = SigningKey::generate("rsa-1", Algorithm::RS256);
    let provider = Provider::start(vec![first.jwk.clone()]).await;
    let server = start_server(&provider.server_env(false)).await;
    let good = claims(&provider, json!("3"));
    assert_eq!(list_with(&server, &first.sign(good.clone())).await.0, 200);
    assert_eq!(provider.jwks_fetches.load(Ordering::SeqCst), 1);

    // A flood of forged kids, at once and for a while: the provider is asked at most once
    // per JWT_JWKS_MIN_REFRESH_SECONDS (1 s here), not once per token.
    let flood_started = std::time::Instant::now();
    for round in 0..4 {
        let forged = (0..25).map(|i| first.sign_as(&format!("forged-{round}-{i}"), good.clone()));
        let answers = futures_util::future::join_all(forged.map(|t| {
            let server = &server;
            async move { list_with(server, &t).await.0 }
        }))
        .await;
        assert!(answers.iter().all(|s| *s == 401), "{answers:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let fetched = provider.jwks_fetches.load(Ordering::SeqCst) - 1;
    let allowed = flood_started.elapsed().as_secs() as usize + 1;
    assert!(
        fetched <= allowed,
        "100 forged kids over {:?} made {fetched} fetches",
        flood_started.elapsed()
    );

    // Rotation: the provider publishes a new key and withdraws the old one. The new kid is
    // unknown, so the set is fetched again (once the pace allows) and the old key goes.
    let second = SigningKey::generate("rsa-2", Algorithm::RS256);
    *provider.keys.lock().unwrap() = vec![second.jwk.clone()];
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = list_with(&server, &second.sign(good.clone())).await;
    assert_eq!(status, 200, "the rotated-in key is taken: {body}");
    let (status, body) = list_with(&server, &first.sign(good.clone())).await;
    assert_eq!(status, 401, "the withdrawn key is refused: {body}");
    assert!(body["detail"].as_str().unwrap().contains("does not publish"), "{body}");
}

#[tokio::test]
async fn the_key_set_is_found_by_openid_discovery_and_a_provider_down_at_start_is_waited_for() {
    let key = SigningKey::generate("ed-1", Algorithm::EdDSA);
    let provider = Provider::start(vec![]).await;
    let server = start_server(&provider.server_env(true)).await;
    let token = key.sign(claims(&provider, json!(5)));

    // The provider answers but does not hold the key yet; the local secret still works.
    let (status, body) = list_with(&server, &token).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(list_with(&server, &server.token(5)).await.0, 200);
    assert_eq!(provider.discovery_fetches.load(Ordering::SeqCst), 1);

    *provider.keys.lock().unwrap() = vec![key.jwk.clone()];
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = list_with(&server, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        provider.discovery_fetches.load(Ordering::SeqCst),
        1,
        "the discovered address is kept; only the key set is fetched again"
    );
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_refuses_its_tokens_and_says_why() {
    let key = SigningKey::generate("rsa-1", Algorithm::RS256);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = vec![
        ("JWT_JWKS_URL", format!("{base}/jwks")),
        ("JWT_AUDIENCE", AUDIENCE.to_string()),
    ];
    let server = start_server(&env).await;
    let token = key.sign(json!({"sub": "1", "aud": AUDIENCE, "exp": get_current_timestamp() + 60}));
    let (status, body) = list_with(&server, &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("cannot be fetched"), "{body}");
    assert_eq!(list_with(&server, &server.token(1)).await.0, 200);
}

//! Tokens from an identity provider: its published keys (JWKS, found directly or by OpenID discovery), cached, refreshed on an unknown `kid` at a bounded pace, and the checks an asymmetric token must pass.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use object_store::client::{ClientOptions, HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use serde_json::{Map, Value};

use crate::config::IdentityProviderConfig;
use crate::error::{Error, Result};

/// Keys older than this are fetched again before they are trusted once more, so a key
/// the provider withdrew stops being accepted within this time.
const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// A key set or discovery document larger than this is refused (they are a few KiB).
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Clock difference tolerated between the provider and this server.
const LEEWAY_SECONDS: u64 = 60;

/// The algorithms accepted from a provider: asymmetric ones only, so a provider's public
/// key can never be used as an HMAC secret.
pub fn is_provider_algorithm(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// One usable key of the provider's set.
#[derive(Clone)]
struct ProviderKey {
    kid: Option<String>,
    /// The key's own `alg`, when it names one: a token must then use exactly that.
    algorithm: Option<Algorithm>,
    /// The algorithms the key's type and curve can verify.
    fits: fn(Algorithm) -> bool,
    key: DecodingKey,
}

#[derive(Default)]
struct FetchState {
    /// The last fetch tried, whether it worked or not: the pace limit counts from it.
    attempted: Option<Instant>,
    /// The key set's address, once discovery has found it.
    jwks_url: Option<String>,
}

/// The provider's keys and the claims its tokens must carry.
pub struct IdentityProvider {
    config: IdentityProviderConfig,
    client: HttpClient,
    keys: RwLock<(Arc<Vec<ProviderKey>>, Option<Instant>)>,
    /// Held while fetching, so concurrent unknown `kid`s make one request, not many.
    fetch: tokio::sync::Mutex<FetchState>,
}

impl IdentityProvider {
    pub fn new(config: IdentityProviderConfig) -> std::result::Result<IdentityProvider, String> {
        // object_store's HTTP client: the TLS stack (rustls with the system's roots) is the
        // one the S3 backend already uses.
        let options = ClientOptions::new()
            .with_allow_http(true)
            .with_timeout(Duration::from_secs(10))
            .with_connect_timeout(Duration::from_secs(5));
        let client = ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| format!("cannot make an HTTP client for the identity provider: {e}"))?;
        Ok(IdentityProvider {
            fetch: tokio::sync::Mutex::new(FetchState {
                jwks_url: config.jwks_url.clone(),
                ..FetchState::default()
            }),
            config,
            client,
            keys: RwLock::new((Arc::new(Vec::new()), None)),
        })
    }

    /// The claims of a valid provider token, checked for signature, `exp`, `iss` and `aud`.
    pub async fn verify(&self, token: &str, header: &Header) -> Result<Map<String, Value>> {
        let key = self.key_for(header).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_audience(&[&self.config.audience]);
        let mut required = vec!["exp", "aud"];
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| Error::Unauthorized(provider_token_error(&e, &self.config)))
    }

    /// Which claim names the user.
    pub fn user_claim(&self) -> &str {
        &self.config.user_claim
    }

    /// The key a token names, fetching the provider's set again when the `kid` is unknown
    /// (or the cached set is old), at most once per `JWT_JWKS_MIN_REFRESH_SECONDS`.
    async fn key_for(&self, header: &Header) -> Result<DecodingKey> {
        let (keys, fetched) = self.cached();
        let fresh = fetched.is_some_and(|at| at.elapsed() < KEYS_MAX_AGE);
        if fresh {
            if let Some(key) = pick(&keys, header)? {
                return Ok(key);
            }
        }
        let refreshed = self.refresh(fetched).await;
        let (keys, _) = self.cached();
        match pick(&keys, header)? {
            Some(key) => Ok(key),
            None => Err(Error::Unauthorized(match (&header.kid, refreshed) {
                (_, Err(why)) if keys.is_empty() => {
                    format!("the identity provider's keys cannot be fetched, so the token cannot be checked: {why}")
                }
                (Some(kid), _) => {
                    format!("token is signed with key {kid:?}, which the identity provider does not publish")
                }
                (None, _) => format!(
                    "token has no `kid`, and the identity provider publishes no single {:?} key to check it with",
                    header.alg
                ),
            })),
        }
    }

    fn cached(&self) -> (Arc<Vec<ProviderKey>>, Option<Instant>) {
        let guard = self.keys.read().unwrap_or_else(|e| e.into_inner());
        (guard.0.clone(), guard.1)
    }

    /// Fetches the key set unless another task did since `seen` or the pace limit forbids
    /// it. On failure the cached keys stay (a provider briefly down does not lock users out).
    async fn refresh(&self, seen: Option<Instant>) -> std::result::Result<(), String> {
        let mut state = self.fetch.lock().await;
        if self.cached().1 != seen {
            return Ok(());
        }
        if state.attempted.is_some_and(|at| at.elapsed() < self.config.min_refresh) {
            return Err("fetched too recently to fetch again".into());
        }
        state.attempted = Some(Instant::now());
        let result = self.fetch_keys(&mut state).await;
        match result {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "fetched the identity provider's keys");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(keys), Some(Instant::now()));
                Ok(())
            }
            Err(why) => {
                tracing::warn!(error = %why, "cannot fetch the identity provider's keys; the cached ones stay");
                Err(why)
            }
        }
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> std::result::Result<Vec<ProviderKey>, String> {
        let url = match &state.jwks_url {
            Some(url) => url.clone(),
            None => {
                let issuer = self.config.issuer.as_deref().unwrap_or_default();
                let discovery = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let document: Value = serde_json::from_slice(&self.get(&discovery).await?)
                    .map_err(|e| format!("{discovery} is not a JSON document: {e}"))?;
                let url = document
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{discovery} names no jwks_uri"))?
                    .to_string();
                state.jwks_url = Some(url.clone());
                url
            }
        };
        let document: Value =
            serde_json::from_slice(&self.get(&url).await?).map_err(|e| format!("{url} is not a JSON document: {e}"))?;
        let listed = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{url} is not a JWK set (no `keys` array)"))?;
        // Keys this server cannot use (encryption keys, symmetric keys, unknown types) are
        // skipped one by one rather than spoiling the set.
        Ok(listed
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter_map(|jwk| usable(&jwk))
            .collect())
    }

    async fn get(&self, url: &str) -> std::result::Result<Bytes, String> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(HttpRequestBody::empty())
            .map_err(|e| format!("{url} is not a usable address: {e}"))?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url} answered {}", response.status()));
        }
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: the document is over {MAX_DOCUMENT_BYTES} bytes"));
        }
        Ok(body)
    }
}

/// The key a token's header names: by `kid`, or the one key that fits its algorithm when
/// the token names none. A key that exists but does not fit the algorithm is a refusal.
fn pick(keys: &[ProviderKey], header: &Header) -> Result<Option<DecodingKey>> {
    let fits = |k: &&ProviderKey| (k.fits)(header.alg) && k.algorithm.is_none_or(|a| a == header.alg);
    let key = match &header.kid {
        Some(kid) => {
            let Some(key) = keys.iter().find(|k| k.kid.as_deref() == Some(kid)) else {
                return Ok(None);
            };
            if !fits(&key) {
                return Err(Error::Unauthorized(format!(
                    "token says {:?}, which the identity provider's key {kid:?} is not for",
                    header.alg
                )));
            }
            key
        }
        None => {
            let mut fitting = keys.iter().filter(fits);
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => key,
                _ => return Ok(None),
            }
        }
    };
    Ok(Some(key.key.clone()))
}

/// A signing key of a type this server verifies, or `None`.
fn usable(jwk: &Jwk) -> Option<ProviderKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let fits: fn(Algorithm) -> bool = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => |a| {
            matches!(
                a,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            )
        },
        AlgorithmParameters::EllipticCurve(p) => match &p.curve {
            EllipticCurve::P256 => |a| a == Algorithm::ES256,
            EllipticCurve::P384 => |a| a == Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => |a| a == Algorithm::EdDSA,
        _ => return None,
    };
    let algorithm = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(
            a.to_string()
                .parse::<Algorithm>()
                .ok()
                .filter(|a| is_provider_algorithm(*a))?,
        ),
    };
    Some(ProviderKey {
        kid: jwk.common.key_id.clone(),
        algorithm,
        fits,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

fn provider_token_error(e: &jsonwebtoken::errors::Error, config: &IdentityProviderConfig) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "token has expired".into(),
        ErrorKind::InvalidSignature => "token signature is invalid".into(),
        ErrorKind::InvalidAudience => format!("token is not for this service: its `aud` is not {:?}", config.audience),
        ErrorKind::InvalidIssuer => format!(
            "token is not from the configured identity provider: its `iss` is not {:?}",
            config.issuer.as_deref().unwrap_or_default()
        ),
        ErrorKind::MissingRequiredClaim(c) => format!("token has no `{c}` claim"),
        ErrorKind::ImmatureSignature => "token is not valid yet (`nbf`)".into(),
        _ => format!("token is not valid: {e}"),
    }
}

//! Bearer-token authentication and admission: validates JWTs signed with the local secret (HS256/384/512) or by an identity provider, extracts the user id, counts each user's requests against its budget, and mints tokens for local use.

mod provider;

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::IdentityProviderConfig;
use crate::error::{Error, Result};
use crate::model::UserId;
use crate::ratelimit::{Admission, RequestBudget};
use provider::IdentityProvider;

/// Validates and mints tokens with one secret and one algorithm, and validates an
/// identity provider's tokens when one is configured.
#[derive(Clone)]
pub struct Auth {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    provider: Option<Arc<IdentityProvider>>,
    /// Each user's requests a minute (`RATE_LIMIT_PER_MINUTE`); `None`: unlimited.
    budget: Option<Arc<dyn RequestBudget>>,
}

#[derive(Deserialize)]
struct Claims {
    /// A positive integer, as a JSON number or a string of digits.
    #[serde(default)]
    sub: serde_json::Value,
    /// `"replicate"`: the token may read every user's changes and files and apply
    /// changes (instance-to-instance sync). Anything else: an ordinary user token.
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Serialize)]
struct MintedClaims {
    sub: String,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
}

/// The scope claim value that grants replication rights.
pub const REPLICATE_SCOPE: &str = "replicate";

/// Who a valid token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    /// The token carries `"scope": "replicate"`.
    pub replicate: bool,
}

impl Principal {
    /// Whose files this caller may read in the change feed: everyone's (`None`) for a
    /// replication token, else its own.
    pub fn readable_user(&self) -> Option<UserId> {
        (!self.replicate).then_some(self.user)
    }

    /// Refuses callers without the replicate scope (403).
    pub fn require_replicate(&self) -> Result<()> {
        if self.replicate {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this route is for instance-to-instance sync: it needs a token whose claims carry \"scope\": \"replicate\" (file-service token --scope replicate)".into(),
            ))
        }
    }
}

impl Auth {
    pub fn new(secret: &[u8], algorithm: Algorithm) -> Auth {
        let mut validation = Validation::new(algorithm);
        // `sub` is checked below: jsonwebtoken only understands string subjects.
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        // The original (python-jose) allowed no clock leeway and did not check `aud`.
        validation.leeway = 0;
        validation.validate_aud = false;
        Auth {
            algorithm,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            provider: None,
            budget: None,
        }
    }

    /// Counts each caller's requests against `budget` (see [`Auth::admit`]).
    pub fn with_request_budget(mut self, budget: Arc<dyn RequestBudget>) -> Auth {
        self.budget = Some(budget);
        self
    }

    /// Who a request with this `Authorization` header speaks for, if its token is valid
    /// and its user has budget left for one more request. Replication tokens (other
    /// instances syncing) are not counted: a sync is many requests by design.
    pub async fn admit(&self, header: Option<&str>) -> Result<Principal> {
        let principal = self.principal_from_header(header).await?;
        if let Some(budget) = self.budget.as_ref().filter(|_| !principal.replicate) {
            if let Admission::Refused { retry_after } = budget.take(principal.user).await {
                return Err(Error::TooManyRequests {
                    retry_after,
                    detail: format!(
                        "too many requests: this user's budget is used up for now; retry in {} s",
                        retry_after.as_secs().max(1)
                    ),
                });
            }
        }
        Ok(principal)
    }

    /// Also takes tokens an identity provider signed (asymmetric algorithms only); those
    /// signed with the local secret stay valid.
    pub fn with_identity_provider(mut self, config: IdentityProviderConfig) -> std::result::Result<Auth, String> {
        self.provider = Some(Arc::new(IdentityProvider::new(config)?));
        Ok(self)
    }

    /// The user id of a valid `Authorization` header value.
    pub async fn user_from_header(&self, header: Option<&str>) -> Result<UserId> {
        self.principal_from_header(header).await.map(|p| p.user)
    }

    /// Who a valid `Authorization` header value speaks for.
    pub async fn principal_from_header(&self, header: Option<&str>) -> Result<Principal> {
        let header = header.ok_or_else(|| {
            Error::Unauthorized("missing Authorization header; send `Authorization: Bearer <token>`".into())
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthorized("Authorization header is not `Bearer <token>`".into()))?;
        self.principal_from_token(token).await
    }

    pub async fn user_from_token(&self, token: &str) -> Result<UserId> {
        self.principal_from_token(token).await.map(|p| p.user)
    }

    pub async fn principal_from_token(&self, token: &str) -> Result<Principal> {
        if let Some(provider) = &self.provider {
            // A header that does not parse (`alg: none` among them) falls through to the
            // local check, which refuses it with the usual words.
            if let Ok(header) = jsonwebtoken::decode_header(token) {
                if provider::is_provider_algorithm(header.alg) {
                    let claims = provider.verify(token, &header).await?;
                    let claim = provider.user_claim();
                    let user = claims.get(claim).and_then(parse_sub).ok_or_else(|| {
                        Error::Unauthorized(format!(
                            "token `{claim}` is not a positive integer user id (JWT_USER_CLAIM names the claim that holds it)"
                        ))
                    })?;
                    // Replication rights come only from the local secret: a provider's
                    // token is always an ordinary user's.
                    return Ok(Principal { user, replicate: false });
                }
            }
        }
        self.principal_from_local_token(token)
    }

    /// Who a token signed with the local secret speaks for.
    fn principal_from_local_token(&self, token: &str) -> Result<Principal> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            Error::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token has expired".to_string(),
                ErrorKind::InvalidSignature => "token signature is invalid".to_string(),
                ErrorKind::InvalidAlgorithm => format!("token is not signed with {:?}", self.algorithm),
                ErrorKind::MissingRequiredClaim(c) => format!("token has no `{c}` claim"),
                _ => format!("token is not valid: {e}"),
            })
        })?;
        let user = parse_sub(&data.claims.sub)
            .ok_or_else(|| Error::Unauthorized("token `sub` is not a positive integer user id".into()))?;
        Ok(Principal {
            user,
            replicate: data.claims.scope.as_deref() == Some(REPLICATE_SCOPE),
        })
    }

    /// A token for `user` valid for `ttl_seconds`.
    pub fn mint(&self, user: UserId, ttl_seconds: u64) -> String {
        self.mint_with_scope(user, ttl_seconds, false)
    }

    /// A token for `user` valid for `ttl_seconds`, with the replicate scope if asked.
    pub fn mint_with_scope(&self, user: UserId, ttl_seconds: u64, replicate: bool) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = MintedClaims {
            sub: user.to_string(),
            iat: now,
            exp: now + ttl_seconds,
            scope: replicate.then_some(REPLICATE_SCOPE),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .expect("HMAC signing with an in-memory key cannot fail")
    }
}

fn parse_sub(sub: &serde_json::Value) -> Option<UserId> {
    let id = match sub {
        serde_json::Value::Number(n) => n.as_i64()?,
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok()?,
        _ => return None,
    };
    (id > 0).then_some(id)
}

/// The configured secret, or the one generated on first start and kept in
/// `data_dir/secret_key` (mode 0600). Returns the secret and whether it was just made.
pub fn load_or_create_secret(
    configured: Option<&str>,
    data_dir: &Path,
) -> std::io::Result<(Vec<u8>, Option<std::path::PathBuf>)> {
    if let Some(s) = configured {
        return Ok((s.as_bytes().to_vec(), None));
    }
    let path = data_dir.join("secret_key");
    match std::fs::read_to_string(&path) {
        Ok(s) => return checked_secret(&s, &path).map(|s| (s, None)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    // Written whole to a temporary file and then given its name without overwriting: the
    // secret file is never seen empty or half-written, even by a process starting at the
    // same moment (which then uses the winner's secret).
    let mut temp = tempfile::Builder::new().prefix(".secret_key").tempfile_in(data_dir)?;
    #[cfg(unix)]
    std::fs::set_permissions(temp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::io::Write::write_all(&mut temp, secret.as_bytes())?;
    temp.as_file().sync_all()?;
    match temp.persist_noclobber(&path) {
        Ok(_) => Ok((secret.into_bytes(), Some(path))),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            checked_secret(&std::fs::read_to_string(&path)?, &path).map(|s| (s, None))
        }
        Err(e) => Err(e.error),
    }
}

/// A stored secret must be long enough to sign with: an empty or truncated file would
/// make tokens forgeable.
fn checked_secret(text: &str, path: &Path) -> std::io::Result<Vec<u8>> {
    let secret = text.trim();
    if secret.len() < 16 {
        return Err(std::io::Error::other(format!(
            "{} holds no usable secret (under 16 characters); delete it to generate a new one, or set SECRET_KEY",
            path.display()
        )));
    }
    Ok(secret.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_as_number_or_digit_string() {
        assert_eq!(parse_sub(&serde_json::json!(7)), Some(7));
        assert_eq!(parse_sub(&serde_json::json!("42")), Some(42));
        assert_eq!(parse_sub(&serde_json::json!("-3")), None);
        assert_eq!(parse_sub(&serde_json::json!(0)), None);
        assert_eq!(parse_sub(&serde_json::json!("abc")), None);
        assert_eq!(parse_sub(&serde_json::json!(1.5)), None);
    }

    #[tokio::test]
    async fn minted_tokens_validate_and_others_do_not() {
        let auth = Auth::new(b"0123456789abcdef0123", Algorithm::HS256);
        let token = auth.mint(5, 60);
        assert_eq!(
            auth.user_from_header(Some(&format!("Bearer {token}"))).await.unwrap(),
            5
        );
        let other = Auth::new(b"another-secret-of-20b", Algorithm::HS256);
        assert!(other.principal_from_local_token(&token).is_err());
        let hs512 = Auth::new(b"0123456789abcdef0123", Algorithm::HS512);
        assert!(
            hs512.principal_from_local_token(&token).is_err(),
            "algorithm mismatch must fail"
        );
        assert!(auth.user_from_header(None).await.is_err());
        assert!(auth.user_from_header(Some(&token)).await.is_err(), "no Bearer prefix");
    }
}

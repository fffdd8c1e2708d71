//! Fuzzes bearer-token checking (`auth::Auth`): raw `Authorization` header values, and
//! tokens correctly signed with the server's secret around arbitrary header and claims
//! bytes, so the fuzzer gets past the signature to the claims parsing.
//!
//! Properties: never a panic; a token is accepted only if its header says HS256, its claims
//! are a JSON object whose `exp` lies in the future and whose `sub` is a positive integer
//! (number or digit string) equal to the user returned; the replicate scope only when the
//! claims say `"scope": "replicate"`; a raw header value that was not signed here is refused.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use file_service::auth::Auth;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";

/// Token checks are async (an identity provider's keys may need fetching); a local token
/// never waits, so one current-thread runtime runs them.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let auth = Auth::new(SECRET, Algorithm::HS256);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        // Anything a client may send as the header value.
        0 => {
            let header = String::from_utf8_lossy(rest);
            if let Ok(p) = runtime().block_on(auth.principal_from_header(Some(&header))) {
                panic!("an unsigned header value was accepted as user {}: {header:?}", p.user);
            }
        }
        // A signed token: header JSON and claims JSON from the input, split at the first 0xFF.
        _ => {
            let (header, claims) = match rest.iter().position(|&b| b == 0xFF) {
                Some(i) if mode % 3 == 1 => (&rest[..i], &rest[i + 1..]),
                _ => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
            };
            let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
            let signature =
                jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(SECRET), Algorithm::HS256)
                    .expect("HMAC signing");
            let token = format!("{message}.{signature}");
            let Ok(principal) = runtime().block_on(auth.principal_from_token(&token)) else {
                return;
            };
            let header: serde_json::Value = serde_json::from_slice(header).expect("accepted header is JSON");
            assert_eq!(header["alg"], "HS256", "accepted header {header}");
            // serde_json skips a claim the server does not read without checking its UTF-8, and
            // the token is signed, so such bytes are harmless: read them lossily here.
            let claims: serde_json::Value =
                serde_json::from_str(&String::from_utf8_lossy(claims)).expect("accepted claims are JSON");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let exp = claims["exp"]
                .as_f64()
                .or_else(|| claims["exp"].as_u64().map(|e| e as f64));
            assert!(
                exp.is_some_and(|e| e > now as f64 - 1.0),
                "accepted exp {:?}",
                claims["exp"]
            );
            let sub = match &claims["sub"] {
                serde_json::Value::Number(n) => n.as_i64(),
                serde_json::Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
                _ => None,
            };
            assert!(principal.user > 0);
            assert_eq!(sub, Some(principal.user), "accepted sub {:?}", claims["sub"]);
            assert_eq!(principal.replicate, claims["scope"] == "replicate");
        }
    }
});

//! `/mcp` over HTTP: the Origin check, the API's bearer-token authentication, and rmcp's
//! streamable HTTP service (POST messages, GET the server's stream, DELETE the session).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use super::{Caller, Caps, FileMcp};
use crate::auth::Auth;
use crate::error::Error;
use crate::service::FileService;

/// The MCP endpoint of one server process.
pub struct Endpoint {
    http: StreamableHttpService<FileMcp, LocalSessionManager>,
    auth: Arc<Auth>,
    /// `CORS_ALLOWED_ORIGINS`.
    origins: Vec<String>,
    /// Bound to a loopback address: a desktop server, which only loopback names may reach.
    loopback: bool,
}

impl Endpoint {
    pub fn new(
        service: Arc<FileService>,
        auth: Arc<Auth>,
        caps: Caps,
        bind_addr: SocketAddr,
        cors_origins: &[String],
    ) -> Endpoint {
        let loopback = bind_addr.ip().is_loopback();
        let mut config = StreamableHttpServerConfig::default();
        // On loopback, rmcp's own Host check (loopback names only) stops DNS rebinding. A
        // server bound to a network address is reached by names this process cannot know:
        // there the Origin check below and the bearer token stand guard.
        if !loopback {
            config = config.disable_allowed_hosts();
        }
        let http = StreamableHttpService::new(
            move || Ok(FileMcp::new(service.clone(), caps)),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Endpoint {
            http,
            auth,
            origins: cors_origins.to_vec(),
            loopback,
        }
    }

    /// Ends every MCP session and stream (at shutdown, before in-flight requests are waited for).
    pub fn shutdown(&self) {
        // The config's token: cancelling it ends every session rmcp runs.
        self.http.config.cancellation_token.cancel();
    }

    /// One request to `/mcp`: refused (403 for a foreign Origin, 401 without a valid token),
    /// or handed to rmcp with the caller in its extensions.
    pub async fn handle(
        &self,
        mut req: http::Request<Incoming>,
    ) -> Result<http::Response<BoxBody<Bytes, Infallible>>, Error> {
        if let Some(origin) = req.headers().get(http::header::ORIGIN) {
            let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
            let allowed = origin.to_str().is_ok_and(|o| self.origin_allowed(o, host));
            if !allowed {
                tracing::warn!(origin = ?origin, "MCP request from a foreign Origin refused");
                return Err(Error::Forbidden(format!(
                    "Origin {} may not use /mcp: only this server's own origin and CORS_ALLOWED_ORIGINS may",
                    String::from_utf8_lossy(origin.as_bytes())
                )));
            }
        }
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|h| h.to_str().unwrap_or("<not text>"));
        let principal = self.auth.admit(header).await?;
        crate::http::server::record_user(principal.user);
        req.extensions_mut().insert(Caller(principal.user));
        Ok(self.http.handle(req).await)
    }

    /// Whether a browser page of `origin` may call: one of `CORS_ALLOWED_ORIGINS`, or the
    /// server's own origin (the request's `Host`; on a loopback server only under a loopback
    /// name, since a rebinding page's origin is its own name with our port).
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().trim_end_matches('/');
        if self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let Some(authority) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        let Some(host) = host else {
            return false;
        };
        authority.eq_ignore_ascii_case(host) && (!self.loopback || is_loopback_name(host))
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_name(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_and_without_ports() {
        for name in [
            "localhost",
            "LOCALHOST:8002",
            "127.0.0.1",
            "127.0.0.1:8002",
            "[::1]",
            "[::1]:8002",
        ] {
            assert!(is_loopback_name(name), "{name}");
        }
        for name in ["evil.example", "evil.example:8002", "10.0.0.1:8002", "[2001:db8::1]:80"] {
            assert!(!is_loopback_name(name), "{name}");
        }
    }
}

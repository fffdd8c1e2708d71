//! Loads the configuration: `config.toml` (or `--config` / `FILE_SERVICE_CONFIG`), then environment variables, validated key by key.
//!
//! Every key of the file can be overridden by the environment variable of the same name
//! in upper case (`bind_addr` ↔ `BIND_ADDR`), so the original design's variables keep
//! working. A bad value stops startup with one line naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;

/// Where the catalog lives.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    pub redis_url: Option<String>,
    /// `None`: use (or create) the generated secret in `data_dir`.
    pub secret_key: Option<String>,
    pub algorithm: Algorithm,
    /// Tokens from an identity provider, accepted beside the local secret's.
    pub identity_provider: Option<IdentityProviderConfig>,
    pub data_dir: PathBuf,
    /// The storage folder; with an S3 `storage`, only uploads in progress are kept here.
    pub local_storage_path: PathBuf,
    /// Where stored files live: `None` for the local folder, or an S3 bucket.
    pub s3: Option<S3Config>,
    pub active_file_ttl_seconds: u64,
    pub max_upload_bytes: u64,
    /// How many analyses (CPU-bound) may run at once; default: the number of cores.
    pub max_concurrent_analyses: usize,
    /// Uploads in progress past this get 503 with Retry-After.
    pub max_concurrent_uploads: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout_seconds: u64,
    /// An upload that sends nothing for this long is cut off (408).
    pub upload_idle_timeout_seconds: u64,
    /// A resumable (tus) upload not continued for this long is removed with its bytes.
    pub upload_expires_seconds: u64,
    /// After SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace_seconds: u64,
    /// Origins allowed by CORS; empty: CORS off (no CORS headers at all).
    pub cors_allowed_origins: Vec<String>,
    /// The address clients reach the service at (`https://files.example.com`, with a path
    /// when a proxy serves it under one), for the absolute addresses it hands out (share
    /// links); unset: taken from each request's `X-Forwarded-*` or `Host` headers.
    pub public_url: Option<String>,
    /// How long this process's claim on its unfinished work lasts without renewal; work
    /// a dead process left is taken over within twice this.
    pub lease_seconds: u64,
    pub watch: WatchConfig,
    /// A query running longer is stopped (408).
    pub query_timeout_seconds: u64,
    /// Queries and conversions running at once; past it, 503 with Retry-After.
    pub max_concurrent_queries: usize,
    /// Columnar copies made for queries are kept under `data_dir`, at most this many bytes.
    pub query_cache_max_bytes: u64,
    /// Make each uploaded file's columnar copy and row file in the background right after
    /// the upload, so its first query does not wait for them.
    pub query_tables_ahead: bool,
    /// Rows (or listed files) in one MCP tool result.
    pub mcp_max_rows: usize,
    /// Characters in one MCP tool result (its structured content, and its text).
    pub mcp_max_chars: usize,
    /// Requests one user may make in any minute; `None`: no limit.
    pub rate_limit_per_minute: Option<u64>,
    /// Each user's quota unless `file-service quota set` overrides it: stored bytes and
    /// files; `None`: no limit.
    pub quota_bytes: Option<u64>,
    pub quota_files: Option<u64>,
}

/// `JWT_JWKS_URL` / `JWT_ISSUER` and the claims their tokens must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityProviderConfig {
    /// The key set's address; `None`: found by OpenID discovery under `issuer`.
    pub jwks_url: Option<String>,
    /// The `iss` tokens must carry; `None` (only with a `jwks_url`): not checked.
    pub issuer: Option<String>,
    /// The `aud` tokens must carry: without it, a token the provider issued to any other
    /// application would be taken.
    pub audience: String,
    /// The claim holding the user id (a positive integer).
    pub user_claim: String,
    /// Unknown `kid`s fetch the key set again at most this often.
    pub min_refresh: std::time::Duration,
}

/// `STORAGE_URL=s3://bucket/prefix` and its `S3_*`/`AWS_*` settings.
#[derive(Clone, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without a trailing slash (`""`: the bucket's root).
    pub prefix: String,
    /// A self-hosted server's URL (path-style addressing); `None`: AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Another process's multipart upload under the prefix started this long ago is taken
    /// for abandoned (its process stopped) and aborted by the periodic pass.
    pub abandoned_upload_after: std::time::Duration,
}

impl std::fmt::Debug for S3Config {
    // Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("abandoned_upload_after", &self.abandoned_upload_after)
            .finish_non_exhaustive()
    }
}

/// `[watch]`: keeping the catalog in step with files changed in the storage folder.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Follow the folder with filesystem events while serving.
    pub enabled: bool,
    /// A full pass this often (catches what events miss); `None`: only events.
    pub interval: Option<std::time::Duration>,
    /// A file is taken once its size and times have not changed for this long.
    pub settle: std::time::Duration,
    /// Owner of files dropped in without a `{user_id}_` prefix; `None`: they are left alone.
    pub default_user_id: Option<i64>,
}

/// A configuration problem, shown as `config: KEY: message` and exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn config_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Raw key/value source: the TOML table, overridden by the environment.
struct Source {
    table: toml::Table,
    env: Box<dyn Fn(&str) -> Option<String>>,
}

impl Source {
    /// The value of `key` (lower-case name), from the environment first, then the file.
    /// A dotted key (`watch.default_user_id`) is a table entry in the file and
    /// `WATCH_DEFAULT_USER_ID` in the environment.
    fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        if let Some(v) = (self.env)(&env_name(key)) {
            return Ok(Some(v));
        }
        let value = match key.split_once('.') {
            Some((table, entry)) => self.table.get(table).and_then(|t| t.get(entry)),
            None => self.table.get(key),
        };
        match value {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(toml::Value::Integer(i)) => Ok(Some(i.to_string())),
            Some(toml::Value::Boolean(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(config_error(
                key,
                format!("expected a string or a number, found {}", other.type_str()),
            )),
        }
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, default: T, what: &str) -> Result<T, ConfigError> {
        match self.get(key)? {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| config_error(&env_name(key), format!("{raw:?} is not {what}"))),
        }
    }
}

fn parse_identity_provider(src: &Source) -> Result<Option<IdentityProviderConfig>, ConfigError> {
    let http_url = |key: &str| -> Result<Option<String>, ConfigError> {
        match src.get(key)? {
            None => Ok(None),
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => Ok(Some(url.trim().to_string())),
            Some(url) => Err(config_error(
                &env_name(key),
                format!("{url:?} is not an http:// or https:// URL"),
            )),
        }
    };
    let jwks_url = http_url("jwt_jwks_url")?;
    let issuer = http_url("jwt_issuer")?;
    let audience = src.get("jwt_audience")?.map(|a| a.trim().to_string());
    if jwks_url.is_none() && issuer.is_none() {
        if audience.is_some() {
            return Err(config_error(
                "JWT_AUDIENCE",
                "is set but no identity provider is: set JWT_JWKS_URL or JWT_ISSUER too",
            ));
        }
        return Ok(None);
    }
    let Some(audience) = audience.filter(|a| !a.is_empty()) else {
        return Err(config_error(
            "JWT_AUDIENCE",
            "is required with JWT_JWKS_URL or JWT_ISSUER: the `aud` this service's tokens carry (without it, tokens the provider issued to other applications would be taken)",
        ));
    };
    let user_claim = src
        .get("jwt_user_claim")?
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "sub".into());
    let min_refresh = src.parse("jwt_jwks_min_refresh_seconds", 60u64, "a whole number of seconds")?;
    Ok(Some(IdentityProviderConfig {
        jwks_url,
        issuer,
        audience,
        user_claim,
        min_refresh: std::time::Duration::from_secs(min_refresh),
    }))
}

fn env_name(key: &str) -> String {
    key.replace('.', "_").to_ascii_uppercase()
}

impl Config {
    /// Loads from `path` if given, else `FILE_SERVICE_CONFIG`, else `./config.toml` when it
    /// exists; the process environment overrides every key.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("FILE_SERVICE_CONFIG").map(PathBuf::from));
        let table = match path {
            Some(p) => read_table(&p)?,
            None if Path::new("config.toml").exists() => read_table(Path::new("config.toml"))?,
            None => toml::Table::new(),
        };
        Config::from_source(Source {
            table,
            env: Box::new(|k| std::env::var(k).ok().filter(|v| !v.is_empty())),
        })
    }

    fn from_source(src: Source) -> Result<Config, ConfigError> {
        let bind_addr = src.parse(
            "bind_addr",
            SocketAddr::from(([127, 0, 0, 1], 8002)),
            "a socket address like 127.0.0.1:8002",
        )?;
        let data_dir = PathBuf::from(src.get("data_dir")?.unwrap_or_else(|| "./data".into()));
        let database_url = match src.get("database_url")? {
            Some(url) => parse_database_url(&url)?,
            None => match postgres_url_from_parts(&src)? {
                Some(url) => DatabaseUrl::Postgres(url),
                None => DatabaseUrl::Sqlite(data_dir.join("files.db")),
            },
        };
        let redis_url = src.get("redis_url")?;
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
                return Err(config_error("REDIS_URL", format!("{url:?} is not a redis:// URL")));
            }
        }
        let algorithm = match src.get("algorithm")?.as_deref().map(str::trim) {
            None | Some("HS256") => Algorithm::HS256,
            Some("HS384") => Algorithm::HS384,
            Some("HS512") => Algorithm::HS512,
            Some(other) => {
                return Err(config_error(
                    "ALGORITHM",
                    format!("{other:?} is not supported; use HS256, HS384 or HS512"),
                ))
            }
        };
        let secret_key = src.get("secret_key")?;
        if matches!(&secret_key, Some(s) if s.len() < 16) {
            return Err(config_error(
                "SECRET_KEY",
                "is shorter than 16 bytes; use e.g. `openssl rand -hex 32`",
            ));
        }
        let identity_provider = parse_identity_provider(&src)?;
        let local_storage_path = src
            .get("local_storage_path")?
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("storage"));
        let s3 = match src.get("storage_url")? {
            None => None,
            Some(url) => Some(parse_s3(&src, url.trim())?),
        };
        let active_file_ttl_seconds = src.parse("active_file_ttl_seconds", 3600u64, "a whole number of seconds")?;
        if active_file_ttl_seconds == 0 {
            return Err(config_error("ACTIVE_FILE_TTL_SECONDS", "must be at least 1"));
        }
        let max_upload_bytes = src.parse("max_upload_bytes", 1u64 << 30, "a whole number of bytes")?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let max_concurrent_analyses = src.parse("max_concurrent_analyses", cores, "a whole number")?.max(1);
        let max_concurrent_uploads = src.parse("max_concurrent_uploads", 64usize, "a whole number")?.max(1);
        let header_read_timeout_seconds = src
            .parse("header_read_timeout_seconds", 30u64, "a whole number of seconds")?
            .max(1);
        let upload_idle_timeout_seconds = src
            .parse("upload_idle_timeout_seconds", 60u64, "a whole number of seconds")?
            .max(1);
        let upload_expires_seconds = src
            .parse("upload_expires_seconds", 86_400u64, "a whole number of seconds")?
            .max(1);
        let shutdown_grace_seconds = src.parse("shutdown_grace_seconds", 30u64, "a whole number of seconds")?;
        let query_timeout_seconds = src.parse("query_timeout_seconds", 30u64, "a whole number of seconds")?;
        if query_timeout_seconds == 0 {
            return Err(config_error("QUERY_TIMEOUT_SECONDS", "must be at least 1"));
        }
        let max_concurrent_queries = src.parse("max_concurrent_queries", cores, "a whole number")?.max(1);
        let query_cache_max_bytes = src.parse("query_cache_max_bytes", 10u64 << 30, "a whole number of bytes")?;
        let query_tables_ahead = src.parse("query_tables_ahead", true, "true or false")?;
        let mcp_max_rows = src.parse("mcp_max_rows", 500usize, "a whole number of rows")?;
        if !(1..=crate::query::MAX_LIMIT).contains(&mcp_max_rows) {
            return Err(config_error(
                "MCP_MAX_ROWS",
                format!("must be between 1 and {}", crate::query::MAX_LIMIT),
            ));
        }
        let mcp_max_chars = src.parse("mcp_max_chars", 50_000usize, "a whole number of characters")?;
        if mcp_max_chars < 2_000 {
            return Err(config_error("MCP_MAX_CHARS", "must be at least 2000"));
        }
        let rate_limit_per_minute = match src.parse("rate_limit_per_minute", 0u64, "a whole number of requests")? {
            0 => None,
            limit => Some(limit),
        };
        // 0 (the default) is no limit, as for the rate limit.
        let quota_bytes = Some(src.parse("quota_bytes", 0u64, "a whole number of bytes")?).filter(|&n| n > 0);
        let quota_files = Some(src.parse("quota_files", 0u64, "a whole number of files")?).filter(|&n| n > 0);
        let lease_seconds = src.parse("lease_seconds", 15u64, "a whole number of seconds")?;
        if lease_seconds < 2 {
            return Err(config_error("LEASE_SECONDS", "must be at least 2"));
        }
        let public_url = src.get("public_url")?.map(|url| parse_public_url(&url)).transpose()?;
        let cors_allowed_origins: Vec<String> = src
            .get("cors_allowed_origins")?
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        if let Some(bad) = cors_allowed_origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(config_error(
                "CORS_ALLOWED_ORIGINS",
                format!("{bad:?} is not an origin like https://app.example.com"),
            ));
        }
        let interval: u64 = src.parse("watch.interval_seconds", 300, "a whole number of seconds")?;
        let default_user_id = match src.get("watch.default_user_id")? {
            None => None,
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(id) if id > 0 => Some(id),
                _ => {
                    return Err(config_error(
                        "WATCH_DEFAULT_USER_ID",
                        format!("{raw:?} is not a positive user id"),
                    ))
                }
            },
        };
        let watch = WatchConfig {
            enabled: src.parse("watch.enabled", true, "true or false")?,
            interval: (interval > 0).then(|| std::time::Duration::from_secs(interval)),
            settle: std::time::Duration::from_millis(src.parse(
                "watch.settle_ms",
                1000u64,
                "a whole number of milliseconds",
            )?),
            default_user_id,
        };
        Ok(Config {
            bind_addr,
            database_url,
            redis_url,
            secret_key,
            algorithm,
            identity_provider,
            data_dir,
            local_storage_path,
            s3,
            active_file_ttl_seconds,
            max_upload_bytes,
            max_concurrent_analyses,
            max_concurrent_uploads,
            header_read_timeout_seconds,
            upload_idle_timeout_seconds,
            upload_expires_seconds,
            shutdown_grace_seconds,
            cors_allowed_origins,
            public_url,
            lease_seconds,
            watch,
            query_timeout_seconds,
            max_concurrent_queries,
            query_cache_max_bytes,
            query_tables_ahead,
            mcp_max_rows,
            mcp_max_chars,
            rate_limit_per_minute,
            quota_bytes,
            quota_files,
        })
    }
}

/// `PUBLIC_URL`: an http(s) address without query or fragment; kept without its trailing
/// slash, so paths are appended to it as they are.
fn parse_public_url(text: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| config_error("PUBLIC_URL", format!("{text:?} {why}; use e.g. https://files.example.com"));
    let url = reqwest::Url::parse(text.trim()).map_err(|_| bad("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("is not an http:// or https:// address"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("has a query, fragment or user name"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error("--config", format!("cannot read {}: {e}", path.display())))?;
    text.parse::<toml::Table>().map_err(|e| {
        config_error(
            "--config",
            format!("{} is not valid TOML: {}", path.display(), e.message()),
        )
    })
}

fn parse_database_url(url: &str) -> Result<DatabaseUrl, ConfigError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(config_error(
                "DATABASE_URL",
                "sqlite:// needs a file path, e.g. sqlite://./data/files.db",
            ));
        }
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(url.to_string()));
    }
    Err(config_error(
        "DATABASE_URL",
        format!("{url:?} is neither sqlite://PATH nor postgres://…"),
    ))
}

/// `s3://bucket[/prefix]` with the `S3_*` settings and the standard AWS credential variables.
fn parse_s3(src: &Source, url: &str) -> Result<S3Config, ConfigError> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(config_error(
            "STORAGE_URL",
            format!("{url:?} is not s3://BUCKET[/PREFIX] (leave it unset for the local folder)"),
        ));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // S3's rules: 3–63 lower-case letters, digits, dots and hyphens.
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !valid_bucket {
        return Err(config_error(
            "STORAGE_URL",
            format!("{bucket:?} is not a bucket name (3-63 lower-case letters, digits, dots, hyphens)"),
        ));
    }
    let prefix = prefix.trim_matches('/').to_string();
    if prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..") && !prefix.is_empty() {
        return Err(config_error(
            "STORAGE_URL",
            format!("the prefix {prefix:?} has an empty, `.` or `..` segment"),
        ));
    }
    let endpoint = src
        .get("s3_endpoint")?
        .map(|e| e.trim().trim_end_matches('/').to_string());
    if let Some(e) = &endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(config_error(
                "S3_ENDPOINT",
                format!("{e:?} is not an http:// or https:// URL"),
            ));
        }
    }
    let access_key_id = src.get("aws_access_key_id")?;
    let secret_access_key = src.get("aws_secret_access_key")?;
    if access_key_id.is_some() != secret_access_key.is_some() {
        return Err(config_error(
            if access_key_id.is_some() {
                "AWS_SECRET_ACCESS_KEY"
            } else {
                "AWS_ACCESS_KEY_ID"
            },
            "is missing: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither",
        ));
    }
    Ok(S3Config {
        bucket: bucket.to_string(),
        prefix,
        endpoint,
        region: src
            .get("s3_region")?
            .or(src.get("aws_region")?)
            .unwrap_or_else(|| "us-east-1".into()),
        access_key_id,
        secret_access_key,
        session_token: src.get("aws_session_token")?,
        abandoned_upload_after: std::time::Duration::from_secs(
            src.parse("s3_abandoned_upload_seconds", 86_400u64, "a whole number of seconds")?
                .max(1),
        ),
    })
}

/// The original design configured PostgreSQL with `DB_HOST`, `DB_PORT`, … instead of a URL.
fn postgres_url_from_parts(src: &Source) -> Result<Option<String>, ConfigError> {
    let Some(host) = src.get("db_host")? else {
        return Ok(None);
    };
    let port: u16 = src.parse("db_port", 5432, "a port number")?;
    let user = src.get("db_user")?.unwrap_or_else(|| "postgres".into());
    let pass = src.get("db_pass")?;
    let name = src.get("db_name")?.unwrap_or_else(|| "postgres".into());
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let auth = match pass {
        Some(p) => format!("{}:{}", enc(&user), enc(&p)),
        None => enc(&user),
    };
    Ok(Some(format!("postgres://{auth}@{host}:{port}/{}", enc(&name))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_source(Source {
            table: toml_text.parse().unwrap(),
            env: Box::new(move |k| env.get(k).cloned()),
        })
    }

    #[test]
    fn defaults_are_embedded() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8002");
        assert_eq!(c.database_url, DatabaseUrl::Sqlite(PathBuf::from("./data/files.db")));
        assert_eq!(c.local_storage_path, PathBuf::from("./data/storage"));
        assert_eq!(c.active_file_ttl_seconds, 3600);
        assert_eq!(c.max_upload_bytes, 1 << 30);
        assert!(c.redis_url.is_none() && c.secret_key.is_none());
        assert_eq!((c.mcp_max_rows, c.mcp_max_chars), (500, 50_000));
        let c = load("mcp_max_rows = 20", &[("MCP_MAX_CHARS", "4000")]).unwrap();
        assert_eq!((c.mcp_max_rows, c.mcp_max_chars), (20, 4000));
        assert_eq!(
            (c.quota_bytes, c.quota_files),
            (None, None),
            "quotas are unlimited by default"
        );
    }

    #[test]
    fn quotas_come_from_quota_bytes_and_quota_files() {
        let c = load("quota_bytes = 1000", &[("QUOTA_FILES", "3")]).unwrap();
        assert_eq!((c.quota_bytes, c.quota_files), (Some(1000), Some(3)));
        let c = load("quota_bytes = 0", &[]).unwrap();
        assert_eq!(c.quota_bytes, None, "0 is no limit");
        assert!(load("", &[("QUOTA_BYTES", "1GB")]).is_err());
    }

    #[test]
    fn public_url_is_an_http_address_kept_without_its_trailing_slash() {
        assert_eq!(load("", &[]).unwrap().public_url, None);
        let c = load("public_url = \"https://files.example.com/base/\"", &[]).unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://files.example.com/base"));
        let c = load("", &[("PUBLIC_URL", "http://10.0.0.5:8002")]).unwrap();
        assert_eq!(c.public_url.as_deref(), Some("http://10.0.0.5:8002"));
        for bad in ["files.example.com", "ftp://x.example", "https://x.example/?a=1", "https://u@x.example"] {
            let e = load("", &[("PUBLIC_URL", bad)]).unwrap_err();
            assert_eq!(e.key, "PUBLIC_URL", "{bad}");
        }
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            "bind_addr = \"127.0.0.1:9000\"\nmax_upload_bytes = 10",
            &[("BIND_ADDR", "0.0.0.0:1")],
        )
        .unwrap();
        assert_eq!(c.bind_addr.to_string(), "0.0.0.0:1");
        assert_eq!(c.max_upload_bytes, 10);
    }

    #[test]
    fn watch_table_and_its_variables() {
        let c = load("[watch]\ndefault_user_id = 7\ninterval_seconds = 0", &[]).unwrap();
        assert_eq!(c.watch.default_user_id, Some(7));
        assert!(c.watch.interval.is_none() && c.watch.enabled);
        let c = load(
            "[watch]\ndefault_user_id = 7",
            &[("WATCH_DEFAULT_USER_ID", "9"), ("WATCH_ENABLED", "false")],
        )
        .unwrap();
        assert_eq!(c.watch.default_user_id, Some(9));
        assert!(!c.watch.enabled);
    }

    #[test]
    fn an_s3_storage_url_and_its_settings() {
        let c = load(
            "",
            &[
                ("STORAGE_URL", "s3://files-bucket/team/a/"),
                ("S3_ENDPOINT", "http://127.0.0.1:9000/"),
                ("AWS_ACCESS_KEY_ID", "id"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ],
        )
        .unwrap();
        let s3 = c.s3.unwrap();
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("files-bucket", "team/a"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region, "us-east-1");
        assert!(!format!("{s3:?}").contains("secret"));
        assert!(load("", &[]).unwrap().s3.is_none());
        // Credentials come in pairs; the missing half is named.
        let err = load("", &[("STORAGE_URL", "s3://files-bucket"), ("AWS_ACCESS_KEY_ID", "id")]).unwrap_err();
        assert_eq!(err.key, "AWS_SECRET_ACCESS_KEY", "{err}");
    }

    #[test]
    fn db_parts_build_a_postgres_url() {
        let c = load(
            "",
            &[
                ("DB_HOST", "db"),
                ("DB_USER", "u"),
                ("DB_PASS", "p@ss"),
                ("DB_NAME", "files"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.database_url,
            DatabaseUrl::Postgres("postgres://u:p%40ss@db:5432/files".into())
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (env, key) in [
            (("BIND_ADDR", "nope"), "BIND_ADDR"),
            (("DATABASE_URL", "mysql://x"), "DATABASE_URL"),
            (("ALGORITHM", "RS256"), "ALGORITHM"),
            (("ACTIVE_FILE_TTL_SECONDS", "-1"), "ACTIVE_FILE_TTL_SECONDS"),
            (("MAX_UPLOAD_BYTES", "1GB"), "MAX_UPLOAD_BYTES"),
            (("REDIS_URL", "localhost:6379"), "REDIS_URL"),
            (("WATCH_DEFAULT_USER_ID", "0"), "WATCH_DEFAULT_USER_ID"),
            (("WATCH_INTERVAL_SECONDS", "often"), "WATCH_INTERVAL_SECONDS"),
            (("STORAGE_URL", "gs://bucket"), "STORAGE_URL"),
            (("STORAGE_URL", "s3://Bad_Bucket/x"), "STORAGE_URL"),
            (("MCP_MAX_ROWS", "0"), "MCP_MAX_ROWS"),
            (("MCP_MAX_ROWS", "many"), "MCP_MAX_ROWS"),
            (("MCP_MAX_CHARS", "100"), "MCP_MAX_CHARS"),
        ] {
            let err = load("", &[env]).unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
    }

    #[test]
    fn an_identity_provider_needs_an_audience_and_http_addresses() {
        assert!(load("", &[]).unwrap().identity_provider.is_none());
        let idp = load(
            "",
            &[
                ("JWT_ISSUER", "https://id.example.com/realms/x"),
                ("JWT_AUDIENCE", "files"),
            ],
        )
        .unwrap()
        .identity_provider
        .unwrap();
        assert_eq!(idp.jwks_url, None);
        assert_eq!(idp.user_claim, "sub");
        assert_eq!(idp.min_refresh, std::time::Duration::from_secs(60));
        let err = load("", &[("JWT_JWKS_URL", "https://id.example.com/jwks")]).unwrap_err();
        assert_eq!(err.key, "JWT_AUDIENCE", "{err}");
        let err = load("", &[("JWT_AUDIENCE", "files")]).unwrap_err();
        assert_eq!(err.key, "JWT_AUDIENCE", "{err}");
        let err = load(
            "",
            &[("JWT_JWKS_URL", "id.example.com/jwks"), ("JWT_AUDIENCE", "files")],
        )
        .unwrap_err();
        assert_eq!(err.key, "JWT_JWKS_URL", "{err}");
        let idp = load(
            "jwt_jwks_url = \"http://127.0.0.1:9/jwks\"\njwt_audience = \"files\"\njwt_user_claim = \"uid\"\n",
            &[("JWT_JWKS_MIN_REFRESH_SECONDS", "1")],
        )
        .unwrap()
        .identity_provider
        .unwrap();
        assert_eq!(idp.user_claim, "uid");
        assert_eq!(idp.min_refresh, std::time::Duration::from_secs(1));
    }
}

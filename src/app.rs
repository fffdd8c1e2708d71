//! Builds the service from the configuration (choosing each backend) and runs the HTTP server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::auth::{load_or_create_secret, Auth};
use crate::cache::memory::MemoryCache;
use crate::cache::none::PassThrough;
use crate::cache::redis::RedisCache;
use crate::cache::ActiveFileCache;
use crate::catalog::postgres::PostgresCatalog;
use crate::catalog::sqlite::SqliteCatalog;
use crate::catalog::Catalog;
use crate::config::{Config, ConfigError, DatabaseUrl};
use crate::http::server::ServerOptions;
use crate::ratelimit::{memory::MemoryBudget, redis::RedisBudget, RequestBudget};
use crate::reconcile::Reconciler;
use crate::service::{FileService, Limits};
use crate::storage::local::LocalStorage;
use crate::storage::s3::S3Storage;
use crate::storage::Storage;

/// A startup failure: a configuration key with what is wrong with it, or another error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn key_error(key: &str, err: impl std::fmt::Display) -> StartupError {
    StartupError::Config(ConfigError {
        key: key.to_string(),
        message: err.to_string(),
    })
}

/// The token checker for the configured (or generated) secret.
pub fn auth(config: &Config) -> Result<Auth, StartupError> {
    let (secret, created) = load_or_create_secret(config.secret_key.as_deref(), &config.data_dir).map_err(|e| {
        key_error(
            "SECRET_KEY",
            format!(
                "not set, and the generated secret in {} cannot be read or created: {e}",
                config.data_dir.display()
            ),
        )
    })?;
    if let Some(path) = created {
        tracing::info!(path = %path.display(), "SECRET_KEY is not set: generated a random secret (owner-only file); set SECRET_KEY to share one with other services");
    }
    let auth = Auth::new(&secret, config.algorithm);
    match &config.identity_provider {
        None => Ok(auth),
        Some(provider) => {
            tracing::info!(
                jwks_url = provider.jwks_url.as_deref().unwrap_or("(OpenID discovery)"),
                issuer = provider.issuer.as_deref().unwrap_or("(not checked)"),
                audience = %provider.audience,
                user_claim = %provider.user_claim,
                "tokens from the identity provider are accepted beside the local secret's"
            );
            auth.with_identity_provider(provider.clone()).map_err(|e| {
                key_error(
                    if provider.jwks_url.is_some() {
                        "JWT_JWKS_URL"
                    } else {
                        "JWT_ISSUER"
                    },
                    e,
                )
            })
        }
    }
}

/// Counts each user's requests when `RATE_LIMIT_PER_MINUTE` is set: in Redis when
/// `REDIS_URL` is (replicas then share one budget per user), else in this process.
fn with_request_budget(auth: Auth, config: &Config) -> Result<Auth, StartupError> {
    let Some(limit) = config.rate_limit_per_minute else {
        return Ok(auth);
    };
    let budget: Arc<dyn RequestBudget> = match &config.redis_url {
        Some(url) => Arc::new(RedisBudget::open(url, limit).map_err(|e| key_error("REDIS_URL", e))?),
        None => Arc::new(MemoryBudget::new(limit)),
    };
    tracing::info!(budget = %budget.describe(), "requests are limited per user");
    Ok(auth.with_request_budget(budget))
}

/// Opens the catalog named by `DATABASE_URL` (without migrating it). Blocking: a
/// PostgreSQL catalog connects here, and an unreachable server fails startup.
pub fn open_catalog(config: &Config) -> Result<Arc<dyn Catalog>, StartupError> {
    match &config.database_url {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(
            SqliteCatalog::open(path).map_err(|e| key_error("DATABASE_URL", e))?,
        )),
        // The message names the server but never the password.
        DatabaseUrl::Postgres(url) => Ok(Arc::new(
            PostgresCatalog::open(url).map_err(|e| key_error("DATABASE_URL", e))?,
        )),
    }
}

/// The active-file cache: Redis when `REDIS_URL` is set; otherwise in-process, except
/// on PostgreSQL, where replicas share the catalog and a per-process cache would serve
/// an active file another replica has changed, so nothing is cached.
async fn open_cache(config: &Config) -> Result<Arc<dyn ActiveFileCache>, StartupError> {
    let ttl = Duration::from_secs(config.active_file_ttl_seconds);
    Ok(match (&config.redis_url, &config.database_url) {
        (Some(url), _) => {
            // Fault injection for the replica-race test only: delays every cache write.
            let put_delay = std::env::var("FILE_SERVICE_FAULT_CACHE_PUT_DELAY_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis);
            let cache = RedisCache::open(url, ttl, put_delay).map_err(|e| key_error("REDIS_URL", e))?;
            // Redis is a cache: when it is down the catalog serves, so this is no reason
            // to refuse to start; caching begins as soon as it answers.
            if let Err(e) = cache.ping().await {
                tracing::warn!(error = %e, "REDIS_URL: Redis is not reachable; serving from the catalog until it is");
            }
            Arc::new(cache)
        }
        (None, DatabaseUrl::Postgres(_)) => Arc::new(PassThrough),
        (None, DatabaseUrl::Sqlite(_)) => Arc::new(MemoryCache::new(ttl)),
    })
}

/// Opens every backend, applies migrations, takes a lease and finishes interrupted work.
pub async fn build(config: &Config) -> Result<Arc<FileService>, StartupError> {
    let service = open(config).await?;
    let setup = service.clone();
    let lease = Duration::from_secs(config.lease_seconds);
    // A SQLite catalog belongs to this server: whatever earlier processes left is
    // abandoned now. On PostgreSQL, only the work of replicas whose lease has ended.
    let all_others = matches!(config.database_url, DatabaseUrl::Sqlite(_));
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        setup.catalog().migrate().context("applying catalog migrations")?;
        setup
            .catalog()
            .renew_lease(lease)
            .context("taking a lease in the catalog")?;
        // Before recovery and the watcher look for objects under their names.
        setup
            .upgrade_stored_keys(false)
            .context("moving objects of an earlier release to their names' keys")?;
        setup
            .recover(all_others)
            .context("recovering interrupted uploads, renames and deletes")?;
        Ok(())
    })
    .await
    .context("startup task")??;
    Ok(service)
}

/// `file-service reconcile`: one full pass of the storage folder against the catalog.
/// A server may be running on the same catalog, so this holds a lease like one (its
/// uploads in progress are not leftovers, and this pass's are not the server's).
pub async fn reconcile(config: &Config, dry_run: bool) -> Result<crate::reconcile::Report, StartupError> {
    let service = open(config).await?;
    let lease = if dry_run {
        // Objects still under an earlier release's keys would all look missing.
        let setup = service.clone();
        let pending = tokio::task::spawn_blocking(move || setup.upgrade_stored_keys(true))
            .await
            .context("startup task")?
            .map_err(|e| StartupError::Other(anyhow::anyhow!("{}", e.detail())))?;
        if pending > 0 {
            return Err(StartupError::Other(anyhow::anyhow!(
                "{pending} objects are still under the percent-encoded keys of an earlier release; \
                 start the server or run `reconcile` without --dry-run once to move them to their names' keys"
            )));
        }
        None
    } else {
        let setup = service.clone();
        tokio::task::spawn_blocking(move || {
            setup.catalog().migrate()?;
            setup.upgrade_stored_keys(false)
        })
        .await
        .context("migration task")?
        .map_err(|e| StartupError::Other(anyhow::anyhow!("{}", e.detail())))?;
        Some(tokio::spawn(crate::service::run_recovery(
            service.clone(),
            Duration::from_secs(config.lease_seconds),
        )))
    };
    let reconciler = Reconciler::new(service.clone(), config.watch.default_user_id, config.watch.settle);
    let report = reconciler.pass(dry_run).await;
    if let Some(lease) = lease {
        lease.abort();
        end_lease(&service).await;
    }
    report.map_err(|e| StartupError::Other(anyhow::anyhow!("{}", e.detail())))
}

/// Gives up this process's lease at a clean exit, so other processes need not wait for
/// it to expire before resolving anything left behind.
async fn end_lease(service: &Arc<FileService>) {
    let catalog = service.catalog().clone();
    match tokio::task::spawn_blocking(move || catalog.end_lease()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e.detail(), "could not end this process's lease; it expires by itself"),
        Err(e) => tracing::warn!(error = %e, "could not end this process's lease; it expires by itself"),
    }
}

/// `file-service check`: opens every backend without changing anything and reports
/// what is in use and whether each part answers.
pub async fn check(config: &Config) -> Result<String, StartupError> {
    auth(config)?;
    let service = open(config).await?;
    let report = service.readiness().await;
    let describe = service.describe();
    let line = |name: &str, c: &crate::service::Check| match &c.detail {
        None => format!("  {name}: ok"),
        Some(d) => format!("  {name}: FAILED: {d}"),
    };
    let text = format!(
        "listen: {}\n{describe}\n{}\n{}\n{}",
        config.bind_addr,
        line("catalog", &report.checks.catalog),
        line("storage", &report.checks.storage),
        line("cache", &report.checks.cache)
    );
    if report.status == "ready" {
        Ok(text)
    } else {
        Err(StartupError::Other(anyhow::anyhow!(
            "{text}\nstatus: {}",
            report.status
        )))
    }
}

/// Opens every backend (creating the SQLite file and storage folder if needed).
async fn open(config: &Config) -> Result<Arc<FileService>, StartupError> {
    // Connecting to PostgreSQL blocks (and its client must not run on an async thread).
    let catalog = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_catalog(&config))
            .await
            .context("startup task")??
    };
    let storage = open_storage(config).await?;
    let cache = open_cache(config).await?;
    let limits = Limits {
        max_upload_bytes: config.max_upload_bytes,
        max_concurrent_analyses: config.max_concurrent_analyses,
        max_concurrent_uploads: config.max_concurrent_uploads,
        upload_idle_timeout: Duration::from_secs(config.upload_idle_timeout_seconds),
        upload_expires: Duration::from_secs(config.upload_expires_seconds),
        max_concurrent_queries: config.max_concurrent_queries,
        query_timeout: Duration::from_secs(config.query_timeout_seconds),
        quota: quota_defaults(config),
        tables_ahead: config.query_tables_ahead,
    };
    let copies_dir = config.data_dir.join("query-tables");
    let copies = crate::query::ColumnarCache::new(copies_dir.clone(), config.query_cache_max_bytes)
        .map_err(|e| key_error("DATA_DIR", format!("cannot create {}: {e}", copies_dir.display())))?;
    Ok(Arc::new(FileService::new(catalog, cache, storage, limits, copies)))
}

/// The storage: the local folder, or the bucket of `STORAGE_URL` (reached and written to
/// once here, so a bad bucket, endpoint or key stops startup with one line).
async fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, StartupError> {
    let Some(s3) = config.s3.clone() else {
        return Ok(Arc::new(
            LocalStorage::open(&config.local_storage_path)
                .map_err(|e| key_error("LOCAL_STORAGE_PATH", format!("{e:#}")))?,
        ));
    };
    let spool = config.local_storage_path.clone();
    let opened = tokio::task::spawn_blocking(move || S3Storage::open(&s3, &spool))
        .await
        .context("startup task")?;
    Ok(Arc::new(
        opened.map_err(|e| key_error("STORAGE_URL", format!("{e:#}")))?,
    ))
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests finish within the grace
/// period. Returns the service so the caller can clean up once the runtime has stopped.
/// Every user's quota unless `file-service quota set` overrides it.
pub fn quota_defaults(config: &Config) -> crate::catalog::QuotaLimits {
    crate::catalog::QuotaLimits {
        bytes: config.quota_bytes,
        files: config.quota_files,
    }
}

pub async fn serve(config: Config) -> Result<Arc<FileService>, StartupError> {
    let auth = Arc::new(with_request_budget(auth(&config)?, &config)?);
    let service = build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .map_err(|e| key_error("BIND_ADDR", format!("cannot listen on {}: {e}", config.bind_addr)))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!("file-service listening on http://{addr} ({})", service.describe());
    let options = ServerOptions {
        header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds),
        shutdown_grace: Duration::from_secs(config.shutdown_grace_seconds),
    };
    // A local folder is followed by its events and periodic passes; a bucket (no events)
    // by the periodic passes alone.
    let watcher = config.watch.enabled.then(|| {
        let reconciler = Arc::new(Reconciler::new(
            service.clone(),
            config.watch.default_user_id,
            config.watch.settle,
        ));
        let folder = service.storage().local_folder().map(Path::to_path_buf);
        tokio::spawn(reconciler.watch(folder, config.watch.interval))
    });
    let recovery = tokio::spawn(crate::service::run_recovery(
        service.clone(),
        Duration::from_secs(config.lease_seconds),
    ));
    let caps = crate::mcp::Caps {
        max_rows: config.mcp_max_rows,
        max_chars: config.mcp_max_chars,
    };
    let mcp = Arc::new(crate::mcp::Endpoint::new(
        service.clone(),
        auth.clone(),
        caps,
        addr,
        &config.cors_allowed_origins,
    ));
    let routes = crate::http::routes(service.clone(), auth, &crate::http::RouteSettings::from_config(&config));
    crate::http::server::serve(listener, routes, Some(mcp), options, shutdown_signal()).await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    recovery.abort();
    end_lease(&service).await;
    Ok(service)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

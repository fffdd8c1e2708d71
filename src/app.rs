//! Builds the service from the configuration (choosing each backend) and runs the HTTP server.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::auth::{load_or_create_secret, Auth};
use crate::cache::memory::MemoryCache;
use crate::cache::ActiveFileCache;
use crate::catalog::sqlite::SqliteCatalog;
use crate::catalog::Catalog;
use crate::config::{Config, ConfigError, DatabaseUrl};
use crate::http::server::ServerOptions;
use crate::service::{FileService, Limits};
use crate::storage::local::LocalStorage;
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
    StartupError::Config(ConfigError { key: key.to_string(), message: err.to_string() })
}

/// The token checker for the configured (or generated) secret.
pub fn auth(config: &Config) -> Result<Auth, StartupError> {
    let (secret, created) = load_or_create_secret(config.secret_key.as_deref(), &config.data_dir)
        .map_err(|e| key_error("SECRET_KEY", format!("not set, and the generated secret in {} cannot be read or created: {e}", config.data_dir.display())))?;
    if let Some(path) = created {
        tracing::info!(path = %path.display(), "SECRET_KEY is not set: generated a random secret (owner-only file); set SECRET_KEY to share one with other services");
    }
    Ok(Auth::new(&secret, config.algorithm))
}

/// Opens the catalog named by `DATABASE_URL` (without migrating it).
pub fn open_catalog(config: &Config) -> Result<Arc<dyn Catalog>, StartupError> {
    match &config.database_url {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(SqliteCatalog::open(path).map_err(|e| key_error("DATABASE_URL", e))?)),
        DatabaseUrl::Postgres(_) => Err(key_error(
            "DATABASE_URL",
            "PostgreSQL catalogs are not supported by this version yet; use sqlite://PATH",
        )),
    }
}

/// Opens every backend, applies migrations and finishes interrupted work.
pub async fn build(config: &Config) -> Result<Arc<FileService>, StartupError> {
    let service = open(config)?;
    let setup = service.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        setup.catalog().migrate().context("applying catalog migrations")?;
        setup.recover().context("recovering interrupted uploads and deletes")?;
        Ok(())
    })
    .await
    .context("startup task")??;
    Ok(service)
}

/// `file-service check`: opens every backend without changing anything and reports
/// what is in use and whether each part answers.
pub async fn check(config: &Config) -> Result<String, StartupError> {
    auth(config)?;
    let service = open(config)?;
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
        Err(StartupError::Other(anyhow::anyhow!("{text}\nstatus: {}", report.status)))
    }
}

/// Opens every backend (creating the SQLite file and storage folder if needed).
fn open(config: &Config) -> Result<Arc<FileService>, StartupError> {
    let catalog = open_catalog(config)?;
    let storage: Arc<dyn Storage> =
        Arc::new(LocalStorage::open(&config.local_storage_path).map_err(|e| key_error("LOCAL_STORAGE_PATH", format!("{e:#}")))?);
    let cache: Arc<dyn ActiveFileCache> = match &config.redis_url {
        None => Arc::new(MemoryCache::new(Duration::from_secs(config.active_file_ttl_seconds))),
        Some(_) => return Err(key_error("REDIS_URL", "Redis caches are not supported by this version yet; unset REDIS_URL")),
    };
    let limits = Limits {
        max_upload_bytes: config.max_upload_bytes,
        max_concurrent_analyses: config.max_concurrent_analyses,
        max_concurrent_uploads: config.max_concurrent_uploads,
        upload_idle_timeout: Duration::from_secs(config.upload_idle_timeout_seconds),
    };
    Ok(Arc::new(FileService::new(catalog, cache, storage, limits)))
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests finish within the grace
/// period. Returns the service so the caller can clean up once the runtime has stopped.
pub async fn serve(config: Config) -> Result<Arc<FileService>, StartupError> {
    let auth = Arc::new(auth(&config)?);
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
    let routes = crate::http::routes(service.clone(), auth, &config.cors_allowed_origins);
    crate::http::server::serve(listener, routes, options, shutdown_signal()).await;
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

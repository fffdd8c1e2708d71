//! The `file-service` command: `serve` (default), `token`, `open`, `mcp`, `migrate`, `reconcile`, `check`, `summarize`, `sync`, `quota`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use file_service::app::{self, StartupError};
use file_service::catalog::QuotaSetting;
use file_service::config::Config;
use file_service::formats::{self, Format};
use file_service::service::quotas;
use file_service::sync_client::{self, Endpoint};

#[derive(Parser)]
#[command(
    name = "file-service",
    version,
    about = "Stores dataset files, summarizes them and tracks the active file of each session."
)]
struct Cli {
    /// Configuration file (TOML). Default: $FILE_SERVICE_CONFIG, else ./config.toml if present.
    /// Every key can be overridden by its environment variable (BIND_ADDR, DATABASE_URL, …).
    #[arg(long, global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Print a bearer token for a user, signed with the configured (or generated) secret.
    Token {
        /// The user id (the token's `sub`), a positive integer.
        #[arg(long)]
        user: i64,
        /// How long the token is valid: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: u64,
        /// `replicate`: the token may read every user's changes and files and apply
        /// changes, for `file-service sync` between instances.
        #[arg(long, value_parser = ["replicate"])]
        scope: Option<String>,
    },
    /// Sign in on this desktop: open the web page (or print its address) with a
    /// short-lived token for a user in the address's fragment, which is never sent to
    /// the server; the page keeps it for the browser tab.
    Open {
        /// The user id, a positive integer.
        #[arg(long, default_value_t = 1)]
        user: i64,
        /// How long the sign-in lasts: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        ttl: u64,
        /// Only print the address; do not start a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Speak MCP on stdin/stdout for a desktop agent (its config starts this command),
    /// forwarding every message to a running server's /mcp.
    Mcp {
        /// The server's MCP endpoint (or its base URL). Default: http://BIND_ADDR/mcp.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// A bearer token for that server (`file-service token --user N` prints one).
        #[arg(long, env = "FILE_SERVICE_TOKEN", hide_env_values = true, conflicts_with = "user")]
        token: Option<String>,
        /// Sign a token for this user with the configured (local) secret instead, as `open`
        /// does: for a server on this machine sharing this configuration.
        #[arg(long)]
        user: Option<i64>,
        /// How long a token made with --user is valid: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: u64,
    },
    /// Apply catalog migrations and exit.
    Migrate,
    /// Run one full pass of the storage folder against the catalog and print what it
    /// did: files dropped in are catalogued, changed ones re-analyzed, removed ones forgotten.
    Reconcile {
        /// Only print what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Load and validate the configuration, reach every backend, print what is in use;
    /// exits non-zero if anything fails.
    Check,
    /// Exchange files with another instance over HTTP, resumably: `--from` pulls its
    /// changes into this instance, `--to` pushes this instance's changes to it, both do
    /// both. This instance's server must be running (reached at --local).
    Sync {
        /// The other instance's base URL (http://hub:8002) to pull from.
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// The other instance's base URL to push to.
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// A token of the other instance with the replicate scope.
        #[arg(long, env = "FILE_SERVICE_SYNC_TOKEN", hide_env_values = true)]
        token: String,
        /// This instance's base URL. Default: http://BIND_ADDR (127.0.0.1 for 0.0.0.0).
        #[arg(long, value_name = "URL")]
        local: Option<String>,
        /// Keep syncing as changes arrive (long-polling both feeds) until stopped.
        #[arg(long)]
        watch: bool,
        /// Print the report as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Per-user quotas: `set` a user's limits (overriding QUOTA_BYTES and QUOTA_FILES),
    /// `show` them with the user's usage (JSON). Works on the catalog directly.
    Quota {
        #[command(subcommand)]
        action: QuotaCommand,
    },
    /// Print the summary of a dataset file without a server.
    Summarize {
        file: PathBuf,
        /// Print the full profile as JSON instead of the Markdown summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// Set a user's limits; a limit not given is left as it is. Files already stored are
    /// kept when a limit is lowered below them: the user's next uploads are refused.
    Set {
        /// The user id, a positive integer.
        #[arg(long)]
        user: i64,
        /// Stored bytes: a whole number, `unlimited`, or `default` (QUOTA_BYTES).
        #[arg(long, value_parser = parse_quota_setting)]
        bytes: Option<QuotaSetting>,
        /// Files: a whole number, `unlimited`, or `default` (QUOTA_FILES).
        #[arg(long, value_parser = parse_quota_setting)]
        files: Option<QuotaSetting>,
    },
    /// Print a user's limits in effect, their override and their usage, as JSON.
    Show {
        /// The user id, a positive integer.
        #[arg(long)]
        user: i64,
    },
}

fn parse_quota_setting(raw: &str) -> Result<QuotaSetting, String> {
    match raw.trim() {
        "default" => Ok(QuotaSetting::Default),
        "unlimited" => Ok(QuotaSetting::Unlimited),
        n => n
            .parse::<u64>()
            .ok()
            .filter(|&n| n <= i64::MAX as u64)
            .map(QuotaSetting::Limit)
            .ok_or_else(|| format!("{raw:?}: give a whole number, `unlimited` or `default`")),
    }
}

fn parse_duration(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 3600, 90s, 30m, 1h or 7d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{raw:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("{raw:?} is out of range"))
}

/// Logs go to stderr through a background writer, so a request never waits on the
/// terminal or pipe; the guard flushes what is queued when `main` returns.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    guard
}

/// glibc gives each thread that allocates its own arena and keeps freed memory there:
/// after a few large listings on the blocking pool, RSS stays ~10× above what is in use.
/// Two arenas keep it flat with no measurable cost in latency.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let _flush_logs = init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartupError::Other(e)) if e.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(StartupError::Config(e)) => {
            eprintln!("file-service: configuration error: {e}");
            ExitCode::from(2)
        }
        Err(StartupError::Other(e)) => {
            eprintln!("file-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Standard output went away (its reader, such as `head`, closed the pipe): the command
/// ends quietly, with success, as ripgrep does.
#[derive(Debug, thiserror::Error)]
#[error("standard output is closed")]
struct StdoutClosed;

/// Writes `text` and a newline to standard output; every command prints through this.
fn say(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            anyhow::Error::new(StdoutClosed)
        } else {
            anyhow::Error::new(e).context("cannot write to standard output")
        }
    })
}

fn run(cli: Cli) -> Result<(), StartupError> {
    if let Some(Command::Summarize { file, json }) = &cli.command {
        return summarize(file, *json).map_err(StartupError::Other);
    }
    let config = Config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StartupError::Other(e.into()))?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let service = runtime.block_on(app::serve(config))?;
            // Dropping the runtime cancels requests still running after the grace period;
            // their temporary files go with them, and a last sweep catches any left.
            runtime.shutdown_timeout(std::time::Duration::from_secs(10));
            // Not `exclusive`: replicas may share the storage folder.
            match service.storage().sweep_temporaries(false) {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "removed temporary files of cut-off uploads"),
                Err(e) => tracing::warn!(error = %e, "could not sweep temporary files"),
            }
            tracing::info!("file-service stopped");
            Ok(())
        }
        Command::Token { user, ttl, scope } => {
            if user <= 0 {
                return Err(StartupError::Other(anyhow::anyhow!(
                    "--user must be a positive integer"
                )));
            }
            say(app::auth(&config)?.mint_with_scope(user, ttl, scope.is_some()))?;
            Ok(())
        }
        Command::Open { user, ttl, no_browser } => {
            if user <= 0 {
                return Err(StartupError::Other(anyhow::anyhow!(
                    "--user must be a positive integer"
                )));
            }
            let token = app::auth(&config)?.mint(user, ttl);
            open_page(config.bind_addr, &token, no_browser)?;
            Ok(())
        }
        Command::Mcp { url, token, user, ttl } => {
            let token = match (token, user) {
                (Some(token), _) => token,
                (None, Some(user)) if user > 0 => app::auth(&config)?.mint(user, ttl),
                (None, Some(_)) => {
                    return Err(StartupError::Other(anyhow::anyhow!(
                        "--user must be a positive integer"
                    )))
                }
                (None, None) => {
                    return Err(StartupError::Other(anyhow::anyhow!(
                        "say who the agent acts for: --token TOKEN (or FILE_SERVICE_TOKEN), or --user N to sign one with the local secret"
                    )))
                }
            };
            let url = mcp_url(url.as_deref(), config.bind_addr);
            let result = runtime.block_on(file_service::mcp::run_bridge(&url, &token));
            // A read of stdin cannot be cancelled: do not wait for the blocking pool.
            runtime.shutdown_timeout(std::time::Duration::from_millis(200));
            result.map_err(StartupError::Other)
        }
        Command::Migrate => {
            let catalog = app::open_catalog(&config)?;
            catalog.migrate().map_err(|e| StartupError::Other(e.into()))?;
            say(format_args!("migrations applied to {}", catalog.describe()))?;
            Ok(())
        }
        Command::Reconcile { dry_run } => {
            let report = runtime.block_on(app::reconcile(&config, dry_run))?;
            let verb = |done: &'static str, would: &'static str| if dry_run { would } else { done };
            for (label, items) in [
                (verb("added", "would add"), &report.added),
                (verb("updated", "would update"), &report.updated),
                (verb("removed", "would remove"), &report.removed),
                ("still being written", &report.unsettled),
                ("ignored", &report.ignored),
                ("failed", &report.failed),
            ] {
                for item in items {
                    say(format_args!("{label}: {item}"))?;
                }
            }
            say(format_args!(
                "{} added, {} updated, {} removed, {} ignored, {} failed",
                report.added.len(),
                report.updated.len(),
                report.removed.len(),
                report.ignored.len(),
                report.failed.len()
            ))?;
            Ok(())
        }
        Command::Check => {
            say(runtime.block_on(app::check(&config))?)?;
            Ok(())
        }
        Command::Sync {
            from,
            to,
            token,
            local,
            watch,
            json,
        } => {
            if from.is_none() && to.is_none() {
                return Err(StartupError::Other(anyhow::anyhow!(
                    "say where to sync with: --from URL (pull), --to URL (push), or both"
                )));
            }
            let local = local.unwrap_or_else(|| format!("http://{}", local_addr(config.bind_addr)));
            // This instance trusts its own secret: a short-lived replicate token for it.
            let local_token = app::auth(&config)?.mint_with_scope(1, 24 * 3600, true);
            let local = Endpoint::new(&local, &local_token)?;
            let from = from.map(|url| Endpoint::new(&url, &token)).transpose()?;
            let to = to.map(|url| Endpoint::new(&url, &token)).transpose()?;
            let report = runtime.block_on(sync_client::run(&local, from.as_ref(), to.as_ref(), watch))?;
            if json {
                say(serde_json::to_string(&report).map_err(|e| StartupError::Other(e.into()))?)?;
            } else {
                for (label, part) in [("pulled", &report.pulled), ("pushed", &report.pushed)] {
                    if let Some(r) = part {
                        say(format_args!(
                            "{label}: {} changes ({} applied, {} already known, {} conflicts kept both, {} refused, {} waiting); {} files' bytes sent ({} bytes)",
                            r.changes, r.applied, r.skipped, r.conflicts, r.rejected, r.waiting, r.blobs, r.bytes
                        ))?;
                        for reason in &r.rejections {
                            say(format_args!("{label}: refused {reason}"))?;
                        }
                    }
                }
                say(format_args!("took {:.2} s", report.seconds))?;
            }
            Ok(())
        }
        Command::Quota { action } => {
            let user = match &action {
                QuotaCommand::Set { user, .. } | QuotaCommand::Show { user } => *user,
            };
            if user <= 0 {
                return Err(StartupError::Other(anyhow::anyhow!(
                    "--user must be a positive integer"
                )));
            }
            let catalog = app::open_catalog(&config)?;
            let other = |e: file_service::error::Error| StartupError::Other(e.into());
            catalog.migrate().map_err(other)?;
            if let QuotaCommand::Set { bytes, files, .. } = action {
                if bytes.is_none() && files.is_none() {
                    return Err(StartupError::Other(anyhow::anyhow!(
                        "say what to set: --bytes and/or --files"
                    )));
                }
                quotas::set_quota(&*catalog, user, bytes, files).map_err(other)?;
            }
            let report = quotas::quota_report(&*catalog, user, app::quota_defaults(&config)).map_err(other)?;
            say(serde_json::to_string(&report).map_err(|e| StartupError::Other(e.into()))?)?;
            Ok(())
        }
        Command::Summarize { .. } => unreachable!("handled above"),
    }
}

/// The MCP endpoint of `url` (a base URL gets `/mcp`), or of this instance's server.
fn mcp_url(url: Option<&str>, bind_addr: std::net::SocketAddr) -> String {
    let url = match url {
        Some(url) => url.trim().to_string(),
        None => format!("http://{}", local_addr(bind_addr)),
    };
    let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    if after_scheme.trim_end_matches('/').contains('/') {
        url
    } else {
        format!("{}/mcp", url.trim_end_matches('/'))
    }
}

/// The address this instance's server answers on (127.0.0.1 when bound to every interface).
fn local_addr(mut addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Prints the page's sign-in address and, unless told not to, opens it with `xdg-open`.
fn open_page(bind_addr: std::net::SocketAddr, token: &str, no_browser: bool) -> anyhow::Result<()> {
    let addr = local_addr(bind_addr);
    let url = format!("http://{addr}/#token={token}");
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)).is_err() {
        eprintln!("file-service: no server answers at {addr} yet; start it with `file-service serve`");
    }
    say(&url)?;
    if no_browser {
        return Ok(());
    }
    // The URL carries the token: it goes to the opener's arguments, never to a shell.
    match std::process::Command::new("xdg-open")
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(status) if status.success() => eprintln!("file-service: opened the page in your browser"),
        _ => eprintln!("file-service: could not start a browser (xdg-open); open the address above"),
    }
    Ok(())
}

fn summarize(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let format = Format::from_extension(ext).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: unsupported extension {ext:?}; supported: .{}",
            file.display(),
            formats::EXTENSIONS.join(", .")
        )
    })?;
    let profile = formats::profile_path(file, format).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if json {
        say(serde_json::to_string_pretty(&profile)?)?;
    } else {
        say(profile.summary())?;
    }
    Ok(())
}

//! The PostgreSQL + Redis variant: a uniquely named database per server start (dropped at
//! the end) and the Redis URL, both passed to the server as DATABASE_URL / REDIS_URL; and
//! the same with the bytes in an S3 bucket (`TEST_S3_ENDPOINT`, `TEST_S3_BUCKET`, as
//! `tests/s3/start` prints them), a fresh key prefix per server start.

use postgres::{Client, NoTls};

/// Server environments for the services run, and the databases to drop afterwards.
pub struct Services {
    admin_url: Option<String>,
    redis_url: Option<String>,
    created: Vec<String>,
    /// Endpoint and bucket when the bytes go to S3.
    s3: Option<(String, String)>,
    pub label: String,
}

impl Services {
    /// `None` when neither TEST_DATABASE_URL nor TEST_REDIS_URL is set.
    pub fn from_env() -> Option<Services> {
        let admin_url = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
        let redis_url = std::env::var("TEST_REDIS_URL").ok().filter(|u| !u.is_empty());
        if admin_url.is_none() && redis_url.is_none() {
            return None;
        }
        let label = match (&admin_url, &redis_url) {
            (Some(_), Some(_)) => "PostgreSQL + Redis",
            (Some(_), None) => "PostgreSQL + moka",
            _ => "SQLite + Redis",
        };
        Some(Services {
            admin_url,
            redis_url,
            created: Vec::new(),
            s3: None,
            label: label.into(),
        })
    }

    /// The services run again with the bytes in S3; `None` without the S3 variables.
    pub fn with_s3_from_env() -> Option<Services> {
        let endpoint = std::env::var("TEST_S3_ENDPOINT").ok().filter(|u| !u.is_empty())?;
        let bucket = std::env::var("TEST_S3_BUCKET").ok().filter(|u| !u.is_empty())?;
        let mut services = Services::from_env()?;
        services.label = format!("{} + S3", services.label);
        services.s3 = Some((endpoint, bucket));
        Some(services)
    }

    /// Environment for one fresh server: a new empty database, and the Redis URL.
    /// Must be called outside the async runtime (the postgres client is blocking).
    pub fn fresh_env(&mut self) -> Result<Vec<(String, String)>, String> {
        let mut env = Vec::new();
        if let Some(admin) = &self.admin_url {
            let name = unique_name(self.created.len());
            admin_client(admin)?
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .map_err(|e| format!("creating database {name}: {e}"))?;
            self.created.push(name.clone());
            env.push(("DATABASE_URL".into(), with_database(admin, &name)));
        }
        if let Some(redis) = &self.redis_url {
            env.push(("REDIS_URL".into(), redis.clone()));
        }
        if let Some((endpoint, bucket)) = &self.s3 {
            let prefix = unique_name(self.created.len());
            env.extend([
                ("STORAGE_URL".into(), format!("s3://{bucket}/{prefix}")),
                ("S3_ENDPOINT".into(), endpoint.clone()),
                ("S3_REGION".into(), "us-east-1".into()),
                ("AWS_ACCESS_KEY_ID".into(), "test".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ]);
        }
        Ok(env)
    }

    /// Drops every database this run created; reports the ones it could not drop.
    pub fn cleanup(&mut self) {
        let Some(admin) = &self.admin_url else { return };
        let mut client = match admin_client(admin) {
            Ok(c) => c,
            Err(e) => return eprintln!("load: cannot drop {:?}: {e}", self.created),
        };
        for name in self.created.drain(..) {
            // FORCE (PostgreSQL 13+) ends connections a killed server may have left open.
            let forced = client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            if forced.is_err() {
                if let Err(e) = client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\"")) {
                    eprintln!("load: could not drop database {name}: {e}");
                }
            }
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `VACUUM ANALYZE` of the database at `url`: what autovacuum does on a default server
/// after many inserts (fresh planner statistics, pages marked all-visible for index-only scans).
pub fn vacuum_analyze(url: &str) -> Result<(), String> {
    Client::connect(url, NoTls)
        .and_then(|mut client| client.batch_execute("VACUUM ANALYZE"))
        .map_err(|e| format!("VACUUM ANALYZE of the server's database: {e}"))
}

fn admin_client(url: &str) -> Result<Client, String> {
    Client::connect(url, NoTls).map_err(|e| format!("connecting to TEST_DATABASE_URL: {e}"))
}

/// A database name no other run uses: pid, time and a counter.
fn unique_name(n: usize) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("file_service_load_{}_{}_{n}", std::process::id(), nanos % 1_000_000_000)
}

/// `url` with its database path replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map(|(b, q)| (b, format!("?{q}")))
        .unwrap_or((url, String::new()));
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    format!("{root}/{name}{query}")
}

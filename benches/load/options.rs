//! Command-line options of the load benchmark and the defaults a full or `--quick` run uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What a run measures; `--sections` picks a subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Upload + summarize of generated CSVs, one fresh server per size.
    Upload,
    /// `GET /files/active/{session}` under N keep-alive connections.
    Active,
    /// `GET /files/` latency for a user with many files.
    List,
    /// `cat`, polars, pandas and `file-service summarize` on the same CSVs.
    Ceilings,
    /// Upload, active and list again on PostgreSQL + Redis (needs TEST_DATABASE_URL / TEST_REDIS_URL).
    Services,
    /// SQL queries over stored CSV and Parquet files beside DuckDB (opt-in: not run by
    /// default; sizes 200,1000 unless --sizes-mb, `--quick`: 10).
    Queries,
    /// Pages of rows (first, middle, last, sorted, filtered, searched) and facets of the
    /// generated CSV, as the page's Data tab asks for them (opt-in; sizes as for queries).
    Explore,
    /// `file-service sync` of N small files from an edge to an empty hub, then again with
    /// nothing new (opt-in; counts from --sync-files).
    Sync,
}

#[derive(Parser, Debug)]
#[command(
    name = "load",
    about = "Starts the real file-service on a fresh data folder on 127.0.0.1 and measures it over HTTP.",
    after_help = "Run with: cargo bench --bench load -- [OPTIONS]   (e.g. `-- --quick`)"
)]
pub struct Options {
    /// Short run: 10 MB upload only, 2 s loads, 1,000 files.
    #[arg(long)]
    pub quick: bool,

    /// Sections to run, comma separated (`queries`, `explore` and `sync` only when named).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["upload", "active", "list", "ceilings", "services"])]
    pub sections: Vec<Section>,

    /// CSV sizes to upload, in MB (10^6 bytes). Default 10,200,1000; queries 200,1000 (`--quick`: 10).
    #[arg(long = "sizes-mb", value_delimiter = ',')]
    pub sizes_mb: Option<Vec<u64>>,

    /// Seconds each active-file load runs, after a short warm-up. Default 10 (`--quick`: 2).
    #[arg(long)]
    pub duration: Option<f64>,

    /// Concurrent connections for the active-file load, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [16usize, 64])]
    pub connections: Vec<usize>,

    /// File counts for the listing test. Default 1000,10000 (`--quick`: 1000).
    #[arg(long, value_delimiter = ',')]
    pub files: Option<Vec<usize>>,

    /// File counts for the sync section. Default 1000,10000 (`--quick`: 1000).
    #[arg(long, value_delimiter = ',')]
    pub sync_files: Option<Vec<usize>>,

    /// Listing requests per file count (each also bounded by --duration).
    /// Default 1000, or 200 above 5,000 files (bigger responses).
    #[arg(long)]
    pub list_samples: Option<u64>,

    /// Upper bound on requests in any one load, whatever the duration.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_requests: u64,

    /// Uploads in flight while populating a user's files.
    #[arg(long, default_value_t = 8)]
    pub populate_concurrency: usize,

    /// Server binary. Default: the `file-service` that `cargo bench` just built with the
    /// bench profile (optimized, same settings as release).
    #[arg(long, env = "FILE_SERVICE_BIN")]
    pub server_bin: Option<PathBuf>,

    /// Folder for the generated CSVs, kept between runs. Default: TARGET/load-data.
    #[arg(long)]
    pub data_cache: Option<PathBuf>,

    /// JSON report path. Default: TARGET/load-report.json.
    #[arg(long)]
    pub report: Option<PathBuf>,

    /// Tokio worker threads of the benchmark's own client (it shares the machine with the server).
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,

    /// `cargo bench` appends `--bench`. Without it (e.g. `cargo test --all-targets` runs
    /// bench targets too) the benchmark does nothing; pass it to run the binary by hand.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Options {
    pub fn runs(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }

    pub fn sizes_mb(&self) -> Vec<u64> {
        self.sizes_mb
            .clone()
            .unwrap_or_else(|| if self.quick { vec![10] } else { vec![10, 200, 1000] })
    }

    /// Sizes of the queries and explore sections: --sizes-mb, else 200,1000 (`--quick`: 10).
    pub fn query_sizes_mb(&self) -> Vec<u64> {
        self.sizes_mb
            .clone()
            .unwrap_or_else(|| if self.quick { vec![10] } else { vec![200, 1000] })
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.unwrap_or(if self.quick { 2.0 } else { 10.0 }).max(0.1))
    }

    /// Warm-up before each load: long enough to open connections and fill caches.
    pub fn warmup(&self) -> Duration {
        self.duration().mul_f64(0.2).min(Duration::from_secs(1))
    }

    pub fn list_samples(&self, files: usize) -> u64 {
        self.list_samples.unwrap_or(if files > 5000 { 200 } else { 1000 })
    }

    pub fn file_counts(&self) -> Vec<usize> {
        let mut counts = self
            .files
            .clone()
            .unwrap_or_else(|| if self.quick { vec![1000] } else { vec![1000, 10000] });
        // Populating is cumulative (one user grows from one count to the next).
        counts.sort_unstable();
        counts
    }

    pub fn sync_file_counts(&self) -> Vec<usize> {
        self.sync_files
            .clone()
            .unwrap_or_else(|| if self.quick { vec![1000] } else { vec![1000, 10000] })
    }
}

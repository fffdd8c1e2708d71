//! Process-wide Prometheus metrics and their text rendering for `GET /metrics`.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests by route template, method and status.
    pub requests: IntCounterVec,
    /// Request latency in seconds by route template and method.
    pub request_seconds: HistogramVec,
    pub uploaded_bytes: IntCounter,
    pub downloaded_bytes: IntCounter,
    pub analysis_seconds: Histogram,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    /// Catalog calls running on the blocking pool (each holds a pooled connection).
    pub catalog_calls_in_flight: IntGauge,
    pub uploads_in_progress: IntGauge,
    /// Filesystem events from the storage folder's watcher.
    pub watcher_events: IntCounter,
    /// Files the storage watcher catalogued, updated or removed, by action.
    pub watcher_changes: IntCounterVec,
    /// Queries and conversions by outcome (ok, invalid, timeout, busy, error).
    pub queries: IntCounterVec,
    pub query_seconds: Histogram,
    /// Rows answered or written by queries and conversions.
    pub query_rows: IntCounter,
    /// New files' tables made ahead of their first query, by outcome (made, failed, left
    /// to the first query when the queue was full).
    pub tables_ahead: IntCounterVec,
    /// Bytes of query downloads and conversions sent.
    pub query_bytes: IntCounter,
    /// MCP tool calls by tool and outcome (ok, truncated, invalid, unauthorized, timeout, busy, error).
    pub mcp_calls: IntCounterVec,
}

/// The metrics of this process.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "file_service_http_requests_total",
                    "HTTP requests by route template, method and status",
                ),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
            request_seconds: HistogramVec::new(
                HistogramOpts::new("file_service_http_request_duration_seconds", "HTTP request latency")
                    .buckets(latency_buckets),
                &["route", "method"],
            )
            .expect("valid metric"),
            uploaded_bytes: IntCounter::new("file_service_uploaded_bytes_total", "Bytes received in uploaded files")
                .expect("valid metric"),
            downloaded_bytes: IntCounter::new(
                "file_service_downloaded_bytes_total",
                "Bytes of stored files sent to clients",
            )
            .expect("valid metric"),
            analysis_seconds: Histogram::with_opts(
                HistogramOpts::new("file_service_analysis_duration_seconds", "Time to analyze one dataset")
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
            )
            .expect("valid metric"),
            cache_hits: IntCounter::new(
                "file_service_active_cache_hits_total",
                "Active-file lookups answered by the cache",
            )
            .expect("valid metric"),
            cache_misses: IntCounter::new(
                "file_service_active_cache_misses_total",
                "Active-file lookups that went to the catalog",
            )
            .expect("valid metric"),
            catalog_calls_in_flight: IntGauge::new(
                "file_service_catalog_calls_in_flight",
                "Catalog calls holding a pooled connection",
            )
            .expect("valid metric"),
            uploads_in_progress: IntGauge::new(
                "file_service_uploads_in_progress",
                "Uploads being received or analyzed",
            )
            .expect("valid metric"),
            watcher_events: IntCounter::new(
                "file_service_watcher_events_total",
                "Filesystem events seen in the storage folder",
            )
            .expect("valid metric"),
            watcher_changes: IntCounterVec::new(
                Opts::new(
                    "file_service_watcher_changes_total",
                    "Files the storage watcher added, updated or removed",
                ),
                &["action"],
            )
            .expect("valid metric"),
            queries: IntCounterVec::new(
                Opts::new("file_service_queries_total", "Queries and conversions by outcome"),
                &["outcome"],
            )
            .expect("valid metric"),
            query_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "file_service_query_duration_seconds",
                    "Time to answer a query, or to start a download or conversion",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )
            .expect("valid metric"),
            query_rows: IntCounter::new("file_service_query_rows_total", "Rows answered or written by queries")
                .expect("valid metric"),
            tables_ahead: IntCounterVec::new(
                Opts::new(
                    "file_service_tables_ahead_total",
                    "New files' columnar copies and row files made ahead of their first query, by outcome",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            query_bytes: IntCounter::new(
                "file_service_query_bytes_total",
                "Bytes of query downloads and conversions sent",
            )
            .expect("valid metric"),
            mcp_calls: IntCounterVec::new(
                Opts::new("file_service_mcp_calls_total", "MCP tool calls by tool and outcome"),
                &["tool", "outcome"],
            )
            .expect("valid metric"),
            registry,
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.request_seconds.clone()),
            Box::new(m.uploaded_bytes.clone()),
            Box::new(m.downloaded_bytes.clone()),
            Box::new(m.analysis_seconds.clone()),
            Box::new(m.cache_hits.clone()),
            Box::new(m.cache_misses.clone()),
            Box::new(m.catalog_calls_in_flight.clone()),
            Box::new(m.uploads_in_progress.clone()),
            Box::new(m.watcher_events.clone()),
            Box::new(m.watcher_changes.clone()),
            Box::new(m.queries.clone()),
            Box::new(m.query_seconds.clone()),
            Box::new(m.query_rows.clone()),
            Box::new(m.query_bytes.clone()),
            Box::new(m.tables_ahead.clone()),
            Box::new(m.mcp_calls.clone()),
        ] {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

//! file-service: stores users' dataset files, keeps their metadata, summarizes each
//! dataset for people and LLM agents, and remembers which file is active in each session.
//!
//! Layers, outermost first:
//! - [`http`]: warp routes and the mapping of [`error::Error`] to responses;
//! - [`mcp`]: the same service for LLM agents over the Model Context Protocol (`/mcp`, and
//!   a stdio bridge);
//! - [`service`]: every business rule (names, uploads, active files, deletes);
//! - backends behind traits, one file per implementation: [`catalog`] (records and
//!   active entries: SQLite, or PostgreSQL shared by replicas), [`cache`] (active-file
//!   cache: moka, Redis shared by replicas, or none on PostgreSQL without Redis),
//!   [`storage`] (bytes: local folder or S3 bucket);
//! - [`reconcile`]: keeps the catalog in step with files changed in the storage folder;
//! - [`sync_client`]: the `sync` command, moving changes between instances over HTTP
//!   (the rules of applying them are in `service::sync`);
//! - [`analysis`]: reads a CSV/TSV dataset in one bounded-memory pass and writes its summary;
//! - [`formats`]: every other format (Parquet, Arrow, JSON, workbooks), read into the same profile;
//! - [`query`]: SQL over a user's files and conversions between formats (polars' lazy engine);
//! - [`app`] wires them from [`config`]; [`auth`] checks bearer tokens; [`metrics`]
//!   counts what happens for `GET /metrics`.

pub mod analysis;
pub mod app;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod error;
pub mod formats;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod model;
pub mod query;
pub mod ratelimit;
pub mod reconcile;
pub mod service;
pub mod storage;
pub mod sync_client;

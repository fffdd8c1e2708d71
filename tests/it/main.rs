//! The HTTP integration suite: every test starts the real server binary and talks HTTP to it.

mod api;
mod auth;
mod backends;
mod behaviours;
mod cli;
mod crash;
mod explore;
mod faults;
mod file_api;
mod formats;
mod harness;
mod links;
mod ops;
mod query;
mod recovery;
mod s3;
mod spectrum;
mod sync;
mod sync_convergence;
mod sync_kinds;
mod sync_resume;
mod tus;
mod uploads;
mod watch;
mod web;

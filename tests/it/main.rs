//! The HTTP integration suite: every test starts the real server binary and talks HTTP to it.

mod api;
mod auth;
mod backends;
mod file_api;
mod harness;
mod ops;
mod spectrum;
mod sync;
mod uploads;
mod watch;
mod web;

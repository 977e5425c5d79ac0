//! The harness's integration tests: one binary (see harness/Cargo.toml).
//! Guest filters are built once per process for wasm32-wasip1 (support.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abi_versions;
mod chain;
mod check;
mod ci_reports;
mod cli;
mod cli_habits;
mod cli_new;
mod cli_stale;
mod cli_world;
mod compile_limits;
mod coverage;
mod event_loop;
mod foreign;
mod fuzz_modules;
mod habits;
mod host_caps;
mod hostcalls;
mod hostile;
mod hostile_fuzz;
mod lifecycle;
mod local_reply;
mod modules;
mod phases;
mod properties;
mod safe_output;
mod scenarios;
mod serve;
mod signing;
mod streams;
mod support;
mod tcp;
mod toolchain;
mod wasi;
mod workers;

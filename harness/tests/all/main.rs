//! The harness's integration tests: one binary (see harness/Cargo.toml).
//! Guest filters are built once per process for wasm32-wasip1 (support.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Counts heap allocations per thread, for allocations.rs (as the harness
/// binary does for `harness bench`).
#[global_allocator]
static ALLOCATOR: harness::bench::allocations::Counting<std::alloc::System> =
    harness::bench::allocations::Counting(std::alloc::System);

mod abi_versions;
mod allocations;
mod callouts;
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
mod maps;
mod modules;
mod phases;
mod properties;
mod safe_output;
mod scenarios;
mod serve;
mod serve_access_log;
mod serve_bootstrap;
mod serve_streaming;
mod serve_tcp;
mod serve_wasmplugin;
mod shared_data;
mod signing;
mod streams;
mod support;
mod tcp;
mod toolchain;
mod trace;
mod wasi;
mod workers;

//! `harness`: run a Proxy-Wasm filter in a simulated Envoy.
//!
//! `harness run <module.wasm> --config '{...}' --request 'GET /path' -H 'host: x'`
//! prints the exchange like `curl -v`; `--json` prints the whole outcome;
//! `--trace` adds every callback and hostcall.
//! `harness test <files or dirs>` runs scenario files.
//! Each subcommand lives in `commands/`.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Run Proxy-Wasm filters in a simulated Envoy (wasmtime)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send one request through a filter and print what happened, like `curl -v`.
    Run(Box<commands::run::RunArgs>),
    /// Measure a filter's wasm module against its native twin (see BENCHMARKS.md).
    Bench(Box<commands::bench::BenchArgs>),
    /// Precompile a module (.cwasm) that run, test and bench load without compiling.
    Compile(commands::compile::CompileArgs),
    /// Run scenario files (YAML) and report `N passed, N failed`.
    Test(commands::test::TestArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => commands::run::command(&args),
        Command::Bench(args) => commands::bench::command(&args),
        Command::Compile(args) => commands::compile::command(&args),
        Command::Test(args) => commands::test::command(&args),
    }
}

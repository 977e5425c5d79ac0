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

/// Shown by `harness --help`; README's "Exit status" says the same.
const EXIT_STATUS: &str = "\
Exit status:
  0  run: the exchange ran; test: every case passed; bench, compile: done
  1  test: a case failed, or a scenario file could not be loaded;
     run, bench, compile: an error to act on (missing file, not a Proxy-Wasm
     module, unknown import, configuration rejected, trap during start-up)
  2  usage: unknown or missing flags or paths, a --case matching no case,
     a report file (--junit) that cannot be written
  3  run: the filter trapped or the stream stalled";

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Run Proxy-Wasm filters in a simulated Envoy (wasmtime)",
    after_help = EXIT_STATUS
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

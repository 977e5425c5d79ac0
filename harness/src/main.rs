//! `harness`: run a Proxy-Wasm filter in a simulated Envoy.
//!
//! `harness run <module.wasm> --config '{...}' --request 'GET /path' -H 'host: x'`
//! prints the exchange like `curl -v`; `--json` prints the whole outcome;
//! `--trace` adds every callback and hostcall.
//! `harness test <files or dirs>` runs scenario files.
//! Each subcommand lives in `commands/`. `-v` or `RUST_LOG` turn on the
//! harness's own logging on stderr.

mod allocator;
mod commands;

/// Counts heap allocations per thread for `harness bench`'s report;
/// mimalloc does the work. Envoy is built with tcmalloc for the same
/// reason (a proxy allocates per request); under serve, glibc's malloc
/// took a third of the instructions per request, mimalloc a tenth
/// (BENCHMARKS.md, "harness serve: instructions per request").
#[global_allocator]
static ALLOCATOR: harness::bench::allocations::Counting<allocator::Mimalloc> =
    harness::bench::allocations::Counting(allocator::Mimalloc);

use std::process::ExitCode;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};

/// Shown by `harness --help`; README's "Exit status" says the same.
const EXIT_STATUS: &str = "\
Exit status:
  0  run: the exchange ran; test: every case passed; check: the module would
     load on the target; bench, compile, new: done
  1  test: a case failed, or a scenario file could not be loaded;
     check: the module would not load (or start) on the target;
     run, bench, compile: an error to act on (missing file, not a Proxy-Wasm
     module, unknown import, configuration rejected, trap during start-up);
     new: the directory exists or cannot be written
  2  usage: unknown or missing flags or paths, a --case matching no case,
     a report file (--junit) that cannot be written, a crate name that is
     not valid, no workspace for new without --dir, a module file check
     cannot read
  3  run: the filter trapped or the stream stalled";

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Run Proxy-Wasm filters in a simulated Envoy (wasmtime)",
    after_help = EXIT_STATUS
)]
struct Cli {
    /// Log what the harness itself does on stderr: -v info, -vv debug,
    /// -vvv trace (RUST_LOG=harness=debug,wasmtime=info works too).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
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
    /// Check whether a module would load in a given Envoy or Istio, and why not.
    Check(commands::check::CheckArgs),
    /// Run scenario files (YAML) and report `N passed, N failed`.
    Test(commands::test::TestArgs),
    /// Serve real traffic through a filter: a listener, workers, a real upstream and clusters.
    Serve(Box<commands::serve::ServeArgs>),
    /// Create a new filter crate (filters/<name>) that builds, tests and runs as generated.
    New(commands::new::NewArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(commands::docs::CompletionsArgs),
    /// Print the man page (roff) of harness or of one subcommand.
    Man(commands::docs::ManArgs),
    /// Demangle the Rust symbols read from stdin (llvm-cov's demangler).
    #[command(hide = true)]
    Demangle,
}

/// RUST_LOG's filters, with `-v` raising the harness's own level over them;
/// nothing but warnings when neither is given.
fn init_logging(verbose: u8) {
    let mut logger = env_logger::Builder::new();
    logger.filter_level(log::LevelFilter::Warn);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        logger.parse_filters(&filters);
    }
    let level = match verbose {
        0 => None,
        1 => Some(log::LevelFilter::Info),
        2 => Some(log::LevelFilter::Debug),
        _ => Some(log::LevelFilter::Trace),
    };
    if let Some(level) = level {
        logger.filter_module("harness", level);
    }
    logger.format_target(true).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    harness::bench::rss::release_freed_with(allocator::release_freed);
    init_logging(cli.verbose);
    match cli.command {
        Command::Run(args) => commands::run::command(&args),
        Command::Bench(args) => commands::bench::command(&args),
        Command::Compile(args) => commands::compile::command(&args),
        Command::Check(args) => commands::check::command(&args),
        Command::Test(args) => commands::test::command(&args),
        Command::Serve(args) => commands::serve::command(&args),
        Command::New(args) => commands::new::command(&args),
        Command::Completions(args) => commands::docs::completions(&args, Cli::command()),
        Command::Man(args) => commands::docs::man(&args, Cli::command()),
        Command::Demangle => commands::coverage::demangle_stdin(),
    }
}

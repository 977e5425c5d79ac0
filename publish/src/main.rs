//! The `publish` command line; the subcommands live in `publish::cli`.

use std::process::ExitCode;

use clap::Parser as _;
use publish::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    publish::logging::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("publish: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing left to say to it.
        Err(error) if cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("publish: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

//! `harness test`: runs scenario files and reports `N passed, N failed`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use harness::scenario::Runner;

/// `harness test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Scenario files or directories holding them.
    paths: Vec<PathBuf>,
    /// Run each `<name>.wasm` as its native twin `<DIR>/lib<name>.so` instead.
    #[arg(long, value_name = "DIR")]
    native: Option<PathBuf>,
}

/// Runs every scenario, printing results and the totals line to stdout:
/// 0 when every case passed, 1 when one failed, 2 when no path was given.
pub fn command(args: &TestArgs) -> ExitCode {
    if args.paths.is_empty() {
        return super::usage_error(
            "harness test",
            "give scenario files or directories (e.g. filters/*/tests)",
        );
    }
    let mut runner = match &args.native {
        Some(dir) => Runner::native(dir),
        None => Runner::new(),
    };
    let summary = runner.run_paths(&args.paths, &mut std::io::stdout());
    if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

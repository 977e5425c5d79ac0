//! Scenario files: a filter, its world and cases of traffic with
//! expectations, written by hand in YAML and run by `harness test`.
//! The format is documented in `harness/SCENARIOS.md`.
//!
//! ```no_run
//! use harness::scenario::Runner;
//! let summary = Runner::new().run_paths(&["filters/response-header/tests".into()], &mut std::io::stdout());
//! assert!(summary.ok());
//! ```

mod expect;
pub mod format;
pub mod report;
mod run;
mod steps;
#[cfg(test)]
mod tests;

pub use format::{Scenario, parse};
pub use report::{CaseReport, Detail, Failure, FileReport, Summary};
pub use run::{Runner, find_scenarios, harness_config, resolve_module};
pub use steps::Action;

use std::path::PathBuf;
use std::process::ExitCode;

/// `harness test <paths>`: runs every scenario, prints results and the
/// `N passed, N failed` line to stdout; success only when nothing failed.
pub fn test_command(paths: &[PathBuf]) -> ExitCode {
    run_command(paths, Runner::new())
}

/// `harness test --native <dir> <paths>`: the same, on the native twins in `dir`.
pub fn test_command_native(paths: &[PathBuf], native_dir: &std::path::Path) -> ExitCode {
    run_command(paths, Runner::native(native_dir))
}

fn run_command(paths: &[PathBuf], mut runner: Runner) -> ExitCode {
    if paths.is_empty() {
        eprintln!("harness test: give scenario files or directories (e.g. filters/*/tests)");
        return ExitCode::from(2);
    }
    let summary = runner.run_paths(paths, &mut std::io::stdout());
    if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

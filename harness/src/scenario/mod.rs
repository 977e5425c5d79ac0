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
mod tcp;
#[cfg(test)]
mod tests;

pub use format::{Scenario, parse};
pub use report::{CaseReport, Detail, Failure, FileReport, Summary};
pub use run::{Runner, find_scenarios, harness_config, plugin_name_of, resolve_module};
pub use steps::Action;

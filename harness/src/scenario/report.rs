//! What a scenario run found, and how it is printed.

use std::fmt;
use std::io::{self, Write};

use crate::printable::escape_controls;

/// One thing that did not go as the scenario said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where in the case: `start-up`, `step 2 (second request)`, ...
    pub step: String,
    /// What was checked: `response header x-a`, `metric requests`, ...
    pub what: String,
    /// What went wrong.
    pub detail: Detail,
}

/// The two kinds of failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// An expectation did not hold.
    Mismatch {
        /// What the scenario said.
        expected: String,
        /// What happened.
        actual: String,
    },
    /// The step could not run (bad module, harness error, ...).
    Error(String),
}

impl Failure {
    /// An expectation that did not hold.
    pub fn mismatch(
        step: &str,
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Failure {
        Failure {
            step: step.to_string(),
            what: what.into(),
            detail: Detail::Mismatch {
                expected: expected.into(),
                actual: actual.into(),
            },
        }
    }

    /// A step that could not run.
    pub fn error(step: &str, what: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            step: step.to_string(),
            what: what.into(),
            detail: Detail::Error(message.into()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Detail::Mismatch { expected, actual } => write!(
                f,
                "{}: {}\n  expected: {}\n  actual:   {}",
                self.step,
                self.what,
                indent_continuation(expected),
                indent_continuation(actual)
            ),
            Detail::Error(message) => write!(
                f,
                "{}: {}\n  error: {}",
                self.step,
                self.what,
                indent_continuation(message)
            ),
        }
    }
}

fn indent_continuation(text: &str) -> String {
    text.replace('\n', "\n            ")
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name (for a file that could not be loaded: `(file)`).
    pub name: String,
    /// Every failed expectation; empty when the case passed.
    pub failures: Vec<Failure>,
    /// Log lines of the step that failed first, to help see why.
    pub logs: Vec<String>,
}

impl CaseReport {
    /// True when every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The results of one scenario file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file as given (or found in a directory).
    pub file: String,
    /// One report per case, in file order.
    pub cases: Vec<CaseReport>,
}

/// Totals of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Cases whose expectations all held.
    pub passed: usize,
    /// Cases with at least one failure (including files that could not load).
    pub failed: usize,
    /// Per-file details.
    pub files: Vec<FileReport>,
}

impl Summary {
    /// Adds a file's results.
    pub fn add(&mut self, file: FileReport) {
        for case in &file.cases {
            if case.passed() {
                self.passed += 1;
            } else {
                self.failed += 1;
            }
        }
        self.files.push(file);
    }

    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// The last line of every run.
    pub fn totals_line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }
}

/// Prints one file's case lines and failure details; guest text that
/// reached a failure or a log line has its control characters escaped.
pub fn print_file(out: &mut dyn Write, file: &FileReport) -> io::Result<()> {
    for case in &file.cases {
        if case.passed() {
            writeln!(out, "ok   {} :: {}", file.file, case.name)?;
            continue;
        }
        writeln!(out, "FAIL {} :: {}", file.file, case.name)?;
        for failure in &case.failures {
            for line in failure.to_string().lines() {
                writeln!(out, "     {}", escape_controls(line))?;
            }
        }
        if !case.logs.is_empty() {
            writeln!(out, "     logs of the failing step:")?;
            for line in &case.logs {
                writeln!(out, "       {}", escape_controls(line))?;
            }
        }
    }
    Ok(())
}

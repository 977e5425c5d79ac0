//! A [`Report`] as text for people: a summary, start-up, then each
//! finding with its severity and what to do. Text the module controls
//! (names of imports and exports, log lines, trap and panic messages) is
//! printed with control characters escaped, as `harness run` prints it.

use std::fmt::Write as _;

use super::{Report, Severity};
use crate::printable::escape_controls as esc;

impl Report {
    /// The report as text: the verdict, what the module is, each finding
    /// (`error:`/`warning:`/`info:` with a `fix:` line), and start-up.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.loads() {
            "would load"
        } else {
            "would NOT load"
        };
        let runs = if self.target == self.envoy {
            String::new()
        } else {
            format!(" (built on {})", self.envoy)
        };
        let _ = writeln!(
            out,
            "{}: {verdict} on {}{runs}",
            esc(&self.module),
            self.target
        );
        let _ = writeln!(
            out,
            "  ABI {}, {} bytes, {} functions, {} bytes of initial memory",
            self.abi_version.unwrap_or("none declared"),
            self.size_bytes,
            self.functions,
            self.initial_memory_bytes
        );
        if let Some(startup) = &self.startup {
            let _ = writeln!(out, "  start-up: {}", esc(&startup.summary));
            for entry in &startup.logs {
                let _ = writeln!(out, "    [{}] {}", entry.level.name(), esc(&entry.message));
            }
        }
        for finding in &self.findings {
            let _ = writeln!(
                out,
                "{}: {}",
                finding.severity.as_str(),
                esc(&finding.message)
            );
            let _ = writeln!(out, "  fix: {}", esc(&finding.fix));
        }
        let count = |severity| {
            self.findings
                .iter()
                .filter(|f| f.severity == severity)
                .count()
        };
        let _ = writeln!(
            out,
            "{} errors, {} warnings",
            count(Severity::Error),
            count(Severity::Warning)
        );
        out
    }

    /// The errors, one line each (for a refusal message such as publish's).
    pub fn error_lines(&self) -> Vec<String> {
        self.errors()
            .map(|f| format!("{} (fix: {})", f.message, f.fix))
            .collect()
    }
}

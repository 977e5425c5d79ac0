//! What a scenario run found, and how it is printed: the human report
//! (guest text escaped), JSON (`harness test --json`) and JUnit XML
//! (`harness test --junit`).

use std::fmt::{self, Write as _};
use std::io::{self, Write};

use serde::Serialize;
use serde::ser::SerializeStruct;

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

    /// One line: `step 1: response status: expected 200, actual 404` (the
    /// first line of each side when they run over several).
    pub fn summary(&self) -> String {
        let first = |text: &str| text.lines().next().unwrap_or_default().to_string();
        match &self.detail {
            Detail::Mismatch { expected, actual } => format!(
                "{}: {}: expected {}, actual {}",
                self.step,
                self.what,
                first(expected),
                first(actual)
            ),
            Detail::Error(message) => format!("{}: {}: {}", self.step, self.what, first(message)),
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

/// `{"step", "what", "kind": "mismatch", "expected", "actual"}` or
/// `{"step", "what", "kind": "error", "message"}`.
impl Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_struct("Failure", 5)?;
        out.serialize_field("step", &self.step)?;
        out.serialize_field("what", &self.what)?;
        match &self.detail {
            Detail::Mismatch { expected, actual } => {
                out.serialize_field("kind", "mismatch")?;
                out.serialize_field("expected", expected)?;
                out.serialize_field("actual", actual)?;
            }
            Detail::Error(message) => {
                out.serialize_field("kind", "error")?;
                out.serialize_field("message", message)?;
            }
        }
        out.end()
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

    /// True when a step could not run (rather than an expectation failing).
    pub fn errored(&self) -> bool {
        self.failures
            .iter()
            .any(|f| matches!(f.detail, Detail::Error(_)))
    }
}

/// `{"name", "passed", "failures": [...], "logs": [...]}`.
impl Serialize for CaseReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_struct("CaseReport", 4)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("passed", &self.passed())?;
        out.serialize_field("failures", &self.failures)?;
        out.serialize_field("logs", &self.logs)?;
        out.end()
    }
}

/// The results of one scenario file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file as given (or found in a directory).
    pub file: String,
    /// One report per case, in file order.
    pub cases: Vec<CaseReport>,
}

/// Totals of a run; serialized as the `harness test --json` report.
#[derive(Debug, Clone, Default, Serialize)]
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

    /// The run as JUnit XML: one `<testsuite>` per scenario file, one
    /// `<testcase>` per case; a failed case holds one `<failure>` (an
    /// expectation did not hold) or `<error>` (a step could not run) whose
    /// `message` names the first problem and whose text lists them all.
    pub fn to_junit(&self) -> String {
        let count = |cases: &mut dyn Iterator<Item = &CaseReport>| {
            cases.fold((0, 0, 0), |(n, failures, errors), case| {
                match (case.passed(), case.errored()) {
                    (true, _) => (n + 1, failures, errors),
                    (false, false) => (n + 1, failures + 1, errors),
                    (false, true) => (n + 1, failures, errors + 1),
                }
            })
        };
        let (tests, failures, errors) = count(&mut self.files.iter().flat_map(|f| &f.cases));
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuites name=\"harness test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">"
        );
        // Files none of whose cases were selected (`--case`) add no suite.
        for file in self.files.iter().filter(|f| !f.cases.is_empty()) {
            let (tests, failures, errors) = count(&mut file.cases.iter());
            let name = xml_escape(&file.file, true);
            let _ = writeln!(
                xml,
                "  <testsuite name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">"
            );
            for case in &file.cases {
                junit_case(&mut xml, &name, case);
            }
            xml.push_str("  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        xml
    }
}

fn junit_case(xml: &mut String, suite: &str, case: &CaseReport) {
    let name = xml_escape(&case.name, true);
    let _ = write!(xml, "    <testcase name=\"{name}\" classname=\"{suite}\"");
    let Some(first) = case.failures.first() else {
        xml.push_str("/>\n");
        return;
    };
    xml.push_str(">\n");
    let element = if case.errored() { "error" } else { "failure" };
    let mut message = first.summary();
    if case.failures.len() > 1 {
        let _ = write!(message, " (and {} more)", case.failures.len() - 1);
    }
    let text: Vec<String> = case.failures.iter().map(Failure::to_string).collect();
    let _ = writeln!(
        xml,
        "      <{element} message=\"{}\">{}</{element}>",
        xml_escape(&message, true),
        xml_escape(&text.join("\n"), false)
    );
    if !case.logs.is_empty() {
        let _ = writeln!(
            xml,
            "      <system-out>{}</system-out>",
            xml_escape(&case.logs.join("\n"), false)
        );
    }
    xml.push_str("    </testcase>\n");
}

/// Text for an XML attribute (`attribute`) or element. Characters XML 1.0
/// cannot carry (most control characters) are written in their escaped
/// printable form instead, so the document always parses.
fn xml_escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("&#13;"),
            '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c if c.is_control() && u32::from(c) < 0x20 => {
                out.push_str(&escape_controls(c.encode_utf8(&mut [0; 4])));
            }
            c => out.push(c),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escaping_covers_markup_and_characters_xml_cannot_carry() {
        assert_eq!(
            xml_escape("a<b>&\"c\"\n\t\r\x1b", true),
            "a&lt;b&gt;&amp;&quot;c&quot;&#10;&#9;&#13;\\x1b"
        );
        assert_eq!(xml_escape("a\"b\nc\x00", false), "a\"b\nc\\0");
    }
}

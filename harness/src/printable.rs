//! Guest-controlled text made safe to print: a filter chooses its log
//! lines, header names and values, bodies and panic messages, and must not be
//! able to start a line of its own in a transcript (a fake `< HTTP/1.1 200 OK`)
//! or send escape sequences to the terminal. Control characters are shown
//! with the escapes YAML's double-quoted strings use (`\n`, `\x1b`, `\u0085`),
//! so the same text is valid inside a scenario file.

use std::borrow::Cow;
use std::fmt::Write;

use crate::model::{CalloutResult, MetricKind, StreamEnd};

/// `text` with every control character (C0, DEL, C1) escaped; other text,
/// backslashes included, unchanged. Borrowed when nothing needed escaping.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`escape_controls`] over bytes that may not be UTF-8 (invalid sequences
/// become U+FFFD, as in any lossy display).
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape_controls(&String::from_utf8_lossy(bytes)).into_owned()
}

/// `text` as a YAML double-quoted scalar: `"a \"b\"\n"`.
pub fn yaml_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    push_quoted(&mut out, text);
    out.push('"');
    out
}

/// Guest bytes double-quoted as [`yaml_quoted`] quotes text, each byte
/// that is not UTF-8 shown as `\xNN` (nothing is lost, unlike a lossy view).
pub fn quoted_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        push_quoted(&mut out, chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

fn push_quoted(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => push_char(out, c),
        }
    }
}

/// How a callout ended, in the scenario format's `result:` words first:
/// `answered (status 200)`, `failed (timeout)`, `pending`, `cancelled`.
pub fn callout_result(result: &CalloutResult) -> String {
    match result {
        CalloutResult::Pending => "pending".to_string(),
        CalloutResult::Answered { status } => format!("answered (status {status})"),
        CalloutResult::Failed { reason } => format!("failed ({})", escape_controls(reason)),
        CalloutResult::Cancelled => "cancelled".to_string(),
    }
}

/// How a stream ended, in the scenario format's `end:` words first:
/// `completed`, `reset`, `stalled (why)`.
pub fn stream_end(end: &StreamEnd) -> String {
    match end {
        StreamEnd::Completed => "completed".to_string(),
        StreamEnd::Reset => "reset".to_string(),
        StreamEnd::Stalled { reason } => format!("stalled ({})", escape_controls(reason)),
        StreamEnd::NoStream => "no stream (the step ran none)".to_string(),
    }
}

/// `counter`, `gauge`, `histogram`.
pub fn metric_kind(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    }
}

/// The one place a character becomes its printable form.
fn push_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if u32::from(c) < 0x80 && c.is_control() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_other_text_is_left_alone() {
        assert!(matches!(
            escape_controls("plain text, ünïcode \\n"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("\n< HTTP/1.1 200 OK\x1b[2J"),
            "\\n< HTTP/1.1 200 OK\\x1b[2J"
        );
        assert_eq!(escape_controls("a\rb\tc\0d\x7fe"), "a\\rb\\tc\\0d\\x7fe");
        // C1 controls (0x9b is an 8-bit CSI on some terminals).
        assert_eq!(escape_controls("x\u{9b}2Jy\u{85}"), "x\\u009b2Jy\\u0085");
        assert_eq!(escape_bytes(b"ok\xff\n"), "ok\u{fffd}\\n");
    }

    #[test]
    fn quoted_bytes_keep_what_is_not_utf8() {
        assert_eq!(quoted_bytes(b"a\"b\xff\n\xc3"), "\"a\\\"b\\xff\\n\\xc3\"");
        assert_eq!(quoted_bytes("ü".as_bytes()), "\"ü\"");
    }

    #[test]
    fn yaml_quoting_round_trips_through_a_yaml_parser() {
        for text in [
            "plain",
            "with \"quotes\" and \\",
            "\n< HTTP/1.1\x1b[2J\u{9b}\t\r\0",
        ] {
            let quoted = yaml_quoted(text);
            assert!(!quoted.chars().any(char::is_control), "{quoted}");
            let parsed: String = serde_yaml_ng::from_str(&quoted).expect("valid YAML");
            assert_eq!(parsed, text, "{quoted}");
        }
    }
}

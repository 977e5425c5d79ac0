//! One stream's access-log line, rendered from its [`Record`].

use std::fmt::Write;

use super::format::{Format, Operator, Piece};
use super::json::{JsonField, JsonValue};

/// What a stream's line may show, gathered when the stream ends.
pub(crate) struct Record<'a> {
    pub start: chrono::DateTime<chrono::Utc>,
    pub duration_ms: u128,
    /// The format's captured request headers, in [`super::Captured`] order.
    pub request: &'a [Option<String>],
    /// The format's captured response headers, in [`super::Captured`] order.
    pub response: &'a [Option<String>],
    pub protocol: &'static str,
    pub status: u16,
    pub flags: &'static str,
    pub details: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_host: Option<&'a str>,
    pub upstream_cluster: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub hostname: &'a str,
}

/// A value as text, `None` when it is missing.
fn value(op: &Operator, r: &Record, out: &mut String) -> bool {
    let start = out.len();
    let present = match op {
        Operator::StartTime(None) => {
            let _ = write!(out, "{}", Rfc3339Millis(&r.start));
            true
        }
        Operator::StartTime(Some(pattern)) => {
            let _ = write!(out, "{}", r.start.format(pattern));
            true
        }
        Operator::Request {
            main,
            alternative,
            max,
        } => push_truncated(out, captured(r.request, *main, *alternative), *max),
        Operator::Response {
            main,
            alternative,
            max,
        } => push_truncated(out, captured(r.response, *main, *alternative), *max),
        Operator::Protocol => push(out, Some(r.protocol)),
        Operator::ResponseCode => {
            let _ = write!(out, "{}", r.status);
            true
        }
        Operator::ResponseFlags => push(out, Some(r.flags)),
        Operator::ResponseCodeDetails => push(out, r.details),
        Operator::BytesReceived => {
            let _ = write!(out, "{}", r.bytes_received);
            true
        }
        Operator::BytesSent => {
            let _ = write!(out, "{}", r.bytes_sent);
            true
        }
        Operator::Duration => {
            let _ = write!(out, "{}", r.duration_ms);
            true
        }
        Operator::UpstreamHost => push(out, r.upstream_host),
        Operator::UpstreamCluster => push(out, r.upstream_cluster),
        Operator::RouteName => push(out, r.route_name),
        Operator::Hostname => push(out, Some(r.hostname)),
    };
    if !present {
        out.truncate(start);
    }
    present
}

/// A captured header, else its alternative.
fn captured(values: &[Option<String>], main: usize, alternative: Option<usize>) -> Option<&str> {
    let at = |i: usize| values.get(i).and_then(Option::as_deref);
    at(main).or_else(|| alternative.and_then(at))
}

fn push(out: &mut String, v: Option<&str>) -> bool {
    match v {
        Some(v) if !v.is_empty() => {
            out.push_str(v);
            true
        }
        _ => false,
    }
}

/// `:N` keeps the first N characters.
fn push_truncated(out: &mut String, v: Option<&str>, max: Option<usize>) -> bool {
    let v = match (v, max) {
        (Some(v), Some(n)) => Some(v.char_indices().nth(n).map_or(v, |(at, _)| &v[..at])),
        (v, _) => v,
    };
    push(out, v)
}

fn text(pieces: &[Piece], r: &Record, out: &mut String) {
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Op(op) => {
                if !value(op, r, out) {
                    out.push('-');
                }
            }
        }
    }
}

/// Appends the line for `r` in `format` to `out`.
pub(crate) fn render(format: &Format, r: &Record, out: &mut String) {
    match format {
        Format::Text(pieces) => text(pieces, r, out),
        Format::Json(fields) => {
            let object = json_object(fields, r);
            out.push_str(&serde_json::Value::Object(object).to_string());
            out.push('\n');
        }
    }
}

fn json_object(fields: &[JsonField], r: &Record) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut object = serde_json::Map::new();
    for field in fields {
        let v = match &field.value {
            JsonValue::Op(op) => {
                let mut s = String::new();
                if !value(op, r, &mut s) {
                    Value::Null
                } else if op.is_number() {
                    s.parse::<u64>().map_or(Value::String(s), Value::from)
                } else {
                    Value::String(s)
                }
            }
            JsonValue::Text(pieces) => {
                let mut s = String::new();
                text(pieces, r, &mut s);
                Value::String(s)
            }
            JsonValue::Literal(v) => v.clone(),
            JsonValue::Object(inner) => Value::Object(json_object(inner, r)),
        };
        object.insert(field.key.clone(), v);
    }
    object
}

/// `%START_TIME%`'s default form, 2024-01-01T00:00:00.000Z, written
/// without interpreting a strftime pattern per line (a third of a line's
/// cost through chrono's formatter).
pub(super) struct Rfc3339Millis<'a>(pub &'a chrono::DateTime<chrono::Utc>);

impl std::fmt::Display for Rfc3339Millis<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_millis()
        )
    }
}

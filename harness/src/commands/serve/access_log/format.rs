//! Envoy's access-log format strings (`%COMMAND%` operators between
//! literal text), parsed once at start-up. A format names the request
//! headers it reads, so a stream captures only those.

use super::json::JsonField;

/// One command operator.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Operator {
    /// `%START_TIME%`, or with a strftime pattern (chrono's items).
    StartTime(Option<String>),
    /// `%REQ(A?B):N%`: indexes into the format's captured request headers.
    Request {
        main: usize,
        alternative: Option<usize>,
        max: Option<usize>,
    },
    /// `%RESP(A?B):N%`: indexes into the format's captured response headers.
    Response {
        main: usize,
        alternative: Option<usize>,
        max: Option<usize>,
    },
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    RouteName,
    Hostname,
}

impl Operator {
    /// Typed as a number in a JSON format (Envoy writes these unquoted).
    pub fn is_number(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::Duration
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Piece {
    Text(String),
    Op(Operator),
}

/// A parsed format: a text line, or a JSON object per line.
#[derive(Clone, Debug)]
pub(crate) enum Format {
    Text(Vec<Piece>),
    Json(Vec<JsonField>),
}

/// Envoy's default format (used when a logger gives no format), with its
/// trailing newline.
pub(crate) const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% \
    %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \
    %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
    \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \
    \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// The request and response headers the formats of one listener read
/// (lower case).
#[derive(Default, Debug)]
pub(crate) struct Captured {
    pub names: Vec<String>,
    pub response_names: Vec<String>,
}

/// The position of `name` in `names`, added when new.
fn index(names: &mut Vec<String>, name: &str) -> usize {
    let name = name.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == name) {
        return i;
    }
    names.push(name);
    names.len() - 1
}

/// Parses a text format; `Err` names the operator it cannot serve.
pub(crate) fn parse(text: &str, captured: &mut Captured) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            literal.push('%');
            rest = tail;
            continue;
        }
        // An argument in parentheses may hold '%' (START_TIME's pattern).
        let search_from = match after.find(['(', '%']) {
            Some(open) if after.as_bytes()[open] == b'(' => after[open..]
                .find(')')
                .map_or(after.len(), |close| open + close),
            _ => 0,
        };
        let Some(end) = after[search_from..].find('%').map(|e| e + search_from) else {
            return Err(format!(
                "'%{after}' has no closing '%' (write %% for a literal percent sign)"
            ));
        };
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Op(operator(&after[..end], captured)?));
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// One `%...%` command.
fn operator(command: &str, captured: &mut Captured) -> Result<Operator, String> {
    let (name, argument, max) = split_command(command)?;
    let simple = match name {
        "PROTOCOL" => Some(Operator::Protocol),
        "RESPONSE_CODE" => Some(Operator::ResponseCode),
        "RESPONSE_FLAGS" => Some(Operator::ResponseFlags),
        "RESPONSE_CODE_DETAILS" => Some(Operator::ResponseCodeDetails),
        "BYTES_RECEIVED" => Some(Operator::BytesReceived),
        "BYTES_SENT" => Some(Operator::BytesSent),
        "DURATION" => Some(Operator::Duration),
        "UPSTREAM_HOST" => Some(Operator::UpstreamHost),
        "UPSTREAM_CLUSTER" => Some(Operator::UpstreamCluster),
        "ROUTE_NAME" => Some(Operator::RouteName),
        "HOSTNAME" => Some(Operator::Hostname),
        _ => None,
    };
    if let Some(op) = simple {
        if argument.is_some() || max.is_some() {
            return Err(format!("%{command}% takes no argument"));
        }
        return Ok(op);
    }
    match (name, argument) {
        ("START_TIME", pattern) => {
            if let Some(pattern) = pattern {
                check_strftime(pattern)?;
            }
            Ok(Operator::StartTime(pattern.map(envoy_strftime)))
        }
        ("REQ", Some(headers)) => {
            let (main, alternative) = alternatives(headers)?;
            Ok(Operator::Request {
                main: index(&mut captured.names, main),
                alternative: alternative.map(|a| index(&mut captured.names, a)),
                max,
            })
        }
        ("RESP", Some(headers)) => {
            let (main, alternative) = alternatives(headers)?;
            Ok(Operator::Response {
                main: index(&mut captured.response_names, main),
                alternative: alternative.map(|a| index(&mut captured.response_names, a)),
                max,
            })
        }
        ("REQ" | "RESP", None) => Err(format!("%{name}% needs a header: %{name}(name)%")),
        _ => Err(format!(
            "%{command}% is not served by harness serve's access log (it serves START_TIME, \
             REQ, RESP, PROTOCOL, RESPONSE_CODE, RESPONSE_FLAGS, RESPONSE_CODE_DETAILS, \
             BYTES_RECEIVED, BYTES_SENT, DURATION, UPSTREAM_HOST, UPSTREAM_CLUSTER, \
             ROUTE_NAME, HOSTNAME)"
        )),
    }
}

/// `NAME`, `NAME(arg)`, `NAME(arg):N`.
fn split_command(command: &str) -> Result<(&str, Option<&str>, Option<usize>), String> {
    let Some(open) = command.find('(') else {
        return Ok((command, None, None));
    };
    let Some(close) = command.rfind(')').filter(|c| *c > open) else {
        return Err(format!("%{command}% has no closing ')'"));
    };
    let max = match &command[close + 1..] {
        "" => None,
        tail => Some(
            tail.strip_prefix(':')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("%{command}%: after ')' give :N, a length"))?,
        ),
    };
    Ok((&command[..open], Some(&command[open + 1..close]), max))
}

/// `A?B`: header A, else B.
fn alternatives(headers: &str) -> Result<(&str, Option<&str>), String> {
    let mut parts = headers.split('?');
    let main = parts.next().unwrap_or_default();
    let alternative = parts.next();
    if main.is_empty() || parts.next().is_some() || alternative == Some("") {
        return Err(format!(
            "'{headers}' must be a header name, or two joined by '?'"
        ));
    }
    Ok((main, alternative))
}

/// Envoy's own strftime extensions in chrono's spelling: `%E3S` (seconds
/// with 3 decimals) and `%f`/`%3f` (fractional seconds).
fn envoy_strftime(pattern: &str) -> String {
    let mut out = pattern.to_string();
    for n in 1..=9 {
        out = out.replace(&format!("%E{n}S"), &format!("%S%.{n}f"));
    }
    // `%3f` etc. are chrono's spelling already; a bare `%f` is Envoy's nine
    // digits.
    out.replace("%f", "%9f")
}

fn check_strftime(pattern: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    let converted = envoy_strftime(pattern);
    if StrftimeItems::new(&converted).any(|item| matches!(item, Item::Error)) {
        return Err(format!(
            "START_TIME({pattern}) is not a strftime pattern harness serve can write"
        ));
    }
    Ok(())
}

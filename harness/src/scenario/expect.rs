//! Checks an [`Outcome`] against the expectations of one step. Failures show
//! both sides in the scenario file's own YAML terms (`"text"` strings, byte
//! lists, `completed`/`stalled`, `failed`), never Rust `Debug` text; guest text
//! in them has its control characters escaped.

use crate::model::{
    ByteString, CalloutResult, GrpcCallRecord, Headers, HttpCallRecord, HttpMessage, LocalReply,
    LogEntry, Outcome, StreamEnd,
};
use crate::printable::{callout_result, escape_controls, stream_end, yaml_quoted};

use super::format::{
    EndExpect, Expect, GrpcCallExpect, HttpCallExpect, LocalReplyExpect, LogExpect, MessageExpect,
    Presence,
};
use super::report::Failure;

/// Appends to `failures` every expectation in `expect` that `outcome` breaks.
pub fn check(step: &str, expect: &Expect, outcome: &Outcome, failures: &mut Vec<Failure>) {
    let mut c = Checker { step, failures };
    if let Some(want) = &expect.upstream_request {
        c.presence(
            "upstream request",
            want,
            outcome.upstream_request.as_ref(),
            |c, want, got| c.message("upstream request", want, None, got),
        );
    }
    if let Some(want) = &expect.response {
        c.presence(
            "response",
            want,
            outcome.response.as_ref(),
            |c, want, got| c.message("response", want, Some(got.status), &got.message),
        );
    }
    if let Some(want) = &expect.local_reply {
        c.presence(
            "local reply",
            want,
            outcome.local_reply.as_ref(),
            Checker::local_reply,
        );
    }
    for want in &expect.logs {
        if !outcome.logs.iter().any(|entry| log_matches(want, entry)) {
            c.mismatch("log", log_expectation(want), summarize_logs(&outcome.logs));
        }
    }
    c.logs_in_order(&expect.logs_in_order, &outcome.logs);
    for text in &expect.logs_absent {
        if let Some(entry) = outcome
            .logs
            .iter()
            .find(|e| e.message.contains(text.as_str()))
        {
            c.mismatch(
                "log absent",
                format!("no line containing {}", yaml_quoted(text)),
                log_line(entry),
            );
        }
    }
    for (name, value) in &expect.metrics {
        let bare = name.strip_prefix("wasmcustom.").unwrap_or(name);
        match outcome
            .metrics
            .iter()
            .find(|m| m.name == *name || m.name == bare)
        {
            Some(metric) if metric.value == *value => {}
            Some(metric) => c.mismatch(
                format!("metric {name}"),
                value.to_string(),
                metric.value.to_string(),
            ),
            None => {
                let names = yaml_list(outcome.metrics.iter().map(|m| m.name.as_str()));
                c.mismatch(
                    format!("metric {name}"),
                    value.to_string(),
                    format!("no such metric (defined: {names})"),
                );
            }
        }
    }
    if let Some(want) = &expect.http_calls {
        c.http_calls(want, &outcome.http_calls);
    }
    if let Some(want) = &expect.grpc_calls {
        c.grpc_calls(want, &outcome.grpc_calls);
    }
    c.trap(expect.trap.as_ref(), outcome);
    if let Some(want) = expect.end {
        let expected = match want {
            EndExpect::Completed => "completed",
            EndExpect::Reset => "reset",
            EndExpect::Stalled => "stalled",
        };
        let matches = matches!(
            (want, &outcome.end),
            (EndExpect::Completed, StreamEnd::Completed)
                | (EndExpect::Reset, StreamEnd::Reset)
                | (EndExpect::Stalled, StreamEnd::Stalled { .. })
        );
        if !matches {
            c.mismatch("stream end", expected, stream_end(&outcome.end));
        }
    }
    if let Some(want) = &expect.connection {
        let broken = super::tcp::check(want, outcome.connection.as_ref(), show);
        for (what, expected, actual) in broken {
            c.mismatch(what, expected, actual);
        }
    }
    for (name, count) in &expect.hostcalls {
        let got = outcome.hostcalls.get(name.as_str()).copied().unwrap_or(0);
        if got != *count {
            c.mismatch(
                format!("calls of {name}"),
                count.to_string(),
                got.to_string(),
            );
        }
    }
}

fn log_matches(want: &LogExpect, entry: &LogEntry) -> bool {
    let text_ok = if want.exact {
        entry.message == want.text
    } else {
        entry.message.contains(want.text.as_str())
    };
    text_ok && want.level.is_none_or(|level| level == entry.level)
}

fn summarize_logs(logs: &[LogEntry]) -> String {
    if logs.is_empty() {
        return "no log lines".into();
    }
    let lines: Vec<String> = logs.iter().map(log_line).collect();
    format!("{} log line(s):\n{}", logs.len(), lines.join("\n"))
}

/// A captured log line as the transcript shows it: `[info] message`.
fn log_line(entry: &LogEntry) -> String {
    format!(
        "[{}] {}",
        entry.level.name(),
        escape_controls(&entry.message)
    )
}

/// A log expectation as it would be written in the file's long form.
fn log_expectation(want: &LogExpect) -> String {
    let key = if want.exact { "equals" } else { "contains" };
    match want.level {
        Some(level) => format!(
            "{{{key}: {}, level: {}}}",
            yaml_quoted(&want.text),
            level.name()
        ),
        None => format!("{{{key}: {}}}", yaml_quoted(&want.text)),
    }
}

/// Bytes as a scenario file writes them: a quoted string, or a list of
/// byte values when they are not UTF-8.
fn show(bytes: &ByteString) -> String {
    match std::str::from_utf8(&bytes.0) {
        Ok(text) => yaml_quoted(text),
        Err(_) => {
            let values: Vec<String> = bytes.0.iter().map(u8::to_string).collect();
            format!("[{}]", values.join(", "))
        }
    }
}

/// A YAML flow list of quoted strings: `["a", "b"]`.
fn yaml_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(yaml_quoted).collect();
    format!("[{}]", quoted.join(", "))
}

fn result_name(result: &CalloutResult) -> &'static str {
    match result {
        CalloutResult::Pending => "pending",
        CalloutResult::Answered { .. } => "answered",
        CalloutResult::Failed { .. } => "failed",
        CalloutResult::Cancelled => "cancelled",
    }
}

struct Checker<'a> {
    step: &'a str,
    failures: &'a mut Vec<Failure>,
}

impl Checker<'_> {
    fn mismatch(
        &mut self,
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) {
        self.failures
            .push(Failure::mismatch(self.step, what, expected, actual));
    }

    fn presence<W, G>(
        &mut self,
        what: &str,
        want: &Presence<W>,
        got: Option<&G>,
        then: impl FnOnce(&mut Self, &W, &G),
    ) {
        match (want, got) {
            (Presence::Absent, None) => {}
            (Presence::Absent, Some(_)) => self.mismatch(what, "none", format!("a {what}")),
            (Presence::Present(_), None) => self.mismatch(what, format!("a {what}"), "none"),
            (Presence::Present(want), Some(got)) => then(self, want, got),
        }
    }

    fn headers(&mut self, what: &str, want: &Headers, got: &Headers) {
        for (name, value) in &want.0 {
            let name = name.to_text();
            match got.get(&name) {
                Some(actual) if actual == value => {}
                Some(actual) => self.mismatch(format!("{what} {name}"), show(value), show(actual)),
                None => self.mismatch(
                    format!("{what} {name}"),
                    show(value),
                    format!("absent (have: {})", header_names(got)),
                ),
            }
        }
    }

    fn message(
        &mut self,
        what: &str,
        want: &MessageExpect,
        status: Option<u16>,
        got: &HttpMessage,
    ) {
        if let Some(expected) = want.status {
            match status {
                Some(actual) if actual == expected => {}
                Some(actual) => self.mismatch(
                    format!("{what} status"),
                    expected.to_string(),
                    actual.to_string(),
                ),
                None => self.mismatch(
                    format!("{what} status"),
                    expected.to_string(),
                    "requests have no status; use `headers` for pseudo-headers",
                ),
            }
        }
        self.headers(&format!("{what} header"), &want.headers, &got.headers);
        for name in &want.headers_present {
            if !got.headers.contains(name) {
                self.mismatch(
                    format!("{what} header {name}"),
                    "present",
                    format!("absent (have: {})", header_names(&got.headers)),
                );
            }
        }
        for name in &want.headers_absent {
            if let Some(value) = got.headers.get(name) {
                self.mismatch(format!("{what} header {name}"), "absent", show(value));
            }
        }
        if let Some(body) = &want.body {
            let expected = ByteString(body.concat());
            if expected != got.body {
                self.mismatch(format!("{what} body"), show(&expected), show(&got.body));
            }
        }
        if let Some(text) = &want.body_contains
            && !got.body.to_text().contains(text.as_str())
        {
            self.mismatch(
                format!("{what} body"),
                format!("containing {}", yaml_quoted(text)),
                show(&got.body),
            );
        }
        if !want.trailers.is_empty() {
            let empty = Headers::new();
            self.headers(
                &format!("{what} trailer"),
                &want.trailers,
                got.trailers.as_ref().unwrap_or(&empty),
            );
        }
    }

    fn local_reply(&mut self, want: &LocalReplyExpect, got: &LocalReply) {
        if let Some(status) = want.status
            && status != got.status
        {
            self.mismatch(
                "local reply status",
                status.to_string(),
                got.status.to_string(),
            );
        }
        if let Some(body) = &want.body {
            let expected = ByteString(body.concat());
            if expected != got.body {
                self.mismatch("local reply body", show(&expected), show(&got.body));
            }
        }
        if let Some(text) = &want.body_contains
            && !got.body.to_text().contains(text.as_str())
        {
            self.mismatch(
                "local reply body",
                format!("containing {}", yaml_quoted(text)),
                show(&got.body),
            );
        }
        self.headers("local reply header", &want.headers, &got.headers);
        if let Some(details) = &want.details
            && *details != got.details
        {
            self.mismatch(
                "local reply details",
                yaml_quoted(details),
                yaml_quoted(&got.details),
            );
        }
        if let Some(status) = want.grpc_status
            && Some(status) != got.grpc_status
        {
            self.mismatch(
                "local reply grpc_status",
                status.to_string(),
                got.grpc_status
                    .map_or_else(|| "none (not a gRPC reply)".to_string(), |s| s.to_string()),
            );
        }
        if let Some(source) = &want.source
            && *source != got.source
        {
            self.mismatch("local reply source", source.clone(), got.source.clone());
        }
    }

    fn logs_in_order(&mut self, want: &[LogExpect], logs: &[LogEntry]) {
        let mut from = 0;
        for (i, item) in want.iter().enumerate() {
            match logs[from..].iter().position(|e| log_matches(item, e)) {
                Some(at) => from += at + 1,
                None => {
                    let anywhere = logs.iter().any(|e| log_matches(item, e));
                    let why = if anywhere {
                        "it appears, but before an earlier expected line"
                    } else {
                        "it does not appear"
                    };
                    self.mismatch(
                        format!("logs in order, item {}", i + 1),
                        log_expectation(item),
                        format!("{why}; {}", summarize_logs(logs)),
                    );
                    return;
                }
            }
        }
    }

    fn http_calls(&mut self, want: &[HttpCallExpect], got: &[HttpCallRecord]) {
        if want.len() != got.len() {
            let clusters = yaml_list(got.iter().map(|c| c.cluster.as_str()));
            self.mismatch(
                "number of http_calls",
                want.len().to_string(),
                format!("{} (clusters: {clusters})", got.len()),
            );
        }
        for (i, (want, got)) in want.iter().zip(got).enumerate() {
            let what = format!("http_call {}", i + 1);
            if want.cluster != got.cluster {
                self.mismatch(
                    format!("{what} cluster"),
                    yaml_quoted(&want.cluster),
                    yaml_quoted(&got.cluster),
                );
            }
            self.headers(&format!("{what} header"), &want.headers, &got.headers);
            for name in &want.headers_absent {
                if let Some(value) = got.headers.get(name) {
                    self.mismatch(format!("{what} header {name}"), "absent", show(value));
                }
            }
            if let Some(body) = &want.body {
                let expected = ByteString(body.concat());
                if expected != got.body {
                    self.mismatch(format!("{what} body"), show(&expected), show(&got.body));
                }
            }
            if let Some(timeout) = want.timeout_ms
                && timeout != got.timeout_ms
            {
                self.mismatch(
                    format!("{what} timeout_ms"),
                    timeout.to_string(),
                    got.timeout_ms.to_string(),
                );
            }
            if let Some(result) = &want.result
                && result != result_name(&got.result)
            {
                self.mismatch(
                    format!("{what} result"),
                    result,
                    callout_result(&got.result),
                );
            }
        }
    }

    fn grpc_calls(&mut self, want: &[GrpcCallExpect], got: &[GrpcCallRecord]) {
        if want.len() != got.len() {
            let clusters = yaml_list(got.iter().map(|c| c.cluster.as_str()));
            self.mismatch(
                "number of grpc_calls",
                want.len().to_string(),
                format!("{} (clusters: {clusters})", got.len()),
            );
        }
        for (i, (want, got)) in want.iter().zip(got).enumerate() {
            let what = format!("grpc_call {}", i + 1);
            if want.cluster != got.cluster {
                self.mismatch(
                    format!("{what} cluster"),
                    yaml_quoted(&want.cluster),
                    yaml_quoted(&got.cluster),
                );
            }
            if let Some(service) = &want.service
                && *service != got.service
            {
                self.mismatch(
                    format!("{what} service"),
                    yaml_quoted(service),
                    yaml_quoted(&got.service),
                );
            }
            if let Some(method) = &want.method
                && *method != got.method
            {
                self.mismatch(
                    format!("{what} method"),
                    yaml_quoted(method),
                    yaml_quoted(&got.method),
                );
            }
            self.headers(
                &format!("{what} metadata"),
                &want.metadata,
                &got.initial_metadata,
            );
            if let Some(messages) = &want.messages
                && *messages != got.messages
            {
                self.mismatch(
                    format!("{what} messages"),
                    show_list(messages),
                    show_list(&got.messages),
                );
            }
            if let Some(streaming) = want.streaming
                && streaming != got.streaming
            {
                self.mismatch(
                    format!("{what} streaming"),
                    streaming.to_string(),
                    got.streaming.to_string(),
                );
            }
            if let Some(result) = &want.result
                && result != result_name(&got.result)
            {
                self.mismatch(
                    format!("{what} result"),
                    result,
                    callout_result(&got.result),
                );
            }
        }
    }

    fn trap(&mut self, want: Option<&Presence<String>>, outcome: &Outcome) {
        // The trap text's lines (cause, backtrace frames) stay lines; guest
        // text inside each (panic message, function names) is escaped.
        let described = outcome.trap.as_ref().map(|t| {
            let trap: Vec<_> = t.trap.lines().map(escape_controls).collect();
            format!(
                "in {} (context {}): {}{}",
                t.callback,
                t.context_id,
                t.panic_message
                    .as_deref()
                    .map(|m| format!("{}; ", escape_controls(m)))
                    .unwrap_or_default(),
                trap.join("\n")
            )
        });
        match (want, &outcome.trap, described) {
            (None | Some(Presence::Absent), Some(_), Some(text)) => {
                self.mismatch("trap", "none", text);
            }
            (Some(Presence::Present(text)), None, _) => {
                self.mismatch(
                    "trap",
                    format!("a trap mentioning {}", yaml_quoted(text)),
                    "none",
                );
            }
            (Some(Presence::Present(text)), Some(trap), Some(described)) => {
                let found = trap
                    .panic_message
                    .as_deref()
                    .is_some_and(|m| m.contains(text.as_str()))
                    || trap.trap.contains(text.as_str());
                if !found {
                    self.mismatch(
                        "trap",
                        format!("a trap mentioning {}", yaml_quoted(text)),
                        described,
                    );
                }
            }
            _ => {}
        }
    }
}

fn header_names(headers: &Headers) -> String {
    let names: Vec<String> = headers
        .0
        .iter()
        .map(|(k, _)| escape_controls(&k.to_text()).into_owned())
        .collect();
    names.join(", ")
}

/// A YAML flow list of byte strings.
fn show_list(items: &[ByteString]) -> String {
    let shown: Vec<String> = items.iter().map(show).collect();
    format!("[{}]", shown.join(", "))
}

//! What one request (or a stretch of time) produced, with assertions whose
//! failures say expected versus actual in HTTP terms.

use harness::{Headers, LogLevel, Outcome, StreamEnd};

use crate::fail;

/// The outcome of one request: the client's response, what reached the
/// upstream, the filter's logs and metrics. Assertions return `&Self` to chain.
pub struct Reply {
    label: String,
    outcome: Outcome,
}

pub(crate) fn quoted(text: &str) -> String {
    format!("`{text}`")
}

/// `title:` then one indented line each (or `(none)`).
pub(crate) fn listing(title: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("  {title}: (none)");
    }
    let body: Vec<String> = lines.iter().map(|l| format!("    {l}")).collect();
    format!("  {title}:\n{}", body.join("\n"))
}

fn header_lines(headers: &Headers) -> Vec<String> {
    headers
        .iter()
        .map(|(k, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}

/// Log lines at `level` or more severe, as `level: message`.
pub(crate) fn lines_at_least(outcome: &Outcome, level: LogLevel) -> Vec<String> {
    outcome
        .logs
        .iter()
        .filter(|l| l.level >= level)
        .map(|l| format!("{}: {}", l.level.name(), l.message))
        .collect()
}

impl Reply {
    pub(crate) fn new(label: String, outcome: Outcome) -> Reply {
        Reply { label, outcome }
    }

    #[track_caller]
    fn fail(&self, expected: String, actual: String, context: String) -> ! {
        fail(format!(
            "{}: expected {expected}\n  actual: {actual}\n{context}",
            self.label
        ))
    }

    /// The status the client got (0 when no response reached it).
    pub fn status(&self) -> u16 {
        self.outcome.response.as_ref().map_or(0, |r| r.status)
    }

    /// A response header's value as text (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<String> {
        let response = self.outcome.response.as_ref()?;
        response.message.headers.get_text(name)
    }

    /// The response body as text.
    pub fn body(&self) -> String {
        self.outcome
            .response
            .as_ref()
            .map(|r| r.message.body.to_text())
            .unwrap_or_default()
    }

    /// Log lines of this request at info level or above (`info: message`).
    pub fn logs(&self) -> Vec<String> {
        lines_at_least(&self.outcome, LogLevel::Info)
    }

    /// Everything the harness recorded, for what the assertions do not cover.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn response_summary(&self) -> String {
        match &self.outcome.response {
            None => format!("  no response reached the client ({})", self.end_text()),
            Some(r) => {
                let mut text = listing("response headers", &header_lines(&r.message.headers));
                if !r.message.body.is_empty() {
                    text.push_str(&format!(
                        "\n  response body: {}",
                        quoted(&r.message.body.to_text())
                    ));
                }
                text
            }
        }
    }

    fn end_text(&self) -> String {
        match &self.outcome.end {
            StreamEnd::Completed => "the stream completed".to_string(),
            StreamEnd::Reset => "the stream was reset".to_string(),
            StreamEnd::Stalled { reason } => format!("the stream stalled: {reason}"),
            StreamEnd::NoStream => "no stream ran".to_string(),
        }
    }

    /// The client got this status.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        if self.status() != status {
            let actual = match self.outcome.response {
                Some(_) => format!("status {}", self.status()),
                None => "no response".to_string(),
            };
            self.fail(format!("status {status}"), actual, self.response_summary());
        }
        self
    }

    /// The response carries `name: value` (one of its values, if repeated).
    #[track_caller]
    pub fn assert_header(&self, name: &str, value: &str) -> &Self {
        let values: Vec<String> = self
            .outcome
            .response
            .as_ref()
            .map(|r| {
                r.message
                    .headers
                    .get_all(name)
                    .map(|v| v.to_text())
                    .collect()
            })
            .unwrap_or_default();
        if !values.iter().any(|v| v == value) {
            let actual = if values.is_empty() {
                format!("no {} header", quoted(name))
            } else {
                format!("{name}: {}", values.join(", "))
            };
            self.fail(
                format!("response header {}", quoted(&format!("{name}: {value}"))),
                actual,
                self.response_summary(),
            );
        }
        self
    }

    /// The response has no header `name`.
    #[track_caller]
    pub fn assert_no_header(&self, name: &str) -> &Self {
        if let Some(value) = self.header(name) {
            self.fail(
                format!("no {} response header", quoted(name)),
                format!("{name}: {value}"),
                self.response_summary(),
            );
        }
        self
    }

    /// The response body is exactly `body`.
    #[track_caller]
    pub fn assert_body(&self, body: &str) -> &Self {
        if self.body() != body {
            self.fail(
                format!("response body {}", quoted(body)),
                quoted(&self.body()),
                self.response_summary(),
            );
        }
        self
    }

    /// The filter answered locally (`send_http_response`) with this status,
    /// and the request never reached the upstream.
    #[track_caller]
    pub fn assert_local_reply(&self, status: u16) -> &Self {
        match &self.outcome.local_reply {
            None => self.fail(
                format!("a local reply with status {status}"),
                "no local reply (the request went upstream)".to_string(),
                self.response_summary(),
            ),
            Some(reply) if reply.status != status => self.fail(
                format!("a local reply with status {status}"),
                format!(
                    "a local reply with status {} from the {}",
                    reply.status, reply.source
                ),
                self.response_summary(),
            ),
            Some(_) if self.outcome.upstream_request.is_some() => self.fail(
                format!("a local reply with status {status} instead of the upstream"),
                "the request also reached the upstream".to_string(),
                self.response_summary(),
            ),
            Some(_) => self,
        }
    }

    /// No local reply: the request went to the upstream and its answer
    /// came back.
    #[track_caller]
    pub fn assert_no_local_reply(&self) -> &Self {
        if let Some(reply) = &self.outcome.local_reply {
            self.fail(
                "the request to reach the upstream".to_string(),
                format!(
                    "a local reply with status {} from the {} ({})",
                    reply.status,
                    reply.source,
                    if reply.details.is_empty() {
                        "no details"
                    } else {
                        &reply.details
                    }
                ),
                self.response_summary(),
            );
        }
        self
    }

    /// The request reached the upstream with header `name: value`.
    #[track_caller]
    pub fn assert_upstream_header(&self, name: &str, value: &str) -> &Self {
        let expected = format!(
            "upstream request header {}",
            quoted(&format!("{name}: {value}"))
        );
        match &self.outcome.upstream_request {
            None => self.fail(
                expected,
                "the request never reached the upstream".to_string(),
                self.response_summary(),
            ),
            Some(request) => {
                if !request.headers.get_all(name).any(|v| v.to_text() == value) {
                    self.fail(
                        expected,
                        match request.headers.get_text(name) {
                            Some(v) => format!("{name}: {v}"),
                            None => format!("no {} header", quoted(name)),
                        },
                        listing("upstream request headers", &header_lines(&request.headers)),
                    );
                }
            }
        }
        self
    }

    /// A log line at info level or above contains `needle`.
    #[track_caller]
    pub fn assert_logs_contain(&self, needle: &str) -> &Self {
        let logs = self.logs();
        if !logs.iter().any(|l| l.contains(needle)) {
            self.fail(
                format!("a log line containing {}", quoted(needle)),
                "no such line".to_string(),
                listing("logs", &logs),
            );
        }
        self
    }

    /// The counter or gauge `name` has this value (for a histogram: this
    /// many samples) after the request.
    #[track_caller]
    pub fn assert_metric(&self, name: &str, value: i64) -> &Self {
        let actual = self.outcome.metric(name).map(|m| m.value);
        if actual != Some(value) {
            let defined: Vec<String> = self
                .outcome
                .metrics
                .iter()
                .map(|m| format!("{} = {}", m.name, m.value))
                .collect();
            self.fail(
                format!("metric {} = {value}", quoted(name)),
                match actual {
                    Some(v) => format!("{name} = {v}"),
                    None => format!("no metric named {}", quoted(name)),
                },
                listing("metrics", &defined),
            );
        }
        self
    }
}

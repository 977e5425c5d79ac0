//! What each step of a case does, and the checks that a case's steps make
//! sense together (named streams opened before they are used, once).

use std::collections::{BTreeMap, BTreeSet};

use crate::manager::StreamInput;
use crate::model::{Body, ByteString, ConnectionSpec, Headers};

use super::format::{AnswerSpec, RequestSpec, Step};

/// The one thing a step does.
pub enum Action<'a> {
    /// A request run to its end (other live streams move meanwhile).
    Exchange(&'a RequestSpec),
    /// Virtual time passes with no new stream.
    Advance(u64),
    /// A named stream opens and runs until it waits.
    Open {
        name: &'a str,
        request: &'a RequestSpec,
        hold_upstream: bool,
        /// False: the client sends the rest in `send` steps.
        end_stream: bool,
    },
    /// The client sends more of a named stream's request.
    Send { name: &'a str, part: Part<'a> },
    /// A held stream gets its upstream answer.
    Respond {
        name: &'a str,
        /// False: the upstream sends the rest in `upstream_send` steps.
        end_stream: bool,
    },
    /// The upstream sends more of a named stream's response.
    UpstreamSend { name: &'a str, part: Part<'a> },
    /// The client resets a named stream or connection.
    Reset { name: &'a str },
    /// A named TCP connection opens and runs until it waits for bytes.
    Connect {
        name: &'a str,
        connection: Option<&'a ConnectionSpec>,
    },
    /// The upstream resets a named connection.
    UpstreamReset { name: &'a str },
    /// A held callout gets its answer.
    Answer(&'a AnswerSpec),
    /// Run until the named stream ends; expectations are on that stream.
    Finish { name: &'a str },
}

/// A further part of a message (body chunks, trailers, whether it ends),
/// or on a connection, bytes and whether that side's FIN follows.
pub struct Part<'a> {
    pub body: Body,
    pub trailers: Option<&'a Headers>,
    pub data: Option<&'a ByteString>,
    pub end_stream: Option<bool>,
}

impl Part<'_> {
    /// As more of the request (ends it unless `end_stream: false`).
    pub fn request(self) -> StreamInput {
        StreamInput::Request {
            body: self.body,
            trailers: self.trailers.cloned(),
            end_stream: self.end_stream.unwrap_or(true),
        }
    }

    /// As more of the upstream's response (ends it unless `end_stream: false`).
    pub fn response(self) -> StreamInput {
        StreamInput::Response {
            body: self.body,
            trailers: self.trailers.cloned(),
            end_stream: self.end_stream.unwrap_or(true),
        }
    }

    /// As the client's bytes on a connection (FIN only with `end_stream: true`).
    pub fn client_bytes(self) -> StreamInput {
        StreamInput::Downstream {
            data: self.data.map(|d| d.0.clone()).unwrap_or_default(),
            end_stream: self.end_stream.unwrap_or(false),
        }
    }

    /// As the upstream's bytes on a connection (FIN only with `end_stream: true`).
    pub fn upstream_bytes(self) -> StreamInput {
        StreamInput::Upstream {
            data: self.data.map(|d| d.0.clone()).unwrap_or_default(),
            end_stream: self.end_stream.unwrap_or(false),
        }
    }
}

/// The step's verbs, one of which a step has.
const VERBS: &str = "`request`, `advance_ms`, `open`, `connect`, `send`, `respond`, `upstream_send`, `reset`, `upstream_reset`, `answer` or `finish`";

impl Step {
    /// The verb a step has (exactly one), and the other keys it carries.
    fn verb(&self) -> Result<&'static str, String> {
        let verbs = [
            ("open", self.open.is_some()),
            ("connect", self.connect.is_some()),
            ("upstream_reset", self.upstream_reset.is_some()),
            ("send", self.send.is_some()),
            ("respond", self.respond.is_some()),
            ("upstream_send", self.upstream_send.is_some()),
            ("reset", self.reset.is_some()),
            ("answer", self.answer.is_some()),
            ("finish", self.finish.is_some()),
            ("advance_ms", self.advance_ms.is_some()),
        ];
        let present: Vec<&str> = verbs.iter().filter(|v| v.1).map(|v| v.0).collect();
        match present.as_slice() {
            [] if self.request.is_some() => Ok("request"),
            [] if self.hold_upstream => Err("`hold_upstream` belongs to an `open` step".into()),
            [] => Err(format!("needs one of {VERBS}")),
            ["advance_ms"] if self.request.is_some() => {
                Err("a step is either a `request` or an `advance_ms`, not both".into())
            }
            [one] => Ok(one),
            more => Err(format!(
                "a step does one thing, this one has `{}`: split it into steps",
                more.join("`, `")
            )),
        }
    }

    /// The step's action; an error names what is missing or contradictory.
    pub fn action(&self) -> Result<Action<'_>, String> {
        let verb = self.verb()?;
        // Which optional keys each verb takes (`expect` and `name` go with all).
        let takes: &[&str] = match verb {
            "request" => &["upstream", "worker", "properties"],
            "open" => &[
                "request",
                "upstream",
                "hold_upstream",
                "worker",
                "properties",
                "end_stream",
            ],
            "respond" => &["upstream", "end_stream"],
            "send" | "upstream_send" => &["body", "trailers", "end_stream", "data"],
            "connect" => &["connection", "worker", "properties"],
            "answer" => &["worker"],
            _ => &[],
        };
        let given = [
            ("request", self.request.is_some() && verb != "request"),
            ("upstream", self.upstream.is_some()),
            ("hold_upstream", self.hold_upstream),
            ("worker", self.worker.is_some()),
            ("properties", !self.properties.is_empty()),
            ("end_stream", self.end_stream.is_some()),
            ("body", self.body.is_some()),
            ("trailers", self.trailers.is_some()),
            ("data", self.data.is_some()),
            ("connection", self.connection.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(k, on)| *on && !takes.contains(k)) {
            let hint = match *key {
                "worker" => {
                    " (a named stream stays on the worker that opened it; `advance_ms` moves every worker)"
                }
                "hold_upstream" => " (it belongs to an `open` step)",
                "upstream" if verb == "advance_ms" => " (`upstream` needs a `request`)",
                _ => "",
            };
            return Err(format!("`{key}` does not go with `{verb}`{hint}"));
        }
        let end_stream = self.end_stream.unwrap_or(true);
        let part = || Part {
            body: self.body.clone().unwrap_or_default(),
            trailers: self.trailers.as_ref(),
            data: self.data.as_ref(),
            end_stream: self.end_stream,
        };
        fn name(n: &Option<String>) -> &str {
            n.as_deref().unwrap_or_default()
        }
        Ok(match verb {
            "request" => match &self.request {
                Some(request) => Action::Exchange(request),
                None => return Err(format!("needs one of {VERBS}")),
            },
            "advance_ms" => Action::Advance(self.advance_ms.unwrap_or_default()),
            "open" => {
                let name = name(&self.open);
                let Some(request) = &self.request else {
                    return Err(format!("`open: {name}` needs a `request`"));
                };
                Action::Open {
                    name,
                    request,
                    hold_upstream: self.hold_upstream,
                    end_stream,
                }
            }
            "send" => Action::Send {
                name: name(&self.send),
                part: part(),
            },
            "respond" => Action::Respond {
                name: name(&self.respond),
                end_stream,
            },
            "upstream_send" => Action::UpstreamSend {
                name: name(&self.upstream_send),
                part: part(),
            },
            "reset" => Action::Reset {
                name: name(&self.reset),
            },
            "connect" => Action::Connect {
                name: name(&self.connect),
                connection: self.connection.as_ref(),
            },
            "upstream_reset" => Action::UpstreamReset {
                name: name(&self.upstream_reset),
            },
            "answer" => match &self.answer {
                Some(answer) if answer.nth > 0 => Action::Answer(answer),
                _ => return Err("`answer.nth` counts from 1".into()),
            },
            _ => Action::Finish {
                name: name(&self.finish),
            },
        })
    }
}

impl Action<'_> {
    /// The named stream the action acts on (not `open`).
    fn uses(&self) -> Option<&str> {
        match self {
            Action::Send { name, .. }
            | Action::Respond { name, .. }
            | Action::UpstreamSend { name, .. }
            | Action::Reset { name }
            | Action::UpstreamReset { name }
            | Action::Finish { name } => Some(name),
            _ => None,
        }
    }
}

/// What a step name was opened as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stream,
    Connection,
}

/// Each step's action is well-formed, and named streams and connections
/// are opened once before any step uses them, used as what they are, and
/// finished at most once.
pub fn validate(steps: &[Step]) -> Result<(), String> {
    let mut open = BTreeMap::new();
    let mut finished = BTreeSet::new();
    for (i, step) in steps.iter().enumerate() {
        let at = |e: String| format!("step {}: {e}", i + 1);
        let action = step.action().map_err(at)?;
        let opened = match action {
            Action::Open { name, .. } => Some((name, Kind::Stream)),
            Action::Connect { name, .. } => Some((name, Kind::Connection)),
            _ => None,
        };
        if let Some((name, kind)) = opened
            && open.insert(name, kind).is_some()
        {
            return Err(at(format!("{name:?} is opened twice")));
        }
        if let Some(name) = action.uses() {
            let Some(&kind) = open.get(name) else {
                return Err(at(format!(
                    "{name:?} is not opened by an earlier step (`open: {name}` for a stream, `connect: {name}` for a connection)"
                )));
            };
            if finished.contains(name) {
                return Err(at(format!("{name:?} was finished by an earlier step")));
            }
            fits(step, &action, kind).map_err(|e| at(format!("{name:?} {e}")))?;
        }
        if let Action::Finish { name } = action {
            finished.insert(name);
        }
    }
    Ok(())
}

/// The step's keys suit what its name was opened as.
fn fits(step: &Step, action: &Action<'_>, kind: Kind) -> Result<(), String> {
    let http_parts = step.body.is_some() || step.trailers.is_some();
    match (kind, action) {
        (Kind::Stream, _) if step.data.is_some() => Err(
            "is an HTTP stream: `data` is for TCP connections; send `body` chunks or `trailers`"
                .to_string(),
        ),
        (Kind::Stream, Action::UpstreamReset { .. }) => {
            Err("is an HTTP stream: `upstream_reset` is for TCP connections".to_string())
        }
        (Kind::Connection, Action::Respond { .. }) => Err(
            "is a TCP connection: the upstream sends bytes with `upstream_send` and `data`"
                .to_string(),
        ),
        (Kind::Connection, _) if http_parts => Err(
            "is a TCP connection: it carries bytes (`data`), not `body` or `trailers`".to_string(),
        ),
        _ => Ok(()),
    }
}

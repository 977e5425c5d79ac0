//! What one benchmark iteration runs: an HTTP exchange, or a whole TCP
//! connection through a network filter.

use crate::driver::Harness;
use crate::error::HarnessError;
use crate::model::{ConnectionExchange, Exchange, Outcome};

/// One iteration's traffic.
#[derive(Clone, Debug)]
pub enum Work {
    /// A request and its response.
    Http(Exchange),
    /// A connection: the client's bytes, the upstream's, both FINs.
    Tcp(ConnectionExchange),
}

impl Work {
    /// Runs it once on `h`.
    pub fn run_on(&self, h: &mut Harness) -> Result<Outcome, HarnessError> {
        match self {
            Work::Http(ex) => h.exchange(ex),
            Work::Tcp(ex) => h.connection(ex),
        }
    }

    /// What the client got: the HTTP status, or for a connection 0.
    pub fn status(outcome: &Outcome) -> u16 {
        outcome.response.as_ref().map_or(0, |r| r.status)
    }

    /// The iteration ran to its end: the HTTP response reached the client,
    /// or the connection closed.
    pub fn completed(&self, outcome: &Outcome) -> bool {
        match self {
            Work::Http(_) => outcome.response.is_some(),
            Work::Tcp(_) => outcome
                .connection
                .as_ref()
                .is_some_and(|c| c.closed_by.is_some()),
        }
    }

    /// What the wasm module and its native twin must agree on, each part
    /// as JSON (the form users read): name and value.
    pub fn observed(&self, o: &Outcome) -> Vec<(&'static str, String)> {
        let proxy_calls: std::collections::BTreeMap<&str, &u64> = o
            .hostcalls
            .iter()
            // WASI calls exist only in the wasm build (the twin uses the host's libc).
            .filter(|(name, _)| name.starts_with("proxy_"))
            .map(|(name, n)| (name.as_ref(), n))
            .collect();
        let mut parts = vec![("hostcalls", json(&proxy_calls))];
        match self {
            Work::Http(_) => {
                // The request id comes from the seeded generator, which the
                // wasm build's WASI start-up (random_get) has already advanced.
                let upstream = o.upstream_request.clone().map(|mut m| {
                    m.headers.0.retain(|(k, _)| k.as_bytes() != b"x-request-id");
                    m
                });
                parts.push(("response", json(&o.response)));
                parts.push(("upstream request", json(&upstream)));
                parts.push(("local reply", json(&o.local_reply)));
            }
            Work::Tcp(_) => parts.push(("connection", json(&o.connection))),
        }
        parts
    }
}

/// A part as JSON, for comparison and messages.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("(not serializable: {e})"))
}

//! The router on a worker: each request the HTTP chain let through goes
//! where its route says. The route's decisions go to the simulated Envoy
//! ([`StreamInput::Route`], [`StreamInput::RouterReply`]), which answers
//! timeouts, direct responses and unrouted requests as Envoy's router does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use harness::{ByteString, HttpMessage, StreamInput};

use super::{Event, Worker};
use crate::commands::serve::http;
use crate::commands::serve::plan::ListenerKind;
use crate::commands::serve::routes::{Action, Forward};

/// How long a forwarded request may outlive its route timeout before the
/// task sending it gives up (the stream has had its 504 by then).
const FORWARD_GRACE: Duration = Duration::from_secs(1);

impl Worker {
    /// The router: each request the chain let through goes where its
    /// route says (a cluster, or the route's own answer; none: 404).
    pub(super) fn route(&mut self, slot: usize, events: &mpsc::UnboundedSender<Event>) {
        let Some(served) = self.slot_mut(slot) else {
            return;
        };
        let plans = Arc::clone(&served.plans);
        let ListenerKind::Http(routes) = &plans[served.plan_index].kind else {
            return;
        };
        let mut decided = Vec::new();
        for (key, mut message) in served.envoy.take_upstream_requests(0) {
            let forward = match routes.pick(&message.headers) {
                None => {
                    decided.push((key, router_reply(404, b"", "route_not_found")));
                    continue;
                }
                Some(route) => match &route.action {
                    Action::Direct { status, body } => {
                        decided.push((key, router_reply(*status, body, "direct_response")));
                        continue;
                    }
                    Action::Forward(forward) => {
                        if let Some(rewrite) = &forward.prefix_rewrite {
                            let path = message.headers.get_text(":path").unwrap_or_default();
                            let path = route.rewritten_path(&path, rewrite);
                            set_header(&mut message, ":path", &path);
                        }
                        forward.clone()
                    }
                },
            };
            let Forward {
                upstream,
                timeout_ms,
                ..
            } = forward;
            decided.push((key, StreamInput::Route { timeout_ms }));
            // The router announces the route's own timeout (0: none).
            if timeout_ms == 0 {
                message
                    .headers
                    .0
                    .retain(|(n, _)| !n.0.eq_ignore_ascii_case(b"x-envoy-expected-rq-timeout-ms"));
            } else {
                set_header(
                    &mut message,
                    "x-envoy-expected-rq-timeout-ms",
                    &timeout_ms.to_string(),
                );
            }
            let bound = (timeout_ms > 0)
                .then(|| Duration::from_millis(timeout_ms).saturating_add(FORWARD_GRACE));
            let (client, events) = (self.client.clone(), events.clone());
            let key = (slot, key);
            tokio::spawn(async move {
                if let Some(answer) = http::forward(client, upstream, message, bound).await {
                    let _ = events.send(Event::Upstream { key, answer });
                }
            });
        }
        for (key, input) in decided {
            if let Some(served) = self.slot_mut(slot)
                && let Ok(outcome) = served.envoy.send(key, input)
            {
                self.show_step(slot, &outcome);
            }
        }
    }
}

/// The router's own answer to a request.
fn router_reply(status: u16, body: &[u8], details: &str) -> StreamInput {
    StreamInput::RouterReply {
        status,
        body: body.to_vec(),
        details: details.to_string(),
    }
}

/// Replaces (or adds) a request header the router sets.
fn set_header(message: &mut HttpMessage, name: &str, value: &str) {
    let headers = &mut message.headers.0;
    headers.retain(|(n, _)| !n.0.eq_ignore_ascii_case(name.as_bytes()));
    headers.push((ByteString::from(name), ByteString::from(value)));
}

//! The router on a worker: each request the HTTP chain let through goes
//! where its route says.

use tokio::sync::mpsc;

use harness::{ByteString, HttpMessage};

use super::{Event, Worker};
use crate::commands::serve::http;
use crate::commands::serve::plan::ListenerKind;
use crate::commands::serve::routes::{Action, DEFAULT_TIMEOUT_MS, Forward};

impl Worker {
    /// The router: each request the chain let through goes where its
    /// route says (a cluster, or the route's own answer; none: 404).
    pub(super) fn route(&mut self, listener: usize, events: &mpsc::UnboundedSender<Event>) {
        let served = &mut self.served[listener];
        let ListenerKind::Http(routes) = &self.plans[served.plan_index].kind else {
            return;
        };
        for (key, mut message) in served.envoy.take_upstream_requests(0) {
            let key = (listener, key);
            let forward = match routes.pick(&message.headers) {
                None => {
                    let answer = http::local_answer(404, b"");
                    let _ = events.send(Event::Upstream { key, answer });
                    continue;
                }
                Some(route) => match &route.action {
                    Action::Direct { status, body } => {
                        let answer = http::local_answer(*status, body);
                        let _ = events.send(Event::Upstream { key, answer });
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
            if timeout_ms != DEFAULT_TIMEOUT_MS {
                // The router announces the route's own timeout (0: none).
                if timeout_ms == 0 {
                    message.headers.0.retain(|(n, _)| {
                        !n.0.eq_ignore_ascii_case(b"x-envoy-expected-rq-timeout-ms")
                    });
                } else {
                    set_header(
                        &mut message,
                        "x-envoy-expected-rq-timeout-ms",
                        &timeout_ms.to_string(),
                    );
                }
            }
            let (client, events) = (self.client.clone(), events.clone());
            tokio::spawn(async move {
                let answer = http::forward(client, upstream, message, timeout_ms).await;
                let _ = events.send(Event::Upstream { key, answer });
            });
        }
    }
}

/// Replaces (or adds) a request header the router sets.
fn set_header(message: &mut HttpMessage, name: &str, value: &str) {
    let headers = &mut message.headers.0;
    headers.retain(|(n, _)| !n.0.eq_ignore_ascii_case(name.as_bytes()));
    headers.push((ByteString::from(name), ByteString::from(value)));
}

//! The router on a worker: each request the HTTP chain let through goes
//! where its route says. The route's decisions go to the simulated Envoy
//! ([`StreamInput::Route`], [`StreamInput::RouterReply`]), which answers
//! timeouts, direct responses and unrouted requests as Envoy's router does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use harness::{ByteString, Headers, StreamInput};

use super::{Event, Key, Worker};
use crate::commands::serve::access_log::InFlight;
use crate::commands::serve::carry::{OutBody, Outbound};
use crate::commands::serve::http;
use crate::commands::serve::plan::ListenerKind;
use crate::commands::serve::routes::{Action, Forward};

/// How long a forwarded request may outlive its route timeout before the
/// task sending it gives up (the stream has had its 504 by then).
const FORWARD_GRACE: Duration = Duration::from_secs(1);

impl Worker {
    /// The router: the request head the chain let through goes where its
    /// route says (a cluster, or the route's own answer; none: 404), with
    /// `whole`, the whole body when the request ended already. Else, for a
    /// cluster, the worker's end of the request body is returned: the body
    /// follows as it leaves the chain.
    pub(super) fn route(
        &mut self,
        key: Key,
        mut headers: Headers,
        whole: Option<OutBody>,
        flight: &mut InFlight,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Option<Outbound> {
        let served = self.slot_mut(key.0)?;
        let plans = Arc::clone(&served.plans);
        let ListenerKind::Http(routes) = &plans[served.plan_index].kind else {
            return None;
        };
        let picked = routes.pick(&headers);
        flight.route_name = picked.and_then(|r| r.name.clone());
        let decided = match picked {
            None => Err(router_reply(404, b"", "route_not_found")),
            Some(route) => match &route.action {
                Action::Direct { status, body } => {
                    Err(router_reply(*status, body, "direct_response"))
                }
                Action::Forward(forward) => {
                    if let Some(rewrite) = &forward.prefix_rewrite {
                        let path = headers.get_text(":path").unwrap_or_default();
                        let rewritten = route.rewritten_path(&path, rewrite);
                        // Envoy's router keeps the path it rewrote
                        // (RouteEntryImplBase::finalizePathHeader, unless
                        // suppress_envoy_headers): the upstream sees it and
                        // the default access-log line shows it.
                        set_header(&mut headers, "x-envoy-original-path", &path);
                        set_header(&mut headers, ":path", &rewritten);
                    }
                    Ok(forward.clone())
                }
            },
        };
        // The access log reads the request as the router left it.
        flight.left_chain(&headers);
        let forward = match decided {
            Ok(forward) => forward,
            Err(reply) => {
                self.send_input(key, reply);
                return None;
            }
        };
        let Forward {
            cluster,
            upstream,
            timeout_ms,
            ..
        } = forward;
        flight.upstream_host = Some(upstream.authority().to_string());
        flight.upstream_cluster = cluster;
        self.send_input(key, StreamInput::Route { timeout_ms });
        // The router announces the route's own timeout (0: none).
        if timeout_ms == 0 {
            headers
                .0
                .retain(|(n, _)| !n.0.eq_ignore_ascii_case(b"x-envoy-expected-rq-timeout-ms"));
        } else {
            set_header(
                &mut headers,
                "x-envoy-expected-rq-timeout-ms",
                &timeout_ms.to_string(),
            );
        }
        let bound = (timeout_ms > 0)
            .then(|| Duration::from_millis(timeout_ms).saturating_add(FORWARD_GRACE));
        let (outbound, body) = match whole {
            Some(body) => (None, body),
            None => {
                let (outbound, body) = Worker::outbound(events);
                (Some(outbound), body)
            }
        };
        let (client, events) = (self.client.clone(), events.clone());
        tokio::spawn(async move {
            if let Some(answer) = http::forward(client, upstream, headers, body, bound).await {
                let _ = events.send(Event::Upstream { key, answer });
            }
        });
        outbound
    }

    /// A carried body, waking the worker when its connection takes bytes
    /// the worker waits on.
    pub(super) fn outbound(events: &mpsc::UnboundedSender<Event>) -> (Outbound, OutBody) {
        let events = events.clone();
        Outbound::channel(Box::new(move || {
            let _ = events.send(Event::Drained);
        }))
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
fn set_header(headers: &mut Headers, name: &str, value: &str) {
    let headers = &mut headers.0;
    headers.retain(|(n, _)| !n.0.eq_ignore_ascii_case(name.as_bytes()));
    headers.push((ByteString::from(name), ByteString::from(value)));
}

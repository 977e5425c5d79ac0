//! Pending callouts: how each will be answered, and answers a scenario
//! step gives by hand.

use crate::model::{CalloutFailure, GrpcCalloutAnswer, HttpCalloutAnswer};

use super::{Event, HeaderMap, Host};

/// How a pending callout will be answered.
#[derive(Clone, Debug)]
pub(crate) enum HttpPlan {
    Respond {
        headers: HeaderMap,
        body: Vec<u8>,
        trailers: HeaderMap,
    },
    Fail {
        code: u32,
        reason: &'static str,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct PendingHttp {
    /// What the next scheduled answer event delivers.
    pub plan: HttpPlan,
    /// A cluster answer marked `hold`: nothing is delivered (but a timeout)
    /// until a step answers it ([`Host::answer_held_http`]).
    pub held: Option<HeldHttp>,
}

#[derive(Clone, Debug)]
pub(crate) struct HeldHttp {
    pub cluster: String,
    /// When the filter's timeout fires (`None`: no timeout).
    pub deadline: Option<u64>,
    /// When the call went out.
    pub sent_ms: u64,
    /// The cluster's scripted answer, given when the step names none.
    pub scripted: Option<HttpCalloutAnswer>,
}

#[derive(Clone, Debug)]
pub(crate) enum GrpcPlan {
    Answer(GrpcCalloutAnswer),
    /// The call fails. `router_reply`: the async client's router answered
    /// it with a local reply (in gRPC form, trailers-only: the stream's
    /// metadata callbacks see it); otherwise the stream was reset.
    Fail {
        code: u32,
        reason: &'static str,
        router_reply: bool,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct PendingGrpc {
    pub streaming: bool,
    pub plan: GrpcPlan,
    pub local_closed: bool,
}

/// When a scripted callout resolves, given its delay, failure mode and the
/// filter's timeout (0 = none): `(after_ms, Some(failure))` or `(after_ms, None)`.
pub(crate) fn resolve_timing(
    delay_ms: u64,
    failure: Option<CalloutFailure>,
    timeout_ms: u32,
) -> (u64, Option<CalloutFailure>) {
    let timeout = u64::from(timeout_ms);
    match failure {
        Some(CalloutFailure::Timeout) => (
            if timeout > 0 { timeout } else { delay_ms },
            Some(CalloutFailure::Timeout),
        ),
        Some(CalloutFailure::Reset | CalloutFailure::Unreachable)
            if timeout > 0 && delay_ms >= timeout =>
        {
            (timeout, Some(CalloutFailure::Timeout))
        }
        Some(failure) => (delay_ms, Some(failure)),
        None if timeout > 0 && delay_ms >= timeout => (timeout, Some(CalloutFailure::Timeout)),
        None => (delay_ms, None),
    }
}

/// The router's local reply to an async http call: status, a plain-text body.
fn router_reply(status: u16, body: &str) -> HttpPlan {
    let mut headers = HeaderMap::default();
    headers.add(b":status", status.to_string().as_bytes());
    headers.add(b"content-length", body.len().to_string().as_bytes());
    headers.add(b"content-type", b"text/plain");
    HttpPlan::Respond {
        headers,
        body: body.as_bytes().to_vec(),
        trailers: HeaderMap::default(),
    }
}

/// The header the router puts on an upstream's response headers
/// (`Filter::onUpstreamHeaders`); the async client's router does it too:
/// `AsyncClientImpl` builds its `Router::FilterConfig` without
/// `suppress_envoy_headers` (source/common/http/async_client_impl.cc).
pub(crate) const UPSTREAM_SERVICE_TIME: &[u8] = b"x-envoy-upstream-service-time";

/// What the filter receives for an http callout answered by `answer`
/// (`None`: the cluster has no answer left, the call is reset), and after
/// how many virtual ms, given the filter's timeout; `sent_ms_ago`: how long
/// ago the call went out (for the service time of an upstream answer).
pub(crate) fn http_plan(
    answer: Option<&HttpCalloutAnswer>,
    timeout_ms: u32,
    sent_ms_ago: u64,
) -> (u64, HttpPlan) {
    let (delay, failure) = answer.map_or((0, Some(CalloutFailure::Reset)), |a| {
        (a.delay_ms, a.failure)
    });
    let (after, failure) = resolve_timing(delay, failure, timeout_ms);
    let plan = match (failure, answer) {
        // Envoy's async client gets the router's local reply, an ordinary
        // response (Router::Filter::onUpstreamTimeout, onNoHealthyHost).
        (Some(CalloutFailure::Timeout), _) => timed_out(),
        (Some(CalloutFailure::Unreachable), _) => router_reply(503, "no healthy upstream"),
        // Envoy's onHttpCallFailure: WasmResult::BrokenConnection, "reset".
        (Some(CalloutFailure::Reset), _) | (None, None) => HttpPlan::Fail {
            code: 11,
            reason: "reset",
        },
        (None, Some(a)) => {
            let mut headers = HeaderMap::default();
            headers.add(b":status", a.status.to_string().as_bytes());
            for (k, v) in a.headers.iter() {
                headers.add(k, v);
            }
            let service_ms = sent_ms_ago + after;
            headers.replace(UPSTREAM_SERVICE_TIME, service_ms.to_string().as_bytes());
            HttpPlan::Respond {
                headers,
                body: a.body.concat(),
                trailers: HeaderMap::from_headers(&a.trailers),
            }
        }
    };
    (after, plan)
}

impl Host {
    /// Registers an http callout: answered as its cluster scripts it, or,
    /// for an answer marked `hold`, only when a step answers it (the
    /// filter's timeout still fires on its own, as the router's timer would).
    pub(crate) fn pend_http(
        &mut self,
        token: u32,
        cluster: &str,
        answer: Option<HttpCalloutAnswer>,
        timeout_ms: u32,
    ) {
        let (after, plan) = http_plan(answer.as_ref(), timeout_ms, 0);
        if !answer.as_ref().is_some_and(|a| a.hold) {
            self.schedule(self.now_ms + after, Event::HttpAnswer { token });
            self.http_pending
                .insert(token, PendingHttp { plan, held: None });
            return;
        }
        let deadline = (timeout_ms > 0).then(|| self.now_ms + u64::from(timeout_ms));
        let sent_ms = self.now_ms;
        if let Some(at) = deadline {
            self.schedule(at, Event::HttpAnswer { token });
        }
        let held = HeldHttp {
            cluster: cluster.to_string(),
            deadline,
            sent_ms,
            scripted: answer,
        };
        // Until a step answers, the only thing that can arrive is the timeout.
        let plan = timed_out();
        self.http_pending.insert(
            token,
            PendingHttp {
                plan,
                held: Some(held),
            },
        );
    }

    /// True while any held http callout waits for its answer.
    /// True while callout `token` waits for an answer step.
    pub(crate) fn is_held_http(&self, token: u32) -> bool {
        self.http_pending
            .get(&token)
            .is_some_and(|p| p.held.is_some())
    }

    pub(crate) fn has_held_http(&self) -> bool {
        self.http_pending.values().any(|p| p.held.is_some())
    }

    /// Held http callouts to `cluster` still waiting, oldest first.
    pub(crate) fn held_http(&self, cluster: &str) -> Vec<u32> {
        let mut tokens: Vec<u32> = self
            .http_pending
            .iter()
            .filter(|(_, p)| p.held.as_ref().is_some_and(|h| h.cluster == cluster))
            .map(|(token, _)| *token)
            .collect();
        tokens.sort_unstable();
        tokens
    }

    /// Answers a held callout now (plus the answer's own `delay_ms`), with
    /// `answer` or else the cluster's scripted one; an answer that would
    /// arrive after the filter's timeout leaves the timeout to fire. False
    /// when `token` is not a held callout.
    pub(crate) fn answer_held_http(
        &mut self,
        token: u32,
        answer: Option<&HttpCalloutAnswer>,
    ) -> bool {
        let now = self.now_ms;
        let Some(pending) = self.http_pending.get_mut(&token) else {
            return false;
        };
        let Some(held) = pending.held.take() else {
            return false;
        };
        let sent_ms_ago = now.saturating_sub(held.sent_ms);
        let (after, plan) = http_plan(answer.or(held.scripted.as_ref()), 0, sent_ms_ago);
        let at = now + after;
        if held.deadline.is_some_and(|deadline| at >= deadline) {
            return true;
        }
        pending.plan = plan;
        self.schedule(at, Event::HttpAnswer { token });
        true
    }
}

/// The router's answer when the filter's timeout passes first: its 504
/// local reply (Router::Filter::onUpstreamTimeout).
fn timed_out() -> HttpPlan {
    router_reply(504, "upstream request timeout")
}

/// gRPC's percent-encoding of `grpc-message`: controls, non-ASCII and `%`.
pub(crate) const GRPC_MESSAGE_ENCODING: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b'%');

/// The metadata a gRPC stream callout delivers, as Envoy's async gRPC
/// client hands it on (`AsyncStreamImpl::onHeaders` / `onTrailers` in
/// source/common/grpc/async_client_impl.cc): the initial metadata is the
/// server's response headers, so `:status: 200` and
/// `content-type: application/grpc` come first, then the scripted ones;
/// the trailing metadata is the server's trailers, `grpc-status` (and a
/// percent-encoded `grpc-message` when there is one) then the scripted
/// ones. An answer with neither messages nor initial metadata is a
/// trailers-only response: Envoy still calls the initial-metadata callback,
/// with an empty map, and the trailing map holds the whole header block.
/// `service_ms`: the router's service time for an upstream's answer
/// (`None` for the router's own reply), the last of the response headers.
/// Returns (initial, trailing).
pub(crate) fn grpc_stream_metadata(
    answer: &GrpcCalloutAnswer,
    service_ms: Option<u64>,
) -> (HeaderMap, HeaderMap) {
    let mut headers = HeaderMap::default();
    headers.add(b":status", b"200");
    headers.add(b"content-type", b"application/grpc");
    let mut trailers = HeaderMap::default();
    trailers.add(b"grpc-status", answer.status.to_string().as_bytes());
    if !answer.message.is_empty() {
        let message = percent_encoding::utf8_percent_encode(&answer.message, GRPC_MESSAGE_ENCODING);
        trailers.add(b"grpc-message", message.to_string().as_bytes());
    }
    let put = |map: &mut HeaderMap, scripted: &crate::model::Headers| {
        for (k, v) in scripted.iter() {
            if map.get(k).is_some() {
                map.replace(k, v);
            } else {
                map.add(k, v);
            }
        }
    };
    put(&mut headers, &answer.initial_metadata);
    put(&mut trailers, &answer.trailing_metadata);
    let service = service_ms.map(|ms| ms.to_string());
    // The answer's own status decides the close: scripted metadata does not
    // contradict it.
    trailers.replace(b"grpc-status", answer.status.to_string().as_bytes());
    if answer.messages.is_empty() && answer.initial_metadata.is_empty() {
        for (k, v) in trailers.iter() {
            headers.add(k, v);
        }
        if let Some(ms) = &service {
            headers.replace(UPSTREAM_SERVICE_TIME, ms.as_bytes());
        }
        return (HeaderMap::default(), headers);
    }
    if let Some(ms) = &service {
        headers.replace(UPSTREAM_SERVICE_TIME, ms.as_bytes());
    }
    (headers, trailers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Headers;

    fn pairs(map: &HeaderMap) -> Vec<(String, String)> {
        map.iter()
            .map(|(k, v)| {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (text(k), text(v))
            })
            .collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_normal_answer_has_headers_then_trailers() {
        let answer = GrpcCalloutAnswer {
            messages: vec!["m".into()],
            initial_metadata: Headers::from_pairs([("x-i", "1")]),
            trailing_metadata: Headers::from_pairs([("x-t", "2")]),
            ..GrpcCalloutAnswer::default()
        };
        let (initial, trailing) = grpc_stream_metadata(&answer, None);
        assert_eq!(
            pairs(&initial),
            owned(&[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("x-i", "1")
            ])
        );
        assert_eq!(
            pairs(&trailing),
            owned(&[("grpc-status", "0"), ("x-t", "2")])
        );
    }

    #[test]
    fn an_answer_without_messages_is_trailers_only() {
        let answer = GrpcCalloutAnswer {
            status: 5,
            message: "no such key: 100%".into(),
            ..GrpcCalloutAnswer::default()
        };
        let (initial, trailing) = grpc_stream_metadata(&answer, None);
        assert!(initial.is_empty());
        assert_eq!(
            pairs(&trailing),
            owned(&[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "5"),
                ("grpc-message", "no such key: 100%25"),
            ])
        );
    }
}

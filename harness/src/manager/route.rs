//! The route's timeout, as Envoy's router keeps it: it starts when the
//! router has the whole request (`Router::Filter::onRequestComplete` arms
//! `response_timeout_`) and ends with the upstream's response. When it
//! fires (`onResponseTimeout` → `onUpstreamAbort`) the client gets the
//! router's 504 `upstream request timeout` if no response started, and a
//! reset otherwise (source/common/router/router.cc).

use crate::driver::Harness;
use crate::model::StreamEnd;

use super::reply::{local_reply, upstream_timeout_reply};
use super::{Slot, Stream, Streams};

impl Stream {
    /// When the route's timeout fires for this stream, if it is armed.
    pub(super) fn route_deadline_ms(&self) -> Option<u64> {
        if self.route_timeout_ms == 0 || self.end.is_some() || self.upstream_timed_out {
            return None;
        }
        let complete = self.request_complete_ms?;
        let replied = self.upstream_refused || self.hops.iter().any(|h| h.local_reply.is_some());
        let waiting = if self.response_started {
            self.upstream_open
        } else {
            self.upstream_answer.is_none() && self.router_reply.is_none()
        };
        (waiting && !replied).then_some(complete.saturating_add(self.route_timeout_ms))
    }
}

/// The route's timeout fired for live stream `k`.
pub(crate) fn time_out(filters: &mut [Harness], slots: &[Slot], streams: &mut Streams, k: usize) {
    let stream = &mut streams.live.http[k];
    stream.upstream_timed_out = true;
    if stream.response_started {
        stream.end = Some(StreamEnd::Reset);
        return;
    }
    let last = stream.hops.len() - 1;
    let router = &mut filters[slots[last].vm];
    local_reply(
        router,
        stream,
        last,
        upstream_timeout_reply(),
        "harness",
        false,
    );
}

//! The connection manager's stream idle timeout (`stream_idle_timeout`,
//! 5 min unless the HttpConnectionManager sets one; 0: none). Envoy
//! re-arms it whenever the codec moves the stream: request headers, body
//! or trailers from the client, and response headers, body or trailers
//! going to it (`ActiveStream::resetIdleTimer`). When it fires
//! (`ActiveStream::onIdleTimeout`, source/common/http/conn_manager_impl.cc)
//! the client gets the connection manager's local reply "stream timeout",
//! details `stream_idle_timeout`, through every filter: 408, or 504 once
//! the whole request was received (`Utility::maybeRequestTimeoutCode`). A
//! response already started is reset instead.

use crate::driver::Harness;
use crate::host::{HeaderMap, LocalReplySpec};
use crate::model::StreamEnd;

use super::reply::local_reply;
use super::{Slot, Stream, Streams};

/// Envoy's `stream_idle_timeout` when the HttpConnectionManager sets none.
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 300_000;

/// Which of the worker's own timers fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// The route's timeout (see `route`).
    Route,
    /// The stream idle timeout.
    Idle,
}

impl Stream {
    /// When the idle timeout fires for this stream, if it is armed.
    fn idle_deadline_ms(&self) -> Option<u64> {
        if self.idle_timeout_ms == 0 || self.end.is_some() {
            return None;
        }
        Some(self.last_activity_ms.saturating_add(self.idle_timeout_ms))
    }

    /// The codec moved the stream: the idle timer starts again.
    pub(crate) fn touch(&mut self, now_ms: u64) {
        self.last_activity_ms = self.last_activity_ms.max(now_ms);
    }
}

impl Streams {
    /// The client or the upstream sent on stream `key` at `now_ms`.
    pub(crate) fn touch(&mut self, key: super::StreamHandle, now_ms: u64) {
        if let Some(stream) = self.live_mut(key) {
            stream.touch(now_ms);
        }
    }

    /// The first of the worker's own timers due among the live streams:
    /// (when, stream index, which); a route timeout wins a tie. One pass
    /// over the streams, since the event loop asks on every turn.
    pub(crate) fn next_deadline(&self) -> Option<(u64, usize, Timeout)> {
        let mut first: Option<(u64, usize, Timeout)> = None;
        for (k, s) in self.live.http.iter().enumerate() {
            let due = [
                s.route_deadline_ms().map(|at| (at, Timeout::Route)),
                s.idle_deadline_ms().map(|at| (at, Timeout::Idle)),
            ];
            for (at, which) in due.into_iter().flatten() {
                if first.is_none_or(|(best, _, _)| at < best) {
                    first = Some((at, k, which));
                }
            }
        }
        first
    }
}

/// The idle timeout fired for live stream `k`.
pub(crate) fn time_out(filters: &mut [Harness], slots: &[Slot], streams: &mut Streams, k: usize) {
    let stream = &mut streams.live.http[k];
    if stream.response_started {
        stream.end = Some(StreamEnd::Reset);
        return;
    }
    let whole_request = !stream.request_open;
    stream.idle_timeout_ms = 0;
    let last = stream.hops.len() - 1;
    let manager = &mut filters[slots[last].vm];
    local_reply(
        manager,
        stream,
        last,
        idle_reply(whole_request),
        "harness",
        false,
    );
}

fn idle_reply(whole_request: bool) -> LocalReplySpec {
    LocalReplySpec {
        status: if whole_request { 504 } else { 408 },
        details: "stream_idle_timeout".to_string(),
        body: b"stream timeout".to_vec(),
        headers: HeaderMap::default(),
        grpc_status: -1,
    }
}

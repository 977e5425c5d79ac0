//! Why a stream that cannot move waits: the reason a stalled stream's
//! outcome gives (which filter stopped it and where, or which peer it
//! waits for).

use super::flow::Dir;
use super::{Stream, StreamEnd, StreamHandle, Streams};

/// Ends stream or connection `key` as stalled, saying why it waits.
pub(super) fn stall(streams: &mut Streams, key: StreamHandle, why: &str) {
    if let Some(s) = streams.live.http.iter_mut().find(|s| s.key == key) {
        s.end = Some(StreamEnd::Stalled {
            reason: stall_reason(s, why),
        });
    }
    if let Some(c) = streams.live_connection(key) {
        c.stall(why);
    }
}

fn stall_reason(stream: &Stream, why: &str) -> String {
    let stopped = |dir: Dir| {
        let hops = stream.hops.iter();
        hops.map(move |h| match dir {
            Dir::Request => &h.req,
            Dir::Response => &h.resp,
        })
        .find(|f| !f.ended && (f.stopped_all || f.trailers_paused || f.body_paused))
    };
    let (dir, flow) = match stopped(Dir::Request) {
        Some(flow) => ("request", Some(flow)),
        None => ("response", stopped(Dir::Response)),
    };
    let at = match flow {
        Some(f) if f.stopped_all => "headers (the headers callback returned Pause)",
        Some(f) if f.trailers_paused => "trailers (the trailers callback returned Pause)",
        Some(f) if f.body_paused => "body (the body callback returned Pause at end of stream)",
        _ => return waiting_for_peer(stream, why),
    };
    format!(
        "the {dir} stopped at {at} and {why}; nothing could resume it with proxy_continue_stream"
    )
}

/// A stream no filter holds, waiting for the client or the upstream.
fn waiting_for_peer(stream: &Stream, why: &str) -> String {
    let waits_for = if stream.request_open {
        "the client has not sent the rest of the request (a `send` step with trailers or `end_stream: true` ends it)"
    } else if stream.upstream_open {
        "the upstream has not sent the rest of its response (an `upstream_send` step ends it)"
    } else if !stream.response_started && stream.upstream_answer.is_none() {
        "the upstream holds its answer (a `respond` step gives it)"
    } else {
        "the stream waits at an unknown point"
    };
    format!("{waits_for}, and {why}")
}

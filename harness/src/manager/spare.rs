//! What a collected stream leaves for the next one a worker opens: its hop
//! list, its frame queues and the header maps nothing else still shares,
//! emptied with their capacity kept, the list an exchange's outcomes came
//! in, and the worker's own stream lists when a caller makes a new worker
//! per request (`Harness::exchange`). A worker opens and collects a stream
//! per request, and each would otherwise allocate these anew.

use std::collections::VecDeque;

use super::Stream;
use super::flow::{Frame, Hop, Sent};
use crate::host::HeaderMap;
use crate::model::Outcome;

/// Lists kept at most: enough for the streams a worker has in flight at
/// once in a bench loop, bounded for serve's many.
const MAX_HOP_LISTS: usize = 16;
const MAX_QUEUES: usize = 64;
/// Queues that grew past this many frames (a long streamed body) are
/// dropped rather than kept.
const MAX_QUEUE_FRAMES: usize = 16;
/// A worker's live and finished lists.
const MAX_STREAM_LISTS: usize = 2;
/// Maps kept at most (each stream leaves its request's and response's),
/// and the room of one kept at most: a map that held a huge header block
/// is dropped.
const MAX_MAPS: usize = 16;
const MAX_MAP_BYTES: usize = 16 * 1024;

#[derive(Default)]
pub(crate) struct Spare {
    hop_lists: Vec<Vec<Hop>>,
    queues: Vec<VecDeque<Frame>>,
    stream_lists: Vec<Vec<Stream>>,
    maps: Vec<HeaderMap>,
    /// The list an exchange's outcomes came in, handed back emptied.
    outcome_list: Vec<Outcome>,
}

impl Spare {
    /// An empty hop list, with room from an earlier stream when there is one.
    pub(super) fn hop_list(&mut self) -> Vec<Hop> {
        self.hop_lists.pop().unwrap_or_default()
    }

    /// An empty frame queue, likewise.
    pub(super) fn queue(&mut self) -> VecDeque<Frame> {
        self.queues.pop().unwrap_or_default()
    }

    /// An empty header map, likewise.
    pub(super) fn header_map(&mut self) -> HeaderMap {
        self.maps.pop().unwrap_or_default()
    }

    /// An empty outcome list, likewise.
    pub(super) fn outcome_list(&mut self) -> Vec<Outcome> {
        std::mem::take(&mut self.outcome_list)
    }

    /// Keeps an emptied outcome list's room for the next exchange.
    pub(super) fn keep_outcome_list(&mut self, list: Vec<Outcome>) {
        if list.is_empty() && list.capacity() > self.outcome_list.capacity() {
            self.outcome_list = list;
        }
    }

    /// An empty stream list, likewise.
    pub(super) fn stream_list(&mut self) -> Vec<Stream> {
        self.stream_lists.pop().unwrap_or_default()
    }

    /// Takes an empty stream list's room; a list holding streams stays.
    pub(super) fn keep_stream_list(&mut self, list: &mut Vec<Stream>) {
        if list.is_empty() && list.capacity() > 0 && self.stream_lists.len() < MAX_STREAM_LISTS {
            self.stream_lists.push(std::mem::take(list));
        }
    }

    /// Keeps what `hops` can lend the next stream; drops the rest.
    pub(super) fn keep(&mut self, mut hops: Vec<Hop>) {
        for hop in hops.drain(..) {
            self.keep_queue(hop.req.input);
            self.keep_queue(hop.resp.input);
            for sent in [hop.sent_request, hop.sent_response].into_iter().flatten() {
                self.keep_maps(sent);
            }
        }
        if hops.capacity() > 0 && self.hop_lists.len() < MAX_HOP_LISTS {
            self.hop_lists.push(hops);
        }
    }

    fn keep_maps(&mut self, sent: Sent) {
        for map in std::iter::once(sent.headers).chain(sent.trailers) {
            if self.maps.len() < MAX_MAPS
                && let Some(emptied) = map.into_emptied(MAX_MAP_BYTES)
            {
                self.maps.push(emptied);
            }
        }
    }

    fn keep_queue(&mut self, mut queue: VecDeque<Frame>) {
        let capacity = queue.capacity();
        if capacity > 0 && capacity <= MAX_QUEUE_FRAMES && self.queues.len() < MAX_QUEUES {
            queue.clear();
            self.queues.push(queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_list_and_queues_come_back_empty_with_their_room() {
        let mut spare = Spare::default();
        let mut hops: Vec<Hop> = (0..3).map(|_| Hop::default()).collect();
        hops[0].req.input.push_back(Frame::Data {
            chunk: b"x".to_vec(),
            eos: true,
        });
        for _ in 0..MAX_QUEUE_FRAMES + 1 {
            hops[1].resp.input.push_back(Frame::Data {
                chunk: Vec::new(),
                eos: false,
            });
        }
        spare.keep(hops);
        let list = spare.hop_list();
        assert!(list.is_empty() && list.capacity() >= 3);
        let queue = spare.queue();
        assert!(queue.is_empty() && queue.capacity() >= 1);
        assert_eq!(
            spare.queue().capacity(),
            0,
            "a queue grown past the limit is not kept"
        );
    }

    fn sent(headers: HeaderMap, trailers: Option<HeaderMap>) -> Option<Sent> {
        Some(Sent {
            headers,
            body: Vec::new(),
            trailers,
        })
    }

    #[test]
    fn only_unshared_maps_of_modest_size_are_kept_and_they_come_back_empty() {
        let mut spare = Spare::default();
        let mut own = HeaderMap::default();
        own.add(b":status", b"200");
        let mut shared = HeaderMap::default();
        shared.add(b"x-kept", b"elsewhere");
        let elsewhere = shared.clone();
        let mut huge = HeaderMap::default();
        huge.add(b"x-big", &vec![b'a'; MAX_MAP_BYTES + 1]);
        let hop = Hop {
            sent_request: sent(own, Some(huge)),
            sent_response: sent(shared, None),
            ..Hop::default()
        };
        spare.keep(vec![hop]);
        assert_eq!(
            spare.maps.len(),
            1,
            "the shared and the huge map are dropped"
        );
        assert!(spare.header_map().is_empty());
        assert_eq!(
            elsewhere.get(b"x-kept"),
            Some(&b"elsewhere"[..]),
            "a map still shared is never emptied"
        );
        assert!(spare.header_map().is_empty(), "none left: a new one");
    }
}

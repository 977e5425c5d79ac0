//! What a collected stream leaves for the next one a worker opens: its hop
//! list and its frame queues, emptied with their capacity kept. A worker
//! opens and collects a stream per request, and each would otherwise
//! allocate these anew.

use std::collections::VecDeque;

use super::flow::{Frame, Hop};

/// Lists kept at most: enough for the streams a worker has in flight at
/// once in a bench loop, bounded for serve's many.
const MAX_HOP_LISTS: usize = 16;
const MAX_QUEUES: usize = 64;
/// Queues that grew past this many frames (a long streamed body) are
/// dropped rather than kept.
const MAX_QUEUE_FRAMES: usize = 16;

#[derive(Default)]
pub(crate) struct Spare {
    hop_lists: Vec<Vec<Hop>>,
    queues: Vec<VecDeque<Frame>>,
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

    /// Keeps what `hops` can lend the next stream; drops the rest.
    pub(super) fn keep(&mut self, mut hops: Vec<Hop>) {
        for hop in hops.drain(..) {
            self.keep_queue(hop.req.input);
            self.keep_queue(hop.resp.input);
        }
        if hops.capacity() > 0 && self.hop_lists.len() < MAX_HOP_LISTS {
            self.hop_lists.push(hops);
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
}

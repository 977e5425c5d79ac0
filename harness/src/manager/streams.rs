//! What one worker has live (HTTP streams and TCP connections) and what
//! ended but is not collected yet, found by handle.

use crate::model::ConnectionRecord;

use super::{Connection, Stream, StreamHandle};

/// What is live on one worker: HTTP streams and TCP connections.
#[derive(Default)]
pub(crate) struct Live {
    pub(crate) http: Vec<Stream>,
    pub(crate) tcp: Vec<Connection>,
}

/// The streams and connections of one worker: live ones, and ended ones
/// not yet collected.
#[derive(Default)]
pub(crate) struct Streams {
    pub(super) live: Live,
    pub(super) finished: Vec<Stream>,
    pub(super) finished_tcp: Vec<Connection>,
    pub(super) next_key: u64,
    /// The worker these streams run on (named in their handles).
    pub(crate) worker: usize,
    /// A carried stream (see `handout`) was opened here: from then on the
    /// streams that move are noted, for [`Streams::take_moved`].
    pub(super) carrying: bool,
    /// Streams that moved (a frame ran, input came, they ended) since
    /// [`Streams::take_moved`] was last called.
    pub(super) moved: Vec<StreamHandle>,
    /// What collected streams left for new ones.
    pub(super) spare: super::spare::Spare,
}

impl Streams {
    /// Marks every live carried stream as moved: after a callback that is
    /// not one stream's own frame (a callout answer, a tick, a queue
    /// notification, a timeout), which can move any of them.
    pub(super) fn mark_carried_moved(&mut self) {
        if self.carrying {
            let carried = self.live.http.iter().filter(|s| s.handout.is_some());
            self.moved.extend(carried.map(|s| s.key));
        }
    }

    /// Notes that `key` moved (only once a carried stream exists: nobody
    /// else takes the notes).
    pub(super) fn mark_moved(&mut self, key: StreamHandle) {
        if self.carrying {
            self.moved.push(key);
        }
    }

    /// The streams that moved since the last call, each once: a caller
    /// carrying streams between sockets looks only at these.
    pub(crate) fn take_moved(&mut self) -> Vec<StreamHandle> {
        let mut moved = std::mem::take(&mut self.moved);
        moved.sort_unstable_by_key(|k| k.id);
        moved.dedup();
        moved
    }

    pub(super) fn is_live(&self, key: StreamHandle) -> bool {
        self.live.http.iter().any(|s| s.key == key) || self.live.tcp.iter().any(|c| c.key == key)
    }

    pub(super) fn live_mut(&mut self, key: StreamHandle) -> Option<&mut Stream> {
        self.live
            .http
            .iter_mut()
            .find(|s| s.key == key && s.end.is_none())
    }

    /// The stream `key` names, live or ended and not collected yet.
    pub(super) fn any_mut(&mut self, key: StreamHandle) -> Option<&mut Stream> {
        let live = self.live.http.iter_mut();
        live.chain(self.finished.iter_mut()).find(|s| s.key == key)
    }

    /// A live connection, if `key` names one.
    pub(super) fn live_connection(&mut self, key: StreamHandle) -> Option<&mut Connection> {
        self.live.tcp.iter_mut().find(|c| c.key == key)
    }

    /// A handle for a new stream or connection.
    pub(super) fn new_key(&mut self) -> StreamHandle {
        let key = StreamHandle {
            worker: self.worker,
            id: self.next_key,
        };
        self.next_key += 1;
        key
    }

    /// Takes an ended stream's record.
    pub(crate) fn take_finished(&mut self, key: StreamHandle) -> Option<Stream> {
        let at = self.finished.iter().position(|s| s.key == key)?;
        Some(self.finished.remove(at))
    }

    /// No streams yet, with what earlier ones left (see [`Streams::take_spare`]).
    pub(crate) fn with_spare(mut spare: super::spare::Spare) -> Self {
        Streams {
            live: Live {
                http: spare.stream_list(),
                tcp: Vec::new(),
            },
            finished: spare.stream_list(),
            spare,
            ..Streams::default()
        }
    }

    /// What collected streams left, for streams opened elsewhere later,
    /// with these streams' own lists when they are empty.
    pub(crate) fn take_spare(&mut self) -> super::spare::Spare {
        let mut spare = std::mem::take(&mut self.spare);
        spare.keep_stream_list(&mut self.live.http);
        spare.keep_stream_list(&mut self.finished);
        spare
    }

    /// An empty outcome list (a kept one's room reused).
    pub(crate) fn take_outcome_list(&mut self) -> Vec<crate::model::Outcome> {
        self.spare.outcome_list()
    }

    /// Keeps an exchange's outcome list, emptied by its caller, for the
    /// next exchange here.
    pub(crate) fn keep_outcome_list(&mut self, list: Vec<crate::model::Outcome>) {
        self.spare.keep_outcome_list(list);
    }

    /// Hands a collected stream's hop list and frame queues to the next
    /// stream opened here.
    pub(crate) fn recycle(&mut self, stream: Stream) {
        self.spare.keep(stream.hops);
    }

    /// What connection `key` carried so far (live or closed), if it is one.
    pub(crate) fn connection_record(&self, key: StreamHandle) -> Option<ConnectionRecord> {
        let all = self.live.tcp.iter().chain(&self.finished_tcp);
        all.into_iter()
            .find(|c| c.key == key)
            .map(|c| c.record.clone())
    }

    /// Takes a closed connection's record.
    pub(crate) fn take_finished_connection(&mut self, key: StreamHandle) -> Option<Connection> {
        let at = self.finished_tcp.iter().position(|c| c.key == key)?;
        Some(self.finished_tcp.remove(at))
    }

    /// Every stream (live or ended) that keeps its own log lines.
    pub(crate) fn log_keepers(&mut self) -> impl Iterator<Item = &mut Stream> {
        self.live
            .http
            .iter_mut()
            .chain(self.finished.iter_mut())
            .filter(|s| s.keep_logs)
    }

    /// Every connection (live or closed) that keeps its own log lines.
    pub(crate) fn connection_log_keepers(&mut self) -> impl Iterator<Item = &mut Connection> {
        self.live.tcp.iter_mut().chain(self.finished_tcp.iter_mut())
    }

    /// The context ids, by chain position, of every stream and connection
    /// (and of `also`), for telling whose a context is.
    pub(super) fn context_lists(&self, also: Vec<u32>) -> Vec<Vec<u32>> {
        let http = self.live.http.iter().chain(&self.finished);
        let http = http.map(|s| s.hops.iter().map(|h| h.context_id).collect());
        let tcp = self.live.tcp.iter().chain(&self.finished_tcp);
        let tcp = tcp.map(|c| c.hops.iter().map(|h| h.context_id).collect());
        http.chain(tcp).chain(std::iter::once(also)).collect()
    }

    /// True when `key` names a stream or connection that ended and is not collected yet.
    pub(crate) fn is_finished(&self, key: StreamHandle) -> bool {
        self.finished.iter().any(|s| s.key == key) || self.finished_tcp.iter().any(|c| c.key == key)
    }

    /// True when `key` names a stream or connection that is live or ended
    /// but uncollected.
    pub(crate) fn knows(&self, key: StreamHandle) -> bool {
        self.is_live(key)
            || self.finished.iter().any(|s| s.key == key)
            || self.finished_tcp.iter().any(|c| c.key == key)
    }
}

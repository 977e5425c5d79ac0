//! N workers, the way a multi-worker Envoy runs a plugin: the configured
//! VM is cloned into every worker, each with its own root context, tick
//! timer and streams; shared data, queues and metrics are shared by all
//! ([`SharedHost`]); a queue's `on_queue_ready` goes to the root context
//! of the worker that registered it. Requests are spread round robin
//! unless a worker is named.
//!
//! Each worker runs a [`Chain`] (one plugin is a chain of one). Workers
//! keep their own virtual clocks: time passes on a worker while its
//! stream waits; before a worker takes a request it catches up with the
//! others, and [`Workers::advance`] moves all of them in step, so a tick
//! on one worker and the queue notification it causes on another happen
//! at the same virtual time.

use crate::chain::{Chain, ChainOutcome, merge_before, merge_into};
use crate::driver::FilterModule;
use crate::error::HarnessError;
use crate::host::SharedHost;
use crate::manager::{StreamHandle, StreamInput};
use crate::model::{
    Exchange, HarnessConfig, HttpCalloutAnswer, Outcome, StreamEnd, UpstreamResponse,
};

/// A simulated Envoy with several workers.
pub struct Workers {
    workers: Vec<Chain>,
    next: usize,
    shared: SharedHost,
}

/// What one exchange on one worker produced.
#[derive(Clone, Debug)]
pub struct WorkerOutcome {
    /// The worker that served the request.
    pub worker: usize,
    /// Its chain's outcome. `chain.outcome` also holds what this worker
    /// did first to catch up with the others' time (before the exchange's
    /// own lines) and what other workers did after it (queue
    /// notifications it caused); `chain.filters` only the exchange.
    pub chain: ChainOutcome,
}

impl Workers {
    /// `count` workers, each starting its own VM per plugin (start-up runs
    /// once per worker, as Envoy configures every worker's clone).
    pub fn new(
        plugins: &[(FilterModule, HarnessConfig)],
        count: usize,
    ) -> Result<Workers, HarnessError> {
        Self::with_shared(plugins, count, SharedHost::new())
    }

    /// Like [`Workers::new`], sharing `shared` with other harnesses.
    pub fn with_shared(
        plugins: &[(FilterModule, HarnessConfig)],
        count: usize,
        shared: SharedHost,
    ) -> Result<Workers, HarnessError> {
        if count == 0 {
            return Err(HarnessError::Usage(
                "an Envoy needs at least one worker".to_string(),
            ));
        }
        // Each plugin's canary runs once, before the first worker's VMs.
        let workers = (0..count)
            .map(|worker| Chain::build(plugins, &shared, worker == 0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Workers {
            workers,
            next: 0,
            shared,
        })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// One worker's chain.
    pub fn worker(&self, index: usize) -> Option<&Chain> {
        self.workers.get(index)
    }

    /// One worker's chain, mutably.
    pub fn worker_mut(&mut self, index: usize) -> Option<&mut Chain> {
        self.workers.get_mut(index)
    }

    /// The state all workers share.
    pub fn shared(&self) -> &SharedHost {
        &self.shared
    }

    /// The latest virtual time among the workers.
    pub fn now_ms(&self) -> u64 {
        self.workers.iter().map(Chain::now_ms).max().unwrap_or(0)
    }

    /// Runs an exchange on the next worker, round robin.
    pub fn exchange(&mut self, exchange: &Exchange) -> Result<WorkerOutcome, HarnessError> {
        let worker = self.next;
        self.next = (self.next + 1) % self.workers.len();
        self.exchange_on(worker, exchange)
    }

    /// Runs an exchange on worker `worker` (0-based).
    pub fn exchange_on(
        &mut self,
        worker: usize,
        exchange: &Exchange,
    ) -> Result<WorkerOutcome, HarnessError> {
        let ((), chain) = self.on_worker(worker, |chain| Ok(((), chain.exchange(exchange)?)))?;
        Ok(WorkerOutcome { worker, chain })
    }

    /// Opens a stream on worker `worker` (round robin when `None`) and runs
    /// it until it waits (see [`Chain::open`]).
    /// `request_ends` false: the client sends the rest later ([`Workers::send`]).
    pub fn open(
        &mut self,
        worker: Option<usize>,
        exchange: &Exchange,
        upstream: Option<UpstreamResponse>,
        request_ends: bool,
    ) -> Result<(usize, StreamHandle, ChainOutcome), HarnessError> {
        let worker = match worker {
            Some(w) => w,
            None => {
                let w = self.next;
                self.next = (self.next + 1) % self.workers.len();
                w
            }
        };
        let (key, outcome) = self.on_worker(worker, |chain| {
            Ok(chain.open_stream(exchange, upstream, request_ends))
        })?;
        Ok((worker, key, outcome))
    }

    /// Gives a stream on `worker` its upstream answer (see [`Chain::respond`]).
    pub fn respond(
        &mut self,
        worker: usize,
        key: StreamHandle,
        answer: UpstreamResponse,
    ) -> Result<ChainOutcome, HarnessError> {
        self.on_worker(worker, |chain| Ok(((), chain.respond(key, answer)?)))
            .map(|(_, o)| o)
    }

    /// The client or the upstream acts on a stream on `worker` (see [`Chain::send`]).
    pub fn send(
        &mut self,
        worker: usize,
        key: StreamHandle,
        input: StreamInput,
    ) -> Result<ChainOutcome, HarnessError> {
        self.on_worker(worker, |chain| Ok(((), chain.send(key, input)?)))
            .map(|(_, o)| o)
    }

    /// Answers the `nth` held callout to `cluster` on `worker` (see
    /// [`Chain::answer_callout`]).
    pub fn answer_callout(
        &mut self,
        worker: usize,
        cluster: &str,
        nth: usize,
        answer: Option<&HttpCalloutAnswer>,
    ) -> Result<ChainOutcome, HarnessError> {
        self.on_worker(worker, |chain| {
            Ok(((), chain.answer_callout(cluster, nth, answer)?))
        })
        .map(|(_, o)| o)
    }

    /// Runs until a stream on `worker` ends (see [`Chain::finish`]).
    pub fn finish(
        &mut self,
        worker: usize,
        key: StreamHandle,
    ) -> Result<ChainOutcome, HarnessError> {
        self.on_worker(worker, |chain| Ok(((), chain.finish(key)?)))
            .map(|(_, o)| o)
    }

    /// Runs `f` on one worker the way Envoy's workers share time: the
    /// worker first catches up with the others' time (its own ticks fire),
    /// and afterwards the other workers run what `f` made ready for them
    /// (queue notifications, callouts due), at their own current time.
    fn on_worker<T>(
        &mut self,
        worker: usize,
        f: impl FnOnce(&mut Chain) -> Result<(T, ChainOutcome), HarnessError>,
    ) -> Result<(T, ChainOutcome), HarnessError> {
        let count = self.workers.len();
        if worker >= count {
            return Err(HarnessError::Usage(format!(
                "worker {worker} does not exist: this Envoy has {count} worker(s), numbered from 0"
            )));
        }
        let now = self.now_ms();
        let chain = &mut self.workers[worker];
        let lag = now.saturating_sub(chain.now_ms());
        let catch_up = (lag > 0).then(|| chain.advance(lag)).transpose()?;
        let (value, mut result) = f(chain)?;
        if let Some(before) = catch_up {
            merge_before(&mut result.outcome, before.outcome);
        }
        for (index, other) in self.workers.iter_mut().enumerate() {
            if index != worker {
                let background = other.advance(0)?;
                merge_into(&mut result.outcome, background.outcome);
            }
        }
        Ok((value, result))
    }

    /// Advances virtual time by `ms` on every worker, in step: the
    /// workers move together from one due event to the next, so what one
    /// worker's timer causes on another (a queue notification) happens at
    /// the same virtual time. Returns each worker's outcome.
    pub fn advance(&mut self, ms: u64) -> Result<Vec<ChainOutcome>, HarnessError> {
        let target = self.now_ms().saturating_add(ms);
        let mut outcomes: Vec<Option<ChainOutcome>> = vec![None; self.workers.len()];
        loop {
            let step = self
                .workers
                .iter()
                .filter_map(Chain::next_event_at)
                .min()
                .map_or(target, |at| at.clamp(self.now_ms(), target));
            for (index, chain) in self.workers.iter_mut().enumerate() {
                let lag = step.saturating_sub(chain.now_ms());
                let outcome = chain.advance(lag)?;
                match &mut outcomes[index] {
                    Some(acc) => {
                        merge_into(&mut acc.outcome, outcome.outcome);
                        for (a, b) in acc.filters.iter_mut().zip(outcome.filters) {
                            merge_into(a, b);
                        }
                    }
                    slot => *slot = Some(outcome),
                }
            }
            if step >= target {
                break;
            }
        }
        // Notifications one worker posted to an earlier one in this last step.
        for (index, chain) in self.workers.iter_mut().enumerate() {
            let outcome = chain.advance(0)?;
            if let Some(acc) = &mut outcomes[index] {
                merge_into(&mut acc.outcome, outcome.outcome);
                for (a, b) in acc.filters.iter_mut().zip(outcome.filters) {
                    merge_into(a, b);
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .flatten()
            .map(|mut o| {
                o.outcome.elapsed_ms = ms;
                o.outcome.end = StreamEnd::NoStream;
                o
            })
            .collect())
    }

    /// [`Workers::advance`] with every worker's outcome merged, in worker order.
    pub fn advance_all(&mut self, ms: u64) -> Result<Outcome, HarnessError> {
        let mut outcomes = self.advance(ms)?.into_iter();
        let mut merged = outcomes.next().map(|o| o.outcome).unwrap_or_default();
        for more in outcomes {
            merge_into(&mut merged, more.outcome);
        }
        Ok(merged)
    }
}

//! One simulated Envoy: N workers, each running the same HTTP filter chain
//! of one or more plugins, the way a multi-worker Envoy runs them.
//!
//! - The configured VMs are cloned into every worker, each with its own
//!   root contexts, tick timers and streams; shared data, queues and
//!   metrics are shared by all ([`SharedHost`]); a queue's `on_queue_ready`
//!   goes to the root context of the worker that registered it.
//! - Plugins with Envoy's VM key (vm_id, VM configuration, code) share one
//!   VM per worker, with root contexts 1, 2, ... in configuration order.
//! - Many streams live at once on each worker; a [`StreamHandle`] drives
//!   one event at a time ([`Envoy::open`], [`Envoy::send`],
//!   [`Envoy::finish`]) while others come and go.
//! - Workers keep their own virtual clocks: time passes on a worker while
//!   its stream waits; before a worker takes a request it catches up with
//!   the others, and [`Envoy::advance`] moves all of them in step, so a
//!   tick on one worker and the queue notification it causes on another
//!   happen at the same virtual time.
//!
//! One plugin on one worker is also [`crate::Harness`], the short form.

pub use crate::driver::{DEFAULT_MAX_EVENTS_PER_STEP, DEFAULT_STEP_WALL_BUDGET_MS};

use crate::chain::{Chain, EnvoyOutcome, HeldCallout};
use crate::driver::{FilterModule, Harness};
use crate::error::HarnessError;
use crate::host::SharedHost;
use crate::manager::{Forwarded, QueuedBytes, StreamHandle, StreamInput};
use crate::model::{
    ConnectionSpec, Exchange, HarnessConfig, HttpCalloutAnswer, HttpMessage, Outcome, Properties,
    StreamEnd, UpstreamResponse,
};

/// A simulated Envoy: workers x filter chain x plugins.
pub struct Envoy {
    workers: Vec<Chain>,
    next: usize,
    shared: SharedHost,
}

/// How an [`Envoy`] is configured: its plugins in chain order, its worker
/// count (default 1) and the shared state (default: its own).
#[derive(Default)]
pub struct EnvoyBuilder {
    plugins: Vec<(FilterModule, HarnessConfig)>,
    workers: Option<usize>,
    shared: Option<SharedHost>,
    lean: bool,
}

impl EnvoyBuilder {
    /// Adds a plugin at the end of the filter chain.
    pub fn plugin(mut self, module: impl Into<FilterModule>, config: HarnessConfig) -> Self {
        self.plugins.push((module.into(), config));
        self
    }

    /// Adds plugins at the end of the filter chain, in order.
    pub fn plugins(mut self, plugins: &[(FilterModule, HarnessConfig)]) -> Self {
        self.plugins.extend_from_slice(plugins);
        self
    }

    /// The number of workers (each runs the whole chain).
    pub fn workers(mut self, count: usize) -> Self {
        self.workers = Some(count);
        self
    }

    /// Shares shared data, queues and metrics with other Envoys (as the
    /// workers of one process share them).
    pub fn shared(mut self, shared: SharedHost) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Step outcomes carry only what a caller serving traffic reads: log
    /// lines, traps, failure policies, how streams end and the response's
    /// status. Metric snapshots (read them from [`SharedHost::metrics`]),
    /// hostcall counts, callout records and copies of the messages
    /// (`upstream_request`, the response's headers and body) are left out:
    /// what left the chain is read as it leaves, from the hand-out of a
    /// carried stream. A step costs nothing per metric sample or header
    /// kept (`harness serve` runs this way).
    pub fn lean(mut self) -> Self {
        self.lean = true;
        self
    }

    /// Starts every worker's VMs (start-up runs once per worker, as Envoy
    /// configures every worker's clone; each plugin's canary once, first).
    pub fn build(self) -> Result<Envoy, HarnessError> {
        let count = self.workers.unwrap_or(1);
        if count == 0 {
            return Err(HarnessError::Usage(
                "an Envoy needs at least one worker".to_string(),
            ));
        }
        if self.plugins.is_empty() {
            return Err(HarnessError::Usage(
                "an Envoy needs at least one plugin in its filter chain".to_string(),
            ));
        }
        let shared = self.shared.unwrap_or_default();
        let workers = (0..count)
            .map(|worker| Chain::build(&self.plugins, &shared, worker, self.lean))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Envoy {
            workers,
            next: 0,
            shared,
        })
    }
}

impl Envoy {
    /// An Envoy to configure: `Envoy::builder().plugin(module, config).workers(2).build()?`.
    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder::default()
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The state all workers share.
    pub fn shared(&self) -> &SharedHost {
        &self.shared
    }

    /// The latest virtual time among the workers.
    pub fn now_ms(&self) -> u64 {
        self.workers.iter().map(Chain::now_ms).max().unwrap_or(0)
    }

    /// Worker `worker`'s VMs, in order of first use by the chain (plugins
    /// sharing a VM appear once); empty for a worker that does not exist.
    pub fn vms(&self, worker: usize) -> &[Harness] {
        self.workers.get(worker).map_or(&[], Chain::filters)
    }

    /// The VM of chain position `position` on `worker`, mutably (to set
    /// properties or clusters).
    pub fn plugin_mut(&mut self, worker: usize, position: usize) -> Option<&mut Harness> {
        self.workers.get_mut(worker)?.filter_mut(position)
    }

    /// The root context id of each chain position in its VM on `worker`.
    pub fn root_ids(&self, worker: usize) -> Vec<u32> {
        self.workers
            .get(worker)
            .map(Chain::root_ids)
            .unwrap_or_default()
    }

    /// Start-up of every worker's every VM, merged in order.
    pub fn startup(&self) -> Outcome {
        let mut all = self
            .workers
            .iter()
            .flat_map(|chain| chain.filters().iter().map(|f| f.startup().clone()));
        let mut merged = all.next().unwrap_or_default();
        for more in all {
            merged.absorb(more);
        }
        merged
    }

    fn round_robin(&mut self) -> usize {
        let worker = self.next;
        self.next = (self.next + 1) % self.workers.len();
        worker
    }

    /// Runs an exchange to its end on the next worker, round robin.
    pub fn exchange(&mut self, exchange: &Exchange) -> Result<EnvoyOutcome, HarnessError> {
        let worker = self.round_robin();
        self.exchange_on(worker, exchange)
    }

    /// Runs an exchange to its end on worker `worker` (0-based). Other
    /// live streams move meanwhile as their events come due.
    pub fn exchange_on(
        &mut self,
        worker: usize,
        exchange: &Exchange,
    ) -> Result<EnvoyOutcome, HarnessError> {
        self.on_worker(worker, |chain| chain.exchange(exchange))
    }

    /// Opens a stream on the next worker and runs it (and whatever else is
    /// due now) until it waits: for a callout, a timer, or its upstream
    /// answer. `upstream`: the answer the upstream gives once the whole
    /// request reached it; `None` waits for [`Envoy::respond`].
    pub fn open(
        &mut self,
        exchange: &Exchange,
        upstream: Option<UpstreamResponse>,
    ) -> Result<(StreamHandle, EnvoyOutcome), HarnessError> {
        self.open_stream(None, exchange, upstream, true)
    }

    /// [`Envoy::open`] on `worker` (round robin when `None`);
    /// `request_ends` false: the client sends the rest of the request
    /// later ([`Envoy::send`] with [`StreamInput::Request`]).
    pub fn open_stream(
        &mut self,
        worker: Option<usize>,
        exchange: &Exchange,
        upstream: Option<UpstreamResponse>,
        request_ends: bool,
    ) -> Result<(StreamHandle, EnvoyOutcome), HarnessError> {
        self.open_on(worker, |chain| {
            chain.open_stream(exchange, upstream, request_ends)
        })
    }

    /// Opens a stream on `worker` (round robin when `None`) whose caller
    /// carries the bodies between real sockets, as `harness serve` does:
    /// what leaves the chain at either end is taken as it passes with
    /// [`Envoy::take_forwarded`] and no outcome keeps a body, so bodies of
    /// any size stream through. The upstream answers with
    /// [`StreamInput::Respond`] (and [`StreamInput::Response`] parts);
    /// `request_ends` false: the client's body follows
    /// ([`StreamInput::Request`]).
    pub fn open_carried(
        &mut self,
        worker: Option<usize>,
        exchange: &Exchange,
        request_ends: bool,
    ) -> Result<(StreamHandle, EnvoyOutcome), HarnessError> {
        self.open_on(worker, |chain| chain.open_carried(exchange, request_ends))
    }

    /// What left the chain of a stream opened with [`Envoy::open_carried`]
    /// since the last call (it may have ended, until [`Envoy::poll`]
    /// collects it): towards the upstream and towards the client. `None`
    /// for other streams.
    pub fn take_forwarded(&mut self, key: StreamHandle) -> Option<Forwarded> {
        let chain = self.workers.get_mut(key.worker())?;
        chain.take_forwarded(key)
    }

    /// The streams on every worker that moved since the last call (a frame
    /// ran through a filter, input came, they ended), each once; noted on a
    /// worker once a carried stream ([`Envoy::open_carried`]) was opened there. A caller carrying streams between sockets
    /// asks only these for [`Envoy::take_forwarded`], [`Envoy::queued_bytes`]
    /// and [`Envoy::poll`].
    pub fn take_moved(&mut self) -> Vec<StreamHandle> {
        self.workers
            .iter_mut()
            .flat_map(Chain::take_moved)
            .collect()
    }

    /// The body bytes a carried stream holds outside its filters' own
    /// buffers (see [`QueuedBytes`]): the caller stops reading a peer while
    /// these and its own buffers reach the limit, as Envoy's watermarks do.
    pub fn queued_bytes(&mut self, key: StreamHandle) -> QueuedBytes {
        self.workers
            .get_mut(key.worker())
            .map(|chain| chain.queued_bytes(key))
            .unwrap_or_default()
    }

    /// Opens a TCP connection on `worker` (round robin when `None`)
    /// through the chain's plugins as network filters, and runs it until it
    /// waits for bytes: each filter's on_new_connection, then tcp_proxy's
    /// connect. Drive it with [`Envoy::send`] ([`StreamInput::Downstream`],
    /// [`StreamInput::Upstream`], resets) and [`Envoy::finish`], which
    /// runs until it closes.
    pub fn connect(
        &mut self,
        worker: Option<usize>,
        spec: &ConnectionSpec,
        properties: &Properties,
    ) -> Result<(StreamHandle, EnvoyOutcome), HarnessError> {
        self.open_on(worker, |chain| chain.connect(spec, properties))
    }

    /// Opens a stream or connection with `open` on `worker` (round robin
    /// when `None`), the way [`Envoy::on_worker`] runs a step.
    fn open_on(
        &mut self,
        worker: Option<usize>,
        open: impl FnOnce(&mut Chain) -> (StreamHandle, EnvoyOutcome),
    ) -> Result<(StreamHandle, EnvoyOutcome), HarnessError> {
        let worker = match worker {
            Some(w) => w,
            None => self.round_robin(),
        };
        let mut key = None;
        let outcome = self.on_worker(worker, |chain| {
            let (opened, outcome) = open(chain);
            key = Some(opened);
            Ok(outcome)
        })?;
        let key = key.ok_or_else(|| HarnessError::Usage("nothing was opened".to_string()))?;
        Ok((key, outcome))
    }

    /// Gives a stream opened without an upstream answer its whole answer.
    pub fn respond(
        &mut self,
        key: StreamHandle,
        answer: UpstreamResponse,
    ) -> Result<EnvoyOutcome, HarnessError> {
        let end_stream = true;
        self.send(key, StreamInput::Respond { answer, end_stream })
    }

    /// The client or the upstream acts on an open stream: more request
    /// body or trailers, the upstream's answer (in parts), a reset. Then
    /// whatever that makes due runs (no time passes).
    pub fn send(
        &mut self,
        key: StreamHandle,
        input: StreamInput,
    ) -> Result<EnvoyOutcome, HarnessError> {
        self.on_worker(key.worker(), |chain| chain.send(key, input))
    }

    /// Answers the `nth` (from 1) held http callout to `cluster` still
    /// waiting on `worker`, oldest first (a cluster answer with
    /// `hold: true`), with `answer` or else the cluster's scripted one.
    pub fn answer_callout(
        &mut self,
        worker: usize,
        cluster: &str,
        nth: usize,
        answer: Option<&HttpCalloutAnswer>,
    ) -> Result<EnvoyOutcome, HarnessError> {
        self.on_worker(worker, |chain| chain.answer_callout(cluster, nth, answer))
    }

    /// When the next timer, callout answer or timeout of any worker is due
    /// (virtual ms).
    pub fn next_event_at(&self) -> Option<u64> {
        self.workers.iter().filter_map(Chain::next_event_at).min()
    }

    /// Requests on `worker` that reached the router on streams opened
    /// without an upstream answer, each handed out once: what Envoy's
    /// router would send upstream. A caller with a real upstream sends it
    /// and gives the answer with [`Envoy::send`] ([`StreamInput::Respond`]).
    pub fn take_upstream_requests(&mut self, worker: usize) -> Vec<(StreamHandle, HttpMessage)> {
        self.workers
            .get_mut(worker)
            .map(Chain::take_upstream_requests)
            .unwrap_or_default()
    }

    /// The http_calls on `worker` waiting for an answer the caller gives
    /// (their cluster answer has `hold: true`).
    pub fn held_callouts(&self, worker: usize) -> Vec<HeldCallout> {
        self.workers
            .get(worker)
            .map(Chain::held_callouts)
            .unwrap_or_default()
    }

    /// Answers one held callout (`None`: with its cluster's scripted
    /// answer). The flag is false when it no longer waited (its own
    /// timeout had fired).
    pub fn answer_held(
        &mut self,
        worker: usize,
        callout: &HeldCallout,
        answer: Option<&HttpCalloutAnswer>,
    ) -> Result<(bool, EnvoyOutcome), HarnessError> {
        let mut answered = false;
        let outcome = self.on_worker(worker, |chain| {
            let (done, outcome) = chain.answer_held(callout.vm, callout.record.token, answer)?;
            answered = done;
            Ok(outcome)
        })?;
        Ok((answered, outcome))
    }

    /// The stream's (or connection's) outcome if it has ended, without
    /// running anything (unlike [`Envoy::finish`]); `None` while it is live.
    pub fn poll(&mut self, key: StreamHandle) -> Result<Option<EnvoyOutcome>, HarnessError> {
        match self.workers.get_mut(key.worker()) {
            Some(chain) => chain.poll(key),
            None => Err(HarnessError::Usage(format!(
                "worker {} does not exist",
                key.worker()
            ))),
        }
    }

    /// Runs until the stream ends (virtual time jumps to each next event
    /// meanwhile; other streams move too) and returns its outcome: the
    /// client's response, the upstream request, how it ended, and the log
    /// lines of its own contexts since it opened.
    pub fn finish(&mut self, key: StreamHandle) -> Result<EnvoyOutcome, HarnessError> {
        self.on_worker(key.worker(), |chain| chain.finish(key))
    }

    /// Runs `f` on one worker the way Envoy's workers share time: the
    /// worker first catches up with the others' time (its own ticks fire),
    /// and afterwards the other workers run what `f` made ready for them
    /// (queue notifications, callouts due), at their own current time.
    /// The outcome's merged part holds all of that; `filters` only `f`'s.
    fn on_worker(
        &mut self,
        worker: usize,
        f: impl FnOnce(&mut Chain) -> Result<EnvoyOutcome, HarnessError>,
    ) -> Result<EnvoyOutcome, HarnessError> {
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
        let mut result = f(chain)?;
        if let Some(before) = catch_up {
            result.outcome.absorb_before(before.outcome);
        }
        for (index, other) in self.workers.iter_mut().enumerate() {
            if index != worker {
                let background = other.advance(0)?;
                result.outcome.absorb(background.outcome);
            }
        }
        Ok(result)
    }

    /// Advances virtual time by `ms` on every worker, in step: the
    /// workers move together from one due event to the next, so what one
    /// worker's timer causes on another (a queue notification) happens at
    /// the same virtual time. Returns each worker's outcome.
    pub fn advance_each(&mut self, ms: u64) -> Result<Vec<EnvoyOutcome>, HarnessError> {
        let target = self.now_ms().saturating_add(ms);
        let mut outcomes: Vec<Option<EnvoyOutcome>> = vec![None; self.workers.len()];
        let mut accumulate = |index: usize, outcome: EnvoyOutcome| match &mut outcomes[index] {
            Some(acc) => {
                acc.outcome.absorb(outcome.outcome);
                for (a, b) in acc.filters.iter_mut().zip(outcome.filters) {
                    a.absorb(b);
                }
            }
            slot => *slot = Some(outcome),
        };
        loop {
            let step = self
                .workers
                .iter()
                .filter_map(Chain::next_event_at)
                .min()
                .map_or(target, |at| at.clamp(self.now_ms(), target));
            for (index, chain) in self.workers.iter_mut().enumerate() {
                let lag = step.saturating_sub(chain.now_ms());
                accumulate(index, chain.advance(lag)?);
            }
            if step >= target {
                break;
            }
        }
        // Notifications one worker posted to an earlier one in this last step.
        for (index, chain) in self.workers.iter_mut().enumerate() {
            accumulate(index, chain.advance(0)?);
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

    /// [`Envoy::advance_each`] with every worker's outcome merged, in worker order.
    pub fn advance(&mut self, ms: u64) -> Result<Outcome, HarnessError> {
        // A lean Envoy with nothing due on any worker only moves its clocks.
        let target = self.now_ms().saturating_add(ms);
        if self.workers.iter().all(|chain| chain.quiet_until(target)) {
            for chain in &mut self.workers {
                chain.sync_clock(target);
            }
            return Ok(crate::chain::quiet_outcome(ms));
        }
        let mut outcomes = self.advance_each(ms)?.into_iter();
        let mut merged = outcomes.next().map(|o| o.outcome).unwrap_or_default();
        for more in outcomes {
            merged.absorb(more.outcome);
        }
        Ok(merged)
    }
}

//! Several plugins on one HTTP stream, the way Envoy's filter manager runs
//! an HTTP filter chain.
//!
//! - Request callbacks run in chain order, response callbacks in reverse:
//!   each filter's forwarded request is the next filter's downstream
//!   request, and what reached the next filter's client is this filter's
//!   upstream response.
//! - A local reply from filter k: filters after k no longer see the
//!   request; before the response started, the reply passes (in reverse
//!   order) through the response path of every filter with a stream
//!   context (k, the ones before it, and later ones that saw the request
//!   headers), as Envoy encodes it from the chain's far end; after that it
//!   goes straight to the client (see `manager::reply`). A Wasm filter that never saw the
//!   request still gets its stream context at access-log time (Envoy's
//!   Wasm `Context::log` creates it): on_context_create, on_log, on_done,
//!   on_delete, and nothing else.
//! - Streams are torn down when they end, filter by filter in chain order.
//!
//! Each filter is its own VM ([`Harness`]) with its own root context and
//! context ids; they share one [`SharedHost`] (shared data, queues,
//! metrics), as plugins of one Envoy process do. Frames move through the
//! chain one at a time, as Envoy's filter manager iterates them (see
//! `manager` module), and many streams can be live at once
//! ([`Chain::open`], [`Chain::finish`]).

use crate::driver::{FilterModule, Harness};
use crate::error::HarnessError;
use crate::host::SharedHost;
use crate::manager::{self, Goal, Opening, Slot, StreamHandle, StreamInput, Streams, handles};
use crate::model::{
    ConnectionSpec, Exchange, HarnessConfig, HttpCallRecord, HttpCalloutAnswer, HttpMessage,
    LogEntry, LogLevel, Outcome, Properties, StreamEnd, UpstreamResponse,
};

/// One worker's filter chain: one VM per plugin, in chain order, and the
/// streams live on it.
pub(crate) struct Chain {
    /// The worker's VMs, in order of first use by the chain.
    filters: Vec<Harness>,
    /// Which VM and root context each chain position uses.
    slots: Vec<Slot>,
    streams: Streams,
}

/// An http_call waiting for an answer that the caller gives (its cluster
/// answer has `hold: true`), for a caller with real clusters.
#[derive(Clone, Debug)]
pub struct HeldCallout {
    /// The VM on the worker it belongs to (tokens are per VM).
    pub vm: usize,
    /// The call as the filter made it.
    pub record: HttpCallRecord,
}

/// What one step on an Envoy (an exchange, a stream event, time passing)
/// produced on one worker's filter chain.
#[derive(Clone, Debug)]
pub struct EnvoyOutcome {
    /// The worker (from 0) it ran on.
    pub worker: usize,
    /// The exchange as the client and the upstream saw it: the client's
    /// response and `end` from the first filter, the upstream request from
    /// the last one, the local reply from the filter that sent it; logs,
    /// trace, callouts in chain order; hostcall counts summed.
    pub outcome: Outcome,
    /// Each filter's own outcome, in chain order. Empty for a lean Envoy
    /// (see [`crate::EnvoyBuilder::lean`]) whose chain has one filter:
    /// its outcome is `outcome`, not copied a second time.
    pub filters: Vec<Outcome>,
}

impl Chain {
    /// Starts worker `worker`'s chain: the plugins in chain order, all
    /// sharing `shared`. Plugins with equal vm_id, VM configuration and
    /// code share ONE VM, as in Envoy (each gets its own root context, ids
    /// 1, 2, ... in configuration order; stream ids come from the VM's one
    /// counter; guest globals are shared); other plugins get a VM each.
    /// Each plugin's canary start-up runs once per Envoy, before worker 0.
    pub(crate) fn build(
        plugins: &[(FilterModule, HarnessConfig)],
        shared: &SharedHost,
        worker: usize,
        lean: bool,
    ) -> Result<Chain, HarnessError> {
        let canary = worker == 0;
        let mut filters: Vec<Harness> = Vec::new();
        let mut keys: Vec<&(FilterModule, HarnessConfig)> = Vec::new();
        let mut slots = Vec::with_capacity(plugins.len());
        for plugin in plugins {
            let (module, config) = plugin;
            let same_key = |(m, c): &&(FilterModule, HarnessConfig)| {
                m.same_module(module)
                    && c.plugin.vm_id == config.plugin.vm_id
                    && c.plugin.vm_config == config.plugin.vm_config
            };
            let canary_logs = if canary {
                Harness::canary(module, config, shared)?
            } else {
                Vec::new()
            };
            match keys.iter().position(same_key) {
                Some(vm) => {
                    filters[vm].startup.logs.extend(canary_logs);
                    let root = filters[vm].add_plugin(config)?;
                    slots.push(Slot { vm, root });
                }
                None => {
                    let mut h =
                        Harness::without_canary(module.clone(), config.clone(), shared.clone())?;
                    h.startup.logs.splice(0..0, canary_logs);
                    let root = h.vm.host_ref().root_context_id;
                    slots.push(Slot {
                        vm: filters.len(),
                        root,
                    });
                    filters.push(h);
                    keys.push(plugin);
                }
            }
        }
        for filter in &mut filters {
            filter.lean = lean;
        }
        let mut chain = Self::with_slots(filters, slots)?;
        chain.streams.worker = worker;
        Ok(chain)
    }

    /// A chain of already-started filters, one VM per position (they should
    /// share one [`SharedHost`]).
    #[cfg(test)]
    pub(crate) fn from_filters(filters: Vec<Harness>) -> Result<Chain, HarnessError> {
        let slots = manager::own_slots(&filters);
        Self::with_slots(filters, slots)
    }

    fn with_slots(filters: Vec<Harness>, slots: Vec<Slot>) -> Result<Chain, HarnessError> {
        if slots.is_empty() {
            return Err(HarnessError::Usage(
                "a filter chain needs at least one plugin".to_string(),
            ));
        }
        Ok(Chain {
            filters,
            slots,
            streams: Streams::default(),
        })
    }

    /// The worker's VMs, in order of first use by the chain (plugins that
    /// share a VM appear once).
    pub(crate) fn filters(&self) -> &[Harness] {
        &self.filters
    }

    /// The VM of chain position `index`, mutably (to set properties or clusters).
    pub(crate) fn filter_mut(&mut self, index: usize) -> Option<&mut Harness> {
        let vm = self.slots.get(index)?.vm;
        self.filters.get_mut(vm)
    }

    /// The root context id of each chain position in its VM.
    pub(crate) fn root_ids(&self) -> Vec<u32> {
        self.slots.iter().map(|s| s.root).collect()
    }

    /// The latest virtual time among the filters.
    pub(crate) fn now_ms(&self) -> u64 {
        self.filters.iter().map(Harness::now_ms).max().unwrap_or(0)
    }

    /// When the next timer, callout answer or queue event of any filter is due.
    pub(crate) fn next_event_at(&self) -> Option<u64> {
        let route = self.streams.next_deadline().map(|(at, _, _)| at);
        let vms = self.filters.iter().filter_map(Harness::next_event_at);
        vms.chain(route).min()
    }

    /// Runs one exchange through every filter (see the module docs). Other
    /// streams live on this worker move meanwhile as their events come due.
    pub(crate) fn exchange(&mut self, exchange: &Exchange) -> Result<EnvoyOutcome, HarnessError> {
        let outcomes =
            manager::exchange(&mut self.filters, &self.slots, &mut self.streams, exchange);
        self.keep_stream_logs(&outcomes);
        self.merged(outcomes)
    }

    /// Advances virtual time by `ms` on every filter (ticks, callout
    /// answers, queue notifications, and the streams they move).
    pub(crate) fn advance(&mut self, ms: u64) -> Result<EnvoyOutcome, HarnessError> {
        if let Some(quiet) = self.advance_quietly(ms) {
            return Ok(quiet);
        }
        let outcomes = manager::advance(&mut self.filters, &self.slots, &mut self.streams, ms);
        self.keep_stream_logs(&outcomes);
        let mut out = self.merged(outcomes)?;
        out.outcome.elapsed_ms = ms;
        Ok(out)
    }

    /// A lean chain with nothing due within `ms` (no timer, callout answer,
    /// route or idle deadline, queue notification): only its clocks move,
    /// which is all a run would do, and the outcome is empty. (A full
    /// chain's outcomes carry metric snapshots, so it always runs.)
    fn advance_quietly(&mut self, ms: u64) -> Option<EnvoyOutcome> {
        let target = self.now_ms().saturating_add(ms);
        if !self.quiet_until(target) {
            return None;
        }
        self.sync_clock(target);
        let mut quiet = vec![Outcome::default(); self.slots.len()];
        if let Some(first) = quiet.first_mut() {
            *first = quiet_outcome(ms);
        }
        self.merged(quiet).ok()
    }

    /// The HTTP streams that moved since the last call (see
    /// [`Envoy::take_moved`](crate::Envoy::take_moved)).
    pub(crate) fn take_moved(&mut self) -> Vec<StreamHandle> {
        self.streams.take_moved()
    }

    /// True for a lean chain with nothing due by `target` (see
    /// [`Chain::advance`]'s quiet path).
    pub(crate) fn quiet_until(&self, target: u64) -> bool {
        let due = self.next_event_at().is_some_and(|at| at <= target)
            || self
                .filters
                .iter()
                .any(|f| f.vm.host_ref().has_queue_notifications());
        self.is_lean() && !due
    }

    /// Moves every VM's clock to `target` (no later time is lost).
    pub(crate) fn sync_clock(&mut self, target: u64) {
        for f in &mut self.filters {
            f.sync_clock(target);
        }
    }

    #[cfg(test)]
    /// Opens a stream and runs it (and whatever else is due now) until it
    /// waits: for a callout, a timer, the rest of its request, or its
    /// upstream answer. `upstream`: the answer the upstream gives once the
    /// whole request reached it; `None` waits for a [`StreamInput::Respond`].
    /// The outcome is what happened during the call.
    pub(crate) fn open(
        &mut self,
        exchange: &Exchange,
        upstream: Option<UpstreamResponse>,
    ) -> (StreamHandle, EnvoyOutcome) {
        self.open_stream(exchange, upstream, true)
    }

    /// [`Chain::open`]; `request_ends` false: the client sends the rest of
    /// the request later ([`Chain::send`] with [`StreamInput::Request`]).
    pub(crate) fn open_stream(
        &mut self,
        exchange: &Exchange,
        upstream: Option<UpstreamResponse>,
        request_ends: bool,
    ) -> (StreamHandle, EnvoyOutcome) {
        self.open_with(exchange, upstream, request_ends, false)
    }

    /// A stream whose caller carries the bodies (see
    /// [`manager::take_forwarded`]); the upstream answers with
    /// [`StreamInput::Respond`].
    pub(crate) fn open_carried(
        &mut self,
        exchange: &Exchange,
        request_ends: bool,
    ) -> (StreamHandle, EnvoyOutcome) {
        self.open_with(exchange, None, request_ends, true)
    }

    /// What left the chain of carried stream `key` since the last call.
    pub(crate) fn take_forwarded(&mut self, key: StreamHandle) -> Option<manager::Forwarded> {
        manager::take_forwarded(&mut self.streams, key)
    }

    /// The body bytes carried stream `key` holds between filters and at the chain's ends.
    pub(crate) fn queued_bytes(&mut self, key: StreamHandle) -> manager::QueuedBytes {
        manager::queued_bytes(&mut self.streams, key)
    }

    fn open_with(
        &mut self,
        exchange: &Exchange,
        upstream: Option<UpstreamResponse>,
        request_ends: bool,
        carried: bool,
    ) -> (StreamHandle, EnvoyOutcome) {
        self.begin_step();
        let opening = Opening {
            exchange,
            upstream: upstream.as_ref(),
            request_ends,
            keep_logs: true,
            carried,
        };
        let key = manager::open(&mut self.filters, &self.slots, &mut self.streams, opening);
        self.settle();
        let outcome = self.finish_step(0, StreamEnd::NoStream);
        (key, outcome)
    }

    /// Opens a TCP connection through the chain's network filters and
    /// runs what that makes due (each filter's on_new_connection, until
    /// one pauses; then tcp_proxy connects). `properties` add to or
    /// override the connection's own.
    pub(crate) fn connect(
        &mut self,
        spec: &ConnectionSpec,
        properties: &Properties,
    ) -> (StreamHandle, EnvoyOutcome) {
        self.begin_step();
        let key = manager::connect(
            &self.filters,
            &self.slots,
            &mut self.streams,
            spec,
            properties,
        );
        self.settle();
        let mut outcome = self.finish_step(0, StreamEnd::NoStream);
        self.attach_connection(key, &mut outcome);
        (key, outcome)
    }

    /// A step on a connection reports what it carried so far.
    fn attach_connection(&self, key: StreamHandle, outcome: &mut EnvoyOutcome) {
        if let Some(record) = self.streams.connection_record(key) {
            for o in &mut outcome.filters {
                o.connection = Some(record.clone());
            }
            outcome.outcome.connection = Some(record);
        }
    }

    /// The client or the upstream acts on an open stream (more request
    /// body or trailers, the upstream's answer in parts, a reset); then
    /// whatever that makes due runs (no time passes).
    pub(crate) fn send(
        &mut self,
        key: StreamHandle,
        input: StreamInput,
    ) -> Result<EnvoyOutcome, HarnessError> {
        let codec = matches!(
            input,
            StreamInput::Request { .. }
                | StreamInput::Respond { .. }
                | StreamInput::Response { .. }
        );
        let dropped = handles::apply(&mut self.streams, key, input).map_err(HarnessError::Usage)?;
        if codec {
            let now = self.now_ms();
            self.streams.touch(key, now);
        }
        self.begin_step();
        if dropped && let Some(last) = self.filters.last_mut() {
            last.vm.host().harness_log(
                LogLevel::Info,
                "upstream data after a local reply is dropped (Envoy resets the upstream request)"
                    .to_string(),
            );
        }
        self.settle();
        let mut outcome = self.finish_step(0, StreamEnd::NoStream);
        self.attach_connection(key, &mut outcome);
        Ok(outcome)
    }

    /// Answers the `nth` (from 1) held http callout to `cluster` still
    /// waiting on this worker, oldest first (a cluster answer with
    /// `hold: true`), with `answer` or else the cluster's scripted answer;
    /// then whatever that makes due runs.
    pub(crate) fn answer_callout(
        &mut self,
        cluster: &str,
        nth: usize,
        answer: Option<&HttpCalloutAnswer>,
    ) -> Result<EnvoyOutcome, HarnessError> {
        let held: Vec<(usize, u32)> = (self.filters.iter().enumerate())
            .flat_map(|(v, f)| {
                f.vm.host_ref()
                    .held_http(cluster)
                    .into_iter()
                    .map(move |t| (v, t))
            })
            .collect();
        let Some(&(v, token)) = nth.checked_sub(1).and_then(|i| held.get(i)) else {
            return Err(HarnessError::Usage(format!(
                "there is no held callout {nth} to cluster {cluster:?}: {} waiting (callouts wait for an `answer` step when their cluster answer has `hold: true`; they are counted from 1)",
                held.len()
            )));
        };
        self.begin_step();
        self.filters[v].vm.host().answer_held_http(token, answer);
        self.settle();
        Ok(self.finish_step(0, StreamEnd::NoStream))
    }

    /// Requests that reached the router on streams opened without an
    /// upstream answer, each once (see [`manager::take_upstream_requests`]).
    pub(crate) fn take_upstream_requests(&mut self) -> Vec<(StreamHandle, HttpMessage)> {
        manager::take_upstream_requests(&mut self.streams)
    }

    /// Every held callout still waiting on this worker: the VM it belongs
    /// to (tokens are per VM) and its record.
    pub(crate) fn held_callouts(&self) -> Vec<HeldCallout> {
        let mut out = Vec::new();
        for (vm, f) in self.filters.iter().enumerate() {
            let host = f.vm.host_ref();
            for record in &host.http_calls {
                if host.is_held_http(record.token) {
                    out.push(HeldCallout {
                        vm,
                        record: record.clone(),
                    });
                }
            }
        }
        out
    }

    /// Answers held callout `token` of VM `vm` (`None`: the cluster's
    /// scripted answer); then what that makes due runs. False when it no
    /// longer waits (its timeout fired).
    pub(crate) fn answer_held(
        &mut self,
        vm: usize,
        token: u32,
        answer: Option<&HttpCalloutAnswer>,
    ) -> Result<(bool, EnvoyOutcome), HarnessError> {
        if vm >= self.filters.len() {
            return Err(HarnessError::Usage(format!(
                "there is no VM {vm} on this worker"
            )));
        }
        self.begin_step();
        let answered = self.filters[vm].vm.host().answer_held_http(token, answer);
        self.settle();
        Ok((answered, self.finish_step(0, StreamEnd::NoStream)))
    }

    /// The stream's outcome if it has ended, without running anything.
    pub(crate) fn poll(&mut self, key: StreamHandle) -> Result<Option<EnvoyOutcome>, HarnessError> {
        let ended = !self.streams.knows(key) || self.streams.is_finished(key);
        if !ended {
            return Ok(None);
        }
        self.collect(key).map(Some)
    }

    /// Runs until the stream ends (virtual time jumps to each next event
    /// meanwhile; other streams move too) and returns its outcome: the
    /// client's response, the upstream request, how it ended, and the log
    /// lines of its own contexts since it opened. Trace, callouts and
    /// hostcall counts are those of this call.
    pub(crate) fn finish(&mut self, key: StreamHandle) -> Result<EnvoyOutcome, HarnessError> {
        if !self.streams.knows(key) {
            return Err(HarnessError::Usage(
                "that stream does not exist on this worker (or was finished already)".to_string(),
            ));
        }
        for f in &mut self.filters {
            f.begin_exchange();
        }
        manager::run(
            &mut self.filters,
            &self.slots,
            &mut self.streams,
            Goal::Ends(key),
        );
        self.collect(key)
    }

    /// The outcome of a stream or connection that has ended.
    fn collect(&mut self, key: StreamHandle) -> Result<EnvoyOutcome, HarnessError> {
        if let Some(mut conn) = self.streams.take_finished_connection(key) {
            let mut outcomes = manager::connection_outcomes(
                &mut self.filters,
                &self.slots,
                &self.streams,
                &mut conn,
            );
            let hops = conn.hops.iter_mut().map(|h| (h.context_id, &mut h.logs));
            keep_logs(hops, &outcomes);
            for (hop, outcome) in conn.hops.iter_mut().zip(outcomes.iter_mut()) {
                outcome.logs = std::mem::take(&mut hop.logs);
            }
            return self.merged(outcomes);
        }
        let Some(stream) = self.streams.take_finished(key) else {
            return Err(HarnessError::Usage("the stream did not end".to_string()));
        };
        let mut stream = stream;
        let list = self.streams.take_outcome_list();
        let mut outcomes = manager::outcomes(
            &mut self.filters,
            &self.slots,
            &self.streams,
            &mut stream,
            list,
        );
        keep_logs(
            stream.hops.iter_mut().map(|h| (h.context_id, &mut h.logs)),
            &outcomes,
        );
        for (hop, outcome) in stream.hops.iter_mut().zip(outcomes.iter_mut()) {
            outcome.logs = std::mem::take(&mut hop.logs);
        }
        self.streams.recycle(stream);
        self.merged(outcomes)
    }

    /// Runs whatever is due now (no time passes).
    fn settle(&mut self) {
        let now = self.now_ms();
        let until = Goal::Until(now);
        manager::run(&mut self.filters, &self.slots, &mut self.streams, until);
    }

    fn begin_step(&mut self) {
        for f in &mut self.filters {
            f.begin_capture();
        }
    }

    fn finish_step(&mut self, context_id: u32, end: StreamEnd) -> EnvoyOutcome {
        let mut outcomes =
            manager::step_outcomes(&mut self.filters, &self.slots, &self.streams, end, 0);
        for outcome in &mut outcomes {
            outcome.context_id = context_id;
        }
        self.keep_stream_logs(&outcomes);
        let worker = self.streams.worker;
        // A chain has at least one position, so a step has an outcome.
        self.merged(outcomes).unwrap_or_else(|_| EnvoyOutcome {
            worker,
            outcome: Outcome::default(),
            filters: Vec::new(),
        })
    }

    /// Each position's outcome merged (see [`merged`]); a lean chain of one
    /// position reports its one outcome once, without a copy in `filters`.
    fn merged(&mut self, mut outcomes: Vec<Outcome>) -> Result<EnvoyOutcome, HarnessError> {
        let worker = self.streams.worker;
        if outcomes.len() == 1
            && self.is_lean()
            && let Some(outcome) = outcomes.pop()
        {
            self.streams.keep_outcome_list(outcomes);
            return Ok(EnvoyOutcome {
                worker,
                outcome,
                filters: Vec::new(),
            });
        }
        merged(worker, outcomes)
    }

    /// Every VM is lean (see [`crate::EnvoyBuilder::lean`]).
    fn is_lean(&self) -> bool {
        self.filters.iter().all(|f| f.lean)
    }

    /// Named streams keep the log lines of their own contexts from each step.
    fn keep_stream_logs(&mut self, outcomes: &[Outcome]) {
        for stream in self.streams.log_keepers() {
            keep_logs(
                stream.hops.iter_mut().map(|h| (h.context_id, &mut h.logs)),
                outcomes,
            );
        }
        for conn in self.streams.connection_log_keepers() {
            keep_logs(
                conn.hops.iter_mut().map(|h| (h.context_id, &mut h.logs)),
                outcomes,
            );
        }
    }
}

/// What `ms` of virtual time with nothing due produced: nothing.
pub(crate) fn quiet_outcome(ms: u64) -> Outcome {
    Outcome {
        elapsed_ms: ms,
        end: StreamEnd::NoStream,
        ..Outcome::default()
    }
}

/// Each hop (context id and its kept lines) of a named stream or
/// connection keeps its own context's lines, taken from its position's
/// share of the capture.
fn keep_logs<'a>(hops: impl Iterator<Item = (u32, &'a mut Vec<LogEntry>)>, outcomes: &[Outcome]) {
    for ((context_id, logs), outcome) in hops.zip(outcomes) {
        if context_id != 0 {
            let own = outcome.logs.iter().filter(|l| l.context_id == context_id);
            logs.extend(own.cloned());
        }
    }
}

/// Each filter's outcome merged: the client's response and `end` from the
/// first filter, the upstream request from the last one, the local reply
/// from the first filter that sent one; logs, trace and callouts in chain
/// order; hostcall counts summed.
fn merged(worker: usize, outcomes: Vec<Outcome>) -> Result<EnvoyOutcome, HarnessError> {
    let Some(first) = outcomes.first() else {
        return Err(HarnessError::Usage("empty filter chain".to_string()));
    };
    let mut merged = first.clone();
    if outcomes.len() > 1 {
        for later in &outcomes[1..] {
            merged.absorb(later.clone());
        }
        merged.upstream_request = outcomes.last().and_then(|o| o.upstream_request.clone());
        merged.local_reply = outcomes.iter().find_map(|o| o.local_reply.clone());
    }
    Ok(EnvoyOutcome {
        worker,
        outcome: merged,
        filters: outcomes,
    })
}

//! Several plugins on one HTTP stream, the way Envoy's filter manager runs
//! an HTTP filter chain.
//!
//! - Request callbacks run in chain order, response callbacks in reverse:
//!   each filter's forwarded request is the next filter's downstream
//!   request, and what reached the next filter's client is this filter's
//!   upstream response.
//! - A local reply from filter k: filters after k never see the request;
//!   the reply passes through the response path of k and of the filters
//!   before it (in reverse order), as Envoy encodes a local reply through
//!   the encoder filters of the stream. A Wasm filter that never saw the
//!   request still gets its stream context at access-log time (Envoy's
//!   Wasm `Context::log` creates it): on_context_create, on_log, on_done,
//!   on_delete, and nothing else.
//! - Streams are torn down after the whole exchange, in chain order.
//!
//! Each filter is its own VM ([`Harness`]) with its own root context and
//! context ids; they share one [`SharedHost`] (shared data, queues,
//! metrics), as plugins of one Envoy process do.
//!
//! Simplification: each filter handles the whole request (headers, body,
//! trailers) before the next one sees it, and the whole response before
//! the previous one does; Envoy interleaves the frames (filter 2's headers
//! callback before filter 1's body callback). The order of callbacks of
//! any one filter, and the data each sees, are the same.

use crate::driver::{FilterModule, Harness};
use crate::error::HarnessError;
use crate::host::SharedHost;
use crate::model::{Exchange, HarnessConfig, Outcome};

/// One worker's filter chain: one VM per plugin, in chain order.
pub struct Chain {
    filters: Vec<Harness>,
}

/// What one exchange through a chain produced.
#[derive(Clone, Debug)]
pub struct ChainOutcome {
    /// The exchange as the client and the upstream saw it: the client's
    /// response and `end` from the first filter, the upstream request from
    /// the last one, the local reply from the filter that sent it; logs,
    /// trace, callouts in chain order; hostcall counts summed.
    pub outcome: Outcome,
    /// Each filter's own outcome, in chain order.
    pub filters: Vec<Outcome>,
}

impl Chain {
    /// Starts one VM per plugin (in chain order), all sharing `shared`.
    pub fn new(
        plugins: &[(FilterModule, HarnessConfig)],
        shared: &SharedHost,
    ) -> Result<Chain, HarnessError> {
        let filters = plugins
            .iter()
            .map(|(module, config)| {
                Harness::with_shared(module.clone(), config.clone(), shared.clone())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_filters(filters)
    }

    /// A chain of already-started filters (they should share one
    /// [`SharedHost`]).
    pub fn from_filters(filters: Vec<Harness>) -> Result<Chain, HarnessError> {
        if filters.is_empty() {
            return Err(HarnessError::Usage(
                "a filter chain needs at least one plugin".to_string(),
            ));
        }
        Ok(Chain { filters })
    }

    /// The filters, in chain order.
    pub fn filters(&self) -> &[Harness] {
        &self.filters
    }

    /// One filter, mutably (to set properties or clusters).
    pub fn filter_mut(&mut self, index: usize) -> Option<&mut Harness> {
        self.filters.get_mut(index)
    }

    /// The latest virtual time among the filters.
    pub fn now_ms(&self) -> u64 {
        self.filters.iter().map(Harness::now_ms).max().unwrap_or(0)
    }

    /// When the next timer, callout answer or queue event of any filter is due.
    pub(crate) fn next_event_at(&self) -> Option<u64> {
        self.filters.iter().filter_map(Harness::next_event_at).min()
    }

    /// Runs one exchange through every filter (see the module docs).
    pub fn exchange(&mut self, exchange: &Exchange) -> Result<ChainOutcome, HarnessError> {
        for filter in &mut self.filters {
            filter.begin_exchange();
        }
        let now = self.now_ms();
        let Some((first, rest)) = self.filters.split_first_mut() else {
            return Err(HarnessError::Usage("empty filter chain".to_string()));
        };
        first.sync_clock(now);
        let mut done = first.run_stream(exchange, rest);
        let inner = std::mem::take(&mut done.inner);
        let mut outcomes = vec![first.close_stream(done)];
        for (filter, done) in rest.iter_mut().zip(inner) {
            outcomes.push(filter.close_stream(done));
        }
        let reached = outcomes.len();
        for filter in rest.iter_mut().skip(reached - 1) {
            outcomes.push(filter.log_only_stream());
        }
        let mut merged = outcomes[0].clone();
        for later in &outcomes[1..] {
            merge_into(&mut merged, later.clone());
        }
        // The upstream saw what the last filter let through, if the request got that far.
        merged.upstream_request = if reached == self.filters.len() {
            outcomes[reached - 1].upstream_request.clone()
        } else {
            None
        };
        merged.local_reply = outcomes.iter().find_map(|o| o.local_reply.clone());
        Ok(ChainOutcome {
            outcome: merged,
            filters: outcomes,
        })
    }

    /// Advances virtual time by `ms` on every filter (ticks, callout
    /// answers, queue notifications), in chain order.
    pub fn advance(&mut self, ms: u64) -> Result<ChainOutcome, HarnessError> {
        let target = self.now_ms().saturating_add(ms);
        let mut outcomes = Vec::with_capacity(self.filters.len());
        for filter in &mut self.filters {
            let lag = target.saturating_sub(filter.now_ms());
            outcomes.push(filter.advance(lag)?);
        }
        let mut merged = outcomes[0].clone();
        for later in &outcomes[1..] {
            merge_into(&mut merged, later.clone());
        }
        merged.elapsed_ms = ms;
        Ok(ChainOutcome {
            outcome: merged,
            filters: outcomes,
        })
    }
}

/// Adds what `more` observed (logs, trace, callouts, hostcall counts, a
/// trap, the failure policy) to `into`, after what `into` has.
pub(crate) fn merge_into(into: &mut Outcome, more: Outcome) {
    into.logs.extend(more.logs);
    into.trace.extend(more.trace);
    into.http_calls.extend(more.http_calls);
    into.grpc_calls.extend(more.grpc_calls);
    for (name, count) in more.hostcalls {
        *into.hostcalls.entry(name).or_insert(0) += count;
    }
    if into.trap.is_none() {
        into.trap = more.trap;
    }
    if into.failure_policy.is_none() {
        into.failure_policy = more.failure_policy;
    }
    // Metrics are process-wide: the latest snapshot is the complete one.
    into.metrics = more.metrics;
}

/// Puts what `earlier` observed before what `into` observed, keeping
/// `into`'s exchange (response, end, context id...).
pub(crate) fn merge_before(into: &mut Outcome, earlier: Outcome) {
    let mut observed = earlier;
    let later = Outcome {
        logs: std::mem::take(&mut into.logs),
        trace: std::mem::take(&mut into.trace),
        http_calls: std::mem::take(&mut into.http_calls),
        grpc_calls: std::mem::take(&mut into.grpc_calls),
        hostcalls: std::mem::take(&mut into.hostcalls),
        trap: into.trap.take(),
        failure_policy: into.failure_policy.take(),
        metrics: std::mem::take(&mut into.metrics),
        ..Outcome::default()
    };
    merge_into(&mut observed, later);
    into.logs = observed.logs;
    into.trace = observed.trace;
    into.http_calls = observed.http_calls;
    into.grpc_calls = observed.grpc_calls;
    into.hostcalls = observed.hostcalls;
    into.trap = observed.trap;
    into.failure_policy = observed.failure_policy;
    into.metrics = observed.metrics;
}

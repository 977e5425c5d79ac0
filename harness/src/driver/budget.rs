//! The event loop's bounds. A guest that never traps and keeps every
//! callback under its deadline can still keep the loop busy forever (each
//! event it handles schedules another: a queue notification answered by
//! another enqueue, a zero-delay callout answered by another callout).
//! Envoy's dispatcher would spin the same way; the harness stops it: past
//! `max_events_per_step` events, or `step_wall_budget_ms` of real time from
//! its first event, in one step (an exchange, a stream step, an advance),
//! the VM that kept it busy fails as a trap does (the failure policy
//! applies), with a message naming the bound and the callback.

use std::time::{Duration, Instant};

use crate::host::Event;
use crate::model::TrapReport;

/// Default cap on events delivered in one step: far above what a filter's
/// timers, callouts and queues produce in any honest scenario.
pub const DEFAULT_MAX_EVENTS_PER_STEP: u64 = 100_000;

/// Default real-time budget for one step, in milliseconds.
pub const DEFAULT_STEP_WALL_BUDGET_MS: u64 = 60_000;

/// Events delivered in one step so far, against the bounds.
pub(crate) struct Budget {
    max_events: u64,
    wall_ms: u64,
    /// When the step's first event came: most steps deliver none, and a
    /// clock read per request is measurable on the bench loop.
    started: Option<Instant>,
    events: u64,
    /// Per callback kind: how many of this step's events it took.
    kinds: [(&'static str, u64); 4],
}

/// The callbacks an event loop delivers, by kind.
#[derive(Clone, Copy)]
pub(crate) enum EventKind {
    Tick,
    HttpAnswer,
    GrpcAnswer,
    QueueReady,
}

impl EventKind {
    /// The kind of a scheduled event.
    pub(crate) fn of(event: &Event) -> EventKind {
        match event {
            Event::Tick { .. } => EventKind::Tick,
            Event::HttpAnswer { .. } => EventKind::HttpAnswer,
            Event::GrpcAnswer { .. } => EventKind::GrpcAnswer,
        }
    }
}

impl Budget {
    /// A fresh budget for one step with these bounds.
    pub(crate) fn new(max_events: u64, wall_ms: u64) -> Budget {
        Budget {
            max_events,
            wall_ms,
            started: None,
            events: 0,
            kinds: [
                ("proxy_on_tick", 0),
                ("proxy_on_http_call_response", 0),
                ("proxy_on_grpc_* (a gRPC callout's callbacks)", 0),
                ("proxy_on_queue_ready", 0),
            ],
        }
    }

    /// Counts one event delivered to root context `root`; past a bound,
    /// the report to fail the VM with (and the count starts again).
    pub(crate) fn spend(&mut self, kind: EventKind, root: u32) -> Option<TrapReport> {
        self.events += 1;
        self.kinds[kind as usize].1 += 1;
        let over_count = self.events > self.max_events;
        let started = *self.started.get_or_insert_with(Instant::now);
        let over_time = !over_count && started.elapsed() > Duration::from_millis(self.wall_ms);
        if !over_count && !over_time {
            return None;
        }
        let (busiest, n) = self
            .kinds
            .iter()
            .copied()
            .max_by_key(|(_, n)| *n)
            .unwrap_or(("an event callback", 0));
        let bound = if over_count {
            format!(
                "the event loop passed its bound of {} events in one step (max_events_per_step)",
                self.max_events
            )
        } else {
            format!(
                "the step ran past its wall-clock budget of {} ms after {} events (step_wall_budget_ms)",
                self.wall_ms, self.events
            )
        };
        let trap = format!(
            "{bound}: {busiest} kept it busy ({n} of them); each event the filter handles schedules another, so the step would never end"
        );
        *self = Budget::new(self.max_events, self.wall_ms);
        Some(TrapReport {
            callback: busiest.to_string(),
            context_id: root,
            trap,
            panic_message: None,
        })
    }
}

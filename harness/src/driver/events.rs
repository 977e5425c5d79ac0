//! Root-context events of one VM: timer ticks, http and gRPC callout
//! answers, queue notifications. After each root callback the caller's
//! `after` hook applies what the guest asked for (deferred stream actions,
//! the failure policy) to the streams it concerns.

use crate::backend::Callback;
use crate::host::{Event, GrpcPlan, HeaderMap, HttpPlan, Scheduled, grpc_stream_metadata};
use crate::model::{CalloutResult, GrpcCalloutAnswer};

use super::{Budget, EventKind, Harness};

/// Called after every root callback with the VM that ran it.
pub(crate) type AfterRoot<'a> = &'a mut dyn FnMut(&mut Harness);

impl Harness {
    /// Drops events nobody waits for any more (answered or cancelled
    /// callouts, ticks of a replaced timer).
    pub(crate) fn skip_stale_events(&mut self) {
        loop {
            let host = self.vm.host_ref();
            let stale = match host.peek_event() {
                Some(Scheduled {
                    event: Event::HttpAnswer { token },
                    ..
                }) => !host.http_pending.contains_key(&token),
                Some(Scheduled {
                    event: Event::GrpcAnswer { token },
                    ..
                }) => !host.grpc_pending.contains_key(&token),
                Some(Scheduled {
                    event: Event::Tick { generation },
                    root,
                    ..
                }) => {
                    let (period, current) = host.tick_state(root);
                    generation != current || period == 0
                }
                None => false,
            };
            if !stale {
                return;
            }
            self.vm.host().pop_event();
        }
    }

    /// Delivers everything already due (queue notifications, zero-delay
    /// answers to the root context) after a stream ends.
    pub(crate) fn deliver_due_root_events(&mut self, after: AfterRoot<'_>) {
        let mut budget = self.budget();
        loop {
            self.deliver_queue_notifications(after, &mut budget);
            self.skip_stale_events();
            let host = self.vm.host_ref();
            match host.next_event_at() {
                Some(at) if at <= host.now_ms => {
                    if let Some(ev) = self.vm.host().pop_event() {
                        if let Some(report) = budget.spend(EventKind::of(&ev.event), ev.root) {
                            self.fail_vm(report);
                            after(self);
                            return;
                        }
                        self.deliver(ev, after);
                    }
                }
                _ => return,
            }
        }
    }

    /// Runs `on_queue_ready` for every notification posted to this worker.
    /// `budget` counts them; past its bound the VM fails.
    pub(crate) fn deliver_queue_notifications(
        &mut self,
        after: AfterRoot<'_>,
        budget: &mut Budget,
    ) -> bool {
        let ready = self.vm.host_ref().take_queue_notifications();
        let any = !ready.is_empty();
        for q in ready {
            if let Some(report) = budget.spend(EventKind::QueueReady, q.root_context_id) {
                self.fail_vm(report);
                after(self);
                return true;
            }
            self.invoke(Callback::QueueReady {
                context_id: q.root_context_id,
                queue_id: q.queue_id,
            });
            after(self);
        }
        any
    }

    /// A fresh event-loop budget with this VM's bounds.
    pub(crate) fn budget(&self) -> Budget {
        let host = self.vm.host_ref();
        Budget::new(host.max_events_per_step, host.step_wall_budget_ms)
    }

    /// Delivers one due event to the root context.
    pub(crate) fn deliver(&mut self, ev: Scheduled, after: AfterRoot<'_>) {
        // A failed VM runs nothing more: its timers stop, answers are dropped
        // (proxy-wasm-cpp-host returns early on a failed VM).
        if self.failure.is_some() {
            return;
        }
        // Ticks and callout answers go to the root context that asked for them.
        self.vm.host().enter_root(ev.root);
        let root = ev.root;
        match ev.event {
            Event::Tick { generation } => {
                let host = self.vm.host();
                if generation != host.tick_generation || host.tick_period_ms == 0 {
                    return;
                }
                // Envoy re-arms the timer from now (Context::onTick, then
                // enableTimer(period)): a clock that jumped gives one tick,
                // not a burst of catch-up ticks.
                let next = host.now_ms.max(ev.at_ms) + u64::from(host.tick_period_ms);
                host.schedule(next, Event::Tick { generation });
                self.invoke(Callback::Tick { context_id: root });
                after(self);
            }
            Event::HttpAnswer { token } => {
                let Some(pending) = self.vm.host().http_pending.remove(&token) else {
                    return;
                };
                let host = self.vm.host();
                let cb = match pending.plan {
                    HttpPlan::Respond {
                        headers,
                        body,
                        trailers,
                    } => {
                        let status = headers.to_headers().status();
                        let cb = Callback::HttpCallResponse {
                            context_id: root,
                            token,
                            headers: headers.len() as u64,
                            body_size: body.len() as u64,
                            trailers: trailers.len() as u64,
                        };
                        host.status_code = 0;
                        host.status_message.clear();
                        host.delivery.http_headers = Some(headers);
                        host.delivery.http_body = Some(body);
                        host.delivery.http_trailers = Some(trailers);
                        host.set_http_result(
                            token,
                            CalloutResult::Answered {
                                status: u32::from(status),
                            },
                        );
                        cb
                    }
                    HttpPlan::Fail { code, reason } => {
                        host.status_code = code;
                        host.status_message = reason.as_bytes().to_vec();
                        host.set_http_result(
                            token,
                            CalloutResult::Failed {
                                reason: reason.to_string(),
                            },
                        );
                        Callback::HttpCallResponse {
                            context_id: root,
                            token,
                            headers: 0,
                            body_size: 0,
                            trailers: 0,
                        }
                    }
                };
                self.invoke(cb);
                self.vm.host().delivery = Default::default();
                after(self);
            }
            Event::GrpcAnswer { token } => {
                let Some(pending) = self.vm.host_ref().grpc_pending.get(&token).cloned() else {
                    return;
                };
                let steps = grpc_steps(pending.streaming, &pending.plan);
                for step in steps {
                    if !self.vm.host_ref().grpc_pending.contains_key(&token)
                        || self.failure.is_some()
                    {
                        break;
                    }
                    let host = self.vm.host();
                    let cb = match step {
                        GrpcStep::Initial(map) => {
                            let n = map.len() as u64;
                            host.delivery.grpc_initial_metadata = Some(map);
                            Callback::GrpcReceiveInitialMetadata {
                                context_id: root,
                                token,
                                headers: n,
                            }
                        }
                        GrpcStep::Message(m) => {
                            let n = m.len() as u64;
                            host.status_code = 0;
                            host.status_message.clear();
                            host.delivery.grpc_message = Some(m);
                            Callback::GrpcReceive {
                                context_id: root,
                                token,
                                size: n,
                            }
                        }
                        GrpcStep::Trailing(map) => {
                            let n = map.len() as u64;
                            host.delivery.grpc_trailing_metadata = Some(map);
                            Callback::GrpcReceiveTrailingMetadata {
                                context_id: root,
                                token,
                                trailers: n,
                            }
                        }
                        GrpcStep::Close {
                            status,
                            message,
                            failed,
                        } => {
                            host.status_code = status;
                            host.status_message = message.clone().into_bytes();
                            host.grpc_pending.remove(&token);
                            host.set_grpc_result(
                                token,
                                if failed {
                                    CalloutResult::Failed { reason: message }
                                } else {
                                    CalloutResult::Answered { status }
                                },
                            );
                            Callback::GrpcClose {
                                context_id: root,
                                token,
                                status,
                            }
                        }
                        GrpcStep::UnaryMessage(m) => {
                            let n = m.len() as u64;
                            host.status_code = 0;
                            host.status_message.clear();
                            host.delivery.grpc_message = Some(m);
                            host.grpc_pending.remove(&token);
                            host.set_grpc_result(token, CalloutResult::Answered { status: 0 });
                            Callback::GrpcReceive {
                                context_id: root,
                                token,
                                size: n,
                            }
                        }
                    };
                    self.invoke(cb);
                    self.vm.host().delivery = Default::default();
                    after(self);
                }
            }
        }
    }
}

enum GrpcStep {
    Initial(HeaderMap),
    Message(Vec<u8>),
    Trailing(HeaderMap),
    Close {
        status: u32,
        message: String,
        failed: bool,
    },
    /// A unary success: `on_grpc_receive` and nothing after it.
    UnaryMessage(Vec<u8>),
}

fn grpc_steps(streaming: bool, plan: &GrpcPlan) -> Vec<GrpcStep> {
    match plan {
        GrpcPlan::Fail {
            code,
            reason,
            router_reply,
        } => {
            let close = GrpcStep::Close {
                status: *code,
                message: reason.to_string(),
                failed: true,
            };
            if !streaming {
                // A unary call's handler sees only onFailure.
                return vec![close];
            }
            if *router_reply {
                // A trailers-only answer: AsyncStreamImpl::onHeaders gives
                // empty initial metadata, then onTrailers the whole block.
                let reply = GrpcCalloutAnswer {
                    status: *code,
                    message: reason.to_string(),
                    ..GrpcCalloutAnswer::default()
                };
                let (initial, trailing) = grpc_stream_metadata(&reply, None);
                vec![
                    GrpcStep::Initial(initial),
                    GrpcStep::Trailing(trailing),
                    close,
                ]
            } else {
                // streamError: empty trailing metadata, then the close.
                vec![GrpcStep::Trailing(HeaderMap::default()), close]
            }
        }
        GrpcPlan::Answer(a) if !streaming => {
            if a.status == 0 {
                let first = a.messages.first().map(|m| m.0.clone()).unwrap_or_default();
                vec![GrpcStep::UnaryMessage(first)]
            } else {
                vec![GrpcStep::Close {
                    status: a.status,
                    message: a.message.clone(),
                    failed: false,
                }]
            }
        }
        GrpcPlan::Answer(a) => {
            // Envoy always delivers both metadata callbacks of a stream that
            // got an answer (see `grpc_stream_metadata`).
            let (initial, trailing) = grpc_stream_metadata(a, Some(a.delay_ms));
            let mut steps = vec![GrpcStep::Initial(initial)];
            for m in &a.messages {
                steps.push(GrpcStep::Message(m.0.clone()));
            }
            steps.push(GrpcStep::Trailing(trailing));
            steps.push(GrpcStep::Close {
                status: a.status,
                message: a.message.clone(),
                failed: false,
            });
            steps
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::scripted::{Act, CallLog, ScriptedVm};
    use crate::driver::Harness;
    use crate::host::SharedHost;
    use crate::model::HarnessConfig;

    fn ticks(log: &CallLog) -> usize {
        log.calls("f")
            .iter()
            .filter(|c| c.starts_with("tick"))
            .count()
    }

    #[test]
    fn a_clock_jump_gives_one_tick_then_the_period_counts_from_it() {
        // Envoy's Wasm::tickHandler (source/extensions/common/wasm/wasm.cc)
        // runs on_tick, then enableTimer(period): the next tick is a period
        // after this one ran, not after it was due. Time that passes with
        // the worker's loop running gives a tick per period; a clock that
        // moved on while it did not (here: sync_clock, as a reloaded VM's
        // clock is set) gives one late tick, not a burst.
        let log = CallLog::default();
        let config = HarnessConfig::default();
        let mut vm = ScriptedVm::new("f", &config, &SharedHost::new(), &log);
        vm.on("configure").then(Act::SetTick(1000));
        let mut h = Harness::start(Box::new(vm)).expect("a scripted VM starts");
        log.clear();
        h.advance(10_000).expect("advance");
        assert_eq!(ticks(&log), 10, "one tick per period of running time");
        log.clear();
        // The next tick was due at 11 000; the clock jumps to 20 000.
        h.sync_clock(20_000);
        h.advance(0).expect("advance");
        assert_eq!(ticks(&log), 1, "one late tick for the jump");
        h.advance(999).expect("advance");
        assert_eq!(ticks(&log), 1, "the next is a period after the late one");
        h.advance(1).expect("advance");
        assert_eq!(ticks(&log), 2);
    }
}

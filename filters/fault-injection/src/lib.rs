//! fault-injection: aborts or delays a share of requests. See README.md.

pub mod fault;

use fault::{Config, Fault};
use sdk_ext::metrics::Metric;
use sdk_ext::{Action, ConfigError, Http, Plugin};
use std::time::{Duration, SystemTime};

pub struct FaultInjection {
    delayed_at: Option<SystemTime>,
}

/// The configuration plus this worker's fault counters.
pub struct Runtime {
    config: Config,
    aborts: Option<Metric>,
    delays: Option<Metric>,
}

impl Plugin for FaultInjection {
    const NAME: &'static str = "fault-injection";
    type Config = Runtime;

    fn configure(raw: &[u8]) -> Result<Runtime, ConfigError> {
        Ok(Runtime {
            config: Config::parse(raw)?,
            aborts: Metric::counter("fault_injection_aborts_total"),
            delays: Metric::counter("fault_injection_delays_total"),
        })
    }

    fn tick_period(runtime: &Runtime) -> Option<Duration> {
        runtime.config.tick_period()
    }

    fn create(_http: &Http<Self>) -> Self {
        FaultInjection { delayed_at: None }
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        let runtime = http.config();
        let forced = http.request_headers().get(&runtime.config.header);
        match runtime.config.decide(forced.as_deref()) {
            Fault::None => Action::Continue,
            Fault::Abort => {
                if let Some(counter) = runtime.aborts {
                    counter.increment(1);
                }
                if let Some(reply) = runtime.config.abort_reply() {
                    http.send_local_response(&reply);
                }
                Action::Pause
            }
            Fault::Delay(duration) => {
                if let Some(counter) = runtime.delays {
                    counter.increment(1);
                }
                log::info!(
                    "{}: delaying the request by {duration:?}",
                    http.log_prefix()
                );
                self.delayed_at = Some(http.now());
                http.resume_request_after(duration);
                Action::Pause
            }
        }
    }

    fn on_response_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        if let Some(at) = self.delayed_at.take() {
            let waited = http.now().duration_since(at).unwrap_or_default();
            log::info!(
                "{}: delayed request resumed after {} ms",
                http.log_prefix(),
                waited.as_millis()
            );
        }
        Action::Continue
    }
}

sdk_ext::plugin!(FaultInjection);

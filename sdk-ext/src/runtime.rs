//! The proxy-wasm adapter behind [`crate::plugin!`]: a root context that parses
//! and validates the configuration, and http contexts that forward each
//! callback to the plugin with an [`Http`] handle.

use crate::http::Http;
use crate::plugin::Plugin;
use crate::reach::{Field, Reach};
use crate::types::{Action, BufferType, ContextType, LogLevel};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::SystemTime;

/// Registers plugin `P` with the SDK; called from `_initialize` by [`crate::plugin!`].
pub fn install<P: Plugin>() {
    // Until the host's level is known (proxy_get_log_level is not allowed during
    // start-up) forward everything; on_configure narrows it.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(RootAdapter::<P> {
            context_id,
            shared: None,
        })
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamDirection {
    Request,
    Response,
}

struct DelayedResume {
    due: SystemTime,
    context_id: u32,
    direction: StreamDirection,
    reach: Reach,
}

/// What every stream of one root context (one worker) shares.
pub struct Shared<P: Plugin> {
    pub(crate) config: P::Config,
    root_context_id: u32,
    delayed: RefCell<Vec<DelayedResume>>,
}

impl<P: Plugin> Shared<P> {
    pub(crate) fn schedule_resume(
        &self,
        context_id: u32,
        direction: StreamDirection,
        due: SystemTime,
        reach: Reach,
    ) {
        self.delayed.borrow_mut().push(DelayedResume {
            due,
            context_id,
            direction,
            reach,
        });
    }

    fn forget_stream(&self, context_id: u32) {
        self.delayed
            .borrow_mut()
            .retain(|d| d.context_id != context_id);
    }

    fn resume_due_streams(&self, now: SystemTime) {
        let due: Vec<DelayedResume> = {
            let mut delayed = self.delayed.borrow_mut();
            let (due, waiting) = delayed.drain(..).partition(|d| d.due <= now);
            *delayed = waiting;
            due
        };
        if due.is_empty() {
            return;
        }
        for resume in due {
            if hostcalls::set_effective_context(resume.context_id).is_err() {
                continue; // the stream ended meanwhile
            }
            let request = resume.direction == StreamDirection::Request;
            resume.reach.resumed(request);
            let result = if request {
                hostcalls::resume_http_request()
            } else {
                hostcalls::resume_http_response()
            };
            if let Err(status) = result {
                log::warn!(
                    "{}: resuming delayed stream {} failed: {}",
                    P::NAME,
                    resume.context_id,
                    crate::status_name(status)
                );
            }
        }
        let _ = hostcalls::set_effective_context(self.root_context_id);
    }
}

/// The root context as [`Plugin::on_tick`] sees it.
pub struct Root<P: Plugin> {
    shared: Rc<Shared<P>>,
}

impl<P: Plugin> Root<P> {
    pub fn config(&self) -> &P::Config {
        &self.shared.config
    }

    pub fn context_id(&self) -> u32 {
        self.shared.root_context_id
    }

    pub fn now(&self) -> SystemTime {
        crate::clock::now()
    }
}

/// The body of every root context's on_configure: adopts the host's log
/// level, reads and validates the plugin configuration and sets the tick
/// period. `None` (after one error line naming the plugin) rejects it.
pub(crate) fn load_configuration<C>(
    name: &str,
    configure: impl FnOnce(&[u8]) -> Result<C, crate::ConfigError>,
    tick_period: impl FnOnce(&C) -> Option<std::time::Duration>,
) -> Option<C> {
    if let Ok(level) = hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
    let raw = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
        Ok(raw) => raw.unwrap_or_default(),
        Err(status) => {
            log::error!(
                "{name}: reading the plugin configuration failed: {}",
                crate::status_name(status)
            );
            return None;
        }
    };
    let config = match configure(&raw) {
        Ok(config) => config,
        Err(error) => {
            log::error!("{name}: {error}");
            return None;
        }
    };
    if let Some(period) = tick_period(&config)
        && let Err(status) = hostcalls::set_tick_period(period)
    {
        log::error!(
            "{name}: setting the tick period failed: {}",
            crate::status_name(status)
        );
        return None;
    }
    Some(config)
}

struct RootAdapter<P: Plugin> {
    context_id: u32,
    shared: Option<Rc<Shared<P>>>,
}

impl<P: Plugin> Context for RootAdapter<P> {}

impl<P: Plugin> RootContext for RootAdapter<P> {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(config) = load_configuration(P::NAME, P::configure, P::tick_period) else {
            return false;
        };
        self.shared = Some(Rc::new(Shared {
            config,
            root_context_id: self.context_id,
            delayed: RefCell::new(Vec::new()),
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            shared.resume_due_streams(crate::clock::now());
            P::on_tick(&Root {
                shared: Rc::clone(shared),
            });
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.shared {
            Some(shared) => {
                let http = Http::new(context_id, Rc::clone(shared));
                let plugin = P::create(&http);
                Box::new(HttpAdapter { plugin, http })
            }
            // The host does not create streams for a plugin that failed to
            // configure; if one does, let traffic through untouched.
            None => Box::new(Unconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Unconfigured;

impl Context for Unconfigured {}
impl HttpContext for Unconfigured {}

struct HttpAdapter<P: Plugin> {
    plugin: P,
    http: Http<P>,
}

impl<P: Plugin> Context for HttpAdapter<P> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.http
            .complete_call(&mut self.plugin, token_id, num_headers, body_size);
    }

    fn on_done(&mut self) -> bool {
        self.http.shared().forget_stream(self.http.context_id());
        true
    }
}

impl<P: Plugin> HttpAdapter<P> {
    /// Runs a hook with `field` in reach (and `on_demand` trailers
    /// writable); Continue takes them out of reach again, Pause keeps them.
    fn hook(
        &mut self,
        field: Field,
        on_demand: Option<Field>,
        run: impl FnOnce(&mut P, &mut Http<P>) -> Action,
    ) -> Action {
        let reach = self.http.reach.clone();
        reach.grant(field);
        if let Some(trailers) = on_demand {
            reach.grant_on_demand(trailers);
        }
        let action = run(&mut self.plugin, &mut self.http);
        if field == Field::RequestHeaders {
            self.http.keep_request_headers();
        }
        if action == Action::Continue {
            reach.withdraw(field);
            if let Some(trailers) = on_demand {
                reach.withdraw(trailers);
            }
        }
        action
    }
}

impl<P: Plugin> HttpContext for HttpAdapter<P> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.hook(Field::RequestHeaders, None, |p, http| {
            p.on_request_headers(http, end_of_stream)
        })
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let on_demand = end_of_stream.then_some(Field::RequestTrailers);
        self.hook(Field::RequestBody, on_demand, |p, http| {
            p.on_request_body(http, body_size, end_of_stream)
        })
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hook(Field::RequestTrailers, None, |p, http| {
            p.on_request_trailers(http)
        })
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.hook(Field::ResponseHeaders, None, |p, http| {
            p.on_response_headers(http, end_of_stream)
        })
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let on_demand = end_of_stream.then_some(Field::ResponseTrailers);
        self.hook(Field::ResponseBody, on_demand, |p, http| {
            p.on_response_body(http, body_size, end_of_stream)
        })
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hook(Field::ResponseTrailers, None, |p, http| {
            p.on_response_trailers(http)
        })
    }

    fn on_log(&mut self) {
        self.http.reach.set_in_log(true);
        self.plugin.on_log(&mut self.http);
        self.http.reach.set_in_log(false);
    }
}

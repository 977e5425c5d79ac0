//! `test-filter-probe`: a harness test filter, not an example. Its plugin
//! configuration (JSON, see `script.rs`) scripts which hostcalls to make in
//! which callback and what each callback returns; every result is logged as
//! `<label>: <STATUS> ...` so harness tests can assert exact status codes,
//! data and ordering. Callback entries are logged as `cb <name> ctx=<id> ...`
//! when `trace` is on.

// The raw imports in abi.rs use plain integers where the SDK uses enums.
#![allow(clashing_extern_declarations)]

mod abi;
mod exec;
mod script;

use exec::{run, say};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use script::{ActionRule, Callouts, HttpScript, Phase, ProbeConfig};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { context_id, config: Rc::new(ProbeConfig::default()) })
    });
}}

fn parse(bytes: &[u8], what: &str) -> Option<ProbeConfig> {
    match serde_json::from_slice(bytes) {
        Ok(config) => Some(config),
        Err(error) => {
            abi::log(4, &format!("probe: invalid {what} configuration: {error}"));
            None
        }
    }
}

struct ProbeRoot {
    context_id: u32,
    config: Rc<ProbeConfig>,
}

impl ProbeRoot {
    fn trace(&self, callback: &str, rest: &str) {
        if self.config.trace {
            say(&format!("cb {callback} ctx={}{rest}", self.context_id));
        }
    }
}

fn run_callout(steps: &Callouts, pick: fn(&Callouts) -> &Vec<script::Step>, trace: Option<String>) {
    if let Some(line) = trace {
        say(&line);
    }
    run(pick(steps));
}

impl Context for ProbeRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        let trace = self.config.trace.then(|| {
            format!(
                "cb http_call_response ctx={} token={token} headers={headers} body={body} trailers={trailers}",
                self.context_id
            )
        });
        run_callout(&self.config.root_callouts, |c| &c.http_call_response, trace);
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let trace = self.config.trace.then(|| {
            format!(
                "cb grpc_call_response ctx={} token={token} status={status} size={size}",
                self.context_id
            )
        });
        run_callout(&self.config.root_callouts, |c| &c.grpc_call_response, trace);
    }

    fn on_grpc_stream_initial_metadata(&mut self, token: u32, count: u32) {
        let trace = self.config.trace.then(|| {
            format!(
                "cb grpc_stream_initial_metadata ctx={} token={token} count={count}",
                self.context_id
            )
        });
        run_callout(
            &self.config.root_callouts,
            |c| &c.grpc_stream_initial_metadata,
            trace,
        );
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        let trace = self.config.trace.then(|| {
            format!(
                "cb grpc_stream_message ctx={} token={token} size={size}",
                self.context_id
            )
        });
        run_callout(
            &self.config.root_callouts,
            |c| &c.grpc_stream_message,
            trace,
        );
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token: u32, count: u32) {
        let trace = self.config.trace.then(|| {
            format!(
                "cb grpc_stream_trailing_metadata ctx={} token={token} count={count}",
                self.context_id
            )
        });
        run_callout(
            &self.config.root_callouts,
            |c| &c.grpc_stream_trailing_metadata,
            trace,
        );
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        let trace = self.config.trace.then(|| {
            format!(
                "cb grpc_stream_close ctx={} token={token} status={status}",
                self.context_id
            )
        });
        run_callout(&self.config.root_callouts, |c| &c.grpc_stream_close, trace);
    }
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        if vm_configuration_size == 0 {
            return true;
        }
        let (_, bytes) = abi::get_buffer(6, 0, vm_configuration_size);
        let Some(vm_config) = parse(&bytes, "VM") else {
            return false;
        };
        if vm_config.trace {
            say(&format!(
                "cb vm_start ctx={} size={vm_configuration_size}",
                self.context_id
            ));
        }
        run(&vm_config.vm_start);
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let (_, bytes) = abi::get_buffer(7, 0, plugin_configuration_size);
        let Some(config) = parse(&bytes, "plugin") else {
            return false;
        };
        self.config = Rc::new(config);
        self.trace("configure", &format!(" size={plugin_configuration_size}"));
        run(&self.config.configure);
        if !self.config.configure_result {
            abi::log(
                4,
                "probe: configure_result is false; rejecting the configuration",
            );
        }
        self.config.configure_result
    }

    fn on_tick(&mut self) {
        self.trace("tick", "");
        run(&self.config.tick);
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        self.trace("queue_ready", &format!(" queue={queue_id}"));
        run(&self.config.queue_ready);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.config.trace {
            say(&format!(
                "cb create_http_context ctx={context_id} root={}",
                self.context_id
            ));
        }
        Some(Box::new(ProbeStream {
            context_id,
            config: Rc::clone(&self.config),
            route: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ProbeStream {
    context_id: u32,
    config: Rc<ProbeConfig>,
    /// The `routes` key chosen from :path in on_request_headers.
    route: Option<String>,
}

impl ProbeStream {
    fn script(&self) -> &HttpScript {
        self.route
            .as_ref()
            .and_then(|path| self.config.routes.get(path))
            .unwrap_or(&self.config.http)
    }

    /// Logs `cb <name> ctx=<id> <args>`; `args` is only built when tracing.
    fn trace(&self, name: &str, args: impl FnOnce() -> String) {
        if self.config.trace {
            let args = args();
            let sep = if args.is_empty() { "" } else { " " };
            say(&format!("cb {name} ctx={}{sep}{args}", self.context_id));
        }
    }

    fn phase(&self, pick: fn(&HttpScript) -> &Phase, end_of_stream: bool) -> Action {
        let phase = pick(self.script());
        run(&phase.steps);
        match phase.action {
            ActionRule::Continue => Action::Continue,
            ActionRule::Pause => Action::Pause,
            ActionRule::PauseUntilEos if end_of_stream => Action::Continue,
            ActionRule::PauseUntilEos => Action::Pause,
        }
    }

    fn callout(&self, pick: fn(&Callouts) -> &Vec<script::Step>) {
        run(pick(&self.script().callouts));
    }
}

impl Context for ProbeStream {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        self.trace("http_call_response", || {
            format!("token={token} headers={headers} body={body} trailers={trailers}")
        });
        self.callout(|c| &c.http_call_response);
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        self.trace("grpc_call_response", || {
            format!("token={token} status={status} size={size}")
        });
        self.callout(|c| &c.grpc_call_response);
    }

    fn on_grpc_stream_initial_metadata(&mut self, token: u32, count: u32) {
        self.trace("grpc_stream_initial_metadata", || {
            format!("token={token} count={count}")
        });
        self.callout(|c| &c.grpc_stream_initial_metadata);
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        self.trace("grpc_stream_message", || {
            format!("token={token} size={size}")
        });
        self.callout(|c| &c.grpc_stream_message);
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token: u32, count: u32) {
        self.trace("grpc_stream_trailing_metadata", || {
            format!("token={token} count={count}")
        });
        self.callout(|c| &c.grpc_stream_trailing_metadata);
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        self.trace("grpc_stream_close", || {
            format!("token={token} status={status}")
        });
        self.callout(|c| &c.grpc_stream_close);
    }

    fn on_done(&mut self) -> bool {
        self.trace("done", String::new);
        run(&self.script().done);
        true
    }
}

impl HttpContext for ProbeStream {
    fn on_http_request_headers(&mut self, headers: usize, end_of_stream: bool) -> Action {
        if !self.config.routes.is_empty() {
            let (status, path) = abi::get_value(0, ":path");
            if status == 0 {
                self.route = Some(String::from_utf8_lossy(&path).into_owned());
            }
        }
        self.trace("request_headers", || {
            format!("headers={headers} eos={end_of_stream}")
        });
        self.phase(|s| &s.request_headers, end_of_stream)
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.trace("request_body", || {
            format!("size={size} eos={end_of_stream}")
        });
        self.phase(|s| &s.request_body, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, trailers: usize) -> Action {
        self.trace("request_trailers", || format!("trailers={trailers}"));
        self.phase(|s| &s.request_trailers, true)
    }

    fn on_http_response_headers(&mut self, headers: usize, end_of_stream: bool) -> Action {
        self.trace("response_headers", || {
            format!("headers={headers} eos={end_of_stream}")
        });
        self.phase(|s| &s.response_headers, end_of_stream)
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.trace("response_body", || {
            format!("size={size} eos={end_of_stream}")
        });
        self.phase(|s| &s.response_body, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, trailers: usize) -> Action {
        self.trace("response_trailers", || format!("trailers={trailers}"));
        self.phase(|s| &s.response_trailers, true)
    }

    fn on_log(&mut self) {
        self.trace("log", String::new);
        run(&self.script().log);
    }
}

//! The plugin trait: what a filter implements instead of the raw SDK's root and
//! http context traits. [`crate::plugin!`] wires it to the host.

use crate::config::ConfigError;
use crate::http::Http;
use crate::runtime::Root;
use crate::types::Action;
use std::time::Duration;

/// An HTTP filter. One value is created per HTTP stream; the validated
/// configuration is shared by every stream of a worker (read it with
/// [`Http::config`]).
pub trait Plugin: Sized + 'static {
    /// Used in log lines and configuration errors (`response-header: invalid configuration ...`).
    const NAME: &'static str;

    /// The validated, ready-to-use configuration (regexes compiled, keys parsed, ...).
    type Config: 'static;

    /// Parses and validates the plugin configuration bytes. Runs in the root
    /// context, so it may also define metrics. Usually
    /// `sdk_ext::config::from_json(raw)`.
    fn configure(raw: &[u8]) -> Result<Self::Config, ConfigError>;

    /// Request headers to keep for the hooks after on_request_headers
    /// (read with [`Http::kept_request_header`]). Envoy takes the request
    /// headers out of a filter's reach once on_request_headers returns
    /// Continue, so a response hook cannot read them; name here what it needs.
    const KEEP_REQUEST_HEADERS: &'static [&'static str] = &[];

    /// Creates the per-stream state (no header map is in reach yet).
    fn create(http: &Http<Self>) -> Self;

    fn on_request_headers(&mut self, _http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// `body_size` is the size of everything buffered so far.
    fn on_request_body(
        &mut self,
        _http: &mut Http<Self>,
        _body_size: usize,
        _end_of_stream: bool,
    ) -> Action {
        Action::Continue
    }

    fn on_request_trailers(&mut self, _http: &mut Http<Self>) -> Action {
        Action::Continue
    }

    fn on_response_headers(&mut self, _http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// `body_size` is the size of everything buffered so far.
    fn on_response_body(
        &mut self,
        _http: &mut Http<Self>,
        _body_size: usize,
        _end_of_stream: bool,
    ) -> Action {
        Action::Continue
    }

    fn on_response_trailers(&mut self, _http: &mut Http<Self>) -> Action {
        Action::Continue
    }

    /// The stream is complete (Envoy calls this before `on_done`).
    fn on_log(&mut self, _http: &mut Http<Self>) {}

    /// How often [`Plugin::on_tick`] runs on each worker, if at all. Also the
    /// granularity of [`Http::resume_request_after`].
    fn tick_period(_config: &Self::Config) -> Option<Duration> {
        None
    }

    /// Periodic work on each worker's root context.
    fn on_tick(_root: &Root<Self>) {}
}

//! The per-stream handle a plugin's hooks receive: headers, bodies, local
//! replies, resuming, callouts, the shared configuration and a log prefix.

use crate::callout::{CallOutcome, CallResponse, HttpCall};
use crate::ffi::HostStatus;
use crate::headers::Headers;
use crate::plugin::Plugin;
use crate::reach::{Field, Reach};
use crate::response::LocalResponse;
use crate::runtime::{Shared, StreamDirection};
use crate::types::{BufferType, Bytes, MapType};
use proxy_wasm::hostcalls;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

type CallCallback<P> = Box<dyn FnOnce(&mut P, &mut Http<P>, CallOutcome)>;

/// One HTTP stream as seen by plugin `P`.
pub struct Http<P: Plugin> {
    context_id: u32,
    shared: Rc<Shared<P>>,
    calls: HashMap<u32, CallCallback<P>>,
    log_prefix: OnceCell<String>,
    pub(crate) reach: Reach,
    /// The values of [`Plugin::KEEP_REQUEST_HEADERS`], as on_request_headers left them.
    kept: Vec<(&'static str, Option<Bytes>)>,
}

impl<P: Plugin> Http<P> {
    pub(crate) fn new(context_id: u32, shared: Rc<Shared<P>>) -> Self {
        Self {
            context_id,
            shared,
            calls: HashMap::new(),
            log_prefix: OnceCell::new(),
            reach: Reach::default(),
            kept: Vec::new(),
        }
    }

    /// The validated configuration of this worker's root context.
    pub fn config(&self) -> &P::Config {
        &self.shared.config
    }

    pub fn context_id(&self) -> u32 {
        self.context_id
    }

    pub(crate) fn shared(&self) -> &Shared<P> {
        &self.shared
    }

    fn headers(&self, map: MapType, field: Field) -> Headers {
        Headers::of_stream(map, field, self.reach.clone(), P::NAME)
    }

    /// The request headers: in on_request_headers, and while the request
    /// stays paused from it (a callout's answer, a delayed resume). Later
    /// hooks find them out of reach, as in Envoy; keep what they need with
    /// [`Plugin::KEEP_REQUEST_HEADERS`] or in the plugin's state. on_log
    /// reads them as they were sent upstream.
    pub fn request_headers(&self) -> Headers {
        self.headers(MapType::HttpRequestHeaders, Field::RequestHeaders)
    }

    /// The response headers: in on_response_headers and while the response
    /// stays paused from it; on_log reads them as they were sent.
    pub fn response_headers(&self) -> Headers {
        self.headers(MapType::HttpResponseHeaders, Field::ResponseHeaders)
    }

    /// The request trailers: in on_request_trailers; in the last
    /// on_request_body of a request without trailers they can be added.
    pub fn request_trailers(&self) -> Headers {
        self.headers(MapType::HttpRequestTrailers, Field::RequestTrailers)
    }

    /// The response trailers: in on_response_trailers; in the last
    /// on_response_body of a response without trailers they can be added.
    pub fn response_trailers(&self) -> Headers {
        self.headers(MapType::HttpResponseTrailers, Field::ResponseTrailers)
    }

    /// The buffered request body (in `on_request_body`; empty elsewhere).
    pub fn request_body(&self) -> Bytes {
        self.read_body(BufferType::HttpRequestBody, Field::RequestBody)
    }

    /// The buffered response body (in `on_response_body`; empty elsewhere).
    pub fn response_body(&self) -> Bytes {
        self.read_body(BufferType::HttpResponseBody, Field::ResponseBody)
    }

    /// Replaces the whole buffered request body (in `on_request_body`).
    pub fn set_request_body(&self, body: &[u8]) {
        self.replace_body(BufferType::HttpRequestBody, Field::RequestBody, body);
    }

    /// Replaces the whole buffered response body (in `on_response_body`).
    pub fn set_response_body(&self, body: &[u8]) {
        self.replace_body(BufferType::HttpResponseBody, Field::ResponseBody, body);
    }

    /// A request header named in [`Plugin::KEEP_REQUEST_HEADERS`], as
    /// on_request_headers left it; readable in every later hook.
    pub fn kept_request_header(&self, name: &str) -> Option<&[u8]> {
        self.kept
            .iter()
            .find(|(kept, _)| kept.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_deref())
    }

    /// Reads the headers the plugin keeps (called at the end of on_request_headers).
    pub(crate) fn keep_request_headers(&mut self) {
        if P::KEEP_REQUEST_HEADERS.is_empty() {
            return;
        }
        let headers = self.request_headers();
        self.kept = P::KEEP_REQUEST_HEADERS
            .iter()
            .map(|name| (*name, headers.get(name)))
            .collect();
    }

    fn read_body(&self, buffer: BufferType, field: Field) -> Bytes {
        if !self.reach.can_read(field) {
            self.reach.warn_out_of_reach(field, P::NAME);
            return Vec::new();
        }
        match hostcalls::get_buffer(buffer, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log::debug!(
                    "reading buffer {buffer:?} failed: {}",
                    crate::status_name(status)
                );
                Vec::new()
            }
        }
    }

    fn replace_body(&self, buffer: BufferType, field: Field, body: &[u8]) {
        if !self.reach.can_write(field) {
            self.reach.warn_out_of_reach(field, P::NAME);
            return;
        }
        // start 0 with a size past the end replaces everything (Envoy's copyFrom).
        if let Err(status) = hostcalls::set_buffer(buffer, 0, usize::MAX, body) {
            log::warn!(
                "replacing buffer {buffer:?} failed: {}",
                crate::status_name(status)
            );
        }
    }

    /// Answers the client locally. The host applies it when the current hook
    /// returns; return [`crate::Action::Pause`] from the hook.
    pub fn send_local_response(&self, reply: &LocalResponse) {
        if let Err(status) = reply.send() {
            log::error!(
                "{}: sending a local {} reply failed: {status}",
                self.log_prefix(),
                reply.status()
            );
        }
    }

    /// Resumes a request paused by an earlier hook. Its headers and body
    /// leave the filter's reach at once.
    pub fn resume_request(&self) {
        self.reach.resumed(true);
        if let Err(status) = hostcalls::resume_http_request() {
            log::warn!(
                "{}: resuming the request failed: {}",
                self.log_prefix(),
                crate::status_name(status)
            );
        }
    }

    /// Resumes a response paused by an earlier hook. Its headers and body
    /// (and the request's) leave the filter's reach at once.
    pub fn resume_response(&self) {
        self.reach.resumed(false);
        if let Err(status) = hostcalls::resume_http_response() {
            log::warn!(
                "{}: resuming the response failed: {}",
                self.log_prefix(),
                crate::status_name(status)
            );
        }
    }

    /// Resumes the (paused) request once `delay` has passed on the host clock.
    /// Needs [`Plugin::tick_period`]: the delay is checked on each tick.
    pub fn resume_request_after(&self, delay: Duration) {
        self.shared.schedule_resume(
            self.context_id,
            StreamDirection::Request,
            self.now() + delay,
            self.reach.clone(),
        );
    }

    /// Resumes the (paused) response once `delay` has passed on the host clock.
    pub fn resume_response_after(&self, delay: Duration) {
        self.shared.schedule_resume(
            self.context_id,
            StreamDirection::Response,
            self.now() + delay,
            self.reach.clone(),
        );
    }

    /// Host time (virtual time in the harness).
    pub fn now(&self) -> SystemTime {
        crate::clock::now()
    }

    /// Sends `call`; `on_answer` runs on this stream when the answer, a failure
    /// or the timeout arrives. Usually the hook then returns `Action::Pause` and
    /// the callback resumes the request or sends a local reply.
    pub fn dispatch_call(
        &mut self,
        call: &HttpCall,
        on_answer: impl FnOnce(&mut P, &mut Http<P>, CallOutcome) + 'static,
    ) -> Result<u32, HostStatus> {
        let token = call.dispatch()?;
        self.calls.insert(token, Box::new(on_answer));
        Ok(token)
    }

    /// Number of callouts still waiting for an answer.
    pub fn pending_calls(&self) -> usize {
        self.calls.len()
    }

    pub(crate) fn complete_call(
        &mut self,
        plugin: &mut P,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(callback) = self.calls.remove(&token) else {
            log::warn!(
                "{}: answer for unknown call token {token}",
                self.log_prefix()
            );
            return;
        };
        let outcome = if num_headers == 0 {
            CallOutcome::Failed
        } else {
            let headers = Headers::CALL_RESPONSE.pairs();
            let status = crate::headers::find(&headers, ":status")
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<u32>().ok());
            match status {
                Some(status) => {
                    let body = if body_size == 0 {
                        Vec::new()
                    } else {
                        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                    };
                    CallOutcome::Response(CallResponse {
                        status,
                        headers,
                        body,
                    })
                }
                None => CallOutcome::Failed,
            }
        };
        callback(plugin, self, outcome);
    }

    /// `"<plugin name> [<request id>]"`, for log lines about this stream. The
    /// plugin name is the host's `plugin_name` property (falls back to
    /// [`Plugin::NAME`]); the request id is `x-request-id`, read where the
    /// request headers are in reach or kept ([`Plugin::KEEP_REQUEST_HEADERS`]),
    /// else `-`.
    pub fn log_prefix(&self) -> &str {
        self.log_prefix.get_or_init(|| {
            let name = crate::property::get_string(&["plugin_name"])
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| P::NAME.to_string());
            let request_id = match self.kept_request_header("x-request-id") {
                Some(id) => Some(String::from_utf8_lossy(id).into_owned()),
                None if self.reach.can_read(Field::RequestHeaders) => {
                    self.request_headers().get_str("x-request-id")
                }
                None => None,
            };
            let request_id = request_id.unwrap_or_else(|| "-".to_string());
            format!("{name} [{request_id}]")
        })
    }
}

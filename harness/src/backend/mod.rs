//! Backends: how guest memory is reached and guest exports are called.
//! Everything else (hostcall semantics, the lifecycle) is shared.

#[cfg(unix)]
pub mod native;
pub mod wasm;

use crate::host::Host;

/// A guest export the host calls, with its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callback {
    /// WASI reactor initialisation.
    Initialize,
    /// `main(0, 0)` / `__main_void` after `_initialize`.
    Main,
    /// WASI command entry point, when there is no `_initialize`.
    Start,
    /// `proxy_on_context_create(context_id, parent_context_id)`.
    ContextCreate { context_id: u32, parent_id: u32 },
    /// `proxy_on_vm_start(root_context_id, vm_configuration_size)`.
    VmStart { context_id: u32, size: u64 },
    /// `proxy_on_configure(root_context_id, plugin_configuration_size)`.
    Configure { context_id: u32, size: u64 },
    /// `proxy_on_tick(root_context_id)`.
    Tick { context_id: u32 },
    /// `proxy_on_queue_ready(root_context_id, queue_id)`.
    QueueReady { context_id: u32, queue_id: u32 },
    /// `proxy_on_request_headers(context_id, headers, end_of_stream)`.
    RequestHeaders {
        context_id: u32,
        headers: u64,
        end_of_stream: bool,
    },
    /// `proxy_on_request_body(context_id, body_size, end_of_stream)`.
    RequestBody {
        context_id: u32,
        size: u64,
        end_of_stream: bool,
    },
    /// `proxy_on_request_trailers(context_id, trailers)`.
    RequestTrailers { context_id: u32, trailers: u64 },
    /// `proxy_on_response_headers(context_id, headers, end_of_stream)`.
    ResponseHeaders {
        context_id: u32,
        headers: u64,
        end_of_stream: bool,
    },
    /// `proxy_on_response_body(context_id, body_size, end_of_stream)`.
    ResponseBody {
        context_id: u32,
        size: u64,
        end_of_stream: bool,
    },
    /// `proxy_on_response_trailers(context_id, trailers)`.
    ResponseTrailers { context_id: u32, trailers: u64 },
    /// `proxy_on_log(context_id)`.
    Log { context_id: u32 },
    /// `proxy_on_done(context_id)`.
    Done { context_id: u32 },
    /// `proxy_on_delete(context_id)`.
    Delete { context_id: u32 },
    /// `proxy_on_http_call_response(root_context_id, token, headers, body_size, trailers)`.
    HttpCallResponse {
        context_id: u32,
        token: u32,
        headers: u64,
        body_size: u64,
        trailers: u64,
    },
    /// `proxy_on_grpc_receive_initial_metadata(root_context_id, token, headers)`.
    GrpcReceiveInitialMetadata {
        context_id: u32,
        token: u32,
        headers: u64,
    },
    /// `proxy_on_grpc_receive(root_context_id, token, message_size)`.
    GrpcReceive {
        context_id: u32,
        token: u32,
        size: u64,
    },
    /// `proxy_on_grpc_receive_trailing_metadata(root_context_id, token, trailers)`.
    GrpcReceiveTrailingMetadata {
        context_id: u32,
        token: u32,
        trailers: u64,
    },
    /// `proxy_on_grpc_close(root_context_id, token, status_code)`.
    GrpcClose {
        context_id: u32,
        token: u32,
        status: u32,
    },
}

impl Callback {
    /// The export's name.
    pub fn name(&self) -> &'static str {
        match self {
            Callback::Initialize => "_initialize",
            Callback::Main => "main",
            Callback::Start => "_start",
            Callback::ContextCreate { .. } => "proxy_on_context_create",
            Callback::VmStart { .. } => "proxy_on_vm_start",
            Callback::Configure { .. } => "proxy_on_configure",
            Callback::Tick { .. } => "proxy_on_tick",
            Callback::QueueReady { .. } => "proxy_on_queue_ready",
            Callback::RequestHeaders { .. } => "proxy_on_request_headers",
            Callback::RequestBody { .. } => "proxy_on_request_body",
            Callback::RequestTrailers { .. } => "proxy_on_request_trailers",
            Callback::ResponseHeaders { .. } => "proxy_on_response_headers",
            Callback::ResponseBody { .. } => "proxy_on_response_body",
            Callback::ResponseTrailers { .. } => "proxy_on_response_trailers",
            Callback::Log { .. } => "proxy_on_log",
            Callback::Done { .. } => "proxy_on_done",
            Callback::Delete { .. } => "proxy_on_delete",
            Callback::HttpCallResponse { .. } => "proxy_on_http_call_response",
            Callback::GrpcReceiveInitialMetadata { .. } => "proxy_on_grpc_receive_initial_metadata",
            Callback::GrpcReceive { .. } => "proxy_on_grpc_receive",
            Callback::GrpcReceiveTrailingMetadata { .. } => {
                "proxy_on_grpc_receive_trailing_metadata"
            }
            Callback::GrpcClose { .. } => "proxy_on_grpc_close",
        }
    }

    /// The context the callback runs in (0 for start-up).
    pub fn context_id(&self) -> u32 {
        match *self {
            Callback::Initialize | Callback::Main | Callback::Start => 0,
            Callback::ContextCreate { context_id, .. }
            | Callback::VmStart { context_id, .. }
            | Callback::Configure { context_id, .. }
            | Callback::Tick { context_id }
            | Callback::QueueReady { context_id, .. }
            | Callback::RequestHeaders { context_id, .. }
            | Callback::RequestBody { context_id, .. }
            | Callback::RequestTrailers { context_id, .. }
            | Callback::ResponseHeaders { context_id, .. }
            | Callback::ResponseBody { context_id, .. }
            | Callback::ResponseTrailers { context_id, .. }
            | Callback::Log { context_id }
            | Callback::Done { context_id }
            | Callback::Delete { context_id }
            | Callback::HttpCallResponse { context_id, .. }
            | Callback::GrpcReceiveInitialMetadata { context_id, .. }
            | Callback::GrpcReceive { context_id, .. }
            | Callback::GrpcReceiveTrailingMetadata { context_id, .. }
            | Callback::GrpcClose { context_id, .. } => context_id,
        }
    }

    /// Arguments as passed, for traces.
    pub fn args(&self) -> Vec<u64> {
        let b = u64::from;
        match *self {
            Callback::Initialize | Callback::Start => vec![],
            Callback::Main => vec![0, 0],
            Callback::ContextCreate {
                context_id,
                parent_id,
            } => vec![b(context_id), b(parent_id)],
            Callback::VmStart { context_id, size } | Callback::Configure { context_id, size } => {
                vec![b(context_id), size]
            }
            Callback::Tick { context_id } | Callback::Log { context_id } => vec![b(context_id)],
            Callback::Done { context_id } | Callback::Delete { context_id } => vec![b(context_id)],
            Callback::QueueReady {
                context_id,
                queue_id,
            } => vec![b(context_id), b(queue_id)],
            Callback::RequestHeaders {
                context_id,
                headers,
                end_of_stream,
            }
            | Callback::ResponseHeaders {
                context_id,
                headers,
                end_of_stream,
            } => {
                vec![b(context_id), headers, u64::from(end_of_stream)]
            }
            Callback::RequestBody {
                context_id,
                size,
                end_of_stream,
            }
            | Callback::ResponseBody {
                context_id,
                size,
                end_of_stream,
            } => {
                vec![b(context_id), size, u64::from(end_of_stream)]
            }
            Callback::RequestTrailers {
                context_id,
                trailers,
            }
            | Callback::ResponseTrailers {
                context_id,
                trailers,
            } => vec![b(context_id), trailers],
            Callback::HttpCallResponse {
                context_id,
                token,
                headers,
                body_size,
                trailers,
            } => {
                vec![b(context_id), b(token), headers, body_size, trailers]
            }
            Callback::GrpcReceiveInitialMetadata {
                context_id,
                token,
                headers,
            } => vec![b(context_id), b(token), headers],
            Callback::GrpcReceive {
                context_id,
                token,
                size,
            } => vec![b(context_id), b(token), size],
            Callback::GrpcReceiveTrailingMetadata {
                context_id,
                token,
                trailers,
            } => {
                vec![b(context_id), b(token), trailers]
            }
            Callback::GrpcClose {
                context_id,
                token,
                status,
            } => vec![b(context_id), b(token), b(status)],
        }
    }

    /// What Envoy assumes when the module does not export this callback:
    /// true for vm_start/configure/done, Continue (0) for stream callbacks.
    pub fn default_result(&self) -> u64 {
        match self {
            Callback::VmStart { .. } | Callback::Configure { .. } | Callback::Done { .. } => 1,
            _ => 0,
        }
    }
}

/// The start-up entry points a module exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartExports {
    /// `_initialize`.
    pub initialize: bool,
    /// `main` or `__main_void`.
    pub main: bool,
    /// `_start`.
    pub start: bool,
}

/// A loaded filter instance: one VM. The lifecycle driver only talks to this.
pub trait Vm {
    /// The host state behind this VM's hostcalls.
    fn host(&mut self) -> &mut Host;
    /// Read-only host state.
    fn host_ref(&self) -> &Host;
    /// Which start-up entry points exist.
    fn start_exports(&self) -> StartExports;
    /// Calls a guest export; a missing optional export returns
    /// [`Callback::default_result`]. `Err` carries the trap text.
    fn call(&mut self, callback: Callback) -> Result<u64, String>;
}

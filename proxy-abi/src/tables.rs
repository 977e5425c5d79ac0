//! The three tables of the ABI, each written once as a macro that hands all
//! its entries to a macro of the caller's (the "X-macro" pattern): backends
//! generate their glue from them (linker registrations, C symbols, export
//! lookups, counters), and this crate turns them into the plain data below.
//!
//! Argument kinds: `u32` (an enum, id, token or level: i32 in wasm), `ptr`
//! (a guest address), `size` (a usize length or count), `i32`, `i64`, `u64`,
//! `bool` (i32 0/1 in wasm).

use crate::AbiVersion;

/// The Proxy-Wasm host functions: name, typed arguments (every one returns a
/// u32 status) and the ABI versions a module may import it from.
///
/// As proxy-wasm-cpp-host's `WasmBase::registerCallbacks`:
/// `proxy_get_log_level` only for 0.2.1; `proxy_continue_request`,
/// `proxy_continue_response`, `proxy_get_configuration` and
/// `proxy_clear_route_cache` only for 0.1.0; `proxy_continue_stream` and
/// `proxy_close_stream` only for 0.2.x. A module importing a function its
/// version does not offer fails to load, naming it.
///
/// `for_each_hostcall!(m)` expands to
/// `m! { name(arg: kind, ...) in [Version, ...]; ... }`.
#[macro_export]
macro_rules! for_each_hostcall {
    ($m:ident) => {
        $m! {
            proxy_log(level: u32, message: ptr, message_size: size) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_log_level(return_level: ptr) in [V0_2_1];
            proxy_get_current_time_nanoseconds(return_time: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_set_tick_period_milliseconds(period: u32) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_buffer_bytes(buffer_type: u32, start: size, max_size: size, return_data: ptr, return_size: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_set_buffer_bytes(buffer_type: u32, start: size, size: size, data: ptr, data_size: size) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_buffer_status(buffer_type: u32, return_length: ptr, return_flags: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_header_map_pairs(map_type: u32, return_data: ptr, return_size: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_set_header_map_pairs(map_type: u32, data: ptr, data_size: size) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_header_map_size(map_type: u32, return_size: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_header_map_value(map_type: u32, key: ptr, key_size: size, return_data: ptr, return_size: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_replace_header_map_value(map_type: u32, key: ptr, key_size: size, value: ptr, value_size: size) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_remove_header_map_value(map_type: u32, key: ptr, key_size: size) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_add_header_map_value(map_type: u32, key: ptr, key_size: size, value: ptr, value_size: size) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_property(path: ptr, path_size: size, return_data: ptr, return_size: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_set_property(path: ptr, path_size: size, value: ptr, value_size: size) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_shared_data(key: ptr, key_size: size, return_data: ptr, return_size: ptr, return_cas: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_set_shared_data(key: ptr, key_size: size, value: ptr, value_size: size, cas: u32) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_register_shared_queue(name: ptr, name_size: size, return_id: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_resolve_shared_queue(vm_id: ptr, vm_id_size: size, name: ptr, name_size: size, return_id: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_dequeue_shared_queue(queue_id: u32, return_data: ptr, return_size: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_enqueue_shared_queue(queue_id: u32, value: ptr, value_size: size) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_continue_stream(stream_type: u32) in [V0_2_0, V0_2_1];
            proxy_close_stream(stream_type: u32) in [V0_2_0, V0_2_1];
            proxy_send_local_response(status_code: u32, details: ptr, details_size: size, body: ptr, body_size: size, headers: ptr, headers_size: size, grpc_status: i32) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_http_call(upstream: ptr, upstream_size: size, headers: ptr, headers_size: size, body: ptr, body_size: size, trailers: ptr, trailers_size: size, timeout_ms: u32, return_token: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_grpc_call(upstream: ptr, upstream_size: size, service: ptr, service_size: size, method: ptr, method_size: size, metadata: ptr, metadata_size: size, message: ptr, message_size: size, timeout_ms: u32, return_token: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_grpc_stream(upstream: ptr, upstream_size: size, service: ptr, service_size: size, method: ptr, method_size: size, metadata: ptr, metadata_size: size, return_token: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_grpc_send(token: u32, message: ptr, message_size: size, end_stream: bool) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_grpc_cancel(token: u32) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_grpc_close(token: u32) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_status(return_code: ptr, return_data: ptr, return_size: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_set_effective_context(context_id: u32) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_call_foreign_function(name: ptr, name_size: size, arguments: ptr, arguments_size: size, return_data: ptr, return_size: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_done() in [V0_1_0, V0_2_0, V0_2_1];
            proxy_define_metric(metric_type: u32, name: ptr, name_size: size, return_id: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_get_metric(metric_id: u32, return_value: ptr) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_record_metric(metric_id: u32, value: u64) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_increment_metric(metric_id: u32, offset: i64) in [V0_1_0, V0_2_0, V0_2_1];
            proxy_continue_request() in [V0_1_0];
            proxy_continue_response() in [V0_1_0];
            proxy_get_configuration(return_data: ptr, return_size: ptr) in [V0_1_0];
            proxy_clear_route_cache() in [V0_1_0];
        }
    };
}

/// The module exports a host calls (the allocator and start-up aside):
/// the caller's variant name, export name, typed arguments, result kind
/// (`none`, `bool`: true when not exported, `action`: Continue when not
/// exported) and how many of the arguments each ABI version passes (a
/// prefix). Arities follow proxy-wasm-cpp-host `WasmBase::getFunctions`
/// (`on_request_headers_abi_01` against `_abi_02`).
///
/// `for_each_callback!(m)` expands to
/// `m! { Variant = export(arg: kind, ...) -> result, arity [Version: n, ...]; ... }`.
#[macro_export]
macro_rules! for_each_callback {
    ($m:ident) => {
        $m! {
            ContextCreate = proxy_on_context_create(context_id: u32, parent_id: u32) -> none, arity [V0_1_0: 2, V0_2_0: 2, V0_2_1: 2];
            VmStart = proxy_on_vm_start(context_id: u32, size: size) -> bool, arity [V0_1_0: 2, V0_2_0: 2, V0_2_1: 2];
            Configure = proxy_on_configure(context_id: u32, size: size) -> bool, arity [V0_1_0: 2, V0_2_0: 2, V0_2_1: 2];
            Tick = proxy_on_tick(context_id: u32) -> none, arity [V0_1_0: 1, V0_2_0: 1, V0_2_1: 1];
            QueueReady = proxy_on_queue_ready(context_id: u32, queue_id: u32) -> none, arity [V0_1_0: 2, V0_2_0: 2, V0_2_1: 2];
            RequestHeaders = proxy_on_request_headers(context_id: u32, headers: size, end_of_stream: bool) -> action, arity [V0_1_0: 2, V0_2_0: 3, V0_2_1: 3];
            RequestBody = proxy_on_request_body(context_id: u32, size: size, end_of_stream: bool) -> action, arity [V0_1_0: 3, V0_2_0: 3, V0_2_1: 3];
            RequestTrailers = proxy_on_request_trailers(context_id: u32, trailers: size) -> action, arity [V0_1_0: 2, V0_2_0: 2, V0_2_1: 2];
            ResponseHeaders = proxy_on_response_headers(context_id: u32, headers: size, end_of_stream: bool) -> action, arity [V0_1_0: 2, V0_2_0: 3, V0_2_1: 3];
            ResponseBody = proxy_on_response_body(context_id: u32, size: size, end_of_stream: bool) -> action, arity [V0_1_0: 3, V0_2_0: 3, V0_2_1: 3];
            ResponseTrailers = proxy_on_response_trailers(context_id: u32, trailers: size) -> action, arity [V0_1_0: 2, V0_2_0: 2, V0_2_1: 2];
            NewConnection = proxy_on_new_connection(context_id: u32) -> action, arity [V0_1_0: 1, V0_2_0: 1, V0_2_1: 1];
            DownstreamData = proxy_on_downstream_data(context_id: u32, size: size, end_of_stream: bool) -> action, arity [V0_1_0: 3, V0_2_0: 3, V0_2_1: 3];
            UpstreamData = proxy_on_upstream_data(context_id: u32, size: size, end_of_stream: bool) -> action, arity [V0_1_0: 3, V0_2_0: 3, V0_2_1: 3];
            DownstreamConnectionClose = proxy_on_downstream_connection_close(context_id: u32, peer_type: u32) -> none, arity [V0_1_0: 2, V0_2_0: 2, V0_2_1: 2];
            UpstreamConnectionClose = proxy_on_upstream_connection_close(context_id: u32, peer_type: u32) -> none, arity [V0_1_0: 2, V0_2_0: 2, V0_2_1: 2];
            Log = proxy_on_log(context_id: u32) -> none, arity [V0_1_0: 1, V0_2_0: 1, V0_2_1: 1];
            Done = proxy_on_done(context_id: u32) -> bool, arity [V0_1_0: 1, V0_2_0: 1, V0_2_1: 1];
            Delete = proxy_on_delete(context_id: u32) -> none, arity [V0_1_0: 1, V0_2_0: 1, V0_2_1: 1];
            HttpCallResponse = proxy_on_http_call_response(context_id: u32, token: u32, headers: size, body_size: size, trailers: size) -> none, arity [V0_1_0: 5, V0_2_0: 5, V0_2_1: 5];
            GrpcReceiveInitialMetadata = proxy_on_grpc_receive_initial_metadata(context_id: u32, token: u32, headers: size) -> none, arity [V0_1_0: 3, V0_2_0: 3, V0_2_1: 3];
            GrpcReceive = proxy_on_grpc_receive(context_id: u32, token: u32, size: size) -> none, arity [V0_1_0: 3, V0_2_0: 3, V0_2_1: 3];
            GrpcReceiveTrailingMetadata = proxy_on_grpc_receive_trailing_metadata(context_id: u32, token: u32, trailers: size) -> none, arity [V0_1_0: 3, V0_2_0: 3, V0_2_1: 3];
            GrpcClose = proxy_on_grpc_close(context_id: u32, token: u32, status: u32) -> none, arity [V0_1_0: 3, V0_2_0: 3, V0_2_1: 3];
        }
    };
}

/// The WASI functions a Proxy-Wasm host implements (served under every
/// name in [`WASI_MODULES`]): name, typed arguments and result (`errno`, or
/// `never` for `proc_exit`, which does not return). Any other WASI import
/// answers ENOSYS.
///
/// `for_each_wasi_function!(m)` expands to `m! { name(arg: kind, ...) -> result; ... }`.
#[macro_export]
macro_rules! for_each_wasi_function {
    ($m:ident) => {
        $m! {
            fd_write(fd: u32, iovs: ptr, iovs_len: size, nwritten: ptr) -> errno;
            fd_fdstat_get(fd: u32, stat: ptr) -> errno;
            fd_prestat_get(fd: u32, prestat: ptr) -> errno;
            environ_sizes_get(count: ptr, size: ptr) -> errno;
            environ_get(environ: ptr, buf: ptr) -> errno;
            args_sizes_get(count: ptr, size: ptr) -> errno;
            args_get(argv: ptr, buf: ptr) -> errno;
            clock_time_get(id: u32, precision: u64, time: ptr) -> errno;
            clock_res_get(id: u32, resolution: ptr) -> errno;
            fd_seek(fd: u32, offset: i64, whence: u32, new_offset: ptr) -> errno;
            fd_close(fd: u32) -> errno;
            random_get(buf: ptr, len: size) -> errno;
            poll_oneoff(input: ptr, output: ptr, subscriptions: size, nevents: ptr) -> errno;
            proc_exit(code: u32) -> never;
            sched_yield() -> errno;
        }
    };
}

/// The import modules WASI functions are served under.
pub const WASI_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

/// Every WASI function proxy-wasm-cpp-host registers under both modules
/// (`FOR_ALL_WASI_FUNCTIONS` in include/proxy-wasm/exports.h, registered by
/// `WasmBase::registerCallbacks` in src/wasm.cc); a module importing any
/// other WASI function fails to link there. Those not in
/// [`WASI_FUNCTIONS`] are stubs that answer an error.
pub const HOST_WASI_FUNCTIONS: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_seek",
    "fd_close",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "clock_res_get",
    "fd_advise",
    "fd_allocate",
    "fd_datasync",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_pwrite",
    "fd_readdir",
    "fd_renumber",
    "fd_sync",
    "fd_tell",
    "path_create_directory",
    "path_filestat_set_times",
    "path_link",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
    "random_get",
    "sched_yield",
    "poll_oneoff",
    "proc_exit",
    "path_open",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "path_filestat_get",
    "fd_filestat_get",
];

/// The host WASI functions a module may not call while it starts
/// (`_initialize`, `main`, `_start`): `WasmBase::startVm` (src/wasm.cc)
/// restricts callbacks to a list that holds every other one, and V8 traps a
/// call outside it (`restricted_callback`).
pub const WASI_REFUSED_AT_STARTUP: &[&str] = &[
    "fd_read",
    "fd_seek",
    "fd_close",
    "sched_yield",
    "proc_exit",
    "path_open",
];

/// The kind of one argument in a table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// An enum, id, token or level (i32 in wasm).
    U32,
    /// A guest address.
    Ptr,
    /// A length or count (usize).
    Size,
    /// A signed 32-bit value.
    I32,
    /// A signed 64-bit value.
    I64,
    /// An unsigned 64-bit value.
    U64,
    /// A flag (i32 0/1 in wasm).
    Bool,
}

/// What a callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackResult {
    /// Nothing.
    None,
    /// A flag; a module that does not export the callback counts as true.
    Bool,
    /// An [`crate::Action`]; not exported counts as Continue.
    Action,
}

/// One host function.
#[derive(Clone, Copy, Debug)]
pub struct HostcallSpec {
    /// `proxy_*` name.
    pub name: &'static str,
    /// Argument kinds in order.
    pub args: &'static [ArgKind],
    /// The ABI versions that provide it.
    pub versions: &'static [AbiVersion],
}

/// One callback export.
#[derive(Clone, Copy, Debug)]
pub struct CallbackSpec {
    /// `proxy_on_*` export name.
    pub export: &'static str,
    /// Argument names and kinds in order.
    pub args: &'static [(&'static str, ArgKind)],
    /// What it returns.
    pub result: CallbackResult,
    /// Arguments passed per ABI version (a prefix of `args`).
    pub arity: &'static [(AbiVersion, usize)],
}

impl CallbackSpec {
    /// How many arguments a module of `version` takes.
    pub fn arity_in(&self, version: AbiVersion) -> usize {
        self.arity
            .iter()
            .find(|(v, _)| *v == version)
            .map_or(self.args.len(), |(_, n)| *n)
    }
}

/// One WASI function.
#[derive(Clone, Copy, Debug)]
pub struct WasiSpec {
    /// Function name.
    pub name: &'static str,
    /// Argument kinds in order.
    pub args: &'static [ArgKind],
    /// Whether it returns an errno (false: it never returns).
    pub returns_errno: bool,
}

macro_rules! arg_kind {
    (u32) => {
        ArgKind::U32
    };
    (ptr) => {
        ArgKind::Ptr
    };
    (size) => {
        ArgKind::Size
    };
    (i32) => {
        ArgKind::I32
    };
    (i64) => {
        ArgKind::I64
    };
    (u64) => {
        ArgKind::U64
    };
    (bool) => {
        ArgKind::Bool
    };
}

macro_rules! callback_result {
    (none) => {
        CallbackResult::None
    };
    (bool) => {
        CallbackResult::Bool
    };
    (action) => {
        CallbackResult::Action
    };
}

macro_rules! returns_errno {
    (errno) => {
        true
    };
    (never) => {
        false
    };
}

macro_rules! hostcall_specs {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) in [$($abi:ident),*]; )*) => {
        /// Every host function, in table order.
        pub const HOSTCALLS: &[HostcallSpec] = &[$(
            HostcallSpec {
                name: stringify!($name),
                args: &[$(arg_kind!($kind)),*],
                versions: &[$(AbiVersion::$abi),*],
            },
        )*];
    };
}
for_each_hostcall!(hostcall_specs);

macro_rules! callback_specs {
    ($( $variant:ident = $export:ident ( $($arg:ident : $kind:ident),* ) -> $result:ident,
        arity [$($abi:ident : $n:literal),*]; )*) => {
        /// Every callback export, in table order.
        pub const CALLBACKS: &[CallbackSpec] = &[$(
            CallbackSpec {
                export: stringify!($export),
                args: &[$((stringify!($arg), arg_kind!($kind))),*],
                result: callback_result!($result),
                arity: &[$((AbiVersion::$abi, $n)),*],
            },
        )*];
    };
}
for_each_callback!(callback_specs);

macro_rules! wasi_specs {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) -> $result:ident; )*) => {
        /// Every WASI function the host implements, in table order.
        pub const WASI_FUNCTIONS: &[WasiSpec] = &[$(
            WasiSpec {
                name: stringify!($name),
                args: &[$(arg_kind!($kind)),*],
                returns_errno: returns_errno!($result),
            },
        )*];
    };
}
for_each_wasi_function!(wasi_specs);

/// The versions that provide host function `name`; `None` if it is not one.
pub fn hostcall_versions(name: &str) -> Option<&'static [AbiVersion]> {
    HOSTCALLS
        .iter()
        .find(|spec| spec.name == name)
        .map(|spec| spec.versions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn all_distinct(names: impl Iterator<Item = &'static str>) -> bool {
        let mut names: Vec<&str> = names.collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        names.len() == count
    }

    #[test]
    fn names_are_distinct_and_prefixed() {
        assert!(all_distinct(HOSTCALLS.iter().map(|h| h.name)));
        assert!(all_distinct(CALLBACKS.iter().map(|c| c.export)));
        assert!(all_distinct(WASI_FUNCTIONS.iter().map(|w| w.name)));
        assert!(HOSTCALLS.iter().all(|h| h.name.starts_with("proxy_")));
        assert!(CALLBACKS.iter().all(|c| c.export.starts_with("proxy_on_")));
    }

    #[test]
    fn imports_depend_on_the_version_as_in_cpp_host() {
        use AbiVersion::*;
        let offered = |name| hostcall_versions(name).unwrap_or(&[]);
        assert_eq!(offered("proxy_get_log_level"), &[V0_2_1]);
        assert!(V0_1_0.offers("proxy_log") && V0_2_1.offers("proxy_log"));
        assert!(V0_1_0.offers("proxy_continue_request"));
        assert!(!V0_2_1.offers("proxy_continue_request"));
        assert!(!V0_1_0.offers("proxy_continue_stream"));
        assert!(V0_2_0.offers("proxy_close_stream"));
        assert!(!V0_2_0.offers("proxy_get_log_level"));
        assert!(!V0_2_1.offers("not_a_hostcall"));
        let restricted: Vec<&str> = HOSTCALLS
            .iter()
            .filter(|h| h.versions.len() < AbiVersion::ALL.len())
            .map(|h| h.name)
            .collect();
        assert_eq!(
            restricted,
            [
                "proxy_get_log_level",
                "proxy_continue_stream",
                "proxy_close_stream",
                "proxy_continue_request",
                "proxy_continue_response",
                "proxy_get_configuration",
                "proxy_clear_route_cache",
            ]
        );
    }

    #[test]
    fn arities_are_prefixes_and_headers_differ_in_0_1_0() {
        for spec in CALLBACKS {
            assert_eq!(spec.args.first().map(|a| a.0), Some("context_id"));
            for (version, _) in AbiVersion::ALL {
                assert!(spec.arity_in(version) <= spec.args.len(), "{}", spec.export);
            }
        }
        let headers = CALLBACKS
            .iter()
            .find(|c| c.export == "proxy_on_request_headers")
            .map(|c| {
                (
                    c.arity_in(AbiVersion::V0_1_0),
                    c.arity_in(AbiVersion::V0_2_0),
                )
            });
        assert_eq!(headers, Some((2, 3)));
    }

    #[test]
    fn only_proc_exit_never_returns() {
        let never: Vec<&str> = WASI_FUNCTIONS
            .iter()
            .filter(|w| !w.returns_errno)
            .map(|w| w.name)
            .collect();
        assert_eq!(never, ["proc_exit"]);
    }

    #[test]
    fn the_host_registers_every_implemented_wasi_function() {
        for w in WASI_FUNCTIONS {
            assert!(HOST_WASI_FUNCTIONS.contains(&w.name), "{}", w.name);
        }
        for name in WASI_REFUSED_AT_STARTUP {
            assert!(HOST_WASI_FUNCTIONS.contains(name), "{name}");
        }
        assert!(all_distinct(HOST_WASI_FUNCTIONS.iter().copied()));
    }
}

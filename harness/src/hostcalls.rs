//! Every `proxy_*` host function, written once against [`Guest`]: how a
//! backend reaches guest memory, its pointer width, and its allocator.
//! The wasm backend implements it over linear memory (32-bit pointers,
//! bounds-checked); the native twin over process memory (64-bit pointers).
//!
//! Semantics follow Envoy (the harness README's "Envoy behaviour reproduced" lists them): status codes,
//! argument checks, lower-cased keys, deferred stream actions, empty values
//! returned as pointer 0 / size 0 without allocating.

use crate::abi::{self, AbiVersion, BufferType, MapType, MetricType, Status, StreamType};
use crate::host::{
    Deferred, Event, Field, GrpcPlan, Host, HttpPlan, LocalReplySpec, PendingGrpc, PendingHttp,
    Phase,
};
use crate::model::{
    ByteString, CalloutFailure, CalloutResult, GrpcCallRecord, Headers, HttpCallRecord, LogLevel,
    TraceEvent, TraceLevel,
};

/// A fault that must stop the guest (a trap): the host cannot continue the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault(pub String);

/// Guest memory as one backend sees it.
pub trait GuestMemory {
    /// Width in bytes of pointers and sizes written to out-parameters
    /// (4 for wasm32, 8 for a native 64-bit filter).
    const POINTER_SIZE: usize;
    /// `len` bytes at `addr`, or `None` if out of bounds.
    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]>;
    /// Writable `len` bytes at `addr`, or `None` if out of bounds.
    fn slice_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]>;
}

/// What a hostcall needs from a backend: the host state, guest memory
/// (borrowed together), and the guest allocator.
pub trait Guest {
    /// The backend's memory view.
    type Memory<'m>: GuestMemory
    where
        Self: 'm;
    /// The host state.
    fn host(&mut self) -> &mut Host;
    /// Runs `f` with the host state and guest memory borrowed at once.
    fn with_memory<R>(&mut self, f: impl FnOnce(&mut Host, &mut Self::Memory<'_>) -> R) -> R;
    /// Calls the guest allocator (`malloc`, else `proxy_on_memory_allocate`).
    /// Memory may grow: callers re-borrow memory afterwards.
    fn allocate(&mut self, size: u64) -> Result<u64, Fault>;
}

/// The table of Proxy-Wasm host functions ([`proxy_abi::for_each_hostcall!`]):
/// `m! { name(arg: kind, ...) in [AbiVersion, ...]; ... }`. Kept at
/// `harness::for_each_hostcall!` for code generated against the harness.
#[macro_export]
macro_rules! for_each_hostcall {
    ($m:ident) => {
        $crate::abi::for_each_hostcall! { $m }
    };
}

macro_rules! define_hostcall_ids {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) in [$($abi:ident),*]; )*) => {
        /// Index of each host function (for counts and traces).
        #[allow(non_camel_case_types, missing_docs)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Hostcall { $($name),* }
        /// Names of the Proxy-Wasm host functions, by [`Hostcall`] index.
        pub const PROXY_HOSTCALL_NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}
proxy_abi::for_each_hostcall!(define_hostcall_ids);

macro_rules! define_wasi_names {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) -> $result:ident; )*) => {
        /// The WASI functions the harness implements, in table order.
        #[allow(non_camel_case_types, missing_docs)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum WasiCall { $($name),* }
        /// WASI functions the harness implements (wasm backend only), then
        /// `wasi:other`, the counter of every other WASI import (they answer
        /// ENOSYS). Their counters follow the Proxy-Wasm ones.
        pub const WASI_NAMES: &[&str] = &[$(stringify!($name),)* "wasi:other"];
    };
}
proxy_abi::for_each_wasi_function!(define_wasi_names);

/// Number of counters: Proxy-Wasm functions then WASI ones.
pub const HOSTCALL_COUNT: usize = PROXY_HOSTCALL_NAMES.len() + WASI_NAMES.len();

/// Counter index of an implemented WASI function.
pub fn wasi_counter(call: WasiCall) -> usize {
    PROXY_HOSTCALL_NAMES.len() + call as usize
}

/// Counter index of a WASI function name (`wasi:other` for unknown ones).
pub fn wasi_index(name: &str) -> usize {
    let i = WASI_NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or(WASI_NAMES.len() - 1);
    PROXY_HOSTCALL_NAMES.len() + i
}

/// Name of a counter index.
pub fn hostcall_name(index: usize) -> &'static str {
    if index < PROXY_HOSTCALL_NAMES.len() {
        PROXY_HOSTCALL_NAMES[index]
    } else {
        WASI_NAMES
            .get(index - PROXY_HOSTCALL_NAMES.len())
            .copied()
            .unwrap_or("?")
    }
}

fn allowed_in(phase: Phase, index: usize) -> bool {
    match phase {
        Phase::Callback => true,
        Phase::Startup => {
            index == Hostcall::proxy_log as usize || index >= PROXY_HOSTCALL_NAMES.len()
        }
        Phase::Allocator => {
            index == Hostcall::proxy_log as usize
                || index == Hostcall::proxy_get_current_time_nanoseconds as usize
                || index == wasi_counter(WasiCall::fd_write)
                || index == wasi_counter(WasiCall::clock_time_get)
                || index == wasi_counter(WasiCall::poll_oneoff)
        }
    }
}

/// Runs one host function: counts it, enforces what the current phase
/// allows, runs `f`, records it in the trace when asked.
#[inline]
pub fn dispatch<G: Guest>(
    guest: &mut G,
    index: usize,
    args: &[u64],
    f: impl FnOnce(&mut G) -> Result<u32, Fault>,
) -> Result<u32, Fault> {
    let host = guest.host();
    if let Some(c) = host.hostcall_counts.get_mut(index) {
        *c += 1;
    }
    host.traffic.hostcalls += 1;
    if !allowed_in(host.phase, index) {
        let when = match host.phase {
            Phase::Startup => {
                "during VM start-up (_initialize/main); only proxy_log and WASI are allowed there"
            }
            Phase::Allocator => {
                "from inside the guest allocator; only logging and clocks are allowed there"
            }
            Phase::Callback => "",
        };
        return Err(Fault(format!("{} called {when}", hostcall_name(index))));
    }
    let result = f(guest)?;
    let host = guest.host();
    if host.trace_level == TraceLevel::Hostcalls {
        host.trace.push(TraceEvent::Hostcall {
            name: hostcall_name(index).to_string(),
            args: args.to_vec(),
            status: result,
        });
    }
    Ok(result)
}

// ---------------------------------------------------------------------------
// Memory helpers
// ---------------------------------------------------------------------------

/// Returns `Ok(status)` from the hostcall when a helper fails with a status.
macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return Ok(status),
        }
    };
}

fn input<G: Guest, R>(
    g: &mut G,
    addr: u64,
    len: u64,
    f: impl FnOnce(&mut Host, &[u8]) -> R,
) -> Result<R, Status> {
    g.with_memory(|h, m| match m.slice(addr, len) {
        Some(bytes) => {
            h.traffic.bytes_from_guest += len;
            Ok(f(h, bytes))
        }
        None => Err(Status::InvalidMemoryAccess),
    })
}

fn input2<G: Guest, R>(
    g: &mut G,
    (a1, l1): (u64, u64),
    (a2, l2): (u64, u64),
    f: impl FnOnce(&mut Host, &[u8], &[u8]) -> R,
) -> Result<R, Status> {
    g.with_memory(|h, m| match (m.slice(a1, l1), m.slice(a2, l2)) {
        (Some(x), Some(y)) => {
            h.traffic.bytes_from_guest += l1 + l2;
            Ok(f(h, x, y))
        }
        _ => Err(Status::InvalidMemoryAccess),
    })
}

fn read_owned<G: Guest>(g: &mut G, addr: u64, len: u64) -> Result<Vec<u8>, Status> {
    input(g, addr, len, |_, b| b.to_vec())
}

fn write_bytes<G: Guest>(g: &mut G, addr: u64, bytes: &[u8]) -> Result<(), Status> {
    g.with_memory(|h, m| match m.slice_mut(addr, bytes.len() as u64) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            h.traffic.bytes_to_guest += bytes.len() as u64;
            Ok(())
        }
        None => Err(Status::InvalidMemoryAccess),
    })
}

fn write_u32<G: Guest>(g: &mut G, addr: u64, v: u32) -> Result<(), Status> {
    write_bytes(g, addr, &v.to_le_bytes())
}

fn write_u64<G: Guest>(g: &mut G, addr: u64, v: u64) -> Result<(), Status> {
    write_bytes(g, addr, &v.to_le_bytes())
}

/// Writes a pointer- or size-sized value (the backend's width).
fn write_word<G: Guest>(g: &mut G, addr: u64, v: u64) -> Result<(), Status> {
    g.with_memory(|_, m| {
        let width = <G::Memory<'_> as GuestMemory>::POINTER_SIZE;
        match m.slice_mut(addr, width as u64) {
            Some(dst) => {
                dst.copy_from_slice(&v.to_le_bytes()[..width]);
                Ok(())
            }
            None => Err(Status::InvalidMemoryAccess),
        }
    })
}

/// Hands `host.scratch` to the guest: allocate exactly its length, copy,
/// write pointer and size. Empty: pointer 0, size 0, no allocation.
/// Fills the reusable scratch buffer through `fill` (no allocation on the hot
/// path) and, when `fill` answers OK, returns its bytes to the guest.
fn return_filled<G: Guest>(
    g: &mut G,
    ptr_out: u64,
    size_out: u64,
    fill: impl FnOnce(&mut Host, &mut Vec<u8>) -> Status,
) -> Result<Status, Fault> {
    let host = g.host();
    let mut out = std::mem::take(&mut host.scratch);
    let status = fill(host, &mut out);
    host.scratch = out;
    if status != Status::Ok {
        return Ok(status);
    }
    return_scratch(g, ptr_out, size_out)
}

fn return_scratch<G: Guest>(g: &mut G, ptr_out: u64, size_out: u64) -> Result<Status, Fault> {
    let len = g.host().scratch.len() as u64;
    if len == 0 {
        check!(write_word(g, ptr_out, 0));
        check!(write_word(g, size_out, 0));
        return Ok(Status::Ok);
    }
    g.host().traffic.allocations += 1;
    let addr = g.allocate(len)?;
    if addr == 0 {
        return Ok(Status::InvalidMemoryAccess);
    }
    let copied = g.with_memory(|h, m| match m.slice_mut(addr, len) {
        Some(dst) => {
            dst.copy_from_slice(&h.scratch);
            h.traffic.bytes_to_guest += len;
            true
        }
        None => false,
    });
    if !copied {
        return Ok(Status::InvalidMemoryAccess);
    }
    check!(write_word(g, ptr_out, addr));
    check!(write_word(g, size_out, len));
    Ok(Status::Ok)
}

fn set_scratch(host: &mut Host, bytes: &[u8]) {
    host.scratch.clear();
    host.scratch.extend_from_slice(bytes);
}

fn decode_headers(data: &[u8]) -> Result<crate::host::HeaderMap, Status> {
    let pairs = abi::decode_map(data).map_err(|_| Status::BadArgument)?;
    let mut map = crate::host::HeaderMap::default();
    for (k, v) in pairs {
        map.add(k, v);
    }
    Ok(map)
}

// ---------------------------------------------------------------------------
// Logging, clock, timers
// ---------------------------------------------------------------------------

/// `proxy_log`: captured per level; levels below the plugin's are dropped.
pub fn proxy_log<G: Guest>(
    g: &mut G,
    level: u32,
    message: u64,
    message_size: u64,
) -> Result<Status, Fault> {
    let Some(level) = LogLevel::from_u32(level) else {
        return Ok(Status::BadArgument);
    };
    check!(input(g, message, message_size, |h, m| h.log(level, m)));
    Ok(Status::Ok)
}

/// `proxy_get_log_level`.
pub fn proxy_get_log_level<G: Guest>(g: &mut G, return_level: u64) -> Result<Status, Fault> {
    let level = g.host().plugin.log_level.as_u32();
    check!(write_u32(g, return_level, level));
    Ok(Status::Ok)
}

/// `proxy_get_current_time_nanoseconds`: the virtual wall clock.
pub fn proxy_get_current_time_nanoseconds<G: Guest>(
    g: &mut G,
    return_time: u64,
) -> Result<Status, Fault> {
    let now = g.host().now_unix_ns();
    check!(write_u64(g, return_time, now));
    Ok(Status::Ok)
}

/// `proxy_set_tick_period_milliseconds`: the root context's timer (0 stops it).
pub fn proxy_set_tick_period_milliseconds<G: Guest>(
    g: &mut G,
    period: u32,
) -> Result<Status, Fault> {
    g.host().set_tick_period(period);
    Ok(Status::Ok)
}

// ---------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------

/// `proxy_get_buffer_bytes`: up to `max_size` bytes from `start`.
pub fn proxy_get_buffer_bytes<G: Guest>(
    g: &mut G,
    buffer_type: u32,
    start: u64,
    max_size: u64,
    return_data: u64,
    return_size: u64,
) -> Result<Status, Fault> {
    let Some(bt) = BufferType::from_u32(buffer_type) else {
        return Ok(Status::BadArgument);
    };
    if start.checked_add(max_size).is_none() {
        return Ok(Status::BadArgument);
    }
    return_filled(g, return_data, return_size, |host, out| {
        match host.buffer(bt) {
            None => Status::NotFound,
            // Reading from past the end yields nothing.
            Some(buf) if start >= buf.len() as u64 => {
                out.clear();
                Status::Ok
            }
            Some(buf) => {
                let end = (start + max_size).min(buf.len() as u64);
                out.clear();
                out.extend_from_slice(&buf[start as usize..end as usize]);
                Status::Ok
            }
        }
    })
}

/// `proxy_set_buffer_bytes`, as Envoy's `Buffer::copyFrom`
/// (source/extensions/common/wasm/context.cc): start 0 drains `size`
/// bytes (all of them when `size` is at least the length) and prepends the
/// data; a start at or past the length appends; any other start is
/// BAD_ARGUMENT. A body out of reach, like any read-only buffer, is
/// BAD_ARGUMENT.
pub fn proxy_set_buffer_bytes<G: Guest>(
    g: &mut G,
    buffer_type: u32,
    start: u64,
    size: u64,
    data: u64,
    data_size: u64,
) -> Result<Status, Fault> {
    let Some(bt) = BufferType::from_u32(buffer_type) else {
        return Ok(Status::BadArgument);
    };
    let status = check!(input(g, data, data_size, |h, bytes| {
        if h.buffer_mut(bt).is_none() {
            if let Some(field) = Field::of_buffer(bt) {
                h.warn_out_of_reach(field);
            }
            return if h.buffer(bt).is_some() {
                Status::BadArgument
            } else {
                Status::NotFound
            };
        }
        let Some(buf) = h.buffer_mut(bt) else {
            return Status::NotFound;
        };
        let len = buf.len() as u64;
        if start == 0 {
            let drained = size.min(len) as usize;
            buf.splice(0..drained, bytes.iter().copied());
        } else if start >= len {
            buf.extend_from_slice(bytes);
        } else {
            return Status::BadArgument;
        }
        Status::Ok
    }));
    Ok(status)
}

/// `proxy_get_buffer_status`: length and flags (always 0).
pub fn proxy_get_buffer_status<G: Guest>(
    g: &mut G,
    buffer_type: u32,
    return_length: u64,
    return_flags: u64,
) -> Result<Status, Fault> {
    let Some(bt) = BufferType::from_u32(buffer_type) else {
        return Ok(Status::BadArgument);
    };
    let Some(len) = g.host().buffer(bt).map(|b| b.len() as u64) else {
        return Ok(Status::NotFound);
    };
    check!(write_word(g, return_length, len));
    check!(write_u32(g, return_flags, 0));
    Ok(Status::Ok)
}

// ---------------------------------------------------------------------------
// Header maps
// ---------------------------------------------------------------------------

/// `proxy_get_header_map_pairs`: a map not available in this phase is OK and empty.
pub fn proxy_get_header_map_pairs<G: Guest>(
    g: &mut G,
    map_type: u32,
    return_data: u64,
    return_size: u64,
) -> Result<Status, Fault> {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    return_filled(g, return_data, return_size, |host, out| {
        match host.map(mt) {
            Some(map) => abi::encode_map_into(map.iter(), out),
            None => {
                out.clear();
                warn_map_out_of_reach(host, mt);
            }
        }
        Status::Ok
    })
}

/// `proxy_set_header_map_pairs`: replaces the whole map.
pub fn proxy_set_header_map_pairs<G: Guest>(
    g: &mut G,
    map_type: u32,
    data: u64,
    data_size: u64,
) -> Result<Status, Fault> {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    let status = check!(input(g, data, data_size, |h, bytes| {
        let Ok(pairs) = abi::decode_map(bytes) else {
            return Status::BadArgument;
        };
        match h.map_mut(mt) {
            Some(map) => {
                map.set_all(pairs.into_iter());
                Status::Ok
            }
            None => map_out_of_reach(h, mt),
        }
    }));
    Ok(status)
}

/// `proxy_get_header_map_size`: total key and value bytes (Envoy's byteSize).
/// Envoy looks the map up as if to write it: BAD_ARGUMENT for the callout
/// and gRPC maps and for stream maps not available now.
pub fn proxy_get_header_map_size<G: Guest>(
    g: &mut G,
    map_type: u32,
    return_size: u64,
) -> Result<Status, Fault> {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    // Envoy reports the map's byteSize(): the sum of key and value lengths.
    let host = g.host();
    let Some(size) = host
        .map_mut(mt)
        .map(|m| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>())
    else {
        return Ok(map_out_of_reach(host, mt));
    };
    check!(write_word(g, return_size, size as u64));
    Ok(Status::Ok)
}

/// `proxy_get_header_map_value`: the first value, NOT_FOUND when missing
/// (ABI 0.1.0: OK and empty), BAD_ARGUMENT when the map is not available
/// in this phase, except in on_log, where Envoy treats a missing map like
/// a missing key.
pub fn proxy_get_header_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: u64,
    key_size: u64,
    return_data: u64,
    return_size: u64,
) -> Result<Status, Fault> {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    let status = check!(input(g, key, key_size, |h, key| {
        let mut out = std::mem::take(&mut h.scratch);
        let status = match h.map(mt) {
            None if h.access_log && h.abi == AbiVersion::V0_1_0 => {
                out.clear();
                Status::Ok
            }
            None if h.access_log => Status::NotFound,
            None => map_out_of_reach(h, mt),
            Some(map) => match map.get(key) {
                Some(v) => {
                    out.clear();
                    out.extend_from_slice(v);
                    Status::Ok
                }
                // ABI 0.1.0 had no NOT_FOUND here: a missing header reads as empty.
                None if h.abi == AbiVersion::V0_1_0 => {
                    out.clear();
                    Status::Ok
                }
                None => Status::NotFound,
            },
        };
        h.scratch = out;
        status
    }));
    if status != Status::Ok {
        return Ok(status);
    }
    return_scratch(g, return_data, return_size)
}

/// `proxy_replace_header_map_value`: sets the first value, drops the others (key lower-cased).
pub fn proxy_replace_header_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: u64,
    key_size: u64,
    value: u64,
    value_size: u64,
) -> Result<Status, Fault> {
    edit_map_value(
        g,
        map_type,
        (key, key_size),
        (value, value_size),
        crate::host::HeaderMap::replace,
    )
}

/// `proxy_remove_header_map_value`: removes every value.
pub fn proxy_remove_header_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: u64,
    key_size: u64,
) -> Result<Status, Fault> {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    Ok(check!(input(g, key, key_size, |h, k| {
        match h.map_mut(mt) {
            Some(map) => {
                map.remove(k);
                Status::Ok
            }
            None => map_out_of_reach(h, mt),
        }
    })))
}

/// `proxy_add_header_map_value`: appends (key lower-cased).
pub fn proxy_add_header_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: u64,
    key_size: u64,
    value: u64,
    value_size: u64,
) -> Result<Status, Fault> {
    edit_map_value(
        g,
        map_type,
        (key, key_size),
        (value, value_size),
        crate::host::HeaderMap::add,
    )
}

/// The shared body of add and replace: resolve the map for this phase, then edit it.
fn edit_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: (u64, u64),
    value: (u64, u64),
    edit: fn(&mut crate::host::HeaderMap, &[u8], &[u8]),
) -> Result<Status, Fault> {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    Ok(check!(input2(g, key, value, |h, k, v| {
        match h.map_mut(mt) {
            Some(map) => {
                edit(map, k, v);
                Status::Ok
            }
            None => map_out_of_reach(h, mt),
        }
    })))
}

/// A stream map out of reach: warned about once, then Envoy's answer.
fn map_out_of_reach(host: &mut Host, map: MapType) -> Status {
    warn_map_out_of_reach(host, map);
    Status::BadArgument
}

fn warn_map_out_of_reach(host: &mut Host, map: MapType) {
    if let Some(field) = Field::of_map(map)
        && !host.access_log
    {
        host.warn_out_of_reach(field);
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// `proxy_get_property`: built-in attributes first, then the plugin
/// tokens, then the filter's own state (Envoy's `Context::findValue`).
pub fn proxy_get_property<G: Guest>(
    g: &mut G,
    path: u64,
    path_size: u64,
    return_data: u64,
    return_size: u64,
) -> Result<Status, Fault> {
    let found = check!(input(g, path, path_size, |h, p| h.lookup_property(p)));
    if !found {
        return Ok(Status::NotFound);
    }
    return_scratch(g, return_data, return_size)
}

/// `proxy_set_property`: the value becomes filter state `wasm.<path>` of
/// the stream (Envoy's `Context::setProperty`); a root context has no
/// stream info, so NOT_FOUND there.
pub fn proxy_set_property<G: Guest>(
    g: &mut G,
    path: u64,
    path_size: u64,
    value: u64,
    value_size: u64,
) -> Result<Status, Fault> {
    Ok(check!(input2(
        g,
        (path, path_size),
        (value, value_size),
        |h, p, v| {
            let root = h.effective_stream_ref().map(|s| s.root_id);
            let Some(root) = root else {
                return Status::NotFound;
            };
            let readonly = crate::host::foreign::is_readonly(h, root, p);
            let key = crate::host::properties::filter_state_key(p);
            let Some(s) = h.effective_stream() else {
                return Status::NotFound;
            };
            // A read-only declared property takes its first value only.
            if readonly && s.filter_properties.lookup(&key, &mut Vec::new()) {
                return Status::BadArgument;
            }
            s.filter_properties.set_raw(&key, v);
            if let Some((key, message)) = crate::host::properties::unreachable_set(p) {
                crate::host::properties::warn_once(h, key, message);
            }
            Status::Ok
        }
    )))
}

// ---------------------------------------------------------------------------
// Shared data and queues
// ---------------------------------------------------------------------------

/// `proxy_get_shared_data`: value and CAS for the plugin's vm_id.
pub fn proxy_get_shared_data<G: Guest>(
    g: &mut G,
    key: u64,
    key_size: u64,
    return_data: u64,
    return_size: u64,
    return_cas: u64,
) -> Result<Status, Fault> {
    let cas = check!(input(g, key, key_size, |h, k| {
        let mut out = std::mem::take(&mut h.scratch);
        let r = h.shared.get_data(&h.plugin.vm_id, k, &mut out);
        h.scratch = out;
        r
    }));
    let cas = check!(cas);
    let status = return_scratch(g, return_data, return_size)?;
    if status != Status::Ok {
        return Ok(status);
    }
    check!(write_u32(g, return_cas, cas));
    Ok(Status::Ok)
}

/// `proxy_set_shared_data`: cas 0 unconditional, stale cas CAS_MISMATCH.
pub fn proxy_set_shared_data<G: Guest>(
    g: &mut G,
    key: u64,
    key_size: u64,
    value: u64,
    value_size: u64,
    cas: u32,
) -> Result<Status, Fault> {
    Ok(check!(input2(
        g,
        (key, key_size),
        (value, value_size),
        |h, k, v| h.shared.set_data(&h.plugin.vm_id, k, v, cas)
    )))
}

/// `proxy_register_shared_queue`: notifications go to this worker's root context.
pub fn proxy_register_shared_queue<G: Guest>(
    g: &mut G,
    name: u64,
    name_size: u64,
    return_id: u64,
) -> Result<Status, Fault> {
    let id = check!(input(g, name, name_size, |h, n| {
        let inbox = h.inbox.clone();
        h.shared
            .register_queue(&h.plugin.vm_id, n, &inbox, h.root_context_id)
    }));
    check!(write_u32(g, return_id, id));
    Ok(Status::Ok)
}

/// `proxy_resolve_shared_queue`: NOT_FOUND when no such queue.
pub fn proxy_resolve_shared_queue<G: Guest>(
    g: &mut G,
    vm_id: u64,
    vm_id_size: u64,
    name: u64,
    name_size: u64,
    return_id: u64,
) -> Result<Status, Fault> {
    let id = check!(input2(
        g,
        (vm_id, vm_id_size),
        (name, name_size),
        |h, vm, n| {
            // An empty vm_id means the caller's own (the plugin's vm_id).
            let vm = if vm.is_empty() {
                h.plugin.vm_id.clone()
            } else {
                String::from_utf8_lossy(vm).into_owned()
            };
            h.shared.resolve_queue(&vm, n)
        }
    ));
    let Some(id) = id else {
        return Ok(Status::NotFound);
    };
    check!(write_u32(g, return_id, id));
    Ok(Status::Ok)
}

/// `proxy_dequeue_shared_queue`: NOT_FOUND unknown queue, EMPTY when empty.
pub fn proxy_dequeue_shared_queue<G: Guest>(
    g: &mut G,
    queue_id: u32,
    return_data: u64,
    return_size: u64,
) -> Result<Status, Fault> {
    return_filled(g, return_data, return_size, |host, out| {
        host.shared.dequeue(queue_id, out)
    })
}

/// `proxy_enqueue_shared_queue`: posts on_queue_ready to the registering worker.
pub fn proxy_enqueue_shared_queue<G: Guest>(
    g: &mut G,
    queue_id: u32,
    value: u64,
    value_size: u64,
) -> Result<Status, Fault> {
    Ok(check!(input(g, value, value_size, |h, v| h
        .shared
        .enqueue(queue_id, v))))
}

// ---------------------------------------------------------------------------
// Stream control (deferred until the running callback returns)
// ---------------------------------------------------------------------------

fn defer_stream_action<G: Guest>(
    g: &mut G,
    stream_type: u32,
    close: bool,
) -> Result<Status, Fault> {
    let Some(st) = StreamType::from_u32(stream_type) else {
        return Ok(Status::BadArgument);
    };
    let host = g.host();
    // On a root context (no stream) Envoy has nothing to continue: OK, no-op.
    let Some(context_id) = host.effective_stream_ref().map(|s| s.id) else {
        return Ok(Status::Ok);
    };
    if matches!(st, StreamType::HttpRequest | StreamType::HttpResponse) {
        let action = if close {
            Deferred::Close {
                context_id,
                stream: st,
            }
        } else {
            // The continue itself waits for the callback to return, but the
            // filter's access to the direction's fields ends now.
            host.continue_withdraws(context_id, st == StreamType::HttpRequest);
            Deferred::Continue {
                context_id,
                stream: st,
            }
        };
        host.deferred.push(action);
    }
    Ok(Status::Ok)
}

/// `proxy_continue_stream` (deferred).
pub fn proxy_continue_stream<G: Guest>(g: &mut G, stream_type: u32) -> Result<Status, Fault> {
    defer_stream_action(g, stream_type, false)
}

/// `proxy_continue_request` (ABI 0.1.0; deferred like `proxy_continue_stream`).
pub fn proxy_continue_request<G: Guest>(g: &mut G) -> Result<Status, Fault> {
    defer_stream_action(g, StreamType::HttpRequest as u32, false)
}

/// `proxy_continue_response` (ABI 0.1.0; deferred like `proxy_continue_stream`).
pub fn proxy_continue_response<G: Guest>(g: &mut G) -> Result<Status, Fault> {
    defer_stream_action(g, StreamType::HttpResponse as u32, false)
}

/// `proxy_clear_route_cache` (ABI 0.1.0): the harness has no route table, so
/// there is nothing to recompute; OK, as Envoy answers.
pub fn proxy_clear_route_cache<G: Guest>(_g: &mut G) -> Result<Status, Fault> {
    Ok(Status::Ok)
}

/// `proxy_get_configuration` (ABI 0.1.0): the plugin configuration while
/// `proxy_on_configure` runs, the VM configuration otherwise (Envoy returns
/// the plugin's only while configuring it).
pub fn proxy_get_configuration<G: Guest>(
    g: &mut G,
    return_data: u64,
    return_size: u64,
) -> Result<Status, Fault> {
    return_filled(g, return_data, return_size, |host, out| {
        out.clear();
        out.extend_from_slice(if host.configuring {
            host.plugin.configuration.as_bytes()
        } else {
            host.plugin.vm_config.as_bytes()
        });
        Status::Ok
    })
}

/// `proxy_close_stream` (deferred): resets the HTTP stream.
pub fn proxy_close_stream<G: Guest>(g: &mut G, stream_type: u32) -> Result<Status, Fault> {
    defer_stream_action(g, stream_type, true)
}

/// `proxy_send_local_response` (deferred; forces the running callback to stop).
#[allow(clippy::too_many_arguments)]
pub fn proxy_send_local_response<G: Guest>(
    g: &mut G,
    status_code: u32,
    details: u64,
    details_size: u64,
    body: u64,
    body_size: u64,
    headers: u64,
    headers_size: u64,
    grpc_status: i32,
) -> Result<Status, Fault> {
    let details = check!(read_owned(g, details, details_size));
    let body = check!(read_owned(g, body, body_size));
    let headers = check!(check!(input(g, headers, headers_size, |_, h| {
        decode_headers(h)
    })));
    let host = g.host();
    // Envoy's Context::sendLocalResponse acts only with a stream's decoder
    // callbacks; from a root context it does nothing and answers OK.
    let Some(context_id) = host.effective_stream_ref().map(|s| s.id) else {
        host.harness_log(
            LogLevel::Warn,
            "proxy_send_local_response from a root context does nothing (Envoy answers OK \
             and sends no reply): set the effective context to the stream first"
                .to_string(),
        );
        return Ok(Status::Ok);
    };
    host.deferred.push(Deferred::LocalReply {
        context_id,
        reply: LocalReplySpec {
            status: status_code,
            details: String::from_utf8_lossy(&details).into_owned(),
            body,
            headers,
            grpc_status,
        },
    });
    Ok(Status::Ok)
}

// ---------------------------------------------------------------------------
// Callouts
// ---------------------------------------------------------------------------

/// When a scripted callout resolves, given its delay, failure mode and the
/// filter's timeout (0 = none): `(at_ms, Some(failure))` or `(at_ms, None)`.
fn resolve_timing(
    delay_ms: u64,
    failure: Option<CalloutFailure>,
    timeout_ms: u32,
) -> (u64, Option<CalloutFailure>) {
    let timeout = u64::from(timeout_ms);
    match failure {
        Some(CalloutFailure::Timeout) => (
            if timeout > 0 { timeout } else { delay_ms },
            Some(CalloutFailure::Timeout),
        ),
        Some(CalloutFailure::Reset | CalloutFailure::Unreachable)
            if timeout > 0 && delay_ms >= timeout =>
        {
            (timeout, Some(CalloutFailure::Timeout))
        }
        Some(failure) => (delay_ms, Some(failure)),
        None if timeout > 0 && delay_ms >= timeout => (timeout, Some(CalloutFailure::Timeout)),
        None => (delay_ms, None),
    }
}

/// The router's local reply to an async http call: status, a plain-text body.
fn router_reply(status: u16, body: &str) -> HttpPlan {
    let mut headers = crate::host::HeaderMap::default();
    headers.add(b":status", status.to_string().as_bytes());
    headers.add(b"content-length", body.len().to_string().as_bytes());
    headers.add(b"content-type", b"text/plain");
    HttpPlan::Respond {
        headers,
        body: body.as_bytes().to_vec(),
        trailers: crate::host::HeaderMap::default(),
    }
}

/// `proxy_http_call`: unknown cluster or headers without `:method`, `:path`
/// or `:authority` -> BAD_ARGUMENT. The answer comes from the cluster's script.
#[allow(clippy::too_many_arguments)]
pub fn proxy_http_call<G: Guest>(
    g: &mut G,
    upstream: u64,
    upstream_size: u64,
    headers: u64,
    headers_size: u64,
    body: u64,
    body_size: u64,
    trailers: u64,
    trailers_size: u64,
    timeout_ms: u32,
    return_token: u64,
) -> Result<Status, Fault> {
    let cluster = check!(read_owned(g, upstream, upstream_size));
    let headers = check!(check!(input(g, headers, headers_size, |_, h| {
        decode_headers(h)
    })));
    let trailers = check!(check!(input(g, trailers, trailers_size, |_, h| {
        decode_headers(h)
    })));
    let body = check!(read_owned(g, body, body_size));
    let host = g.host();
    let Some(answer) = host.next_http_answer(&cluster) else {
        host.harness_log(
            LogLevel::Debug,
            format!(
                "http_call to unknown cluster {:?}: BAD_ARGUMENT",
                String::from_utf8_lossy(&cluster)
            ),
        );
        return Ok(Status::BadArgument);
    };
    if [&b":method"[..], b":path", b":authority"]
        .iter()
        .any(|k| headers.get(k).is_none())
    {
        return Ok(Status::BadArgument);
    }
    let mut sent = headers.clone();
    if !body.is_empty() {
        sent.replace(b"content-length", body.len().to_string().as_bytes());
    }
    let token = host.new_token();
    let context_id = host.effective_context;
    let (delay, failure, plan) = match answer {
        None => (0, Some(CalloutFailure::Reset), None),
        Some(a) => {
            let mut resp = crate::host::HeaderMap::default();
            resp.add(b":status", a.status.to_string().as_bytes());
            for (k, v) in a.headers.iter() {
                resp.add(k, v);
            }
            let trailers = crate::host::HeaderMap::from_headers(&a.trailers);
            (
                a.delay_ms,
                a.failure,
                Some(HttpPlan::Respond {
                    headers: resp,
                    body: a.body.concat(),
                    trailers,
                }),
            )
        }
    };
    let (after, failure) = resolve_timing(delay, failure, timeout_ms);
    let plan = match (failure, plan) {
        // Envoy's async client gets the router's local reply, an ordinary
        // response (Router::Filter::onUpstreamTimeout, onNoHealthyHost).
        (Some(CalloutFailure::Timeout), _) => router_reply(504, "upstream request timeout"),
        (Some(CalloutFailure::Unreachable), _) => router_reply(503, "no healthy upstream"),
        // Envoy's onHttpCallFailure: WasmResult::BrokenConnection, "reset".
        (Some(CalloutFailure::Reset), _) | (None, None) => HttpPlan::Fail {
            code: 11,
            reason: "reset",
        },
        (None, Some(plan)) => plan,
    };
    host.http_calls.push(HttpCallRecord {
        token,
        context_id,
        cluster: String::from_utf8_lossy(&cluster).into_owned(),
        headers: sent.to_headers(),
        body: ByteString(body),
        trailers: trailers.to_headers(),
        timeout_ms,
        result: CalloutResult::Pending,
    });
    host.http_pending.insert(token, PendingHttp { plan });
    let at = host.now_ms + after;
    host.schedule(at, Event::HttpAnswer { token });
    check!(write_u32(g, return_token, token));
    Ok(Status::Ok)
}

#[allow(clippy::too_many_arguments)]
fn start_grpc<G: Guest>(
    g: &mut G,
    upstream: (u64, u64),
    service: (u64, u64),
    method: (u64, u64),
    metadata: (u64, u64),
    message: Option<(u64, u64)>,
    timeout_ms: u32,
    return_token: u64,
) -> Result<Status, Fault> {
    let cluster = check!(read_owned(g, upstream.0, upstream.1));
    let service = check!(read_owned(g, service.0, service.1));
    let method = check!(read_owned(g, method.0, method.1));
    let metadata = check!(check!(input(g, metadata.0, metadata.1, |_, h| {
        decode_headers(h)
    })));
    let message = match message {
        Some((a, l)) => Some(check!(read_owned(g, a, l))),
        None => None,
    };
    let host = g.host();
    let Some(answer) = host.next_grpc_answer(&cluster) else {
        return Ok(Status::ParseFailure);
    };
    let token = host.new_token();
    let context_id = host.effective_context;
    let streaming = message.is_none();
    let (delay, failure) = answer
        .as_ref()
        .map_or((0, Some(CalloutFailure::Reset)), |a| {
            (a.delay_ms, a.failure)
        });
    let (after, failure) = resolve_timing(delay, failure, timeout_ms);
    let plan = match (failure, answer) {
        (Some(CalloutFailure::Timeout), _) => GrpcPlan::Fail {
            code: 4,
            reason: "deadline exceeded",
        },
        (Some(CalloutFailure::Unreachable), _) => GrpcPlan::Fail {
            code: 14,
            reason: "no healthy upstream",
        },
        (Some(CalloutFailure::Reset), _) | (None, None) => GrpcPlan::Fail {
            code: 14,
            reason: "upstream reset",
        },
        (None, Some(a)) => GrpcPlan::Answer(a),
    };
    host.grpc_calls.push(GrpcCallRecord {
        token,
        context_id,
        cluster: String::from_utf8_lossy(&cluster).into_owned(),
        service: String::from_utf8_lossy(&service).into_owned(),
        method: String::from_utf8_lossy(&method).into_owned(),
        initial_metadata: metadata.to_headers(),
        messages: message.into_iter().map(ByteString).collect(),
        timeout_ms,
        streaming,
        result: CalloutResult::Pending,
    });
    host.grpc_pending.insert(
        token,
        PendingGrpc {
            streaming,
            plan,
            local_closed: false,
        },
    );
    let at = host.now_ms + after;
    host.schedule(at, Event::GrpcAnswer { token });
    check!(write_u32(g, return_token, token));
    Ok(Status::Ok)
}

/// `proxy_grpc_call`: unknown cluster -> PARSE_FAILURE.
#[allow(clippy::too_many_arguments)]
pub fn proxy_grpc_call<G: Guest>(
    g: &mut G,
    upstream: u64,
    upstream_size: u64,
    service: u64,
    service_size: u64,
    method: u64,
    method_size: u64,
    metadata: u64,
    metadata_size: u64,
    message: u64,
    message_size: u64,
    timeout_ms: u32,
    return_token: u64,
) -> Result<Status, Fault> {
    start_grpc(
        g,
        (upstream, upstream_size),
        (service, service_size),
        (method, method_size),
        (metadata, metadata_size),
        Some((message, message_size)),
        timeout_ms,
        return_token,
    )
}

/// `proxy_grpc_stream`: unknown cluster -> PARSE_FAILURE.
#[allow(clippy::too_many_arguments)]
pub fn proxy_grpc_stream<G: Guest>(
    g: &mut G,
    upstream: u64,
    upstream_size: u64,
    service: u64,
    service_size: u64,
    method: u64,
    method_size: u64,
    metadata: u64,
    metadata_size: u64,
    return_token: u64,
) -> Result<Status, Fault> {
    start_grpc(
        g,
        (upstream, upstream_size),
        (service, service_size),
        (method, method_size),
        (metadata, metadata_size),
        None,
        0,
        return_token,
    )
}

/// `proxy_grpc_send`: NOT_FOUND for an unknown stream, BAD_ARGUMENT after end_stream.
pub fn proxy_grpc_send<G: Guest>(
    g: &mut G,
    token: u32,
    message: u64,
    message_size: u64,
    end_stream: bool,
) -> Result<Status, Fault> {
    let message = check!(read_owned(g, message, message_size));
    let host = g.host();
    let Some(p) = host.grpc_pending.get_mut(&token) else {
        return Ok(Status::NotFound);
    };
    if !p.streaming {
        return Ok(Status::NotFound);
    }
    if p.local_closed {
        return Ok(Status::BadArgument);
    }
    p.local_closed = end_stream;
    host.push_grpc_message(token, &message);
    Ok(Status::Ok)
}

/// `proxy_grpc_cancel`: no callback follows.
pub fn proxy_grpc_cancel<G: Guest>(g: &mut G, token: u32) -> Result<Status, Fault> {
    let host = g.host();
    if host.grpc_pending.remove(&token).is_none() {
        return Ok(Status::NotFound);
    }
    host.set_grpc_result(token, CalloutResult::Cancelled);
    Ok(Status::Ok)
}

/// `proxy_grpc_close`: half-closes a stream (the answer still arrives); cancels a unary call.
pub fn proxy_grpc_close<G: Guest>(g: &mut G, token: u32) -> Result<Status, Fault> {
    let host = g.host();
    let Some(p) = host.grpc_pending.get_mut(&token) else {
        return Ok(Status::NotFound);
    };
    if p.streaming {
        p.local_closed = true;
    } else {
        host.grpc_pending.remove(&token);
        host.set_grpc_result(token, CalloutResult::Cancelled);
    }
    Ok(Status::Ok)
}

/// `proxy_get_status`: code and message of the last callout result delivered.
pub fn proxy_get_status<G: Guest>(
    g: &mut G,
    return_code: u64,
    return_data: u64,
    return_size: u64,
) -> Result<Status, Fault> {
    let host = g.host();
    let code = host.status_code;
    let message = std::mem::take(&mut host.status_message);
    set_scratch(host, &message);
    host.status_message = message;
    let status = return_scratch(g, return_data, return_size)?;
    if status != Status::Ok {
        return Ok(status);
    }
    check!(write_u32(g, return_code, code));
    Ok(Status::Ok)
}

/// `proxy_set_effective_context`: BAD_ARGUMENT for an unknown context.
pub fn proxy_set_effective_context<G: Guest>(g: &mut G, context_id: u32) -> Result<Status, Fault> {
    let host = g.host();
    if !host.context_exists(context_id) {
        return Ok(Status::BadArgument);
    }
    host.effective_context = context_id;
    Ok(Status::Ok)
}

/// `proxy_call_foreign_function`: runs the function in [`crate::host::foreign`]
/// and returns its result bytes; unknown names NOT_FOUND.
pub fn proxy_call_foreign_function<G: Guest>(
    g: &mut G,
    name: u64,
    name_size: u64,
    arguments: u64,
    arguments_size: u64,
    return_data: u64,
    return_size: u64,
) -> Result<Status, Fault> {
    let name = check!(read_owned(g, name, name_size));
    let args = check!(read_owned(g, arguments, arguments_size));
    let host = g.host();
    match crate::host::foreign::call(host, &name, &args) {
        Ok(result) => set_scratch(host, &result),
        Err(status) => return Ok(status),
    }
    return_scratch(g, return_data, return_size)
}

/// `proxy_done`: Envoy only accepts it from a root context whose
/// `proxy_on_done` returned false during VM shutdown; the harness never
/// drains a VM, so it is always NOT_FOUND.
pub fn proxy_done<G: Guest>(g: &mut G) -> Result<Status, Fault> {
    g.host().done_called = true;
    Ok(Status::NotFound)
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

fn metric_stat(host: &Host, metric_id: u32) -> Option<usize> {
    let ordinal = (metric_id >> 2) as usize;
    ordinal
        .checked_sub(1)
        .and_then(|i| host.metric_ids.get(i))
        .copied()
}

/// `proxy_define_metric`: ids carry the kind in their low 2 bits, like Envoy's.
pub fn proxy_define_metric<G: Guest>(
    g: &mut G,
    metric_type: u32,
    name: u64,
    name_size: u64,
    return_id: u64,
) -> Result<Status, Fault> {
    let Some(kind) = MetricType::from_u32(metric_type) else {
        return Ok(Status::BadArgument);
    };
    let id = check!(input(g, name, name_size, |h, n| {
        let stat = h.shared.define_metric(kind, &String::from_utf8_lossy(n));
        // Envoy's Context::defineMetric takes a fresh id on every call,
        // even for a name already defined (both ids name the same stat).
        h.metric_ids.push(stat);
        let ordinal = h.metric_ids.len();
        ((ordinal as u32) << 2) | metric_type
    }));
    check!(write_u32(g, return_id, id));
    Ok(Status::Ok)
}

/// `proxy_get_metric`: histograms BAD_ARGUMENT, unknown ids NOT_FOUND.
pub fn proxy_get_metric<G: Guest>(
    g: &mut G,
    metric_id: u32,
    return_value: u64,
) -> Result<Status, Fault> {
    let host = g.host();
    let Some(stat) = metric_stat(host, metric_id) else {
        return Ok(Status::NotFound);
    };
    let value = check!(host.shared.get_metric(stat));
    check!(write_u64(g, return_value, value));
    Ok(Status::Ok)
}

/// `proxy_record_metric`: counter += value, gauge = value, histogram sample.
pub fn proxy_record_metric<G: Guest>(
    g: &mut G,
    metric_id: u32,
    value: u64,
) -> Result<Status, Fault> {
    let host = g.host();
    let Some(stat) = metric_stat(host, metric_id) else {
        return Ok(Status::NotFound);
    };
    Ok(host.shared.record_metric(stat, value))
}

/// `proxy_increment_metric`: counters need a positive offset.
pub fn proxy_increment_metric<G: Guest>(
    g: &mut G,
    metric_id: u32,
    offset: i64,
) -> Result<Status, Fault> {
    let host = g.host();
    let Some(stat) = metric_stat(host, metric_id) else {
        return Ok(Status::NotFound);
    };
    Ok(host.shared.increment_metric(stat, offset))
}

/// Headers as model data (used by callers building traces).
pub fn headers_of(map: &crate::host::HeaderMap) -> Headers {
    map.to_headers()
}

#[cfg(test)]
mod tests;

//! Every `proxy_*` host function, written once against [`Guest`]: how a
//! backend reaches guest memory, its pointer width, and its allocator.
//! The wasm backend implements it over linear memory (32-bit pointers,
//! bounds-checked); the native twin over process memory (64-bit pointers).
//!
//! Semantics follow Envoy (the harness README's "Envoy behaviour reproduced" lists them): status codes,
//! argument checks, lower-cased keys, deferred stream actions, empty values
//! returned as pointer 0 / size 0 without allocating.

use crate::abi::{self, AbiVersion, BufferType, MapType, MetricType, Status, StreamType};
use crate::host::{Deferred, Event, Field, GrpcPlan, Host, LocalReplySpec, PendingGrpc, Phase};
use crate::model::{
    ByteString, CalloutFailure, CalloutResult, GrpcCallRecord, Headers, HttpCallRecord, LogLevel,
    TraceLevel,
};

/// A fault that must stop the guest (a trap): the host cannot continue the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault(pub String);

/// Why a host function ends early: a status the guest receives as the
/// call's result (bad memory, a missing value...), or a fault that traps it.
/// Helpers return it so each host function is written with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Returned to the guest.
    Status(Status),
    /// Traps the guest.
    Fault(Fault),
}

impl From<Status> for Refusal {
    fn from(status: Status) -> Self {
        Refusal::Status(status)
    }
}

impl From<Fault> for Refusal {
    fn from(fault: Fault) -> Self {
        Refusal::Fault(fault)
    }
}

/// What a host function answers: a status, or a [`Refusal`].
pub type HostcallResult = Result<Status, Refusal>;

/// The status word a host function returns to the guest, or the fault
/// that traps it (what the backends' generated glue passes on).
pub fn answer(result: HostcallResult) -> Result<u32, Fault> {
    match result {
        Ok(status) | Err(Refusal::Status(status)) => Ok(status as u32),
        Err(Refusal::Fault(fault)) => Err(fault),
    }
}

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

pub use crate::host::counters::{
    HOSTCALL_COUNT, Hostcall, PROXY_HOSTCALL_NAMES, WASI_NAMES, WasiCall, hostcall_name,
    wasi_counter, wasi_index,
};

fn allowed_in(phase: Phase, index: usize) -> bool {
    match phase {
        Phase::Callback => true,
        Phase::Startup => {
            index == Hostcall::proxy_log as usize
                || (index >= PROXY_HOSTCALL_NAMES.len()
                    && !proxy_abi::WASI_REFUSED_AT_STARTUP.contains(&hostcall_name(index)))
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
                "during VM start-up (_initialize/main); Envoy allows only proxy_log and WASI \
                 there, without fd_read, fd_seek, fd_close, sched_yield, proc_exit and path_open"
            }
            Phase::Allocator => {
                "from inside the guest allocator; only logging and clocks are allowed there"
            }
            Phase::Callback => "",
        };
        return Err(Fault(format!("{} called {when}", hostcall_name(index))));
    }
    let result = f(guest)?;
    if guest.host().trace_level == TraceLevel::Hostcalls {
        record(guest, index, args, result);
    }
    Ok(result)
}

/// Adds the traced call to the trace, its arguments read back from guest
/// memory; kept out of line so the untraced path stays as small as it was.
#[cold]
#[inline(never)]
fn record<G: Guest>(guest: &mut G, index: usize, args: &[u64], status: u32) {
    guest.with_memory(|host, memory| {
        let event = trace::event(&*memory, index, args, status);
        host.trace.push(event);
    });
}

// ---------------------------------------------------------------------------
// Memory helpers
// ---------------------------------------------------------------------------

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
) -> HostcallResult {
    let host = g.host();
    let mut out = std::mem::take(&mut host.scratch);
    let status = fill(host, &mut out);
    host.scratch = out;
    if status != Status::Ok {
        return Ok(status);
    }
    return_scratch(g, ptr_out, size_out)
}

fn return_scratch<G: Guest>(g: &mut G, ptr_out: u64, size_out: u64) -> HostcallResult {
    let len = g.host().scratch.len() as u64;
    if len == 0 {
        write_word(g, ptr_out, 0)?;
        write_word(g, size_out, 0)?;
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
    write_word(g, ptr_out, addr)?;
    write_word(g, size_out, len)?;
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

mod buffers;
mod callouts;
mod logging;
mod maps;
mod metrics;
mod properties;
mod shared;
mod stream;
mod trace;
pub use buffers::*;
pub use callouts::*;
pub use logging::*;
pub use maps::*;
pub use metrics::*;
pub use properties::*;
pub use shared::*;
pub use stream::*;

#[cfg(test)]
mod tests;

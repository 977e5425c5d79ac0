//! The host calls a network filter's connection makes, behind one small trait
//! so that [`super::Connection`] and the logic built on it run in `cargo test`
//! on the host with a model of Envoy in place of the real one.

use crate::ffi::{self, HostStatus};
use crate::types::{BufferType, Bytes, StreamType};
use proxy_wasm::hostcalls;

/// Which way the bytes travel: from the client (downstream) or from the
/// upstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Bytes the client sent (`DOWNSTREAM_DATA`, on_downstream_data).
    Downstream,
    /// Bytes the upstream server sent (`UPSTREAM_DATA`, on_upstream_data).
    Upstream,
}

impl Side {
    pub(crate) fn buffer(self) -> BufferType {
        match self {
            Side::Downstream => BufferType::DownstreamData,
            Side::Upstream => BufferType::UpstreamData,
        }
    }

    /// The callback during which the side's buffer exists.
    pub fn callback(self) -> &'static str {
        match self {
            Side::Downstream => "on_downstream_data",
            Side::Upstream => "on_upstream_data",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Side::Downstream => "downstream data",
            Side::Upstream => "upstream data",
        }
    }
}

/// The host operations of one connection.
pub trait ConnectionHost {
    /// The whole data buffer of `side` (`proxy_get_buffer_bytes`); empty when
    /// the host has none.
    fn read(&self, side: Side) -> Result<Bytes, HostStatus>;

    /// `proxy_set_buffer_bytes(side, start, size, data)`, applied by the host
    /// as Envoy's `Buffer::copyFrom`.
    fn write(&self, side: Side, start: usize, size: usize, data: &[u8]) -> Result<(), HostStatus>;

    /// `proxy_continue_stream(DOWNSTREAM)`.
    fn continue_downstream(&self) -> Result<(), HostStatus>;

    /// `proxy_close_stream(DOWNSTREAM)`.
    fn close(&self) -> Result<(), HostStatus>;

    /// `proxy_call_foreign_function(name, arguments)`; the results bytes.
    fn call_foreign(&self, name: &str, arguments: &[u8]) -> Result<Bytes, HostStatus>;

    /// A property's raw bytes; `None` when absent.
    fn property(&self, path: &[&str]) -> Option<Bytes>;
}

/// The real host (Envoy, or the harness).
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvoyHost;

impl ConnectionHost for EnvoyHost {
    fn read(&self, side: Side) -> Result<Bytes, HostStatus> {
        // NOT_FOUND (no buffer outside its callback) is an empty Ok here.
        hostcalls::get_buffer(side.buffer(), 0, usize::MAX)
            .map(Option::unwrap_or_default)
            .map_err(|status| HostStatus(status as u32))
    }

    fn write(&self, side: Side, start: usize, size: usize, data: &[u8]) -> Result<(), HostStatus> {
        // SAFETY: `data` is a live slice that outlives the call.
        let status = unsafe {
            ffi::proxy_set_buffer_bytes(
                side.buffer() as u32,
                start,
                size,
                data.as_ptr(),
                data.len(),
            )
        };
        ffi::check(status)
    }

    fn continue_downstream(&self) -> Result<(), HostStatus> {
        // SAFETY: plain integer argument.
        ffi::check(unsafe { ffi::proxy_continue_stream(StreamType::Downstream as u32) })
    }

    fn close(&self) -> Result<(), HostStatus> {
        // SAFETY: plain integer argument.
        ffi::check(unsafe { ffi::proxy_close_stream(StreamType::Downstream as u32) })
    }

    fn call_foreign(&self, name: &str, arguments: &[u8]) -> Result<Bytes, HostStatus> {
        let mut results: *mut u8 = std::ptr::null_mut();
        let mut results_size: usize = 0;
        // SAFETY: the name and arguments are live slices; the out-parameters
        // are locals the host writes before returning.
        let status = unsafe {
            ffi::proxy_call_foreign_function(
                name.as_ptr(),
                name.len(),
                arguments.as_ptr(),
                arguments.len(),
                &mut results,
                &mut results_size,
            )
        };
        ffi::check(status)?;
        if results.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: the host allocated `results_size` bytes through the module's
        // proxy_on_memory_allocate (the SDK's allocator, as its own wrappers assume).
        Ok(unsafe { Vec::from_raw_parts(results, results_size, results_size) })
    }

    fn property(&self, path: &[&str]) -> Option<Bytes> {
        crate::property::get(path)
    }
}

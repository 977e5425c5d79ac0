//! The Proxy-Wasm ABI 0.2.1 imports whose proxy-wasm wrappers cannot pass what
//! we need (local-reply details, byte header values) or panic on a status the
//! host may legitimately answer (the network filter's buffer writes, stream
//! continue/close and foreign calls: Envoy answers NOT_FOUND, BAD_ARGUMENT or
//! UNIMPLEMENTED there, on which the SDK's wrappers panic and the VM traps).
//! Statuses come back as raw `u32` so an unexpected code is reported, not UB.

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    pub(crate) fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;

    pub(crate) fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;

    pub(crate) fn proxy_continue_stream(stream_type: u32) -> u32;

    pub(crate) fn proxy_close_stream(stream_type: u32) -> u32;

    pub(crate) fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        arguments: *const u8,
        arguments_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

/// A non-OK status from the host, with the ABI's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

impl std::fmt::Display for HostStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            0 => "OK",
            1 => "NOT_FOUND",
            2 => "BAD_ARGUMENT",
            3 => "SERIALIZATION_FAILURE",
            4 => "PARSE_FAILURE",
            6 => "INVALID_MEMORY_ACCESS",
            7 => "EMPTY",
            8 => "CAS_MISMATCH",
            10 => "INTERNAL_FAILURE",
            12 => "UNIMPLEMENTED",
            _ => "UNKNOWN",
        };
        write!(f, "{name} ({})", self.0)
    }
}

pub(crate) fn check(status: u32) -> Result<(), HostStatus> {
    if status == 0 {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named() {
        assert!(check(0).is_ok());
        assert_eq!(check(2).unwrap_err().to_string(), "BAD_ARGUMENT (2)");
        assert_eq!(HostStatus(99).to_string(), "UNKNOWN (99)");
    }
}

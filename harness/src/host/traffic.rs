//! Counters of what crossed one VM's guest boundary (benchmarks read them).

/// What crossed the host/guest boundary of one VM since it started:
/// cumulative, so a benchmark takes differences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GuestTraffic {
    /// Guest exports called by the driver (callbacks).
    pub callbacks: u64,
    /// Guest allocator calls made to return values.
    pub allocations: u64,
    /// Host functions called by the guest (Proxy-Wasm and WASI).
    pub hostcalls: u64,
    /// Payload bytes the host read out of guest memory.
    pub bytes_from_guest: u64,
    /// Payload bytes the host wrote into guest memory.
    pub bytes_to_guest: u64,
}

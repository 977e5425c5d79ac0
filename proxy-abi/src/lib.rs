//! The Proxy-Wasm ABI as data, shared by the host and the guests: the
//! numbered enums, the ABI versions, the header-map wire codec with its caps,
//! and the tables of host functions, callbacks (per ABI version) and WASI
//! functions as macros that generate each side's glue.
//!
//! No dependencies and `no_std` (with `alloc`): it builds for wasm32 filters
//! and for the harness alike.

#![no_std]

extern crate alloc;

mod enums;
mod fields;
mod map;
mod tables;

pub use enums::{
    AbiVersion, Action, BufferType, LogLevel, MapType, MetricType, PeerType, Status, StreamType,
};
pub use fields::HttpField;
pub use map::{
    MAX_MAP_BYTES, MAX_MAP_PAIRS, MapDecodeError, Pair, decode_map, encode_map, encode_map_into,
    encoded_map_size, split_property_path,
};
pub use tables::{
    ArgKind, CALLBACKS, CallbackResult, CallbackSpec, HOST_WASI_FUNCTIONS, HOSTCALLS, HostcallSpec,
    WASI_FUNCTIONS, WASI_MODULES, WASI_REFUSED_AT_STARTUP, WasiSpec, hostcall_versions,
};

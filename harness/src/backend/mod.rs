//! Backends: how guest memory is reached and guest exports are called.
pub mod wasm;

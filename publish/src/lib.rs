//! publish: the command line over [`oci_registry`] (push Proxy-Wasm modules to
//! OCI registries in the layouts Istio and ASM load, pull them back verified,
//! inspect, copy), plus what needs the harness: preflight checks before a push
//! and `render` (deployment resources, validated by loading the module). See
//! README.md.
//!
//! The registry side is re-exported whole, so `publish::pull`,
//! `publish::reference::Reference` and the rest keep their paths.

pub mod cli;
pub mod logging;
pub mod render;
pub mod sync;

pub use oci_registry::*;

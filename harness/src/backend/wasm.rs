//! The wasmtime backend.

use std::path::Path;
use std::sync::Arc;

use crate::error::HarnessError;

/// A wasmtime engine configured for filters (Cranelift). Cheap to clone.
#[derive(Clone)]
pub struct WasmEngine {
    _inner: Arc<()>,
}

/// A module compiled once and shared by any number of VMs. Cheap to clone.
#[derive(Clone)]
pub struct CompiledModule {
    _inner: Arc<()>,
}

impl CompiledModule {
    /// Reads and compiles a `.wasm` file with the shared default engine.
    pub fn from_file(path: impl AsRef<Path>) -> Result<CompiledModule, HarnessError> {
        Err(HarnessError::Usage(format!(
            "not implemented yet: {}",
            path.as_ref().display()
        )))
    }
    /// Compiles module bytes (binary or WAT text); `name` labels errors.
    pub fn from_bytes(name: &str, _bytes: &[u8]) -> Result<CompiledModule, HarnessError> {
        Err(HarnessError::Usage(format!("not implemented yet: {name}")))
    }
}

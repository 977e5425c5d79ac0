//! The simulated Envoy state (no wasmtime in here).

use std::sync::Arc;

/// State Envoy shares across workers: shared data and queues (per vm_id) and metrics.
#[derive(Clone, Default)]
pub struct SharedHost {
    _inner: Arc<()>,
}

impl SharedHost {
    /// Fresh, empty shared state.
    pub fn new() -> Self {
        Self::default()
    }
}

//! Errors a user can act on.

use std::path::PathBuf;

use crate::model::LogEntry;

/// Why the harness could not load, start or drive a filter.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The module or library file could not be read.
    #[error(
        "cannot read filter module {path}: {source} (check the path; build filters with `cargo build --target wasm32-wasip1 --release`)"
    )]
    ModuleNotFound {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly module.
    #[error("{name} is not a WebAssembly module: {detail}")]
    NotWasm {
        /// File name or label.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// The module failed to compile or link.
    #[error("cannot compile {name}: {detail}")]
    Compile {
        /// File name or label.
        name: String,
        /// The compiler's message.
        detail: String,
    },
    /// The module is over one of the engine's compilation limits
    /// ([`crate::limits::ModuleLimits`]); it was not compiled.
    #[error("refusing to compile {name}: {detail}")]
    ModuleLimit {
        /// File name or label.
        name: String,
        /// The limit it hit.
        limit: crate::limits::ModuleLimit,
        /// What was measured, the limit, and how to raise it.
        detail: String,
    },
    /// No `proxy_abi_version_*` export.
    #[error(
        "{name} exports no proxy_abi_version_* function: it is not a Proxy-Wasm filter (build it with the proxy-wasm SDK)"
    )]
    NoAbiVersion {
        /// File name or label.
        name: String,
    },
    /// A required export is missing.
    #[error("{name} does not export `{export}`, which a Proxy-Wasm host requires")]
    MissingExport {
        /// File name or label.
        name: String,
        /// The missing export.
        export: String,
    },
    /// The module imports a function the harness does not provide.
    #[error(
        "{name} imports {module}::{field}, which this host does not provide (Envoy would refuse it too)"
    )]
    UnknownImport {
        /// File name or label.
        name: String,
        /// Import module.
        module: String,
        /// Import name.
        field: String,
    },
    /// Instantiation failed.
    #[error("cannot instantiate {name}: {detail}")]
    Instantiate {
        /// File name or label.
        name: String,
        /// The runtime's message.
        detail: String,
    },
    /// The guest trapped (panicked) in a callback.
    #[error("the filter trapped in {callback} (context {context_id}): {}{trap}", panic_message.as_deref().map(|m| format!("{m}; ")).unwrap_or_default())]
    Trap {
        /// Export that trapped.
        callback: String,
        /// Context id.
        context_id: u32,
        /// Runtime trap text.
        trap: String,
        /// The guest's panic message from its logs.
        panic_message: Option<String>,
    },
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false.
    #[error(
        "configuration rejected: {callback} returned false{}",
        format_logs(logs)
    )]
    ConfigurationRejected {
        /// `proxy_on_vm_start` or `proxy_on_configure`.
        callback: String,
        /// What the filter logged while starting.
        logs: Vec<LogEntry>,
    },
    /// A native filter library could not be loaded.
    #[error("cannot load native filter {path}: {detail}")]
    NativeLoad {
        /// The path given.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Misuse of the harness API or an internal limit.
    #[error("{0}")]
    Usage(String),
}

fn format_logs(logs: &[LogEntry]) -> String {
    if logs.is_empty() {
        return " (the filter logged nothing)".to_string();
    }
    let mut s = String::from("; the filter logged:");
    for l in logs {
        s.push_str(&format!("\n  [{}] {}", l.level.name(), l.message));
    }
    s
}

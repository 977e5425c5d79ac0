//! Per-VM resource limits, as a host that survives any guest needs them:
//! a cap on linear memory (a wasmtime [`ResourceLimiter`]) and a deadline
//! for each guest callback (epoch interruption, ticked by one background
//! thread per engine, so a deadline costs one store write per call).
//!
//! Both are set per plugin ([`crate::PluginConfig::max_memory_bytes`],
//! [`crate::PluginConfig::callback_deadline_ms`]) and reported as an error
//! naming the filter and the callback.
//!
//! Before any of that, a module must get through compilation: the
//! [`ModuleLimits`] of the engine (size, function count, largest function
//! body, compile time) are checked before and while Cranelift runs (see
//! `backend/wasm/bounds.rs`).

use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

/// How often the engine's epoch advances: the deadline's granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Default cap on a VM's linear memory: 256 MiB (Envoy's V8 default
/// heap limit is of that order; filters rarely need more than a few MiB).
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// Default deadline for one guest callback, in milliseconds: generous
/// enough for slow debug machines, short enough that an endless loop
/// fails a test quickly.
pub const DEFAULT_CALLBACK_DEADLINE_MS: u64 = 10_000;

/// Default cap on a module's size: 64 MiB. Our release filters are 0.1 to
/// 0.9 MB; a debug build with DWARF, or a large Go or C++ filter, is a few
/// tens of MB at most.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

/// Default cap on the functions a module defines: 100,000 (our filters
/// define 350 to 1,500).
pub const DEFAULT_MAX_FUNCTIONS: u32 = 100_000;

/// Default cap on one function body: 1 MiB (the largest in our filters is
/// 42 KB). Cranelift's time grows faster than linearly in a body's size,
/// so the compile timeout backs this up.
pub const DEFAULT_MAX_FUNCTION_BODY_BYTES: u32 = 1024 * 1024;

/// Default wall-clock budget for compiling one module: 60 s (our largest
/// filter compiles in about 2 s on a busy 2-core machine).
pub const DEFAULT_COMPILE_TIMEOUT_MS: u64 = 60_000;

/// What a module may ask of the compiler; set per engine
/// ([`crate::WasmEngine::with_module_limits`]), checked by every compile
/// (precompiled `.cwasm` artifacts are loaded, not compiled, and skip it).
/// 0 in any field means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleLimits {
    /// Largest module, in bytes (binary or WAT text as given).
    pub max_module_bytes: u64,
    /// Most functions a module may define (imports not counted).
    pub max_functions: u32,
    /// Largest single function body, in bytes of its code.
    pub max_function_body_bytes: u32,
    /// Wall-clock budget for compiling, in milliseconds.
    pub compile_timeout_ms: u64,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        ModuleLimits {
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
            max_functions: DEFAULT_MAX_FUNCTIONS,
            max_function_body_bytes: DEFAULT_MAX_FUNCTION_BODY_BYTES,
            compile_timeout_ms: DEFAULT_COMPILE_TIMEOUT_MS,
        }
    }
}

/// One of the [`ModuleLimits`], for the message a refused module gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleLimit {
    /// [`ModuleLimits::max_module_bytes`].
    ModuleBytes,
    /// [`ModuleLimits::max_functions`].
    Functions,
    /// [`ModuleLimits::max_function_body_bytes`].
    FunctionBodyBytes,
    /// [`ModuleLimits::compile_timeout_ms`].
    CompileTimeout,
}

impl ModuleLimit {
    /// The [`ModuleLimits`] field.
    pub fn field(self) -> &'static str {
        match self {
            ModuleLimit::ModuleBytes => "max_module_bytes",
            ModuleLimit::Functions => "max_functions",
            ModuleLimit::FunctionBodyBytes => "max_function_body_bytes",
            ModuleLimit::CompileTimeout => "compile_timeout_ms",
        }
    }

    /// The `harness run` / `harness compile` flag that overrides it.
    pub fn flag(self) -> &'static str {
        match self {
            ModuleLimit::ModuleBytes => "--max-module-mb MIB",
            ModuleLimit::Functions => "--max-functions N",
            ModuleLimit::FunctionBodyBytes => "--max-function-body-kb KIB",
            ModuleLimit::CompileTimeout => "--compile-timeout-ms MS",
        }
    }
}

/// The error text for a module over a compilation limit: what was
/// measured (for the timeout, what did not happen), the limit, and how to
/// raise it.
pub fn module_limit_message(limit: ModuleLimit, measured: &str, max: u64) -> String {
    let unit = match limit {
        ModuleLimit::ModuleBytes | ModuleLimit::FunctionBodyBytes => " bytes",
        ModuleLimit::Functions => "",
        ModuleLimit::CompileTimeout => " ms",
    };
    let over = match limit {
        ModuleLimit::CompileTimeout => format!("{measured} within the limit of {max}{unit}"),
        _ => format!("{measured}, over the limit of {max}{unit}"),
    };
    format!(
        "{over} ({field}); if the module is trusted, raise it with `harness run {flag}` / `harness compile {flag}`, or ModuleLimits::{field} on the \
         WasmEngine in the library (0 = no limit)",
        field = limit.field(),
        flag = limit.flag(),
    )
}

/// Caps linear memory growth; remembers a refused growth so the trap that
/// usually follows (the guest's allocator aborts) can be explained.
#[derive(Debug, Clone)]
pub struct MemoryCap {
    /// Largest size, in bytes, a memory may have.
    pub max_bytes: u64,
    /// The size, in bytes, a refused `memory.grow` asked for (cleared before each callback).
    pub refused: Option<u64>,
}

impl MemoryCap {
    /// A cap of `max_bytes` (0 = wasm32's own 4 GiB).
    pub fn new(max_bytes: u64) -> MemoryCap {
        MemoryCap {
            max_bytes: if max_bytes == 0 { 1 << 32 } else { max_bytes },
            refused: None,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_bytes {
            // Like a real allocation failure: memory.grow returns -1 and the
            // guest decides (most abort, which traps).
            self.refused = Some(desired as u64);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element is a pointer: bound tables by the same budget.
        Ok((desired as u64).saturating_mul(8) <= self.max_bytes)
    }
}

/// Starts the thread that advances `engine`'s epoch every [`EPOCH_TICK`];
/// it ends when the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("harness-epoch".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .map(|_| ())
}

/// Epoch ticks for a deadline of `ms` milliseconds (0 = no deadline).
pub fn deadline_ticks(ms: u64) -> u64 {
    if ms == 0 {
        u64::MAX
    } else {
        // +1: the current tick may be about to end.
        ms.div_ceil(EPOCH_TICK.as_millis().max(1) as u64)
            .saturating_add(1)
    }
}

/// The error text for a callback stopped at its deadline.
pub fn deadline_message(filter: &str, callback: &str, ms: u64) -> String {
    format!(
        "filter {filter}: {callback} exceeded its {ms} ms CPU deadline (callback_deadline_ms); \
         the VM is failed"
    )
}

/// The error text for a callback that trapped after its memory growth was refused.
pub fn memory_message(filter: &str, callback: &str, max: u64, wanted: u64, trap: &str) -> String {
    format!(
        "filter {filter}: {callback} exceeded its {max}-byte memory limit (max_memory_bytes; \
         memory.grow to {wanted} bytes refused), then trapped: {trap}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_growth_past_it_and_remembers() {
        let mut cap = MemoryCap::new(2 * 65536);
        assert!(cap.memory_growing(0, 65536, None).unwrap());
        assert!(cap.refused.is_none());
        assert!(!cap.memory_growing(65536, 3 * 65536, None).unwrap());
        assert_eq!(cap.refused, Some(3 * 65536));
        assert_eq!(MemoryCap::new(0).max_bytes, 1 << 32);
    }

    #[test]
    fn deadlines_round_up_and_zero_means_none() {
        assert_eq!(deadline_ticks(0), u64::MAX);
        assert!(deadline_ticks(100) >= 100);
        assert!(
            deadline_message("f", "proxy_on_tick", 100)
                .starts_with("filter f: proxy_on_tick exceeded its 100 ms CPU deadline")
        );
    }
}

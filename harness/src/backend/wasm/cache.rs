//! An on-disk cache of compiled modules, so a second `harness test` or
//! `harness run` of the same module compiles nothing (as wasmtime's own
//! cache does). An entry is keyed by the module's bytes and the engine's
//! compilation settings (wasmtime's `precompile_compatibility_hash`, which
//! hashes its tunables: backtrace details, kept DWARF included, so an entry
//! compiled without them is never loaded by an engine that wants them), and
//! holds the artifact `harness compile` would write.
//!
//! Where: `$HARNESS_CACHE_DIR`, else `$XDG_CACHE_HOME/proxy-wasm-harness`,
//! else `~/.cache/proxy-wasm-harness`; `HARNESS_CACHE_DIR=off` turns it off.
//! Only files loaded under the default [`ModuleLimits`] are cached (a
//! stricter engine compiles, so its limits are enforced). Entries are
//! trusted like `.cwasm` files: wasmtime checks their header, version and
//! settings, and an entry it refuses is compiled again and replaced.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Module;

use super::WasmEngine;
use crate::backend::CodeHash;
use crate::limits::ModuleLimits;

/// The cache directory, or `None` when caching is off.
fn dir() -> Option<PathBuf> {
    match std::env::var_os("HARNESS_CACHE_DIR") {
        Some(v) if v == "off" || v.is_empty() => return None,
        Some(v) => return Some(PathBuf::from(v)),
        None => {}
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("proxy-wasm-harness"))
}

/// Where the entry for `code` compiled by `engine` lives, if caching applies.
pub(super) fn entry(engine: &WasmEngine, code: &CodeHash) -> Option<PathBuf> {
    if engine.limits != ModuleLimits::default() {
        return None;
    }
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine
        .engine
        .precompile_compatibility_hash()
        .hash(&mut settings);
    let name = format!("{}-{:016x}.cwasm", code.hex(), settings.finish());
    Some(dir()?.join(name))
}

/// The cached module, if there is a usable entry.
pub(super) fn load(engine: &WasmEngine, path: &std::path::Path) -> Option<Module> {
    if !path.is_file() {
        return None;
    }
    // SAFETY: wasmtime checks the artifact's header, engine configuration
    // and version before using it; the cache directory is the user's own,
    // trusted like a `.cwasm` they made with `harness compile`.
    match unsafe { Module::deserialize_file(&engine.engine, path) } {
        Ok(module) => Some(module),
        Err(e) => {
            log::debug!("cache entry {} refused ({e}); compiling", path.display());
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// Stores a freshly compiled module (written aside, then renamed, so a
/// reader never sees half an entry). Failures only cost the next run a compile.
pub(super) fn store(module: &Module, path: &std::path::Path) {
    let Ok(bytes) = module.serialize() else {
        return;
    };
    let Some(parent) = path.parent() else {
        return;
    };
    if std::fs::create_dir_all(parent).is_err() {
        return;
    }
    let aside = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&aside, bytes).is_ok() && std::fs::rename(&aside, path).is_err() {
        let _ = std::fs::remove_file(&aside);
    }
}

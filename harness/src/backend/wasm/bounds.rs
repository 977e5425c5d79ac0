//! Bounded compilation: a module is measured with `wasmparser` before
//! Cranelift sees it (size, functions defined, largest function body),
//! then compiled on a thread of its own that the caller waits for no
//! longer than the compile timeout. Measuring only reads section headers
//! and body lengths, so it costs microseconds per MB; wasmtime validates
//! the module itself while compiling.

use std::borrow::Cow;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use wasmparser::{Parser, Payload};

use crate::error::HarnessError;
use crate::limits::{ModuleLimit, ModuleLimits, module_limit_message};

fn refused(name: &str, limit: ModuleLimit, measured: String, max: u64) -> HarnessError {
    HarnessError::ModuleLimit {
        name: name.to_string(),
        limit,
        detail: module_limit_message(limit, &measured, max),
    }
}

/// Refuses a module of `len` bytes over [`ModuleLimits::max_module_bytes`]
/// (checked on a file's length before it is read).
pub(crate) fn check_size(name: &str, len: u64, limits: &ModuleLimits) -> Result<(), HarnessError> {
    let max = limits.max_module_bytes;
    if max != 0 && len > max {
        return Err(refused(
            name,
            ModuleLimit::ModuleBytes,
            format!("the module is {len} bytes"),
            max,
        ));
    }
    Ok(())
}

/// The module's binary (WAT text is converted), checked against every
/// limit but the compile timeout. A malformed module is passed through:
/// wasmtime reports it with its own message.
pub(crate) fn checked_binary<'a>(
    name: &str,
    bytes: &'a [u8],
    limits: &ModuleLimits,
) -> Result<Cow<'a, [u8]>, HarnessError> {
    check_size(name, bytes.len() as u64, limits)?;
    let binary = wat::parse_bytes(bytes).map_err(|e| HarnessError::Compile {
        name: name.to_string(),
        detail: format!("{e}"),
    })?;
    check_functions(name, &binary, limits)?;
    Ok(binary)
}

fn check_functions(name: &str, binary: &[u8], limits: &ModuleLimits) -> Result<(), HarnessError> {
    let max_count = limits.max_functions;
    let max_body = limits.max_function_body_bytes;
    let mut defined = 0u32;
    for payload in Parser::new(0).parse_all(binary) {
        let count = match payload {
            Ok(Payload::FunctionSection(section)) => section.count(),
            Ok(Payload::CodeSectionStart { count, .. }) => count,
            Ok(Payload::CodeSectionEntry(body)) => {
                let len = body.range().len() as u64;
                if max_body != 0 && len > u64::from(max_body) {
                    return Err(refused(
                        name,
                        ModuleLimit::FunctionBodyBytes,
                        format!("the body of defined function {defined} is {len} bytes"),
                        u64::from(max_body),
                    ));
                }
                defined += 1;
                continue;
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        if max_count != 0 && count > max_count {
            return Err(refused(
                name,
                ModuleLimit::Functions,
                format!("the module defines {count} functions"),
                u64::from(max_count),
            ));
        }
    }
    Ok(())
}

/// Runs `compile` over `binary` on its own thread and waits up to
/// [`ModuleLimits::compile_timeout_ms`] for it. Past the budget the module
/// is refused; Cranelift cannot be stopped, so the thread finishes in the
/// background and its result is dropped. A compiler panic is an error too.
pub(crate) fn compile_bounded<T: Send + 'static>(
    name: &str,
    binary: Cow<'_, [u8]>,
    limits: &ModuleLimits,
    compile: impl FnOnce(&[u8]) -> wasmtime::Result<T> + Send + 'static,
) -> Result<T, HarnessError> {
    let compile_error = |e: wasmtime::Error| HarnessError::Compile {
        name: name.to_string(),
        detail: format!("{e:#}"),
    };
    let ms = limits.compile_timeout_ms;
    if ms == 0 {
        return compile(&binary).map_err(compile_error);
    }
    let binary = binary.into_owned();
    let (done, result) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("harness-compile".to_string())
        .spawn(move || {
            // The receiver is gone when the caller stopped waiting.
            let _ = done.send(compile(&binary));
        })
        .map_err(|e| HarnessError::Compile {
            name: name.to_string(),
            detail: format!("cannot start the compile thread: {e}"),
        })?;
    match result.recv_timeout(Duration::from_millis(ms)) {
        Ok(compiled) => compiled.map_err(compile_error),
        Err(RecvTimeoutError::Timeout) => Err(refused(
            name,
            ModuleLimit::CompileTimeout,
            "compiling did not finish".to_string(),
            ms,
        )),
        Err(RecvTimeoutError::Disconnected) => Err(HarnessError::Compile {
            name: name.to_string(),
            detail: "the compiler panicked (a wasmtime bug; the module was not loaded)".to_string(),
        }),
    }
}

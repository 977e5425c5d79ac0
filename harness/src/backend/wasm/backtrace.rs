//! A trap's wasm backtrace as the harness prints it: one line per frame
//! (inlined calls too), innermost first, the function's Rust name
//! demangled without its hash, and the source position from the module's
//! DWARF when it has some (a debug build). The frames of the panic
//! runtime (`core::panicking`, `std::panicking`, `abort`...) that every
//! Rust panic starts with are counted, not listed: the first frame shown
//! is where the filter's own code went wrong.

use std::fmt::Write;

use wasmtime::{FrameInfo, WasmBacktrace};

use crate::symbols::demangled;

/// Name prefixes of the functions a Rust panic runs through before it
/// aborts, innermost first.
const PANIC_RUNTIME: &[&str] = &[
    "abort",
    "std::",
    "core::",
    "alloc::",
    "panic_abort::",
    "__rustc::",
    "__rust_",
    "rust_panic",
    "rust_begin_unwind",
];

/// One printed line of a frame: a function, maybe inlined into the next.
struct Line {
    frame: usize,
    function: String,
    at: Option<String>,
}

/// `wasm backtrace` and its frames, one per line, or `None` when the
/// runtime recorded no frame.
pub(super) fn text(backtrace: &WasmBacktrace) -> Option<String> {
    let lines: Vec<Line> = backtrace
        .frames()
        .iter()
        .enumerate()
        .flat_map(|(i, frame)| frame_lines(i, frame))
        .collect();
    if lines.is_empty() {
        return None;
    }
    let runtime = lines
        .iter()
        .take_while(|l| PANIC_RUNTIME.iter().any(|p| l.function.starts_with(p)))
        .count();
    // All runtime frames (a trap inside the runtime itself): show them all.
    let skipped = if runtime == lines.len() { 0 } else { runtime };
    let mut out = String::from("wasm backtrace (innermost first");
    if skipped > 0 {
        let _ = write!(out, "; {skipped} frames of the Rust panic runtime left out");
    }
    out.push_str("):");
    for line in &lines[skipped..] {
        let _ = write!(out, "\n  #{:<2} {}", line.frame, line.function);
        if let Some(at) = &line.at {
            let _ = write!(out, " at {at}");
        }
    }
    Some(out)
}

/// The frame's lines: one per DWARF symbol (inlined functions first), or
/// one with the name-section name when the module has no DWARF.
fn frame_lines(index: usize, frame: &FrameInfo) -> Vec<Line> {
    let fallback = || match frame.func_name() {
        Some(name) => demangled(name),
        None => format!("<wasm function {}>", frame.func_index()),
    };
    if frame.symbols().is_empty() {
        // No DWARF: the code offset is what tools (wasm-objdump,
        // addr2line on an unstripped copy) can find it by.
        return vec![Line {
            frame: index,
            function: fallback(),
            at: frame
                .module_offset()
                .map(|offset| format!("offset {offset:#x}")),
        }];
    }
    frame
        .symbols()
        .iter()
        .map(|symbol| Line {
            frame: index,
            function: symbol.name().map_or_else(fallback, demangled),
            at: symbol
                .file()
                .map(|file| match (symbol.line(), symbol.column()) {
                    (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
                    (Some(line), None) => format!("{file}:{line}"),
                    _ => file.to_string(),
                }),
        })
        .collect()
}

//! A trap's wasm backtrace as the harness prints it: one line per frame
//! (inlined calls too), innermost first, the function's Rust name
//! demangled without its hash, and the source position from the module's
//! DWARF when it has some (a debug build). The frames of the panic
//! runtime (`core::panicking`, `std::panicking`, `abort`...) that every
//! Rust panic starts with are counted, not listed: the first frame shown
//! is where the filter's own code went wrong.

use std::fmt::Write;

use wasmtime::{FrameInfo, WasmBacktrace};

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

/// A Rust symbol (legacy or v0 mangling) without its hash or crate
/// disambiguators. The name section wasm-ld writes holds names already
/// demangled with both (`exec::run_one::h10ad...`, `std[a888...]::process`):
/// those lose them too. Any other name stays as it is.
fn demangled(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(symbol) => format!("{symbol:#}"),
        Err(_) => without_hashes(name),
    }
}

/// `name` without legacy `::h<16 hex>` hash segments and v0 `[<hex>]`
/// crate disambiguators.
fn without_hashes(name: &str) -> String {
    let is_hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        match rest[open + 1..].find(']') {
            Some(len) if is_hex(&rest[open + 1..open + 1 + len]) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + len + 2..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    let legacy_hash = out
        .rfind("::h")
        .filter(|at| out.len() - at == 19 && is_hex(&out[at + 3..]));
    if let Some(at) = legacy_hash {
        out.truncate(at);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::demangled;

    #[test]
    fn rust_names_lose_their_hash_and_others_stay() {
        assert_eq!(
            demangled("_ZN17test_filter_probe4exec7run_one17h10ada9078639d4bdE"),
            "test_filter_probe::exec::run_one"
        );
        assert_eq!(
            demangled("proxy_on_request_headers"),
            "proxy_on_request_headers"
        );
        assert_eq!(
            demangled("test_filter_probe::exec::run_one::h10ada9078639d4bd"),
            "test_filter_probe::exec::run_one"
        );
        assert_eq!(
            demangled("std[a88812da5ee6ad9e]::sys::backtrace::f::<std[a88812da5ee6ad9e]::x, !>"),
            "std::sys::backtrace::f::<std::x, !>"
        );
        assert_eq!(demangled("a[i]::h12"), "a[i]::h12");
    }
}

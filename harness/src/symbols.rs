//! Symbol names as users read them: Rust names demangled without their
//! hashes (backtraces, coverage reports).

/// A Rust symbol (legacy or v0 mangling) without its hash or crate
/// disambiguators. The name section wasm-ld writes holds names already
/// demangled with both (`exec::run_one::h10ad...`, `std[a888...]::process`):
/// those lose them too. Any other name stays as it is.
pub fn demangled(name: &str) -> String {
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

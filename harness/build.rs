//! The native twin (issue 4): filter `cdylib`s import the `proxy_*` host
//! functions as undefined symbols, resolved against the executable that
//! loads them. Export this crate's symbols dynamically from every
//! executable it builds (the CLI and the tests; add `benches` with a bench target).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        for kind in ["bins", "tests"] {
            println!("cargo:rustc-link-arg-{kind}=-Wl,--export-dynamic");
        }
    }
}

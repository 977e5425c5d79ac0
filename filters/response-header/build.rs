//! The native twin in this crate's own `cargo test`: its `proxy_*` imports
//! resolve against the test executable, which must export the harness's
//! host functions (filters/README.md, "Testing a filter in Rust").

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
    }
}

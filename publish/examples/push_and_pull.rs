//! Push a Proxy-Wasm module with the library, pull it back verified, and print
//! what a WasmPlugin needs.
//!
//!   cargo run -p publish --example push_and_pull -- localhost:5000/filters/demo:v1 [module.wasm]
//!
//! Without a module it builds a small valid one (exports proxy_abi_version_0_2_1).
//! `--write-module PATH BYTES` only writes such a module of about BYTES bytes
//! (the benchmark script uses it) and exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

use publish::{Layout, Options, PushRequest, RegistryClient, auth, reference};

fn synthetic_module(payload: usize) -> Vec<u8> {
    let data: String = (0..payload)
        .map(|i| format!("\\{:02x}", (i as u8).wrapping_mul(31)))
        .collect();
    let pages = payload / 65536 + 2;
    wat::parse_str(format!(
        r#"(module
             (memory (export "memory") {pages})
             (data (i32.const 1024) "{data}")
             (func (export "proxy_abi_version_0_2_1"))
             (func (export "proxy_on_context_create") (param i32 i32))
             (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
             (func (export "malloc") (param i32) (result i32) i32.const 0))"#
    ))
    .expect("the synthetic module is valid WAT")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--write-module") {
        let (Some(path), Some(size)) = (args.get(1), args.get(2)) else {
            anyhow::bail!("usage: --write-module PATH BYTES");
        };
        std::fs::write(path, synthetic_module(size.parse()?))?;
        return Ok(());
    }
    let Some(target) = args.first() else {
        anyhow::bail!("usage: push_and_pull REGISTRY/REPO:TAG [MODULE.wasm]");
    };
    let work = tempfile::tempdir()?;
    let module = match args.get(1) {
        Some(path) => PathBuf::from(path),
        None => {
            let path = work.path().join("demo.wasm");
            std::fs::write(&path, synthetic_module(64 * 1024))?;
            path
        }
    };

    let references = reference::parse_with_tags(target)?;
    let registry = references[0].resolve_registry().to_string();
    let credentials = auth::from_docker_config(&registry)?;
    let client = RegistryClient::new(&registry, credentials, Options::default())?;

    let started = Instant::now();
    let request = PushRequest {
        module: module.clone(),
        references: references.clone(),
        layout: Some(Layout::Oci),
        root_ids: vec!["my_root_id".into()],
        size_cap: publish::module::DEFAULT_SIZE_CAP,
        ..Default::default()
    };
    let pushed = publish::push(&client, &request).await?;
    println!(
        "pushed {} in {:?}: {} blob(s) uploaded, {} reused",
        pushed.references.join(", "),
        started.elapsed(),
        pushed.uploaded.len(),
        pushed.reused.len()
    );

    let out = work.path().join("pulled.wasm");
    let pulled = publish::pull(
        &client,
        &references[0],
        Some(&pushed.wasmplugin_sha256),
        &out,
        None,
    )
    .await?;
    anyhow::ensure!(
        std::fs::read(&out)? == std::fs::read(&module)?,
        "pulled bytes differ"
    );
    println!(
        "pulled back {} bytes, identical; Istio loads it: {}",
        pulled.module_size, pulled.istio.loads
    );
    println!();
    println!("# WasmPlugin fields");
    println!("url: {}", pushed.pinned_url);
    println!("sha256: {}", pushed.wasmplugin_sha256);
    Ok(())
}

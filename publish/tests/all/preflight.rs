//! `publish push` runs `harness check` before anything is uploaded: a
//! module the target would not load is refused with the reasons, and
//! nothing reaches the registry; `--no-check` pushes it anyway.

use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{Cli, sha256_hex};

/// A module `publish`'s own validation accepts (valid wasm, ABI export)
/// that imports a host function no Envoy provides.
fn module_with_unknown_import() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "env" "proxy_send_smoke_signal" (func (param i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap()
}

#[test]
fn push_refuses_a_module_envoy_would_not_load_and_uploads_nothing() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let bytes = module_with_unknown_import();
    let module = cli.file("smoke.wasm", &bytes);
    let reference = format!("{}/preflight/smoke:v1", registry.host());
    let blob = registry.blob_file(&format!("sha256:{}", sha256_hex(&bytes)));

    let refused = cli.run(&["push", module.to_str().unwrap(), &reference]);
    refused.fails_saying("envoy-1.36 would not load it");
    refused.fails_saying("env.proxy_send_smoke_signal");
    refused.fails_saying("--no-check");
    assert!(!blob.exists(), "the module was uploaded");
    cli.run(&["manifest", "fetch", &reference])
        .fails_saying("not found");

    let for_istio = cli.run(&[
        "push",
        module.to_str().unwrap(),
        &reference,
        "--target",
        "istio-1.25",
    ]);
    for_istio.fails_saying("istio-1.25 would not load it");
    let unknown = cli.run(&[
        "push",
        module.to_str().unwrap(),
        &reference,
        "--target",
        "envoy-0.1",
    ]);
    unknown.fails_saying("known targets: envoy-1.36");
    assert!(!blob.exists());

    let pushed = cli.push(&module, &reference, &["--no-check"]);
    assert_eq!(
        pushed["module_digest"],
        format!("sha256:{}", sha256_hex(&bytes))
    );
    assert!(blob.exists(), "--no-check did not push the module");
}

#[test]
fn push_names_the_wasm_feature_the_target_lacks() {
    let cli = Cli::new();
    let bytes = wat::parse_str(
        r#"(module
            (memory (export "memory") 1 1 shared)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let module = cli.file("shared.wasm", &bytes);
    // Refused before any connection: nothing listens on this port.
    let refused = cli.run(&[
        "push",
        module.to_str().unwrap(),
        "127.0.0.1:9/preflight/shared:v1",
    ]);
    refused.fails_saying("threads");
    assert!(
        !refused.stderr().contains("cannot reach"),
        "{}",
        refused.stderr()
    );
}

/// Start-up runs while the blobs upload: a module that passes the static
/// checks but traps when Envoy would start it is refused before the
/// manifest is put, so no tag points at it.
#[test]
fn push_refused_at_start_up_tags_no_manifest() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let bytes = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_context_create") (param i32 i32) unreachable)
            (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let module = cli.file("trapping.wasm", &bytes);
    let reference = format!("{}/preflight/trapping:v1", registry.host());

    let refused = cli.run(&["push", module.to_str().unwrap(), &reference]);
    refused.fails_saying("would not load it");
    refused.fails_saying("proxy_on_context_create");
    cli.run(&["manifest", "fetch", &reference])
        .fails_saying("not found");
    let tags = cli.run(&["repo", "tags", &reference]);
    assert!(!tags.stdout().contains("v1"), "{}", tags.stdout());

    // The same module with --no-check is tagged: the refusal above was the preflight's.
    cli.push(&module, &reference, &["--no-check"]);
    assert!(
        cli.run(&["manifest", "fetch", &reference])
            .stdout()
            .contains("schemaVersion")
    );
}

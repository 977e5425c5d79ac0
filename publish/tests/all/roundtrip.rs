//! Push and pull through a real registry in every layout.

use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{
    Cli, OCI_INDEX, built_filter, large_module, put_manifest, sha256_hex, small_module,
};

const LAYOUTS: [&str; 4] = ["oci", "compat", "cncf", "single"];

#[test]
fn every_layout_round_trips_byte_identically_and_is_linted_for_istio() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let mut modules = vec![cli.file("filter.wasm", small_module())];
    modules.extend(built_filter());
    for (m, module) in modules.iter().enumerate() {
        let original = std::fs::read(module).unwrap();
        for layout in LAYOUTS {
            let reference = format!("{}/filters/m{m}:{layout}", registry.host());
            let pushed = cli.push(
                module,
                &reference,
                &["--layout", layout, "--root-id", "my_root_id"],
            );
            assert_eq!(pushed["layout"], layout);
            assert_eq!(
                pushed["module_digest"],
                format!("sha256:{}", sha256_hex(&original))
            );
            let digest = pushed["manifest_digest"].as_str().unwrap();
            assert_eq!(
                pushed["wasmplugin_sha256"],
                digest.trim_start_matches("sha256:")
            );
            assert_eq!(
                pushed["pinned_url"],
                format!("oci://{}/filters/m{m}@{digest}", registry.host())
            );

            let out = cli.home.path().join(format!("out-{m}-{layout}.wasm"));
            let pulled = cli.pull(&reference, &out, &["--no-cache"]);
            assert_eq!(
                std::fs::read(&out).unwrap(),
                original,
                "{layout}: pulled bytes differ"
            );
            assert_eq!(pulled["layout"], layout);
            assert_eq!(pulled["manifest_digest"], digest);

            let inspected = cli.run(&["inspect", &reference, "--json"]).json();
            assert_eq!(inspected["layout"], layout);
            assert_eq!(inspected["manifest_digest"], digest);
            let istio = &inspected["istio"];
            match layout {
                "oci" | "compat" => assert_eq!(istio["loads"], true, "{layout}: {istio}"),
                _ => {
                    assert_eq!(istio["loads"], false, "{layout}: {istio}");
                    assert!(
                        istio["reason"]
                            .as_str()
                            .unwrap()
                            .contains("number of layers must be 2"),
                        "{istio}"
                    );
                }
            }
        }
    }
}

#[test]
fn single_and_cncf_pushes_warn_that_istio_will_not_load_them() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    for layout in ["single", "cncf"] {
        let reference = format!("{}/warn:{layout}", registry.host());
        let run = cli.run(&[
            "push",
            module.to_str().unwrap(),
            &reference,
            "--layout",
            layout,
        ]);
        assert!(run.ok(), "{}", run.stderr());
        assert!(
            run.stderr().contains("Istio"),
            "no warning for {layout}: {}",
            run.stderr()
        );
        assert!(
            run.stdout().contains("will NOT load it"),
            "{}",
            run.stdout()
        );
    }
    let run = cli.run(&[
        "push",
        module.to_str().unwrap(),
        &format!("{}/warn:oci", registry.host()),
    ]);
    assert!(run.ok());
    assert!(!run.stderr().contains("warning"), "{}", run.stderr());
}

#[test]
fn identical_inputs_give_identical_digests_with_source_date_epoch() {
    let first = Registry::start(RegistryAuth::None);
    let second = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let push = |registry: &Registry, layout: &str, epoch: &str| {
        let reference = format!("{}/repro/x:{layout}", registry.host());
        let run = cli.run_with(
            &[
                "push",
                module.to_str().unwrap(),
                &reference,
                "--layout",
                layout,
                "--json",
            ],
            None,
            &[("SOURCE_DATE_EPOCH", epoch)],
        );
        run.json()["manifest_digest"].as_str().unwrap().to_string()
    };
    for layout in LAYOUTS {
        let a = push(&first, layout, "1700000000");
        let b = push(&second, layout, "1700000000");
        assert_eq!(a, b, "{layout}: same inputs, different digests");
        let c = push(&second, layout, "1700000001");
        assert_ne!(a, c, "{layout}: the creation time is not in the manifest");
    }
    let inspected = cli
        .run(&[
            "inspect",
            &format!("{}/repro/x:oci", first.host()),
            "--json",
        ])
        .json();
    assert_eq!(
        inspected["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn tags_annotations_and_runtime_config_are_stored() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("hdr.wasm", small_module());
    let reference = format!("{}/filters/hdr:v1,latest", registry.host());
    let pushed = cli.push(
        &module,
        &reference,
        &[
            "--root-id",
            "my_root_id",
            "-a",
            "team=mesh",
            "--image-version",
            "1.2.3",
            "--revision",
            "abc123",
            "--source",
            "https://example.invalid/hdr",
        ],
    );
    let digest = pushed["manifest_digest"].as_str().unwrap();
    for tag in ["v1", "latest"] {
        let inspected = cli
            .run(&[
                "inspect",
                &format!("{}/filters/hdr:{tag}", registry.host()),
                "--json",
            ])
            .json();
        assert_eq!(inspected["manifest_digest"], digest);
        let annotations = &inspected["annotations"];
        assert_eq!(annotations["team"], "mesh");
        assert_eq!(annotations["org.opencontainers.image.version"], "1.2.3");
        assert_eq!(annotations["org.opencontainers.image.revision"], "abc123");
        assert_eq!(
            annotations["org.opencontainers.image.source"],
            "https://example.invalid/hdr"
        );
        assert_eq!(annotations["module.wasm.runtime/type"], "envoy_proxy");
        assert_eq!(annotations["module.wasm.runtime/abi_version"], "v0.2.1");
        assert_eq!(inspected["layers"][0]["title"], "runtime-config.json");
        assert_eq!(inspected["layers"][1]["title"], "hdr.wasm");
        assert_eq!(inspected["runtime"][0], "envoy_proxy");
    }
    // The generated runtime-config.json, read from the registry's own storage.
    let inspected = cli
        .run(&[
            "inspect",
            &format!("{}/filters/hdr:v1", registry.host()),
            "--json",
        ])
        .json();
    let config_digest = inspected["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.blob_file(config_digest)).unwrap()).unwrap();
    assert_eq!(
        config,
        serde_json::json!({"type": "envoy_proxy", "abiVersions": ["v0.2.1"], "config": {"rootIds": ["my_root_id"]}})
    );
}

#[test]
fn bad_modules_are_refused_before_any_request() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::forward_to(registry.port);
    let cli = Cli::new();
    let no_abi = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
    let mut truncated = small_module().to_vec();
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, Vec<u8>, &[&str], &str)> = vec![
        ("text.wasm", b"(module)".to_vec(), &[], "magic"),
        ("truncated.wasm", truncated, &[], "validation failed"),
        ("no-abi.wasm", no_abi, &[], "proxy_abi_version"),
        (
            "big.wasm",
            small_module().to_vec(),
            &["--max-size", "1000"],
            "size cap",
        ),
    ];
    for (name, bytes, extra, reason) in cases {
        let path = cli.file(name, &bytes);
        let reference = format!("{}/bad/{}:v1", proxy.host(), name.trim_end_matches(".wasm"));
        let mut args = vec!["push", path.to_str().unwrap(), reference.as_str()];
        args.extend_from_slice(extra);
        let run = cli.run(&args);
        assert!(!run.ok(), "{name} was accepted");
        assert!(run.stderr().contains(name), "{name}: {}", run.stderr());
        assert!(
            run.stderr().contains(reason),
            "{name}: expected {reason:?} in {}",
            run.stderr()
        );
    }
    assert!(
        proxy.seen().is_empty(),
        "requests were sent: {:?}",
        proxy.seen()
    );
}

#[test]
fn a_second_push_uploads_no_blob_and_a_cached_pull_downloads_none() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::forward_to(registry.port);
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    let reference = format!("{}/big/module:v1", proxy.host());

    let first = cli.push(&module, &reference, &["--chunk-size", "524288"]);
    assert_eq!(first["uploaded"].as_array().unwrap().len(), 2);
    let patches = proxy.seen().iter().filter(|s| s.method == "PATCH").count();
    assert!(
        patches >= 4,
        "2 MiB in 512 KiB chunks took {patches} PATCH requests"
    );

    proxy.clear();
    let second = cli.push(&module, &reference, &[]);
    assert_eq!(second["manifest_digest"].as_str().map(|_| ()), Some(()));
    assert!(
        second["uploaded"].as_array().unwrap().is_empty(),
        "{second}"
    );
    assert_eq!(second["uploaded_bytes"], 0);
    let uploads: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.is_blob_upload())
        .collect();
    assert!(uploads.is_empty(), "blobs uploaded again: {uploads:?}");

    let out = cli.home.path().join("pulled.wasm");
    proxy.clear();
    let pulled = cli.pull(&reference, &out, &[]);
    assert_eq!(pulled["from_cache"], false);
    assert_eq!(pulled["downloaded_bytes"], large_module().len());
    assert_eq!(proxy.seen().iter().filter(|s| s.is_blob_get()).count(), 1);

    proxy.clear();
    let again = cli.pull(&reference, &cli.home.path().join("again.wasm"), &[]);
    assert_eq!(again["from_cache"], true);
    assert_eq!(again["downloaded_bytes"], 0);
    assert_eq!(
        std::fs::read(cli.home.path().join("again.wasm")).unwrap(),
        large_module()
    );
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.is_blob_get())
        .collect();
    assert!(gets.is_empty(), "cached pull fetched blobs: {gets:?}");
}

#[test]
fn monolithic_upload_sends_each_blob_in_one_request() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::forward_to(registry.port);
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    let reference = format!("{}/mono/module:v1", proxy.host());
    cli.push(&module, &reference, &["--monolithic"]);
    let seen = proxy.seen();
    assert_eq!(
        seen.iter().filter(|s| s.method == "PATCH").count(),
        0,
        "{seen:?}"
    );
    let big_puts = seen
        .iter()
        .filter(|s| {
            s.method == "PUT"
                && s.target.contains("/blobs/uploads/")
                && s.body_len == large_module().len()
        })
        .count();
    assert_eq!(big_puts, 1, "{seen:?}");
    let out = cli.home.path().join("mono.wasm");
    cli.pull(&reference, &out, &["--no-cache"]);
    assert_eq!(std::fs::read(out).unwrap(), large_module());
}

#[test]
fn pinned_pulls_check_the_manifest_digest() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/pin/f:v1", registry.host());
    let pushed = cli.push(&module, &reference, &[]);
    let hex = pushed["wasmplugin_sha256"].as_str().unwrap();

    let out = cli.home.path().join("pinned.wasm");
    cli.pull(&reference, &out, &["--sha256", hex]);
    assert_eq!(std::fs::read(&out).unwrap(), small_module());
    let by_digest = format!("{}/pin/f@sha256:{hex}", registry.host());
    cli.pull(&by_digest, &cli.home.path().join("by-digest.wasm"), &[]);
    // A pin that does not match: diagnostics.rs.
}

#[test]
fn image_indexes_are_followed_to_the_wasm_entry() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let host = registry.host();
    let pushed = cli.push(&module, &format!("{host}/idx/f:plain"), &[]);
    let compat = cli.push(
        &module,
        &format!("{host}/idx/f:compat"),
        &["--layout", "compat"],
    );
    let entry = |digest: &serde_json::Value, arch: &str, os: &str| {
        let size = std::fs::metadata(registry.blob_file(digest.as_str().unwrap()))
            .unwrap()
            .len();
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"architecture": arch, "os": os},
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(&compat["manifest_digest"], "amd64", "linux"), entry(&pushed["manifest_digest"], "wasm", "wasip1")],
    });
    put_manifest(&host, "idx/f", "multi", OCI_INDEX, &index);
    let out = cli.home.path().join("from-index.wasm");
    let pulled = cli.pull(&format!("{host}/idx/f:multi"), &out, &["--no-cache"]);
    assert_eq!(pulled["manifest_digest"], pushed["manifest_digest"]);
    assert_eq!(pulled["layout"], "oci");
    assert_eq!(std::fs::read(&out).unwrap(), small_module());
}

/// `make registry`'s script: a registry on 127.0.0.1 that publish can use as is.
#[test]
fn the_registry_script_serves_a_usable_registry() {
    crate::support::require_tool("docker-registry", "apt-get install docker-registry");
    let cli = Cli::new();
    let port = crate::support::registry::free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/registry.sh");
    let data = cli.home.path().join("registry-data");
    let mut child = std::process::Command::new(script)
        .arg(port.to_string())
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("localhost:{port}/script/f:v1");
    // Wait for it to listen (the script execs docker-registry, so the PID is the registry's).
    let mut pushed = None;
    for _ in 0..200 {
        let run = cli.run(&[
            "push",
            module.to_str().unwrap(),
            &reference,
            "--json",
            "--retries",
            "0",
        ]);
        if run.ok() {
            pushed = Some(run.json());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let config = std::fs::read_to_string(data.join("config.yml")).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let pushed = pushed.expect("publish never reached the registry started by scripts/registry.sh");
    assert_eq!(pushed["layout"], "oci");
    assert!(
        config.contains(&format!("addr: 127.0.0.1:{port}")),
        "{config}"
    );
    assert!(
        data.join("storage/docker/registry/v2/repositories/script/f")
            .is_dir()
    );
}

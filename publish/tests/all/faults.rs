//! Faults: tampered blobs, lying descriptors, failing and dying registries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::proxy::{Action, Proxy};
use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{Cli, OCI_MANIFEST, large_module, put_manifest, sha256_hex, small_module};

/// Only the module file may appear in the output directory: no temp leftovers.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_tampered_blob_fails_the_pull_and_writes_nothing() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/tamper/f:v1", registry.host());
    let pushed = cli.push(&module, &reference, &[]);

    let blob = registry.blob_file(pushed["module_digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    let out_dir = cli.home.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("filter.wasm");
    let run = cli.run(&[
        "pull",
        &reference,
        "-o",
        out.to_str().unwrap(),
        "--no-cache",
    ]);
    assert!(!run.ok());
    assert!(run.stderr().contains("digest mismatch"), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains(pushed["module_digest"].as_str().unwrap()),
        "{}",
        run.stderr()
    );
    assert!(
        entries(&out_dir).is_empty(),
        "left behind: {:?}",
        entries(&out_dir)
    );

    // An existing file is left as it was.
    std::fs::write(&out, b"previous module").unwrap();
    let run = cli.run(&["pull", &reference, "-o", out.to_str().unwrap()]);
    assert!(!run.ok());
    assert_eq!(std::fs::read(&out).unwrap(), b"previous module");
    assert_eq!(entries(&out_dir), ["filter.wasm"]);
    // And nothing tampered reached the cache.
    assert!(
        !cli.cache_dir()
            .join("blobs/sha256")
            .join(&pushed["module_digest"].as_str().unwrap()[7..])
            .exists()
    );
}

#[test]
fn a_descriptor_whose_size_lies_is_refused() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/lies/f:honest", registry.host());
    cli.push(&module, &reference, &["--layout", "single"]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            registry.blob_file(
                cli.run(&["inspect", &reference, "--json"]).json()["manifest_digest"]
                    .as_str()
                    .unwrap(),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    let real = small_module().len() as i64;
    for (tag, size) in [("shorter", real - 100), ("longer", real + 100)] {
        let mut lying = manifest.clone();
        lying["layers"][0]["size"] = serde_json::json!(size);
        put_manifest(&registry.host(), "lies/f", tag, OCI_MANIFEST, &lying);
        let out = cli.home.path().join(format!("{tag}.wasm"));
        let run = cli.run(&[
            "pull",
            &format!("{}/lies/f:{tag}", registry.host()),
            "-o",
            out.to_str().unwrap(),
            "--no-cache",
        ]);
        assert!(!run.ok(), "{tag} was accepted");
        assert!(
            run.stderr().contains("size mismatch"),
            "{tag}: {}",
            run.stderr()
        );
        assert!(!out.exists());
    }
}

#[test]
fn server_errors_and_dropped_connections_are_retried() {
    let registry = Registry::start(RegistryAuth::None);
    let failures = Arc::new(AtomicUsize::new(0));
    let counter = failures.clone();
    // 500 for the first two upload requests, then drop the next one, 429 on the
    // first manifest fetch, then behave.
    let proxy = Proxy::with_rule(
        registry.port,
        Box::new(move |request, _| {
            let upload = request.target.contains("/blobs/uploads/");
            let manifest_get = request.method == "GET" && request.target.contains("/manifests/");
            let n = counter.load(Ordering::SeqCst);
            if upload && n < 2 {
                counter.fetch_add(1, Ordering::SeqCst);
                Action::Respond(500)
            } else if upload && n == 2 {
                counter.fetch_add(1, Ordering::SeqCst);
                Action::Drop
            } else if manifest_get && n == 3 {
                counter.fetch_add(1, Ordering::SeqCst);
                Action::Respond(429)
            } else {
                Action::Forward
            }
        }),
    );
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    let reference = format!("{}/flaky/f:v1", proxy.host());
    let run = cli.run(&[
        "push",
        module.to_str().unwrap(),
        &reference,
        "--json",
        "--backoff-ms",
        "10",
    ]);
    let report = run.json();
    assert!(run.stderr().contains("retry"), "{}", run.stderr());
    assert_eq!(failures.load(Ordering::SeqCst), 3);

    let out = cli.home.path().join("out.wasm");
    let pulled = cli.pull(&reference, &out, &["--no-cache"]);
    assert_eq!(failures.load(Ordering::SeqCst), 4, "the 429 was not hit");
    assert_eq!(pulled["manifest_digest"], report["manifest_digest"]);
    assert_eq!(std::fs::read(&out).unwrap(), large_module());
}

#[test]
fn a_registry_that_keeps_failing_gives_a_clear_error() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::with_rule(
        registry.port,
        Box::new(|request, _| {
            if request.method == "POST" {
                Action::Respond(503)
            } else {
                Action::Forward
            }
        }),
    );
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let run = cli.run(&[
        "push",
        module.to_str().unwrap(),
        &format!("{}/down/f:v1", proxy.host()),
        "--retries",
        "2",
        "--backoff-ms",
        "10",
    ]);
    assert!(!run.ok());
    let stderr = run.stderr();
    assert!(stderr.contains("uploading blob sha256:"), "{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert!(stderr.contains("after 2 retries"), "{stderr}");
    // Each blob is tried once and retried twice; the two blobs go up
    // concurrently and the first to give up cancels the other.
    let posts = proxy.seen().iter().filter(|s| s.method == "POST").count();
    assert!((3..=6).contains(&posts), "{posts} POST requests");
}

#[test]
fn a_registry_killed_mid_push_fails_clearly_and_a_rerun_reuses_uploaded_blobs() {
    let mut registry = Registry::start(RegistryAuth::None);
    let pid = registry.pid();
    let killed = Arc::new(AtomicUsize::new(0));
    let flag = killed.clone();
    // Kill the registry process when the module's first chunk arrives, once
    // the (concurrent) runtime-config upload has been committed.
    let proxy = Proxy::with_rule(
        registry.port,
        Box::new(move |request, _| {
            if request.method == "PATCH"
                && request.body.len() > 100_000
                && flag.load(Ordering::SeqCst) == 0
            {
                flag.store(1, Ordering::SeqCst);
                return Action::Hold {
                    until: Box::new(|seen| {
                        seen.iter().any(|s| {
                            s.method == "PUT"
                                && s.target.contains("/blobs/uploads/")
                                && s.status == 201
                        })
                    }),
                    then: Box::new(move || {
                        let status = std::process::Command::new("kill")
                            .args(["-9", &pid.to_string()])
                            .status();
                        assert!(status.unwrap().success());
                        Action::Forward
                    }),
                };
            }
            Action::Forward
        }),
    );
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    let reference = format!("{}/crash/f:v1", proxy.host());
    let run = cli.run(&[
        "push",
        module.to_str().unwrap(),
        &reference,
        "--retries",
        "1",
        "--backoff-ms",
        "10",
        "--chunk-size",
        "524288",
    ]);
    assert_eq!(killed.load(Ordering::SeqCst), 1);
    assert!(!run.ok());
    let stderr = run.stderr();
    assert!(stderr.contains("uploading blob"), "{stderr}");
    assert!(
        stderr.contains(&registry.port.to_string()) || stderr.contains(&proxy.port.to_string()),
        "{stderr}"
    );

    registry.restart();
    proxy.clear();
    let rerun = cli.push(&module, &reference, &[]);
    let module_digest = format!("sha256:{}", sha256_hex(large_module()));
    assert_eq!(
        rerun["uploaded"],
        serde_json::json!([module_digest]),
        "{rerun}"
    );
    assert_eq!(rerun["reused"].as_array().unwrap().len(), 1, "{rerun}");
    let out = cli.home.path().join("out.wasm");
    cli.pull(&reference, &out, &["--no-cache"]);
    assert_eq!(std::fs::read(&out).unwrap(), large_module());
}

#[test]
fn a_registry_that_stops_answering_times_out_with_a_clear_error() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference_direct = format!("{}/slow/f:v1", registry.host());
    cli.push(&module, &reference_direct, &[]);
    // Manifest requests are held forever; everything else passes.
    let proxy = Proxy::with_rule(
        registry.port,
        Box::new(|request, _| {
            if request.target.contains("/manifests/") {
                Action::Hold {
                    until: Box::new(|_| false),
                    then: Box::new(|| Action::Forward),
                }
            } else {
                Action::Forward
            }
        }),
    );
    let out = cli.home.path().join("slow.wasm");
    let run = cli.run(&[
        "pull",
        &format!("{}/slow/f:v1", proxy.host()),
        "-o",
        out.to_str().unwrap(),
        "--timeout",
        "1",
        "--retries",
        "1",
        "--backoff-ms",
        "10",
    ]);
    assert!(!run.ok());
    let stderr = run.stderr();
    assert!(stderr.contains("fetching the manifest"), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(stderr.contains("after 1 retries"), "{stderr}");
    assert!(!out.exists());
}

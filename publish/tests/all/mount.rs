//! The push path's round trips, counted through a proxy in front of a real
//! registry: no `/v2/` ping, one HEAD per blob, a cross-repository mount when
//! publish has seen the blob in another repository of the registry, and a
//! clean fallback to an upload when the registry will not mount.

use crate::support::proxy::{Action, Proxy, Seen};
use crate::support::registry::{Registry, RegistryAuth};
use crate::support::token::{ISSUER, SERVICE, TokenServer};
use crate::support::{Cli, large_module, sha256_hex};

fn summary(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| {
            let path = s.target.split('?').next().unwrap_or_default();
            let kind = if path.contains("/blobs/uploads/") {
                "uploads"
            } else if path.contains("/blobs/") {
                "blob"
            } else if path.contains("/manifests/") {
                "manifest"
            } else {
                path
            };
            let mount = if s.target.contains("mount=") {
                " mount"
            } else {
                ""
            };
            format!("{} {kind}{mount} {}", s.method, s.status)
        })
        .collect()
}

fn count(summary: &[String], line: &str) -> usize {
    summary.iter().filter(|l| *l == line).count()
}

/// The hint file publish keeps for a blob on a registry.
fn hint_file(cli: &Cli, host: &str, digest_hex: &str) -> std::path::PathBuf {
    cli.cache_dir()
        .join("locations")
        .join(host)
        .join(digest_hex)
}

#[test]
fn a_fresh_push_makes_no_ping_and_one_head_per_blob() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::forward_to(registry.port);
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    let report = cli.push(&module, &format!("{}/fresh/f:v1", proxy.host()), &[]);
    assert_eq!(report["uploaded"].as_array().unwrap().len(), 2, "{report}");
    let seen = summary(&proxy.seen());
    // Two distinct blobs (runtime-config.json is config and first layer):
    // HEAD, POST, PUT with the bytes each, then the manifest.
    assert_eq!(count(&seen, "HEAD blob 404"), 2, "{seen:?}");
    assert_eq!(count(&seen, "POST uploads 202"), 2, "{seen:?}");
    assert_eq!(count(&seen, "PUT uploads 201"), 2, "{seen:?}");
    assert_eq!(count(&seen, "PUT manifest 201"), 1, "{seen:?}");
    assert_eq!(seen.len(), 7, "extra round trips: {seen:?}");
    let module_put = proxy
        .seen()
        .into_iter()
        .find(|s| s.method == "PUT" && s.body_len == large_module().len());
    assert!(module_put.is_some(), "the module did not go in one PUT");
}

#[test]
fn a_push_to_another_repository_mounts_the_blobs_it_has_seen() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::forward_to(registry.port);
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    let first = cli.push(&module, &format!("{}/team-a/f:v1", proxy.host()), &[]);
    proxy.clear();

    let second = cli.push(&module, &format!("{}/team-b/f:v1", proxy.host()), &[]);
    assert_eq!(second["uploaded_bytes"], 0, "{second}");
    assert_eq!(second["manifest_digest"], first["manifest_digest"]);
    let mounted = second["mounted"].as_array().unwrap();
    assert_eq!(mounted.len(), 2, "{second}");
    assert!(mounted.iter().all(|m| m["from"] == "team-a/f"), "{second}");
    let seen = summary(&proxy.seen());
    assert_eq!(
        seen,
        vec![
            "POST uploads mount 201",
            "POST uploads mount 201",
            "PUT manifest 201"
        ],
        "not only mounts and the manifest"
    );

    // The registry holds the blobs in the new repository: pull them from there.
    let out = cli.home.path().join("b.wasm");
    let pulled = cli.pull(
        &format!("{}/team-b/f:v1", registry.host()),
        &out,
        &["--no-cache"],
    );
    assert_eq!(pulled["downloaded_bytes"], large_module().len());
    assert_eq!(std::fs::read(out).unwrap(), large_module());
}

#[test]
fn a_refused_mount_falls_back_to_an_upload_over_the_session_it_opened() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::forward_to(registry.port);
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    let hex = sha256_hex(large_module());
    // A stale hint: publish "saw" the module in a repository that never held it.
    let hint = hint_file(&cli, &proxy.host(), &hex);
    std::fs::create_dir_all(hint.parent().unwrap()).unwrap();
    std::fs::write(&hint, "ghost/repo\n").unwrap();

    let report = cli.push(&module, &format!("{}/real/f:v1", proxy.host()), &[]);
    assert!(report["mounted"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(report["uploaded"].as_array().unwrap().len(), 2, "{report}");
    let seen = summary(&proxy.seen());
    // distribution answers 202 and an upload session; the bytes go there.
    assert_eq!(count(&seen, "POST uploads mount 202"), 1, "{seen:?}");
    assert_eq!(count(&seen, "POST uploads 202"), 1, "{seen:?}");
    assert_eq!(count(&seen, "PUT uploads 201"), 2, "{seen:?}");
    assert_eq!(seen.len(), 6, "{seen:?}");
    let hints = std::fs::read_to_string(&hint).unwrap();
    assert_eq!(hints, "real/f\n", "the stale hint was kept");

    let out = cli.home.path().join("real.wasm");
    cli.pull(
        &format!("{}/real/f:v1", registry.host()),
        &out,
        &["--no-cache"],
    );
    assert_eq!(std::fs::read(out).unwrap(), large_module());
}

#[test]
fn a_mount_answered_with_an_error_falls_back_to_a_normal_upload() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::with_rule(
        registry.port,
        Box::new(|request, _| {
            if request.target.contains("mount=") {
                Action::Respond(404)
            } else {
                Action::Forward
            }
        }),
    );
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    cli.push(&module, &format!("{}/one/f:v1", proxy.host()), &[]);
    proxy.clear();
    let report = cli.push(&module, &format!("{}/two/f:v1", proxy.host()), &[]);
    assert_eq!(report["uploaded"].as_array().unwrap().len(), 2, "{report}");
    assert!(report["uploaded_bytes"].as_u64().unwrap() > large_module().len() as u64);
    let seen = summary(&proxy.seen());
    assert_eq!(count(&seen, "POST uploads mount 404"), 2, "{seen:?}");
    assert_eq!(count(&seen, "PUT uploads 201"), 2, "{seen:?}");
    assert_eq!(count(&seen, "PUT manifest 201"), 1, "{seen:?}");
    let out = cli.home.path().join("two.wasm");
    cli.pull(
        &format!("{}/two/f:v1", registry.host()),
        &out,
        &["--no-cache"],
    );
    assert_eq!(std::fs::read(out).unwrap(), large_module());
}

#[test]
fn mounts_work_with_bearer_tokens_scoped_to_both_repositories() {
    const USER: &str = "mesh-dev";
    const PASSWORD: &str = "s3cret-Passw0rd-xyz";
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = Registry::start(RegistryAuth::Token {
        realm: tokens.realm(),
        issuer: ISSUER.into(),
        service: SERVICE.into(),
        cert: tokens.cert.clone(),
    });
    let cli = Cli::new();
    let module = cli.file("large.wasm", large_module());
    let push = |repo: &str| {
        cli.run_with(
            &[
                "push",
                module.to_str().unwrap(),
                &format!("{}/{repo}:v1", registry.host()),
                "-u",
                USER,
                "--password-stdin",
                "--json",
            ],
            Some(PASSWORD),
            &[],
        )
        .json()
    };
    push("tokens/a");
    let second = push("tokens/b");
    assert_eq!(second["uploaded_bytes"], 0, "{second}");
    assert_eq!(second["mounted"].as_array().unwrap().len(), 2, "{second}");
}

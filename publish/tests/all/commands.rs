//! `manifest fetch`, `manifest delete`, `repo tags`, `tag` and `copy` against
//! real registries, checked with skopeo and oras-py.

use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{Cli, python_oras, skopeo, small_module};

#[test]
fn manifest_fetch_prints_the_stored_bytes_and_its_descriptor() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/fetch/f:v1", registry.host());
    let pushed = cli.push(&module, &reference, &[]);
    let digest = pushed["manifest_digest"].as_str().unwrap();

    let raw = cli.run(&["manifest", "fetch", &reference]);
    assert!(raw.ok(), "{}", raw.stderr());
    let by_skopeo = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    assert_eq!(raw.output.stdout, by_skopeo.stdout);

    let descriptor = cli
        .run(&["manifest", "fetch", &reference, "--descriptor"])
        .json();
    assert_eq!(descriptor["digest"], digest);
    assert_eq!(descriptor["size"], by_skopeo.stdout.len());
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let missing = cli.run(&[
        "manifest",
        "fetch",
        &format!("{}/fetch/f:nope", registry.host()),
    ]);
    missing.fails_saying("not found");
}

#[test]
fn tag_repo_tags_and_manifest_delete() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let repo = format!("{}/tags/f", registry.host());
    let pushed = cli.push(&module, &format!("{repo}:v1,latest"), &[]);
    let digest = pushed["manifest_digest"].as_str().unwrap();

    let tags = |cli: &Cli| -> Vec<String> {
        let listed = cli.run(&["repo", "tags", &repo, "--json"]).json();
        let mut tags: Vec<String> = listed["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(tags(&cli), ["latest", "v1"]);
    let text = cli.run(&["repo", "tags", &repo]);
    assert_eq!(text.stdout().lines().count(), 2, "{}", text.stdout());

    let tagged = cli
        .run(&["tag", &format!("{repo}:v1"), "stable", "prod", "--json"])
        .json();
    assert_eq!(tagged["digest"], digest);
    assert_eq!(tags(&cli), ["latest", "prod", "stable", "v1"]);
    let fetched = cli
        .run(&["manifest", "fetch", &format!("{repo}:prod"), "--descriptor"])
        .json();
    assert_eq!(fetched["digest"], digest);

    let unforced = cli.run(&["manifest", "delete", &format!("{repo}:v1")]);
    unforced.fails_saying("--force");
    let deleted = cli
        .run(&[
            "manifest",
            "delete",
            &format!("{repo}:v1"),
            "--force",
            "--json",
        ])
        .json();
    assert_eq!(deleted["deleted"], digest);
    let gone = cli.run(&["manifest", "fetch", &format!("{repo}@{digest}")]);
    assert!(!gone.ok());
    assert!(gone.stderr().contains("not found"), "{}", gone.stderr());
}

#[test]
fn copy_between_registries_and_through_an_oci_layout_keeps_the_digest() {
    let first = Registry::start(RegistryAuth::None);
    let second = Registry::start(RegistryAuth::None);
    let third = Registry::start(RegistryAuth::None);
    // The source is read through a proxy that records what is fetched.
    let watched = Proxy::forward_to(first.port);
    let cli = Cli::new();
    let module = cli.file("hdr.wasm", small_module());
    for layout in ["oci", "compat"] {
        let source = format!("{}/copy/hdr:{layout}", watched.host());
        let pushed = cli.push(&module, &source, &["--layout", layout]);
        let digest = pushed["manifest_digest"].as_str().unwrap();

        let mirrored = format!("{}/mirror/hdr:{layout}", second.host());
        let copied = cli.run(&["copy", &source, &mirrored, "--json"]).json();
        assert_eq!(copied["manifest_digest"], digest);
        assert!(copied["blobs_copied"].as_u64().unwrap() >= 2, "{copied}");
        watched.clear();
        let again = cli.run(&["copy", &source, &mirrored, "--json"]).json();
        assert_eq!(again["blobs_copied"], 0, "{again}");
        assert_eq!(again["blobs_present"], copied["blobs_copied"], "{again}");
        assert!(
            !watched.seen().iter().any(|s| s.is_blob_get()),
            "a blob the mirror had was downloaded again"
        );

        let dir = cli.home.path().join("layout");
        let at = format!("{}:{layout}", dir.display());
        let out = cli
            .run(&["copy", &mirrored, &at, "--to-oci-layout", "--json"])
            .json();
        assert_eq!(out["manifest_digest"], digest);
        let raw = skopeo(&["inspect", "--raw", &format!("oci:{at}")]);
        let from_registry = cli.run(&["manifest", "fetch", &source]);
        assert_eq!(raw.stdout, from_registry.output.stdout, "{layout}");
        if layout == "compat" {
            // skopeo's non-raw inspect reads image configs only (it calls the
            // wasm config an "artifact"); compat is an ordinary image.
            let inspected = skopeo(&["inspect", &format!("oci:{at}")]);
            let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
            assert_eq!(inspected["Digest"], digest, "{inspected}");
            assert_eq!(inspected["Architecture"], "wasm", "{inspected}");
        }

        let back = format!("{}/airgap/hdr:{layout}", third.host());
        let back_in = cli
            .run(&["copy", &at, &back, "--oci-layout", "--json"])
            .json();
        assert_eq!(back_in["manifest_digest"], digest);
        let pulled = cli.home.path().join(format!("{layout}.wasm"));
        cli.pull(&back, &pulled, &["--no-cache"]);
        assert_eq!(std::fs::read(&pulled).unwrap(), small_module());
    }
    // Both layouts sit in one directory, told apart by their tags.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cli.home.path().join("layout/index.json")).unwrap())
            .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    let outdir = cli.home.path().join("oras-out");
    std::fs::create_dir_all(&outdir).unwrap();
    python_oras(
        &outdir,
        &format!(
            "import oras.client\n\
             c = oras.client.OrasClient(hostname='{host}', insecure=True)\n\
             c.pull(target='{host}/airgap/hdr:oci', outdir='.')\n",
            host = third.host()
        ),
    );
    assert_eq!(
        std::fs::read(outdir.join("hdr.wasm")).unwrap(),
        small_module()
    );
}

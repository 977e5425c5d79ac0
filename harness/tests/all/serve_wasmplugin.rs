//! `harness serve --wasmplugin` against real parts: Debian's docker-registry
//! (oci-registry's test fixture), images pushed with the same code `publish
//! push` runs, python3 upstreams, curl in front.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_registry::test_support::registry::{Registry, RegistryAuth};
use oci_registry::{Options, PushReport, PushRequest, RegistryClient, auth::Credentials};
use serde_json::{Value, json};

use crate::serve::{Served, curl, module, python_server, spawn_serve_with_env};

/// Pushes `wasm` to `reference` on `registry` in the layout Istio loads.
fn push(registry: &Registry, wasm: &str, repository: &str) -> PushReport {
    let reference = oci_registry::reference::parse(&format!("{}/{repository}", registry.host()))
        .expect("a valid reference");
    let request = PushRequest {
        module: PathBuf::from(wasm),
        references: vec![reference],
        size_cap: oci_registry::layout::ISTIO_MODULE_CAP,
        ..PushRequest::default()
    };
    let options = Options {
        progress: false,
        ..Options::default()
    };
    let client = RegistryClient::new(&registry.host(), Credentials::Anonymous, options).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(oci_registry::push(&client, &request))
        .unwrap_or_else(|e| panic!("push to {repository}: {e}"))
}

/// A WasmPlugin document (more `spec` fields merged in).
fn plugin(name: &str, url: &str, spec: Value) -> String {
    let mut document = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"url": url},
    });
    if let Value::Object(fields) = spec {
        for (key, value) in fields {
            document["spec"][key] = value;
        }
    }
    serde_yaml_ng::to_string(&document).unwrap()
}

fn write(dir: &Path, name: &str, documents: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, documents.join("---\n")).unwrap();
    path.to_string_lossy().into_owned()
}

/// serve --wasmplugin FILES with an admin listener, the blob cache in `cache`.
fn serve(files: &[&str], upstream: u16, cache: &Path, env: &[(&str, &str)]) -> Served {
    let upstream = format!("http://127.0.0.1:{upstream}");
    let mut args = vec!["--wasmplugin"];
    args.extend(files);
    args.extend(["--upstream", &upstream, "--listen", "127.0.0.1:0"]);
    args.extend(["--admin", "127.0.0.1:0", "--concurrency", "1"]);
    let cache = cache.to_string_lossy();
    let mut all_env = vec![("PUBLISH_CACHE_DIR", cache.as_ref())];
    all_env.extend(env);
    spawn_serve_with_env(&args, 1, &all_env)
}

/// serve that must refuse to start: its exit status and stderr (killed by PID
/// after 60 s if it starts after all).
fn refused(files: &[&str], cache: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["serve", "--wasmplugin"])
        .args(files)
        .args([
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("PUBLISH_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("harness serve did not stop on a bad WasmPlugin");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    assert!(
        !stderr.contains("listening on"),
        "bound a listener:\n{stderr}"
    );
    assert!(stderr.contains("nothing was started"), "{stderr}");
    stderr
}

fn config_dump(served: &Served) -> Value {
    let admin = served.admin.as_deref().expect("an admin listener");
    let (status, _, body) = curl(&[], &format!("http://{admin}/config_dump"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|line| line.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
        .collect()
}

#[test]
fn an_oci_plugin_serves_then_starts_from_the_cache_with_the_registry_stopped() {
    let mut registry = Registry::start(RegistryAuth::None);
    let report = push(
        &registry,
        &module("response_header.wasm"),
        "filters/resp:v1",
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let url = format!("oci://{}/filters/resp:v1", registry.host());
    let file = write(
        dir.path(),
        "plugin.yaml",
        &[plugin(
            "resp",
            &url,
            json!({
                "sha256": report.wasmplugin_sha256,
                "pluginConfig": {"name": "x-wasmplugin", "value": "from-oci"},
            }),
        )],
    );
    let (_upstream, port) = python_server(0.0, "upstream body");
    {
        let served = serve(&[&file], port, &cache, &[]);
        let (status, head, body) = curl(&[], &format!("http://{}/", served.address()));
        assert_eq!(status, 200, "{head}");
        assert_eq!(header_values(&head, "x-wasmplugin"), ["from-oci"], "{head}");
        assert_eq!(body, "upstream body");
        let dump = config_dump(&served);
        let filter = &dump["listeners"][0]["filters"][0];
        assert_eq!(filter["name"], "default.resp", "{dump}");
        assert_eq!(filter["wasmplugin"]["url"], url.as_str(), "{dump}");
        assert_eq!(
            filter["wasmplugin"]["manifest_digest"],
            report.manifest_digest.as_str()
        );
        assert_eq!(
            filter["wasmplugin"]["module_sha256"],
            report.module_digest.as_str()
        );
        assert_eq!(filter["wasmplugin"]["from_cache"], false);
    }
    // A `:latest` url without a policy is pulled Always (Istio's default).
    push(
        &registry,
        &module("response_header.wasm"),
        "filters/resp:latest",
    );
    let latest_url = format!("oci://{}/filters/resp:latest", registry.host());
    let latest = write(
        dir.path(),
        "latest.yaml",
        &[plugin(
            "resp",
            &latest_url,
            json!({"pluginConfig": {"name": "x-latest", "value": "1"}}),
        )],
    );
    let served = serve(&[&latest], port, &cache, &[]);
    let filter = &config_dump(&served)["listeners"][0]["filters"][0]["wasmplugin"];
    assert_eq!(filter["image_pull_policy"], "Always", "{filter}");
    drop(served);
    // IfNotPresent (a v1 tag, a pinned sha256): the next start needs no registry.
    registry.kill();
    let served = serve(&[&file], port, &cache, &[]);
    let (_, head, _) = curl(&[], &format!("http://{}/", served.address()));
    assert_eq!(header_values(&head, "x-wasmplugin"), ["from-oci"], "{head}");
    let filter = &config_dump(&served)["listeners"][0]["filters"][0]["wasmplugin"];
    assert_eq!(filter["from_cache"], true, "{filter}");
    assert!(served.log_line_with("(from the cache)").is_some());
    drop(served);
    // Pinned content comes from the cache even with Always, as in istio-agent.
    let pinned_always = write(
        dir.path(),
        "pinned-always.yaml",
        &[plugin(
            "resp",
            &url,
            json!({
                "sha256": report.wasmplugin_sha256,
                "imagePullPolicy": "Always",
                "pluginConfig": {"name": "x-pinned", "value": "1"},
            }),
        )],
    );
    drop(serve(&[&pinned_always], port, &cache, &[]));
    // A tag to resolve again asks the registry, which is gone: a clear error.
    for (name, documents) in [
        (
            "always.yaml",
            plugin("resp", &url, json!({"imagePullPolicy": "Always"})),
        ),
        ("latest-again.yaml", plugin("resp", &latest_url, json!({}))),
    ] {
        let file = write(dir.path(), name, &[documents]);
        let stderr = refused(&[&file], &cache);
        assert!(stderr.contains("cannot pull oci://"), "{stderr}");
        assert!(stderr.contains("cannot reach"), "{stderr}");
        // Retries are announced in serve's name.
        assert!(
            stderr.contains("harness serve: cannot connect to"),
            "{stderr}"
        );
    }
}

#[test]
fn a_wrong_sha256_or_a_tampered_blob_starts_nothing() {
    let registry = Registry::start(RegistryAuth::None);
    let report = push(
        &registry,
        &module("response_header.wasm"),
        "filters/tamper:v1",
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("oci://{}/filters/tamper:v1", registry.host());
    let wrong = "0".repeat(64);
    let file = write(
        dir.path(),
        "wrong.yaml",
        &[plugin("resp", &url, json!({"sha256": wrong}))],
    );
    let stderr = refused(&[&file], &dir.path().join("cache-1"));
    assert!(
        stderr.contains(&format!(
            "spec.sha256 is {wrong} but the manifest of {} is {}",
            url.trim_start_matches("oci://"),
            report.manifest_digest
        )),
        "{stderr}"
    );
    // The registry now serves other bytes under the module's digest.
    let blob = registry.blob_file(&report.module_digest);
    std::fs::write(&blob, b"\0asm\x01\0\0\0 altered").unwrap();
    let file = write(
        dir.path(),
        "pinned.yaml",
        &[plugin(
            "resp",
            &url,
            json!({"sha256": report.wasmplugin_sha256}),
        )],
    );
    let stderr = refused(&[&file], &dir.path().join("cache-2"));
    assert!(stderr.contains("digest mismatch"), "{stderr}");
}

#[test]
fn plugins_run_in_istio_phase_then_priority_order() {
    let wasm = module("response_header.wasm");
    let dir = tempfile::tempdir().unwrap();
    let adds = |value: &str| json!({"pluginConfig": {"name": "x-order", "value": value}});
    let with = |mut spec: Value, extra: Value| {
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        spec
    };
    let first_file = write(
        dir.path(),
        "a.yaml",
        &[
            plugin(
                "no-phase",
                &wasm,
                with(adds("none"), json!({"priority": 1000})),
            ),
            plugin(
                "stats",
                &format!("file://{wasm}"),
                with(adds("stats"), json!({"phase": "STATS"})),
            ),
        ],
    );
    let second_file = write(
        dir.path(),
        "b.yaml",
        &[
            plugin(
                "authn-low",
                &wasm,
                with(adds("authn-low"), json!({"phase": "AUTHN", "priority": -1})),
            ),
            plugin(
                "authn-high",
                &wasm,
                with(
                    adds("authn-high"),
                    json!({"phase": "AUTHN", "priority": 10}),
                ),
            ),
        ],
    );
    let (_upstream, port) = python_server(0.0, "ok");
    let served = serve(&[&first_file, &second_file], port, dir.path(), &[]);
    let dump = config_dump(&served);
    let names: Vec<&str> = dump["listeners"][0]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "default.authn-high",
            "default.authn-low",
            "default.stats",
            "default.no-phase"
        ]
    );
    // Responses pass the chain in reverse: the last filter adds its header first.
    let (_, head, _) = curl(&[], &format!("http://{}/", served.address()));
    assert_eq!(
        header_values(&head, "x-order"),
        ["none", "stats", "authn-low", "authn-high"],
        "{head}"
    );
}

#[test]
fn plugin_config_and_vm_env_reach_the_plugin_and_odd_fields_are_named() {
    let probe = module("test_filter_probe.wasm");
    let dir = tempfile::tempdir().unwrap();
    let script = json!({"configure": [
        {"op": "env_var", "label": "inline", "name": "REGION"},
        {"op": "env_var", "label": "host", "name": "WASMPLUGIN_HOST_VALUE"},
        {"op": "env_var", "label": "unlisted", "name": "HOME"}
    ]});
    let file = write(
        dir.path(),
        "probe.yaml",
        &[plugin(
            "probe",
            &probe,
            json!({
                "pluginConfig": script,
                "vmConfig": {"env": [
                    {"name": "REGION", "value": "cn-hangzhou"},
                    {"name": "WASMPLUGIN_HOST_VALUE", "valueFrom": "HOST"}
                ]},
                "selector": {"matchLabels": {"app": "details"}},
                "colour": "blue",
            }),
        )],
    );
    let (_upstream, port) = python_server(0.0, "ok");
    let served = serve(
        &[&file],
        port,
        dir.path(),
        &[("WASMPLUGIN_HOST_VALUE", "from-serve")],
    );
    for line in [
        r#"inline: value="cn-hangzhou""#,
        r#"host: value="from-serve""#,
        "unlisted: missing",
        "[0]: spec.colour: unknown field, ignored",
        "[0]: spec.selector: selects workloads in a mesh",
    ] {
        assert!(
            served.log_line_with(line).is_some(),
            "no line with {line}:\n{:#?}",
            served.log
        );
    }
}

#[test]
fn invalid_values_are_refused_with_their_path() {
    let wasm = module("response_header.wasm");
    let dir = tempfile::tempdir().unwrap();
    for (spec, expected) in [
        (
            json!({"phase": "EARLY"}),
            "[0]: spec.phase: 'EARLY' is not one of AUTHN",
        ),
        (
            json!({"failStrategy": "FAIL_SOFT"}),
            "[0]: spec.failStrategy: 'FAIL_SOFT'",
        ),
        (
            json!({"sha256": "ABC"}),
            "[0]: spec.sha256: must be 64 lowercase hex digits",
        ),
        (
            json!({"type": "NETWORK"}),
            "[0]: spec.type: NETWORK plugins are not run",
        ),
        (json!({"sha256": "0".repeat(64)}), "spec.sha256 is 0000"),
    ] {
        let file = write(dir.path(), "bad.yaml", &[plugin("bad", &wasm, spec)]);
        let stderr = refused(&[&file], dir.path());
        assert!(stderr.contains(expected), "want {expected}:\n{stderr}");
    }
}

#[test]
fn publish_push_then_render_then_serve_the_rendered_wasmplugin() {
    let registry = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{}/asm/asm-test:v0.1", registry.host());
    let wasm = module("response_header.wasm");
    publish(&["push", &wasm, &image]);
    // The article's ASMFilterDeployment, pointed at this registry.
    let example = std::fs::read_to_string(
        crate::support::workspace_root().join("publish/examples/asm-filter-deployment.yaml"),
    )
    .unwrap();
    let deployment = example.replace(
        "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
        &image,
    );
    let input = dir.path().join("asm-filter-deployment.yaml");
    std::fs::write(&input, deployment).unwrap();
    let out = dir.path().join("deploy");
    publish(&[
        "render",
        &input.to_string_lossy(),
        "--resolve",
        "-o",
        &out.to_string_lossy(),
    ]);
    let rendered = out.join("wasmplugin/wasmplugin.yaml");
    let rendered = rendered.to_string_lossy();
    let (_upstream, port) = python_server(0.0, "details");
    let served = serve(&[&rendered], port, &dir.path().join("cache"), &[]);
    let (status, head, body) = curl(&[], &format!("http://{}/details/123", served.address()));
    assert_eq!(status, 200, "{head}");
    assert_eq!(header_values(&head, "hello"), ["hello details"], "{head}");
    assert_eq!(body, "details");
    let filter = &config_dump(&served)["listeners"][0]["filters"][0];
    assert_eq!(filter["root_id"], "my_root_id", "{filter}");
    assert!(
        filter["wasmplugin"]["manifest_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{filter}"
    );
}

/// The publish command line, run in this process (its library's entry point).
fn publish(args: &[&str]) {
    use clap::Parser as _;
    let cli =
        publish::cli::Cli::try_parse_from(std::iter::once("publish").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("publish {args:?}: {e}"));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(publish::cli::run(cli.command))
        .unwrap_or_else(|e| panic!("publish {args:?}: {e:#}"));
}

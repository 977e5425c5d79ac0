//! `publish sync` (the node agent) against a real registry: first sync pulls,
//! the second transfers no blob, a moved tag is picked up, a tampered module is
//! refused with the old file left in place, a missing image fails alone, pull
//! secrets name the credentials, --prune and --watch.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{Cli, Run, proxy_wasm_module};

use super::{article_example, read};

fn list_yaml(entries: &[Value]) -> String {
    let list = json!({
        "apiVersion": "publish.proxy-wasm-toolkit/v1alpha1",
        "kind": "WasmModuleList",
        "modules": entries,
    });
    serde_yaml_ng::to_string(&list).unwrap()
}

fn entry(file: &str, image: &str) -> Value {
    json!({"fileName": file, "image": image})
}

fn sync(cli: &Cli, list: &Path, dir: &Path, extra: &[&str]) -> (Run, Value) {
    let mut args = vec![
        "sync",
        list.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = cli.run(&args);
    let report = serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("{e}: stdout {:?} stderr {:?}", run.stdout(), run.stderr()));
    (run, report)
}

fn status(report: &Value, i: usize) -> &str {
    report["entries"][i]["status"].as_str().unwrap()
}

#[test]
fn first_sync_pulls_then_nothing_moves_until_the_tag_does() {
    let registry = Registry::start(RegistryAuth::None);
    let proxy = Proxy::forward_to(registry.port);
    let cli = Cli::new();
    let v1 = proxy_wasm_module(8192, 1);
    let v2 = proxy_wasm_module(8192, 2);
    let pushed = cli.push(
        &cli.file("v1.wasm", &v1),
        &format!("{}/filters/hdr:v1", registry.host()),
        &[],
    );
    let list = cli.file(
        "list.yaml",
        list_yaml(&[entry(
            "hdr.wasm",
            &format!("{}/filters/hdr:v1", proxy.host()),
        )])
        .as_bytes(),
    );
    let dir = cli.home.path().join("modules");
    let module = dir.join("hdr.wasm");

    let (run, report) = sync(&cli, &list, &dir, &[]);
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(status(&report, 0), "pulled");
    assert_eq!(
        report["entries"][0]["manifest_digest"],
        pushed["manifest_digest"]
    );
    assert_eq!(std::fs::read(&module).unwrap(), v1);

    assert!(
        proxy.seen().iter().any(|s| s.is_blob_get()),
        "the first sync went through the proxy"
    );
    proxy.clear();
    let written = std::fs::metadata(&module).unwrap().modified().unwrap();
    let (run, report) = sync(&cli, &list, &dir, &[]);
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(status(&report, 0), "unchanged");
    assert!(
        !proxy.seen().iter().any(|s| s.is_blob_get()),
        "an unchanged module fetched blobs: {:?}",
        proxy.seen()
    );
    assert_eq!(
        std::fs::metadata(&module).unwrap().modified().unwrap(),
        written
    );

    let moved = cli.push(
        &cli.file("v2.wasm", &v2),
        &format!("{}/filters/hdr:v1", registry.host()),
        &[],
    );
    let (run, report) = sync(&cli, &list, &dir, &[]);
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(status(&report, 0), "pulled");
    assert_eq!(
        report["entries"][0]["manifest_digest"],
        moved["manifest_digest"]
    );
    assert_eq!(std::fs::read(&module).unwrap(), v2);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.contains("incoming") || n.starts_with(".publish-") && n != ".publish-sync.json"
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_tampered_module_is_refused_and_the_old_file_stays() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let image = format!("{}/filters/tamper:v1", registry.host());
    let v1 = proxy_wasm_module(8192, 11);
    cli.push(&cli.file("v1.wasm", &v1), &image, &[]);
    let list = cli.file(
        "list.yaml",
        list_yaml(&[entry("t.wasm", &image)]).as_bytes(),
    );
    let dir = cli.home.path().join("modules");
    let (run, _) = sync(&cli, &list, &dir, &[]);
    assert!(run.ok(), "{}", run.stderr());

    // The tag moves to v2, whose module blob is then altered in the registry's storage.
    let v2 = proxy_wasm_module(8192, 12);
    let pushed = cli.push(&cli.file("v2.wasm", &v2), &image, &[]);
    let blob = registry.blob_file(pushed["module_digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let (run, report) = sync(&cli, &list, &dir, &[]);
    assert!(!run.ok());
    assert_eq!(status(&report, 0), "failed");
    let error = report["entries"][0]["error"].as_str().unwrap();
    assert!(error.contains("digest mismatch"), "{error}");
    assert_eq!(
        std::fs::read(dir.join("t.wasm")).unwrap(),
        v1,
        "the old module stays"
    );
}

#[test]
fn a_missing_image_fails_alone() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let good = format!("{}/filters/good:v1", registry.host());
    let module = proxy_wasm_module(4096, 21);
    cli.push(&cli.file("good.wasm", &module), &good, &[]);
    let list = cli.file(
        "list.yaml",
        list_yaml(&[
            entry(
                "missing.wasm",
                &format!("{}/filters/missing:v1", registry.host()),
            ),
            entry("good.wasm", &good),
        ])
        .as_bytes(),
    );
    let dir = cli.home.path().join("modules");
    let (run, report) = sync(&cli, &list, &dir, &[]);
    assert!(!run.ok(), "a failed entry makes the exit status non-zero");
    assert!(
        run.stderr().contains("1 of 2 entries failed"),
        "{}",
        run.stderr()
    );
    assert_eq!(status(&report, 0), "failed");
    assert!(
        report["entries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("filters/missing:v1"),
        "{report}"
    );
    assert_eq!(status(&report, 1), "pulled");
    assert_eq!(std::fs::read(dir.join("good.wasm")).unwrap(), module);
    assert!(!dir.join("missing.wasm").exists());
}

/// The render -> sync flow of the article: the list `publish render` writes names
/// the pull secret; sync finds it as a mounted docker-registry Secret.
#[test]
fn pull_secrets_from_the_rendered_list_name_the_credentials() {
    const USER: &str = "node-agent";
    const PASSWORD: &str = "node-Passw0rd-42";
    let registry = Registry::start(RegistryAuth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let cli = Cli::new();
    let image = format!("{}/asm/asm-test:v0.1", registry.host());
    let module = proxy_wasm_module(4096, 31);
    let pushed = cli
        .run_with(
            &[
                "push",
                cli.file("f.wasm", &module).to_str().unwrap(),
                &image,
                "-u",
                USER,
                "--password-stdin",
                "--json",
            ],
            Some(PASSWORD),
            &[],
        )
        .json();

    let deployment = read(&article_example()).replace(
        "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
        &image,
    );
    let deployment = cli.file("deployment.yaml", deployment.as_bytes());
    let rendered = cli.home.path().join("rendered");
    let run = cli.run(&[
        "render",
        deployment.to_str().unwrap(),
        "-o",
        rendered.to_str().unwrap(),
        "--only",
        "node-agent",
    ]);
    assert!(run.ok(), "{}", run.stderr());
    // The -o DIR file holding the ConfigMap (and DaemonSet) is read as the list.
    let list = rendered.join("envoyfilter/node-agent.yaml");
    let dir = cli.home.path().join("modules");
    let secrets = cli.home.path().join("secrets");

    // No secret mounted yet: the entry fails and says where it looked.
    let (run, report) = sync(
        &cli,
        &list,
        &dir,
        &["--secrets-dir", secrets.to_str().unwrap()],
    );
    assert!(!run.ok());
    let error = report["entries"][0]["error"].as_str().unwrap();
    assert!(error.contains("\"asmwasm-cache\" not found"), "{error}");

    // A Secret mounted the way Kubernetes mounts a docker-registry Secret.
    let write_secret = |password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let config = json!({"auths": {registry.host(): {"auth": auth}}});
        std::fs::create_dir_all(secrets.join("asmwasm-cache")).unwrap();
        std::fs::write(
            secrets.join("asmwasm-cache/.dockerconfigjson"),
            config.to_string(),
        )
        .unwrap();
    };
    write_secret("wrong-password");
    let (run, report) = sync(
        &cli,
        &list,
        &dir,
        &["--secrets-dir", secrets.to_str().unwrap()],
    );
    assert!(!run.ok());
    let error = report["entries"][0]["error"].as_str().unwrap();
    assert!(error.contains("authentication"), "{error}");
    assert!(!error.contains("wrong-password") && !run.stderr().contains("wrong-password"));

    write_secret(PASSWORD);
    let (run, report) = sync(
        &cli,
        &list,
        &dir,
        &["--secrets-dir", secrets.to_str().unwrap()],
    );
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(status(&report, 0), "pulled");
    assert_eq!(
        report["entries"][0]["manifest_digest"],
        pushed["manifest_digest"]
    );
    // The file the rendered EnvoyFilter loads.
    assert_eq!(
        std::fs::read(dir.join("details-v1-wasmfiltersample.default.wasm")).unwrap(),
        module
    );
}

#[test]
fn prune_removes_unlisted_modules_only_when_asked() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let image = format!("{}/filters/keep:v1", registry.host());
    cli.push(
        &cli.file("k.wasm", &proxy_wasm_module(4096, 41)),
        &image,
        &[],
    );
    let list = cli.file(
        "list.yaml",
        list_yaml(&[entry("keep.wasm", &image)]).as_bytes(),
    );
    let dir = cli.home.path().join("modules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stale.wasm"), b"\0asm old").unwrap();
    std::fs::write(dir.join("notes.txt"), b"not a module").unwrap();

    let (run, report) = sync(&cli, &list, &dir, &[]);
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(report["pruned"], json!([]));
    assert!(dir.join("stale.wasm").exists());

    let (run, report) = sync(&cli, &list, &dir, &["--prune"]);
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(report["pruned"], json!(["stale.wasm"]));
    assert!(!dir.join("stale.wasm").exists());
    assert!(dir.join("keep.wasm").exists());
    assert!(
        dir.join("notes.txt").exists(),
        "only *.wasm files are pruned"
    );
}

#[test]
fn an_invalid_list_names_the_entry_and_field() {
    let cli = Cli::new();
    let list = cli.file(
        "list.yaml",
        list_yaml(&[entry("../escape.wasm", "localhost:5000/f:v1")]).as_bytes(),
    );
    let dir = cli.home.path().join("modules");
    let run = cli.run(&[
        "sync",
        list.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    run.fails_saying("modules[0].fileName");
    assert!(!dir.exists(), "nothing is created for a refused list");
}

#[test]
fn watch_syncs_again_when_the_list_changes() {
    let registry = Registry::start(RegistryAuth::None);
    let cli = Cli::new();
    let a = format!("{}/filters/a:v1", registry.host());
    let b = format!("{}/filters/b:v1", registry.host());
    cli.push(&cli.file("a.wasm", &proxy_wasm_module(4096, 51)), &a, &[]);
    cli.push(&cli.file("b.wasm", &proxy_wasm_module(4096, 52)), &b, &[]);
    let list = cli.file("list.yaml", list_yaml(&[entry("a.wasm", &a)]).as_bytes());
    let dir = cli.home.path().join("modules");

    // A long interval: only the change to the list can trigger the second sync.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_publish"))
        .args([
            "sync",
            list.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
        ])
        .args(["--watch", "--interval", "600"])
        .env("DOCKER_CONFIG", cli.docker_config())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |path: &Path| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        path.exists()
    };
    let first = wait_for(&dir.join("a.wasm"));
    // mtime granularity: make sure the rewrite is seen as a change.
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(
        &list,
        list_yaml(&[entry("a.wasm", &a), entry("b.wasm", &b)]),
    )
    .unwrap();
    let second = wait_for(&dir.join("b.wasm"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(first, "the first sync did not write a.wasm");
    assert!(second, "the watcher did not pick up the changed list");
}

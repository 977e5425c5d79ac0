//! `publish render` as users run it.

use std::process::{Command, Output};

use publish::render::output::Part;

use super::{article_example, crate_dir, fixtures, parse_yaml_documents, read, str_at};

fn publish(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_publish"))
        .args(args)
        .output()
        .expect("running publish")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn render_to_stdout_prints_every_document() {
    let example = article_example();
    let out = publish(&["render", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs = parse_yaml_documents(&text(&out.stdout));
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d.get("kind").and_then(|k| k.as_str()).unwrap_or("(patch)"))
        .collect();
    assert_eq!(
        kinds,
        ["EnvoyFilter", "(patch)", "WasmModuleList", "WasmPlugin"]
    );
}

#[test]
fn only_picks_outputs_for_kubectl_apply() {
    let example = article_example();
    let out = publish(&[
        "render",
        example.to_str().unwrap(),
        "--only",
        "wasmplugin",
        "--outbound",
        "--phase",
        "authn",
        "--priority",
        "-3",
        "--fail-open",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs = parse_yaml_documents(&text(&out.stdout));
    assert_eq!(docs.len(), 1);
    let plugin = &docs[0];
    assert_eq!(str_at(plugin, "/kind"), "WasmPlugin");
    assert_eq!(str_at(plugin, "/spec/phase"), "AUTHN");
    assert_eq!(
        plugin.pointer("/spec/priority").and_then(|p| p.as_i64()),
        Some(-3)
    );
    assert_eq!(str_at(plugin, "/spec/failStrategy"), "FAIL_OPEN");
    assert_eq!(str_at(plugin, "/spec/match/0/mode"), "CLIENT");
}

#[test]
fn render_to_a_directory_keeps_the_two_ways_apart_and_validates_them() {
    let dir = tempfile::tempdir().unwrap();
    let example = article_example();
    let crds = crate_dir().join("schemas/istio-crds.yaml");
    let out = publish(&[
        "render",
        example.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
        "--check-crds",
        crds.to_str().unwrap(),
        "--agent-image",
        "registry.example.com/tools/publish:v1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let golden = |part: Part| read(&fixtures().join("golden/article").join(part.file_name()));
    let at = |path: &str| read(&dir.path().join(path));
    // The Istio resources and the patch are the golden texts, each in its own place.
    assert_eq!(at("wasmplugin/wasmplugin.yaml"), golden(Part::WasmPlugin));
    assert_eq!(
        at("envoyfilter/envoyfilter.yaml"),
        golden(Part::EnvoyFilter)
    );
    assert_eq!(
        at("patches/workload-patch.yaml"),
        golden(Part::WorkloadPatch)
    );

    let kinds_in = |sub: &str| -> Vec<String> {
        let mut kinds = Vec::new();
        for entry in std::fs::read_dir(dir.path().join(sub)).unwrap() {
            for doc in parse_yaml_documents(&read(&entry.unwrap().path())) {
                kinds.push(str_at(&doc, "/kind").to_string());
            }
        }
        kinds.sort();
        kinds
    };
    // `kubectl apply -f DIR/<one>/` installs one way only.
    assert_eq!(kinds_in("wasmplugin"), ["WasmPlugin"]);
    assert_eq!(
        kinds_in("envoyfilter"),
        ["ConfigMap", "DaemonSet", "EnvoyFilter"]
    );

    let schemas = publish::render::schema::CrdSchemas::from_yaml(&read(&crds)).unwrap();
    for path in ["wasmplugin/wasmplugin.yaml", "envoyfilter/envoyfilter.yaml"] {
        for doc in parse_yaml_documents(&at(path)) {
            schemas
                .check(&doc)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }
    // Everything kubectl would receive is checked, each against its own schema.
    assert!(
        text(&out.stderr).contains(
            "4 documents valid (2 against the Istio CRDs, 2 against the Kubernetes 1.33 schemas)\n"
        ),
        "{}",
        text(&out.stderr)
    );

    let agent = parse_yaml_documents(&at("envoyfilter/node-agent.yaml"));
    let config_map = &agent[0];
    assert_eq!(str_at(config_map, "/apiVersion"), "v1");
    let list = str_at(config_map, "/data/node-agent.yaml");
    // The list inside is what `publish sync` reads, and what stdout mode prints.
    let parsed = publish::render::node_list::NodeList::from_yaml(list).unwrap();
    assert_eq!(
        parsed.modules[0].image,
        "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1"
    );
    assert!(golden(Part::NodeAgent).ends_with(list), "{list}");
    let daemon_set = &agent[1];
    assert_eq!(str_at(daemon_set, "/apiVersion"), "apps/v1");
    assert_eq!(
        str_at(daemon_set, "/spec/template/spec/containers/0/image"),
        "registry.example.com/tools/publish:v1"
    );
    let args: Vec<&str> = daemon_set
        .pointer("/spec/template/spec/containers/0/args")
        .and_then(|a| a.as_array())
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..4],
        [
            "sync",
            "/etc/publish/list/node-agent.yaml",
            "--dir",
            "/var/local/lib/wasm-filters"
        ]
    );
    assert!(args.contains(&"--secrets-dir"));
    let volumes = daemon_set.pointer("/spec/template/spec/volumes").unwrap();
    assert_eq!(
        volumes[1]["hostPath"]["path"], "/var/local/lib/wasm-filters",
        "{volumes}"
    );
    assert_eq!(volumes[2]["secret"]["secretName"], "asmwasm-cache");
    assert_eq!(
        daemon_set.pointer("/spec/selector/matchLabels"),
        daemon_set.pointer("/spec/template/metadata/labels")
    );

    // The patch has no kind: it is for `kubectl patch --patch-file`, never applied.
    let patch = &parse_yaml_documents(&at("patches/workload-patch.yaml"))[0];
    assert!(patch.get("kind").is_none());
    let snippet = &parse_yaml_documents(&at("patches/deployment-snippet.yaml"))[0];
    assert_eq!(str_at(snippet, "/kind"), "Deployment");
    assert_eq!(
        snippet.pointer("/spec/template/metadata/annotations"),
        patch.pointer("/spec/template/metadata/annotations")
    );
}

#[test]
fn without_an_agent_image_no_daemon_set_is_written_and_that_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let out = publish(&[
        "render",
        article_example().to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let agent = parse_yaml_documents(&read(&dir.path().join("envoyfilter/node-agent.yaml")));
    assert_eq!(agent.len(), 1);
    assert_eq!(str_at(&agent[0], "/kind"), "ConfigMap");
    assert!(
        text(&out.stderr).contains("--agent-image"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(
            "3 documents valid (2 against the Istio CRDs, 1 against the Kubernetes 1.33 schemas)\n"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_input_fails_with_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        read(&article_example()).replace(
            r#"'{"name":"hello","value":"hello details"}'"#,
            "'name=hello'",
        ),
    )
    .unwrap();
    let out = publish(&["render", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(
        stderr.contains("spec.filter.parameters: is not JSON"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is printed for a refused input"
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_publish"))
        .args(["render", "-", "--only", "node-agent"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(read(&article_example()).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs = parse_yaml_documents(&text(&out.stdout));
    assert_eq!(
        str_at(&docs[0], "/modules/0/fileName"),
        "details-v1-wasmfiltersample.default.wasm"
    );
}

//! `publish render` as users run it.

use std::process::{Command, Output};

use publish::render::output::Part;

use super::{article_example, fixtures, parse_yaml_documents, read, str_at};

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
fn render_to_a_directory_writes_the_four_files_and_checks_the_crds() {
    let dir = tempfile::tempdir().unwrap();
    let example = article_example();
    let crds = fixtures().join("istio-crds.yaml");
    let out = publish(&[
        "render",
        example.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
        "--check-crds",
        crds.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for part in Part::ALL {
        let written = read(&dir.path().join(part.file_name()));
        let golden = read(&fixtures().join("golden/article").join(part.file_name()));
        assert_eq!(written, golden, "{part:?}");
    }
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

//! The Kubernetes core objects `publish render -o DIR` writes (the node
//! agent's ConfigMap and DaemonSet, the workload snippet) checked against the
//! real Kubernetes OpenAPI schemas by kubernetes-validate in strict mode, the
//! check `kubectl apply --validate=strict` makes, and by publish's own check
//! (k8s-openapi's schemas), which must agree. The Istio resources are the
//! in-tree CRD checker's (crd.rs). The strategic-merge patch is no full object
//! (no apiVersion, kind or required fields), so it is checked through the
//! snippet: every field of the patch must sit, with the same value, in the
//! snippet the schemas accept.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use publish::render::core_schema::CoreSchemas;
use publish::render::schema::SchemaError;
use serde_json::Value;

use super::{article_example, fixtures, parse_yaml_documents, read, str_at};
use crate::support::{KUBERNETES_VERSION, kubernetes_validate};

fn render_to(input: &Path, dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_publish"))
        .arg("render")
        .arg(input)
        .arg("-o")
        .arg(dir)
        .args(["--agent-image", "registry.example.com/tools/publish:v1"])
        .output()
        .expect("running publish");
    assert!(
        out.status.success(),
        "publish render {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn is_istio(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.contains(".istio.io/"))
}

/// Fails unless every key of `part` is in `whole` with the same value.
fn assert_within(part: &Value, whole: &Value, at: &str) {
    match part {
        Value::Object(fields) => {
            for (key, value) in fields {
                let inner = whole
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}/{key} is in the patch, not in the snippet"));
                assert_within(value, inner, &format!("{at}/{key}"));
            }
        }
        other => assert_eq!(other, whole, "{at} differs between patch and snippet"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Renders `input`, runs kubernetes-validate on every file holding core
/// objects, and returns their kinds (sorted).
fn check_core_objects(input: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    render_to(input, dir.path());
    let mut core_files = Vec::new();
    let mut kinds = Vec::new();
    let mut patches = Vec::new();
    let mut snippet = None;
    let core_schemas = CoreSchemas::new();
    for file in files_under(dir.path()) {
        let mut has_core = false;
        for doc in parse_yaml_documents(&read(&file)) {
            if is_istio(&doc) {
                continue;
            }
            match doc.get("kind").and_then(Value::as_str) {
                None => patches.push(doc),
                Some(kind) => {
                    has_core = true;
                    kinds.push(kind.to_string());
                    // publish's own check (k8s-openapi's 1.33 schemas) agrees.
                    core_schemas.check(&doc).unwrap_or_else(|e| {
                        panic!("{}: publish refuses {kind}: {e}", file.display())
                    });
                    if file.ends_with("patches/deployment-snippet.yaml") {
                        snippet = Some(doc.clone());
                    }
                }
            }
        }
        if has_core {
            core_files.push(file);
        }
    }
    let paths: Vec<&Path> = core_files.iter().map(PathBuf::as_path).collect();
    let out = kubernetes_validate(&paths);
    let report = text(&out);
    assert!(
        out.status.success(),
        "{}: Kubernetes {KUBERNETES_VERSION} schemas refuse a rendered object:\n{report}",
        input.display()
    );
    // One "passed" line per object: none was skipped for want of a schema.
    assert_eq!(
        report.matches(" passed for resource ").count(),
        kinds.len(),
        "{report}"
    );

    let snippet = snippet.expect("a deployment snippet");
    assert_eq!(patches.len(), 1, "one strategic-merge patch");
    assert_within(&patches[0], &snippet, "");
    kinds.sort();
    kinds
}

#[test]
fn rendered_core_objects_pass_the_kubernetes_schemas_in_strict_mode() {
    // The article's Deployment with a pull secret (a secret volume in the DaemonSet).
    assert_eq!(
        check_core_objects(&article_example()),
        ["ConfigMap", "DaemonSet", "Deployment"]
    );
    let inputs = fixtures().join("inputs");
    // A namespace, several labels and another pull secret.
    assert_eq!(
        check_core_objects(&inputs.join("several-labels.yaml")),
        ["ConfigMap", "DaemonSet", "Deployment"]
    );
    // Two modules, no pull secret (no secret volume at all).
    assert_eq!(
        check_core_objects(&inputs.join("two-filters.yaml")),
        ["ConfigMap", "DaemonSet", "Deployment"]
    );
    // A StatefulSet snippet, with YAML 1.1-looking label values.
    assert_eq!(
        check_core_objects(&inputs.join("yaml11-values.yaml")),
        ["ConfigMap", "DaemonSet", "StatefulSet"]
    );
    // A DaemonSet workload: its snippet is a DaemonSet too.
    let home = tempfile::tempdir().unwrap();
    let daemon_set_input = home.path().join("daemonset.yaml");
    let article = read(&article_example());
    assert!(article.contains("kind: Deployment\n"));
    std::fs::write(
        &daemon_set_input,
        article.replace("kind: Deployment\n", "kind: DaemonSet\n"),
    )
    .unwrap();
    assert_eq!(
        check_core_objects(&daemon_set_input),
        ["ConfigMap", "DaemonSet", "DaemonSet"]
    );
}

#[test]
fn a_misspelled_field_fails_the_kubernetes_schema_check() {
    let dir = tempfile::tempdir().unwrap();
    render_to(&article_example(), dir.path());
    let agent = read(&dir.path().join("envoyfilter/node-agent.yaml"));
    let docs = parse_yaml_documents(&agent);
    assert_eq!(str_at(&docs[1], "/kind"), "DaemonSet");
    assert_eq!(agent.matches("volumeMounts:").count(), 1, "{agent}");
    let broken = dir.path().join("broken-node-agent.yaml");
    std::fs::write(&broken, agent.replace("volumeMounts:", "volumeMount:")).unwrap();

    let out = kubernetes_validate(&[&broken]);
    let report = text(&out);
    assert!(!out.status.success(), "the typo passed:\n{report}");
    assert!(
        report.contains("daemonset/publish-node-agent") && report.contains("'volumeMount'"),
        "{report}"
    );
    // publish's own check names the same field.
    let core_schemas = CoreSchemas::new();
    let broken_docs = parse_yaml_documents(&read(&broken));
    let Err(SchemaError::Invalid { violations, .. }) = core_schemas.check(&broken_docs[1]) else {
        panic!("publish accepted the typo");
    };
    assert!(
        violations
            .iter()
            .any(|v| v.path == ".spec.template.spec.containers[0].volumeMount"),
        "{violations:?}"
    );
    assert!(core_schemas.check(&broken_docs[0]).is_ok());
    // The ConfigMap beside it still passes: the failure is the typo's.
    assert!(
        report.contains("passed for resource configmap/publish-node-agent"),
        "{report}"
    );
}

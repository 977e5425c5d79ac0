//! Bad ASMFilterDeployments: each is refused with an error naming the field.

use publish::render::input::parse_documents;

use super::{article_example, read};

/// The article's resource with one line replaced (or removed when `to` is empty).
fn article_with(from: &str, to: &str) -> String {
    let text = read(&article_example());
    assert!(text.contains(from), "the example has no line {from:?}");
    text.replace(from, to)
}

fn refused(text: &str) -> (String, String) {
    let err = parse_documents(text).expect_err("must be refused");
    (err.field_name().unwrap_or("").to_string(), err.to_string())
}

#[test]
fn the_article_resource_is_accepted() {
    let parsed = parse_documents(&read(&article_example())).unwrap();
    assert_eq!(parsed.len(), 1);
    let d = &parsed[0];
    assert_eq!(d.name, "details-v1-wasmfiltersample");
    assert_eq!(d.workload_kind, "Deployment");
    assert_eq!(d.filter.root_id.as_deref(), Some("my_root_id"));
    assert_eq!(d.filter.pull_secret.as_deref(), Some("asmwasm-cache"));
}

#[test]
fn each_bad_field_is_named() {
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown kind",
            article_with("kind: ASMFilterDeployment", "kind: FilterDeployment"),
            "kind",
            "\"FilterDeployment\" is not an ASMFilterDeployment",
        ),
        (
            "unknown apiVersion",
            article_with(
                "apiVersion: istio.alibabacloud.com/v1beta1",
                "apiVersion: istio.alibabacloud.com/v1",
            ),
            "apiVersion",
            "use \"istio.alibabacloud.com/v1beta1\"",
        ),
        (
            "parameters that are not JSON",
            article_with(
                r#"parameters: '{"name":"hello","value":"hello details"}'"#,
                r#"parameters: '{name: hello}'"#,
            ),
            "spec.filter.parameters",
            "is not JSON",
        ),
        (
            "parameters that are JSON but not an object",
            article_with(
                r#"parameters: '{"name":"hello","value":"hello details"}'"#,
                r#"parameters: '["hello"]'"#,
            ),
            "spec.filter.parameters",
            "must be a JSON object, not an array",
        ),
        (
            "missing image",
            article_with(
                "    image: 'acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1'\n",
                "",
            ),
            "spec.filter.image",
            "is missing",
        ),
        (
            "missing labels",
            article_with("    labels:\n      app: details\n      version: v1\n", ""),
            "spec.workload.labels",
            "is missing",
        ),
        (
            "empty labels",
            article_with(
                "    labels:\n      app: details\n      version: v1\n",
                "    labels: {}\n",
            ),
            "spec.workload.labels",
            "is empty",
        ),
        (
            "a label value that is a number",
            article_with("      version: v1", "      version: 1"),
            "spec.workload.labels.version",
            "quote it",
        ),
        (
            "a wildcard label value",
            article_with("      version: v1", "      version: '*'"),
            "spec.workload.labels.version",
            "not a valid label value",
        ),
        (
            "an image reference that does not parse",
            article_with(
                "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
                "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/ASM/asm-test:v0.1",
            ),
            "spec.filter.image",
            "invalid reference",
        ),
        (
            "an image reference with a bad tag",
            article_with(
                "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
                "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1:extra",
            ),
            "spec.filter.image",
            "invalid reference",
        ),
        (
            "an image without a registry",
            article_with(
                "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1",
                "asm-test:v0.1",
            ),
            "spec.filter.image",
            "name the registry host",
        ),
        (
            "an image written as a URL",
            article_with(
                "'acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1'",
                "'oci://acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1'",
            ),
            "spec.filter.image",
            "without a URL scheme",
        ),
        (
            "a misspelt field",
            article_with("    imagePullOptions:", "    imagePullOption:"),
            "spec.filter.imagePullOption",
            "is not a known field",
        ),
        (
            "a workload kind without a pod template",
            article_with("    kind: Deployment", "    kind: Service"),
            "spec.workload.kind",
            "no pod template",
        ),
        (
            "an id that is not a file name",
            article_with(
                "id: 'details-v1-wasmfiltersample.default'",
                "id: '../../etc/passwd'",
            ),
            "spec.filter.id",
            "names the module file",
        ),
        (
            "a pull secret that is not a Secret name",
            article_with("pullSecret: 'asmwasm-cache'", "pullSecret: 'ASM Cache'"),
            "spec.filter.imagePullOptions.pullSecret",
            "not a valid Kubernetes name",
        ),
        (
            "a metadata name that Kubernetes refuses",
            article_with(
                "  name: details-v1-wasmfiltersample",
                "  name: Details_V1",
            ),
            "metadata.name",
            "not a valid Kubernetes name",
        ),
        (
            "an empty rootID",
            article_with("rootID: 'my_root_id'", "rootID: ''"),
            "spec.filter.rootID",
            "1 to 256 characters",
        ),
        (
            "a filter type Istio does not have",
            article_with(
                "  workload:\n",
                "  wasmPlugin:\n    type: TCP\n  workload:\n",
            ),
            "spec.wasmPlugin",
            "expected `HTTP` or `NETWORK`",
        ),
        (
            "a spec that is a list",
            "apiVersion: istio.alibabacloud.com/v1beta1\nkind: ASMFilterDeployment\nmetadata: {name: x}\nspec: []\n".into(),
            "spec",
            "must be a mapping",
        ),
    ];
    for (what, text, field, message) in cases {
        let (named, full) = refused(&text);
        assert_eq!(named, field, "{what}: wrong field in {full:?}");
        assert!(full.contains(message), "{what}: {full:?} lacks {message:?}");
        assert!(full.starts_with("document 1: "), "{what}: {full:?}");
    }
}

#[test]
fn the_failing_document_is_named_in_a_multi_document_file() {
    let good = read(&article_example());
    let bad = good.replace("kind: ASMFilterDeployment", "kind: WasmPlugin");
    let err = parse_documents(&format!("{good}---\n{bad}")).unwrap_err();
    assert!(err.to_string().starts_with("document 2: kind: "), "{err}");
}

#[test]
fn not_yaml_and_empty_inputs_are_refused() {
    let err = parse_documents("spec: [unclosed").unwrap_err();
    assert!(err.to_string().contains("not valid YAML"), "{err}");
    let err = parse_documents("# nothing here\n").unwrap_err();
    assert!(err.to_string().contains("no ASMFilterDeployment"), "{err}");
}

#[test]
fn two_filters_may_not_share_an_id_for_different_images() {
    let one = read(&article_example());
    let two = one
        .replace(
            "name: details-v1-wasmfiltersample",
            "name: details-v1-other",
        )
        .replace("asm-test:v0.1", "asm-test:v0.2");
    let deployments = parse_documents(&format!("{one}---\n{two}")).unwrap();
    let err = publish::render::render(&deployments, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("used for two images"), "{err}");
}

//! WasmPlugin fields from `spec.wasmPlugin` and from flags (flags win), checked
//! against the Istio CRDs, and the plain-HTTP registry warning.

use std::process::Command;

use publish::render::schema::CrdSchemas;
use serde_json::{Value, json};

use super::{at, crate_dir, parse_yaml_documents, read};

fn schemas() -> CrdSchemas {
    CrdSchemas::from_yaml(&read(&crate_dir().join("schemas/istio-crds.yaml"))).unwrap()
}

const INPUT: &str = r#"apiVersion: istio.alibabacloud.com/v1beta1
kind: ASMFilterDeployment
metadata:
  name: hdr
  namespace: shop
spec:
  workload:
    labels:
      app: details
  filter:
    image: registry.example.com/mesh/hdr:v1
    rootID: hdr_root
    parameters: '{"name":"x-hello","value":"world"}'
  wasmPlugin:
    phase: AUTHZ
    priority: 7
    failStrategy: FAIL_OPEN
    imagePullPolicy: Always
    imagePullSecret: mesh-pull
    env:
    - name: MODE
      value: strict
    - name: POD_NAME
      valueFrom: HOST
    match:
    - mode: SERVER
      ports:
      - number: 9080
    envoyFilterPriority: -2
"#;

fn render(input: &str, flags: &[&str]) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.yaml");
    std::fs::write(&path, input).unwrap();
    let mut args = vec!["render", path.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = Command::new(env!("CARGO_BIN_EXE_publish"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (
        parse_yaml_documents(&String::from_utf8_lossy(&out.stdout)),
        stderr,
    )
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_wasm_plugin_block_sets_every_field_and_stays_crd_valid() {
    let (docs, _) = render(INPUT, &[]);
    let plugin = kind(&docs, "WasmPlugin");
    let spec = at(plugin, "/spec");
    assert_eq!(spec["phase"], "AUTHZ");
    assert_eq!(spec["priority"], 7);
    assert_eq!(spec["failStrategy"], "FAIL_OPEN");
    assert_eq!(spec["imagePullPolicy"], "Always");
    assert_eq!(spec["imagePullSecret"], "mesh-pull");
    assert_eq!(
        spec["vmConfig"]["env"],
        json!([{"name": "MODE", "value": "strict"}, {"name": "POD_NAME", "valueFrom": "HOST"}])
    );
    assert_eq!(
        spec["match"],
        json!([{"mode": "SERVER", "ports": [{"number": 9080}]}])
    );
    assert_eq!(spec["selector"]["matchLabels"]["app"], "details");
    let filter = kind(&docs, "EnvoyFilter");
    assert_eq!(filter["spec"]["priority"], -2);
    let config = at(
        filter,
        "/spec/configPatches/0/patch/value/typed_config/config",
    );
    assert_eq!(config["fail_open"], true);
    assert_eq!(
        config["vm_config"]["environment_variables"],
        json!({"host_env_keys": ["POD_NAME"], "key_values": {"MODE": "strict"}})
    );
    let schemas = schemas();
    for doc in [plugin, filter] {
        schemas.check(doc).unwrap_or_else(|e| panic!("{e}"));
    }
    // The Envoy side of the patch, field by field (the CRD leaves it open).
    let envoy: Value = serde_yaml_ng::from_str(&read(
        &super::fixtures().join("envoy-wasm-http-filter.schema.yaml"),
    ))
    .unwrap();
    let found =
        publish::render::schema::validate(&envoy, at(filter, "/spec/configPatches/0/patch/value"));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn flags_win_over_the_block_and_target_refs_replace_the_selector() {
    let (docs, _) = render(
        INPUT,
        &[
            "--phase",
            "stats",
            "--fail-strategy",
            "FAIL_RELOAD",
            "--image-pull-policy",
            "IfNotPresent",
            "--env",
            "LEVEL=debug",
            "--match-port",
            "8080",
            "--match-port",
            "8443",
            "--target-ref",
            "gateway.networking.k8s.io/Gateway/ingress",
            "--target-ref",
            "Service/details",
            "--envoy-filter-priority",
            "5",
        ],
    );
    let plugin = kind(&docs, "WasmPlugin");
    let spec = at(plugin, "/spec");
    assert_eq!(spec["phase"], "STATS");
    assert_eq!(spec["priority"], 7, "unset by flag, kept from the block");
    assert_eq!(spec["failStrategy"], "FAIL_RELOAD");
    assert_eq!(spec["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        spec["vmConfig"]["env"],
        json!([{"name": "LEVEL", "value": "debug"}])
    );
    assert_eq!(
        spec["match"],
        json!([{"mode": "SERVER", "ports": [{"number": 8080}, {"number": 8443}]}])
    );
    assert!(spec.get("selector").is_none(), "{spec}");
    assert_eq!(
        spec["targetRefs"],
        json!([
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "ingress"},
            {"kind": "Service", "name": "details"}
        ])
    );
    assert_eq!(kind(&docs, "EnvoyFilter")["spec"]["priority"], 5);
    let schemas = schemas();
    schemas.check(plugin).unwrap_or_else(|e| panic!("{e}"));
    schemas
        .check(kind(&docs, "EnvoyFilter"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_bad_block_is_refused_with_the_field() {
    for (bad, expect) in [
        ("    phase: AUTHZ\n", "    phse: AUTHZ\n"),
        (
            "      valueFrom: HOST\n",
            "      valueFrom: HOST\n      value: x\n",
        ),
        ("      - number: 9080\n", "      - number: 0\n"),
    ] {
        let input = INPUT.replace(bad, expect);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.yaml");
        std::fs::write(&path, &input).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_publish"))
            .args(["render", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{expect} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("spec.wasmPlugin"), "{stderr}");
    }
}

#[test]
fn a_plain_http_registry_gets_the_insecure_registries_warning() {
    let local = INPUT.replace(
        "registry.example.com/mesh/hdr:v1",
        "localhost:5000/mesh/hdr:v1",
    );
    let (_, stderr) = render(&local, &[]);
    assert!(stderr.contains("WASM_INSECURE_REGISTRIES"), "{stderr}");
    assert!(stderr.contains("localhost:5000"), "{stderr}");
    let (_, stderr) = render(INPUT, &["--plain-http"]);
    assert!(stderr.contains("registry.example.com"), "{stderr}");
    assert!(stderr.contains("WASM_INSECURE_REGISTRIES"), "{stderr}");
    let (_, quiet) = render(INPUT, &[]);
    assert!(!quiet.contains("WASM_INSECURE_REGISTRIES"), "{quiet}");
}

/// `type: NETWORK` in the block, or `--type network`, moves the filter to the
/// listener's filter chain before tcp_proxy; the flag wins over the block.
#[test]
fn the_filter_type_comes_from_the_block_or_the_flag() {
    let network_block = INPUT.replace("  wasmPlugin:\n", "  wasmPlugin:\n    type: NETWORK\n");
    let applied = |docs: &[Value]| {
        let filter = kind(docs, "EnvoyFilter");
        let plugin = kind(docs, "WasmPlugin");
        (
            filter["spec"]["configPatches"][0]["applyTo"]
                .as_str()
                .unwrap()
                .to_string(),
            plugin["spec"]["type"].as_str().unwrap().to_string(),
        )
    };
    let (docs, _) = render(&network_block, &[]);
    assert_eq!(applied(&docs), ("NETWORK_FILTER".into(), "NETWORK".into()));
    let schemas = schemas();
    for doc in [kind(&docs, "EnvoyFilter"), kind(&docs, "WasmPlugin")] {
        schemas.check(doc).unwrap_or_else(|e| panic!("{e}"));
    }
    let (docs, _) = render(&network_block, &["--type", "http"]);
    assert_eq!(applied(&docs), ("HTTP_FILTER".into(), "HTTP".into()));
    let (docs, _) = render(INPUT, &["--type", "network"]);
    assert_eq!(applied(&docs), ("NETWORK_FILTER".into(), "NETWORK".into()));
    let filter = kind(&docs, "EnvoyFilter");
    assert_eq!(
        filter["spec"]["configPatches"][0]["match"]["listener"],
        json!({"filterChain": {"filter": {"name": "envoy.filters.network.tcp_proxy"}}})
    );
    assert_eq!(
        filter["spec"]["configPatches"][0]["patch"]["value"]["name"],
        "envoy.filters.network.wasm"
    );
    let (docs, _) = render(INPUT, &[]);
    assert_eq!(applied(&docs), ("HTTP_FILTER".into(), "HTTP".into()));
}

//! Golden files for the article's resource and its variations, then every
//! rendered file parsed back and checked field by field against what the
//! input says (literal expectations, not values recomputed by the renderer).
//!
//! `UPDATE_GOLDEN=1 cargo test -p publish render::golden` rewrites the golden files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use publish::render::output::Part;
use publish::render::plugin_settings::{FilterType, PluginSettings};
use publish::render::{Phase, RenderOptions, TrafficContext};
use serde_json::{Value, json};

use super::{
    article_example, at, file, files, fixtures, parse_yaml_documents, render_file, str_at,
};

const ARTICLE_IMAGE: &str = "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1";
const DIGEST_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// What one filter must look like once rendered.
struct Expect {
    name: &'static str,
    namespace: Option<&'static str>,
    labels: &'static [(&'static str, &'static str)],
    id: &'static str,
    image: &'static str,
    pull_secret: Option<&'static str>,
    root_id: Option<&'static str>,
    /// The exact text the filter must receive through the EnvoyFilter.
    parameters_text: Option<&'static str>,
    /// WasmPlugin.pluginConfig.
    plugin_config: Option<Value>,
    sha256: Option<&'static str>,
    /// A network (TCP) filter: NETWORK_FILTER before tcp_proxy, WasmPlugin type NETWORK.
    network: bool,
}

struct Case {
    name: &'static str,
    input: PathBuf,
    options: RenderOptions,
    context: &'static str,
    /// WasmPlugin match[0].mode; None: no match at all.
    mode: Option<&'static str>,
    phase: Option<&'static str>,
    priority: Option<i64>,
    fail_open: bool,
    filters: Vec<Expect>,
    /// Command lines the workload patch's header must show.
    patch_commands: Vec<&'static str>,
}

fn article_filter() -> Expect {
    Expect {
        name: "details-v1-wasmfiltersample",
        namespace: None,
        labels: &[("app", "details"), ("version", "v1")],
        id: "details-v1-wasmfiltersample.default",
        image: ARTICLE_IMAGE,
        pull_secret: Some("asmwasm-cache"),
        root_id: Some("my_root_id"),
        parameters_text: Some(r#"{"name":"hello","value":"hello details"}"#),
        plugin_config: Some(json!({"name": "hello", "value": "hello details"})),
        sha256: None,
        network: false,
    }
}

const TCP_GUARD_PARAMETERS: &str = r#"{"deny_cidrs":["192.0.2.0/24"],"routes":[{"prefix":"*","cluster":"redis"}],"default_cluster":"plain"}"#;

const ARTICLE_PATCH: &str = "kubectl get deployment -l app=details,version=v1 -o name | xargs -r -I{} kubectl patch {} --type strategic --patch-file workload-patch.yaml";

fn cases() -> Vec<Case> {
    let inputs = fixtures().join("inputs");
    let base = |name, input, options, context, mode| Case {
        name,
        input,
        options,
        context,
        mode,
        phase: None,
        priority: None,
        fail_open: false,
        filters: vec![article_filter()],
        patch_commands: vec![ARTICLE_PATCH],
    };
    let mut pinned_options = RenderOptions {
        phase: Some(Phase::Authz),
        priority: Some(10),
        fail_open: true,
        ..Default::default()
    };
    pinned_options
        .digests
        .insert(ARTICLE_IMAGE.into(), format!("sha256:{DIGEST_HEX}"));

    vec![
        base(
            "article",
            article_example(),
            RenderOptions::default(),
            "SIDECAR_INBOUND",
            Some("SERVER"),
        ),
        base(
            "article-outbound",
            article_example(),
            RenderOptions {
                context: TrafficContext::Outbound,
                ..Default::default()
            },
            "SIDECAR_OUTBOUND",
            Some("CLIENT"),
        ),
        base(
            "article-gateway",
            article_example(),
            RenderOptions {
                context: TrafficContext::Gateway,
                ..Default::default()
            },
            "GATEWAY",
            None,
        ),
        Case {
            phase: Some("AUTHZ"),
            priority: Some(10),
            fail_open: true,
            filters: vec![Expect {
                sha256: Some(DIGEST_HEX),
                ..article_filter()
            }],
            ..base(
                "article-pinned-authz-fail-open",
                article_example(),
                pinned_options,
                "SIDECAR_INBOUND",
                Some("SERVER"),
            )
        },
        Case {
            filters: vec![Expect {
                name: "reviews-header",
                namespace: Some("bookinfo"),
                labels: &[
                    ("app", "reviews"),
                    ("app.kubernetes.io/part-of", "bookinfo"),
                    ("tier", "backend"),
                    ("version", "v2"),
                ],
                // No id in the input: `<name>.<namespace>`, as in the article.
                id: "reviews-header.bookinfo",
                image: "registry.example.com:5000/team/filters/header:v1.2.0",
                pull_secret: Some("team-registry"),
                root_id: Some("header_root"),
                // A YAML mapping is passed on as compact JSON.
                parameters_text: Some(
                    r#"{"limits":{"max":10,"ratio":0.5},"name":"x-reviews","value":"from wasm"}"#,
                ),
                plugin_config: Some(json!({
                    "name": "x-reviews", "value": "from wasm", "limits": {"max": 10, "ratio": 0.5}
                })),
                sha256: None,
                network: false,
            }],
            patch_commands: vec![
                "kubectl get deployment -n bookinfo -l app=reviews,app.kubernetes.io/part-of=bookinfo,tier=backend,version=v2 -o name | xargs -r -I{} kubectl patch -n bookinfo {} --type strategic --patch-file workload-patch.yaml",
            ],
            ..base(
                "several-labels",
                inputs.join("several-labels.yaml"),
                RenderOptions::default(),
                "SIDECAR_INBOUND",
                Some("SERVER"),
            )
        },
        Case {
            filters: vec![Expect {
                name: "productpage-stats",
                namespace: None,
                labels: &[("app", "productpage")],
                id: "productpage-stats",
                image: "ghcr.io/example/stats-filter@sha256:4f4b7c1e8e9ad7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2",
                pull_secret: None,
                root_id: None,
                parameters_text: Some(r#"{"emit": true}"#),
                plugin_config: Some(json!({"emit": true})),
                sha256: None,
                network: false,
            }],
            patch_commands: vec![
                "kubectl get deployment -l app=productpage -o name | xargs -r -I{} kubectl patch {} --type strategic --patch-file workload-patch.yaml",
            ],
            ..base(
                "no-pull-secret",
                inputs.join("no-pull-secret.yaml"),
                RenderOptions::default(),
                "SIDECAR_INBOUND",
                Some("SERVER"),
            )
        },
        Case {
            filters: vec![
                Expect {
                    name: "ratings-auth",
                    namespace: Some("bookinfo"),
                    labels: &[("app", "ratings")],
                    id: "ratings-auth.bookinfo",
                    image: "localhost:5000/filters/auth:v3",
                    pull_secret: None,
                    root_id: Some("auth"),
                    parameters_text: Some(r#"{"header":"x-api-key"}"#),
                    plugin_config: Some(json!({"header": "x-api-key"})),
                    sha256: None,
                    network: false,
                },
                Expect {
                    name: "ratings-stats",
                    namespace: Some("bookinfo"),
                    labels: &[("app", "ratings")],
                    id: "ratings-stats.bookinfo",
                    image: "localhost:5000/filters/stats:v1",
                    pull_secret: None,
                    root_id: Some("stats"),
                    parameters_text: None,
                    plugin_config: None,
                    sha256: None,
                    network: false,
                },
            ],
            // Both filters select the same pods: the command is listed once.
            patch_commands: vec![
                "kubectl get deployment -n bookinfo -l app=ratings -o name | xargs -r -I{} kubectl patch -n bookinfo {} --type strategic --patch-file workload-patch.yaml",
            ],
            ..base(
                "two-filters",
                inputs.join("two-filters.yaml"),
                RenderOptions::default(),
                "SIDECAR_INBOUND",
                Some("SERVER"),
            )
        },
        Case {
            filters: vec![Expect {
                name: "legacy-flags",
                namespace: None,
                labels: &[
                    ("app", "legacy"),
                    ("build", "1_000"),
                    ("canary", "yes"),
                    ("enabled", "on"),
                    ("release", "1.10"),
                ],
                id: "legacy-flags",
                image: "registry.example.com/filters/legacy:2024.01",
                pull_secret: None,
                root_id: Some("on"),
                parameters_text: Some(r#"{"mode":"off","retries":"3","ratio":0.25}"#),
                plugin_config: Some(json!({"mode": "off", "retries": "3", "ratio": 0.25})),
                sha256: None,
                network: false,
            }],
            patch_commands: vec![
                "kubectl get statefulset -l app=legacy,build=1_000,canary=yes,enabled=on,release=1.10 -o name | xargs -r -I{} kubectl patch {} --type strategic --patch-file workload-patch.yaml",
            ],
            ..base(
                "yaml11-values",
                inputs.join("yaml11-values.yaml"),
                RenderOptions::default(),
                "SIDECAR_INBOUND",
                Some("SERVER"),
            )
        },
        Case {
            filters: vec![
                Expect {
                    name: "redis-guard",
                    namespace: Some("cache"),
                    labels: &[("app", "redis")],
                    id: "redis-guard",
                    image: "registry.example.com/filters/tcp-guard:v0.1.0",
                    pull_secret: None,
                    root_id: None,
                    parameters_text: Some(TCP_GUARD_PARAMETERS),
                    plugin_config: Some(json!({
                        "deny_cidrs": ["192.0.2.0/24"],
                        "routes": [{"prefix": "*", "cluster": "redis"}],
                        "default_cluster": "plain"
                    })),
                    sha256: None,
                    network: true,
                },
                // The block of one deployment does not spill over to the next.
                Expect {
                    name: "redis-admin-header",
                    namespace: Some("cache"),
                    labels: &[("app", "redis")],
                    id: "redis-admin-header",
                    image: "registry.example.com/filters/response-header:v0.1.0",
                    pull_secret: None,
                    root_id: None,
                    parameters_text: Some(r#"{"name":"x-admin","value":"1"}"#),
                    plugin_config: Some(json!({"name": "x-admin", "value": "1"})),
                    sha256: None,
                    network: false,
                },
            ],
            patch_commands: vec![
                "kubectl get deployment -n cache -l app=redis -o name | xargs -r -I{} kubectl patch -n cache {} --type strategic --patch-file workload-patch.yaml",
            ],
            ..base(
                "tcp-filter",
                inputs.join("tcp-filter.yaml"),
                RenderOptions::default(),
                "SIDECAR_INBOUND",
                Some("SERVER"),
            )
        },
        // `--type network` on the article's resource, on a gateway.
        Case {
            filters: vec![Expect {
                network: true,
                ..article_filter()
            }],
            ..base(
                "article-network-gateway",
                article_example(),
                RenderOptions {
                    context: TrafficContext::Gateway,
                    plugin: PluginSettings {
                        filter_type: Some(FilterType::Network),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "GATEWAY",
                None,
            )
        },
    ]
}

fn golden_dir(case: &str) -> PathBuf {
    fixtures().join("golden").join(case)
}

#[test]
fn rendered_files_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for case in cases() {
        let bundle = render_file(&case.input, &case.options);
        for rendered in files(&bundle) {
            let path = golden_dir(case.name).join(rendered.part.file_name());
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &rendered.text).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
            if expected != rendered.text {
                mismatches.push(format!(
                    "{}:\n--- golden\n{expected}\n--- rendered\n{}",
                    path.display(),
                    rendered.text
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_case_parses_back_field_by_field() {
    for case in cases() {
        let bundle = render_file(&case.input, &case.options);
        let rendered = files(&bundle);
        assert_eq!(
            rendered.iter().map(|f| f.part).collect::<Vec<_>>(),
            [
                Part::EnvoyFilter,
                Part::WorkloadPatch,
                Part::NodeAgent,
                Part::WasmPlugin
            ],
            "{}",
            case.name
        );
        check_envoy_filters(
            &case,
            &parse_yaml_documents(file(&rendered, Part::EnvoyFilter)),
        );
        check_workload_patch(&case, file(&rendered, Part::WorkloadPatch));
        check_node_list(
            &case,
            &parse_yaml_documents(file(&rendered, Part::NodeAgent)),
        );
        check_wasm_plugins(
            &case,
            &parse_yaml_documents(file(&rendered, Part::WasmPlugin)),
        );
        for output in &rendered {
            check_yaml_1_1_safe(&output.text, case.name);
        }
    }
}

/// True when YAML 1.1 (go-yaml v2, which kubectl and Istio use) resolves the
/// plain scalar `s` to something other than a string.
fn yaml_1_1_non_string(s: &str) -> bool {
    const PATTERNS: [&str; 6] = [
        // bool and null
        r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|~|null|Null|NULL|)$",
        // int: binary, octal, decimal, hex, base 60
        r"^([-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+)$",
        // float
        r"^([-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$",
        // timestamp
        r"^[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?",
        // merge and value keys
        r"^(<<|=)$",
        // what go-yaml v2 also parses as a number: anything strconv.ParseFloat takes
        r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$",
    ];
    PATTERNS
        .iter()
        .any(|p| regex::Regex::new(p).unwrap().is_match(s))
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k);
                collect_strings(v, out);
            }
        }
        _ => {}
    }
}

/// Every string that YAML 1.1 would read as something else is quoted in the text.
fn check_yaml_1_1_safe(text: &str, case: &str) {
    let docs = parse_yaml_documents(text);
    let mut strings = Vec::new();
    docs.iter().for_each(|d| collect_strings(d, &mut strings));
    for s in strings.into_iter().filter(|s| yaml_1_1_non_string(s)) {
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let body = line.trim_start().trim_start_matches("- ");
            let plain = body == s
                || body.ends_with(&format!(": {s}"))
                || body.starts_with(&format!("{s}:"));
            assert!(
                !plain,
                "{case}: {s:?} is written plain in {line:?}; YAML 1.1 misreads it"
            );
        }
    }
}

fn labels_json(labels: &[(&str, &str)]) -> Value {
    let map: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::to_value(map).unwrap()
}

fn check_metadata(doc: &Value, expect: &Expect, what: &str) {
    assert_eq!(str_at(doc, "/metadata/name"), expect.name, "{what}");
    assert_eq!(
        doc.pointer("/metadata/namespace").and_then(Value::as_str),
        expect.namespace,
        "{what}"
    );
}

fn check_envoy_filters(case: &Case, docs: &[Value]) {
    assert_eq!(
        docs.len(),
        case.filters.len(),
        "{}: EnvoyFilter count",
        case.name
    );
    for (doc, expect) in docs.iter().zip(&case.filters) {
        let what = format!("{} EnvoyFilter {}", case.name, expect.name);
        assert_eq!(
            str_at(doc, "/apiVersion"),
            "networking.istio.io/v1alpha3",
            "{what}"
        );
        assert_eq!(str_at(doc, "/kind"), "EnvoyFilter", "{what}");
        check_metadata(doc, expect, &what);
        assert_eq!(
            at(doc, "/spec/workloadSelector/labels"),
            &labels_json(expect.labels),
            "{what}"
        );

        let patches = at(doc, "/spec/configPatches").as_array().unwrap();
        assert_eq!(patches.len(), 1, "{what}");
        let patch = &patches[0];
        // (applyTo, filter matched, its subFilter, filter inserted, typed_config type)
        let (apply_to, matched, sub_filter, inserted, type_url) = if expect.network {
            (
                "NETWORK_FILTER",
                "envoy.filters.network.tcp_proxy",
                None,
                "envoy.filters.network.wasm",
                "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
            )
        } else {
            (
                "HTTP_FILTER",
                "envoy.filters.network.http_connection_manager",
                Some("envoy.filters.http.router"),
                "envoy.filters.http.wasm",
                "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            )
        };
        assert_eq!(str_at(patch, "/applyTo"), apply_to, "{what}");
        assert_eq!(str_at(patch, "/match/context"), case.context, "{what}");
        assert_eq!(
            str_at(patch, "/match/listener/filterChain/filter/name"),
            matched,
            "{what}"
        );
        assert_eq!(
            patch
                .pointer("/match/listener/filterChain/filter/subFilter/name")
                .and_then(Value::as_str),
            sub_filter,
            "{what}"
        );
        assert_eq!(str_at(patch, "/patch/operation"), "INSERT_BEFORE", "{what}");
        assert_eq!(str_at(patch, "/patch/value/name"), inserted, "{what}");

        let typed = at(patch, "/patch/value/typed_config");
        assert_eq!(str_at(typed, "/@type"), type_url, "{what}");
        let config = at(typed, "/config");
        assert_eq!(str_at(config, "/name"), expect.id, "{what}");
        assert_eq!(
            config.get("root_id").and_then(Value::as_str),
            expect.root_id,
            "{what}"
        );
        match expect.parameters_text {
            Some(text) => {
                assert_eq!(
                    str_at(config, "/configuration/@type"),
                    "type.googleapis.com/google.protobuf.StringValue",
                    "{what}"
                );
                // The filter gets the parameters byte for byte.
                assert_eq!(str_at(config, "/configuration/value"), text, "{what}");
            }
            None => assert!(config.get("configuration").is_none(), "{what}"),
        }
        assert_eq!(
            str_at(config, "/vm_config/runtime"),
            "envoy.wasm.runtime.v8",
            "{what}"
        );
        assert_eq!(str_at(config, "/vm_config/vm_id"), expect.id, "{what}");
        assert_eq!(
            str_at(config, "/vm_config/code/local/filename"),
            format!("/var/local/lib/wasm-filters/{}.wasm", expect.id),
            "{what}"
        );
        assert_eq!(
            config.get("fail_open").and_then(Value::as_bool),
            case.fail_open.then_some(true),
            "{what}"
        );
    }
}

fn check_workload_patch(case: &Case, text: &str) {
    for command in &case.patch_commands {
        assert!(
            text.lines().any(|line| line == format!("#   {command}")),
            "{}: the patch header lacks `{command}`:\n{text}",
            case.name
        );
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("#   kubectl"))
            .count(),
        case.patch_commands.len(),
        "{}",
        case.name
    );
    let docs = parse_yaml_documents(text);
    assert_eq!(docs.len(), 1, "{}", case.name);
    let annotations = at(&docs[0], "/spec/template/metadata/annotations")
        .as_object()
        .unwrap();
    assert_eq!(annotations.len(), 2, "{}", case.name);
    // Istio's injector reads both annotations as JSON.
    let volumes: Value =
        serde_json::from_str(annotations["sidecar.istio.io/userVolume"].as_str().unwrap()).unwrap();
    let mounts: Value = serde_json::from_str(
        annotations["sidecar.istio.io/userVolumeMount"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        volumes,
        json!([{"name": "wasmfilters-dir",
                "hostPath": {"path": "/var/local/lib/wasm-filters", "type": "DirectoryOrCreate"}}]),
        "{}",
        case.name
    );
    assert_eq!(
        mounts,
        json!([{"name": "wasmfilters-dir", "mountPath": "/var/local/lib/wasm-filters", "readOnly": true}]),
        "{}",
        case.name
    );
}

fn check_node_list(case: &Case, docs: &[Value]) {
    assert_eq!(docs.len(), 1, "{}", case.name);
    let list = &docs[0];
    assert_eq!(
        str_at(list, "/apiVersion"),
        "publish.proxy-wasm-toolkit/v1alpha1"
    );
    assert_eq!(str_at(list, "/kind"), "WasmModuleList");
    let modules = at(list, "/modules").as_array().unwrap();
    assert_eq!(modules.len(), case.filters.len(), "{}", case.name);
    for (module, expect) in modules.iter().zip(&case.filters) {
        let mut wanted = json!({
            "fileName": format!("{}.wasm", expect.id),
            "image": expect.image,
        });
        if let Some(secret) = expect.pull_secret {
            wanted["pullSecret"] = json!(secret);
        }
        if let Some(sha) = expect.sha256 {
            wanted["sha256"] = json!(sha);
        }
        assert_eq!(module, &wanted, "{}", case.name);
    }
    // What sync reads back is the same list.
    let text = serde_yaml_ng::to_string(list).unwrap();
    let reread = publish::render::node_list::NodeList::from_yaml(&text).unwrap();
    assert_eq!(reread.modules.len(), case.filters.len());
}

fn check_wasm_plugins(case: &Case, docs: &[Value]) {
    assert_eq!(
        docs.len(),
        case.filters.len(),
        "{}: WasmPlugin count",
        case.name
    );
    for (doc, expect) in docs.iter().zip(&case.filters) {
        let what = format!("{} WasmPlugin {}", case.name, expect.name);
        assert_eq!(
            str_at(doc, "/apiVersion"),
            "extensions.istio.io/v1alpha1",
            "{what}"
        );
        assert_eq!(str_at(doc, "/kind"), "WasmPlugin", "{what}");
        check_metadata(doc, expect, &what);
        let spec = at(doc, "/spec");
        assert_eq!(
            at(spec, "/selector/matchLabels"),
            &labels_json(expect.labels),
            "{what}"
        );
        assert_eq!(
            str_at(spec, "/url"),
            format!("oci://{}", expect.image),
            "{what}"
        );
        let opt = |key: &str| spec.get(key).and_then(Value::as_str);
        assert_eq!(opt("sha256"), expect.sha256, "{what}");
        assert_eq!(opt("imagePullSecret"), expect.pull_secret, "{what}");
        assert_eq!(opt("pluginName"), expect.root_id, "{what}");
        assert_eq!(
            spec.get("pluginConfig"),
            expect.plugin_config.as_ref(),
            "{what}"
        );
        if let (Some(text), Some(config)) = (expect.parameters_text, &expect.plugin_config) {
            // Same configuration through both paths.
            assert_eq!(
                &serde_json::from_str::<Value>(text).unwrap(),
                config,
                "{what}"
            );
        }
        assert_eq!(opt("phase"), case.phase, "{what}");
        assert_eq!(
            spec.get("priority").and_then(Value::as_i64),
            case.priority,
            "{what}"
        );
        assert_eq!(
            opt("failStrategy"),
            Some(if case.fail_open {
                "FAIL_OPEN"
            } else {
                "FAIL_CLOSE"
            }),
            "{what}"
        );
        let plugin_type = if expect.network { "NETWORK" } else { "HTTP" };
        assert_eq!(opt("type"), Some(plugin_type), "{what}");
        match case.mode {
            Some(mode) => assert_eq!(at(spec, "/match"), &json!([{"mode": mode}]), "{what}"),
            None => assert!(spec.get("match").is_none(), "{what}"),
        }
    }
}

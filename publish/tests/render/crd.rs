//! The rendered EnvoyFilter and WasmPlugin against Istio's published CRD schemas
//! (schemas/istio-crds.yaml, a copy of istio/api's generated CRDs),
//! and proof that the checker refuses what the API server would refuse.

use publish::render::output::Part;
use publish::render::plugin_settings::{FilterType, PluginSettings};
use publish::render::schema::{CrdSchemas, SchemaError};
use publish::render::{RenderOptions, TrafficContext};
use serde_json::{Value, json};

use super::{
    article_example, crate_dir, file, files, fixtures, parse_yaml_documents, read, render_file,
};

fn schemas() -> CrdSchemas {
    CrdSchemas::from_yaml(&read(&crate_dir().join("schemas/istio-crds.yaml")))
        .expect("Istio CRDs load")
}

fn article_docs(part: Part, options: &RenderOptions) -> Vec<Value> {
    let bundle = render_file(&article_example(), options);
    parse_yaml_documents(file(&files(&bundle), part))
}

fn violations(schemas: &CrdSchemas, doc: &Value) -> Vec<String> {
    match schemas.check(doc) {
        Ok(()) => Vec::new(),
        Err(SchemaError::Invalid { violations, .. }) => {
            violations.iter().map(ToString::to_string).collect()
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn the_crd_file_has_both_schemas() {
    let schemas = schemas();
    for (api_version, kind) in [
        ("networking.istio.io/v1alpha3", "EnvoyFilter"),
        ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ] {
        assert!(schemas.schema_for(api_version, kind).is_some(), "{kind}");
    }
    assert!(
        schemas
            .schema_for("extensions.istio.io/v1beta1", "WasmPlugin")
            .is_none()
    );
}

#[test]
fn every_rendered_resource_satisfies_the_istio_crds() {
    let schemas = schemas();
    let inputs = fixtures().join("inputs");
    let mut pinned = RenderOptions {
        phase: Some(publish::render::Phase::Stats),
        priority: Some(-5),
        fail_open: true,
        ..Default::default()
    };
    pinned.digests.insert(
        "acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1".into(),
        format!("sha256:{}", "ab".repeat(32)),
    );
    let runs = [
        (article_example(), RenderOptions::default()),
        (article_example(), pinned),
        (
            article_example(),
            RenderOptions {
                context: TrafficContext::Outbound,
                ..Default::default()
            },
        ),
        (
            article_example(),
            RenderOptions {
                context: TrafficContext::Gateway,
                ..Default::default()
            },
        ),
        (inputs.join("several-labels.yaml"), RenderOptions::default()),
        (inputs.join("no-pull-secret.yaml"), RenderOptions::default()),
        (inputs.join("two-filters.yaml"), RenderOptions::default()),
        (inputs.join("yaml11-values.yaml"), RenderOptions::default()),
        (inputs.join("tcp-filter.yaml"), RenderOptions::default()),
        (article_example(), network(TrafficContext::Outbound)),
        (article_example(), network(TrafficContext::Gateway)),
    ];
    let mut checked = 0;
    for (input, options) in runs {
        let rendered = files(&render_file(&input, &options));
        for part in [Part::EnvoyFilter, Part::WasmPlugin] {
            for doc in parse_yaml_documents(file(&rendered, part)) {
                let found = violations(&schemas, &doc);
                assert!(
                    found.is_empty(),
                    "{}: {part:?}: {found:#?}",
                    input.display()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 26);
}

/// `--type network` in `context`.
fn network(context: TrafficContext) -> RenderOptions {
    RenderOptions {
        context,
        plugin: PluginSettings {
            filter_type: Some(FilterType::Network),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Each mutation is something a renderer bug could produce; the schema must catch it
/// at the path named.
#[test]
fn the_checker_refuses_what_the_api_server_would_refuse() {
    let schemas = schemas();
    let plugin = article_docs(Part::WasmPlugin, &RenderOptions::default()).remove(0);
    let filter = article_docs(Part::EnvoyFilter, &RenderOptions::default()).remove(0);

    type Mutation = (&'static str, Value, fn(&mut Value), &'static str);
    let cases: Vec<Mutation> = vec![
        (
            "sha256 with a prefix",
            plugin.clone(),
            |d| {
                d["spec"]["sha256"] = json!(format!("sha256:{}", "a".repeat(64)));
            },
            ".spec.sha256",
        ),
        (
            "sha256 in upper case",
            plugin.clone(),
            |d| {
                d["spec"]["sha256"] = json!("A".repeat(64));
            },
            ".spec.sha256",
        ),
        (
            "sha256 too short",
            plugin.clone(),
            |d| {
                d["spec"]["sha256"] = json!("a".repeat(63));
            },
            ".spec.sha256",
        ),
        (
            "unknown phase",
            plugin.clone(),
            |d| {
                d["spec"]["phase"] = json!("LATE");
            },
            ".spec.phase",
        ),
        (
            "unknown fail strategy",
            plugin.clone(),
            |d| {
                d["spec"]["failStrategy"] = json!("FAIL_SOMETIMES");
            },
            ".spec.failStrategy",
        ),
        (
            "missing url",
            plugin.clone(),
            |d| {
                d["spec"].as_object_mut().unwrap().remove("url");
            },
            ".spec.url",
        ),
        (
            "priority beyond int32",
            plugin.clone(),
            |d| {
                d["spec"]["priority"] = json!(1u64 << 32);
            },
            ".spec.priority",
        ),
        (
            "pluginConfig not an object",
            plugin.clone(),
            |d| {
                d["spec"]["pluginConfig"] = json!("{\"a\":1}");
            },
            ".spec.pluginConfig",
        ),
        (
            "a field Istio does not have",
            plugin.clone(),
            |d| {
                d["spec"]["rootID"] = json!("my_root_id");
            },
            ".spec.rootID",
        ),
        (
            "label value too long",
            plugin.clone(),
            |d| {
                d["spec"]["selector"]["matchLabels"]["app"] = json!("x".repeat(64));
            },
            ".spec.selector.matchLabels.app",
        ),
        (
            "empty image pull secret",
            plugin.clone(),
            |d| {
                d["spec"]["imagePullSecret"] = json!("");
            },
            ".spec.imagePullSecret",
        ),
        (
            "bad metadata name",
            plugin.clone(),
            |d| {
                d["metadata"]["name"] = json!("Details_V1");
            },
            ".metadata.name",
        ),
        (
            "unknown context",
            filter.clone(),
            |d| {
                d["spec"]["configPatches"][0]["match"]["context"] = json!("SIDECAR_INBOUNDS");
            },
            ".spec.configPatches[0].match.context",
        ),
        (
            "unknown operation",
            filter.clone(),
            |d| {
                d["spec"]["configPatches"][0]["patch"]["operation"] = json!("INSERT_BEFOR");
            },
            ".spec.configPatches[0].patch.operation",
        ),
        (
            "unknown applyTo",
            filter.clone(),
            |d| {
                d["spec"]["configPatches"][0]["applyTo"] = json!("HTTP_FILTERS");
            },
            ".spec.configPatches[0].applyTo",
        ),
        (
            "match on listener and cluster at once (oneOf)",
            filter.clone(),
            |d| {
                d["spec"]["configPatches"][0]["match"]["cluster"] = json!({"name": "x"});
            },
            ".spec.configPatches[0].match",
        ),
        (
            "workloadSelector misspelt",
            filter.clone(),
            |d| {
                let spec = d["spec"].as_object_mut().unwrap();
                let selector = spec.remove("workloadSelector").unwrap();
                spec.insert("workloadselector".into(), selector);
            },
            ".spec.workloadselector",
        ),
        (
            "configPatches not a list",
            filter.clone(),
            |d| {
                d["spec"]["configPatches"] = json!({"applyTo": "HTTP_FILTER"});
            },
            ".spec.configPatches",
        ),
    ];
    for (what, mut doc, mutate, path) in cases {
        mutate(&mut doc);
        let found = violations(&schemas, &doc);
        assert!(
            found.iter().any(|v| v.starts_with(&format!("{path}:"))),
            "{what}: expected a violation at {path}, got {found:#?}"
        );
    }
}

#[test]
fn resources_of_unknown_kinds_are_not_waved_through() {
    let schemas = schemas();
    let mut plugin = article_docs(Part::WasmPlugin, &RenderOptions::default()).remove(0);
    plugin["apiVersion"] = json!("extensions.istio.io/v1");
    let err = schemas.check(&plugin).unwrap_err();
    assert!(matches!(err, SchemaError::UnknownKind { .. }), "{err}");
}

fn envoy_schema() -> Value {
    serde_yaml_ng::from_str(&read(
        &fixtures().join("envoy-wasm-http-filter.schema.yaml"),
    ))
    .expect("Envoy field schema loads")
}

fn patch_value(filter: &Value) -> &Value {
    filter
        .pointer("/spec/configPatches/0/patch/value")
        .expect("patch value")
}

/// The CRD leaves the patch value open; this checks the Envoy messages inside it.
#[test]
fn the_inserted_http_filter_uses_only_envoy_fields() {
    let schema = envoy_schema();
    let inputs = fixtures().join("inputs");
    let fail_open = RenderOptions {
        fail_open: true,
        ..Default::default()
    };
    let mut checked = 0;
    for (input, options) in [
        (article_example(), RenderOptions::default()),
        (article_example(), fail_open),
        (inputs.join("several-labels.yaml"), RenderOptions::default()),
        (inputs.join("no-pull-secret.yaml"), RenderOptions::default()),
        (inputs.join("two-filters.yaml"), RenderOptions::default()),
        (inputs.join("yaml11-values.yaml"), RenderOptions::default()),
    ] {
        let rendered = files(&render_file(&input, &options));
        for filter in parse_yaml_documents(file(&rendered, Part::EnvoyFilter)) {
            let found = publish::render::schema::validate(&schema, patch_value(&filter));
            assert!(found.is_empty(), "{}: {found:#?}", input.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 7);
}

#[test]
fn misspelt_envoy_fields_are_caught() {
    let schema = envoy_schema();
    let filter = article_docs(Part::EnvoyFilter, &RenderOptions::default()).remove(0);
    let value = patch_value(&filter).clone();
    type Mutation = (&'static str, fn(&mut Value), &'static str);
    let cases: Vec<Mutation> = vec![
        (
            "rootId instead of root_id",
            |v| {
                let config = v["typed_config"]["config"].as_object_mut().unwrap();
                let root = config.remove("root_id").unwrap();
                config.insert("rootId".into(), root);
            },
            ".typed_config.config.rootId",
        ),
        (
            "an unknown runtime",
            |v| {
                v["typed_config"]["config"]["vm_config"]["runtime"] = json!("envoy.wasm.runtime.v9")
            },
            ".typed_config.config.vm_config.runtime",
        ),
        (
            "configuration as a bare string",
            |v| v["typed_config"]["config"]["configuration"] = json!("{\"name\":\"hello\"}"),
            ".typed_config.config.configuration",
        ),
        (
            "the TypedStruct wrapper type",
            |v| v["typed_config"]["@type"] = json!("type.googleapis.com/udpa.type.v1.TypedStruct"),
            ".typed_config.@type",
        ),
        (
            "both a local and a remote code source",
            |v| v["typed_config"]["config"]["vm_config"]["code"]["remote"] = json!({}),
            ".typed_config.config.vm_config.code",
        ),
        (
            "a module outside the mounted directory",
            |v| {
                v["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] =
                    json!("/etc/istio/filter.wasm")
            },
            ".typed_config.config.vm_config.code.local.filename",
        ),
    ];
    for (what, mutate, path) in cases {
        let mut doc = value.clone();
        mutate(&mut doc);
        let found = publish::render::schema::validate(&schema, &doc);
        assert!(
            found.iter().any(|v| v.path == path),
            "{what}: expected a violation at {path}, got {found:#?}"
        );
    }
}

/// Envoy's network `Filter` (envoy.config.listener.v3.Filter) has the
/// HttpFilter's `name` and `typed_config` but no `is_optional`/`disabled`, and
/// the network Wasm message has the same single `config` field: the HTTP
/// schema with those two fields dropped and the network type URL.
fn network_envoy_schema() -> Value {
    let mut schema = envoy_schema();
    let properties = schema["properties"].as_object_mut().expect("properties");
    assert!(properties.remove("is_optional").is_some());
    assert!(properties.remove("disabled").is_some());
    schema["properties"]["typed_config"]["properties"]["@type"]["enum"] =
        json!(["type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"]);
    schema
}

#[test]
fn the_inserted_network_filter_uses_only_envoy_fields() {
    let network_schema = network_envoy_schema();
    let http_schema = envoy_schema();
    let rendered = files(&render_file(
        &fixtures().join("inputs/tcp-filter.yaml"),
        &RenderOptions::default(),
    ));
    let docs = parse_yaml_documents(file(&rendered, Part::EnvoyFilter));
    assert_eq!(docs.len(), 2);
    // The NETWORK deployment against the network schema (and not the HTTP
    // one), the HTTP deployment next to it the other way round.
    let network_value = patch_value(&docs[0]);
    assert!(publish::render::schema::validate(&network_schema, network_value).is_empty());
    assert!(!publish::render::schema::validate(&http_schema, network_value).is_empty());
    let http_value = patch_value(&docs[1]);
    assert!(publish::render::schema::validate(&http_schema, http_value).is_empty());
    assert!(!publish::render::schema::validate(&network_schema, http_value).is_empty());

    // The same by flag, with fail_open (a PluginConfig field both share).
    let options = RenderOptions {
        fail_open: true,
        ..network(TrafficContext::Inbound)
    };
    let filter = article_docs(Part::EnvoyFilter, &options).remove(0);
    let found = publish::render::schema::validate(&network_schema, patch_value(&filter));
    assert!(found.is_empty(), "{found:#?}");
}

/// What a network-patch bug could produce, caught by the CRD or the Envoy schema.
#[test]
fn network_patch_mistakes_are_caught() {
    let schemas = schemas();
    let filter = article_docs(Part::EnvoyFilter, &network(TrafficContext::Inbound)).remove(0);
    let mut wrong_apply_to = filter.clone();
    wrong_apply_to["spec"]["configPatches"][0]["applyTo"] = json!("NETWORK_FILTERS");
    assert!(
        violations(&schemas, &wrong_apply_to)
            .iter()
            .any(|v| v.starts_with(".spec.configPatches[0].applyTo:")),
    );
    let envoy = network_envoy_schema();
    let mut http_type = patch_value(&filter).clone();
    http_type["typed_config"]["@type"] =
        json!("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
    let found = publish::render::schema::validate(&envoy, &http_type);
    assert!(
        found.iter().any(|v| v.path == ".typed_config.@type"),
        "{found:#?}"
    );
    let mut http_only_field = patch_value(&filter).clone();
    http_only_field["is_optional"] = json!(true);
    let found = publish::render::schema::validate(&envoy, &http_only_field);
    assert!(found.iter().any(|v| v.path == ".is_optional"), "{found:#?}");
}

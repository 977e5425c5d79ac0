//! The ASMFilterDeployment resource users write, read from YAML and checked
//! field by field so that every error names the field it is about.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_yaml_ng::Value;

use super::RenderError;

pub const API_VERSION: &str = "istio.alibabacloud.com/v1beta1";
pub const KIND: &str = "ASMFilterDeployment";

/// Workload kinds whose pod template the workload patch can annotate.
pub const WORKLOAD_KINDS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// One checked ASMFilterDeployment.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterDeployment {
    pub name: String,
    pub namespace: Option<String>,
    pub workload_kind: String,
    /// Pod labels selecting the workload; never empty.
    pub labels: BTreeMap<String, String>,
    pub filter: FilterSpec,
    /// `spec.wasmPlugin`: WasmPlugin and EnvoyFilter settings (publish's extension).
    pub plugin: super::plugin_settings::PluginSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterSpec {
    /// Filter id: Envoy config name, VM id and (with `.wasm`) the module's file name.
    pub id: String,
    /// The image reference exactly as the user wrote it (checked to parse).
    pub image: String,
    pub pull_secret: Option<String>,
    pub root_id: Option<String>,
    /// The parameters exactly as written: what the filter receives through the
    /// EnvoyFilter's StringValue configuration.
    pub parameters_text: Option<String>,
    /// The same parameters parsed, for WasmPlugin.pluginConfig (a protobuf Struct).
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});
static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});
/// Kubernetes "qualified name" part of a label key, and the shape of a label value.
static LABEL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});
/// The filter id becomes a file name on every node: no separators, no dot files.
static FILTER_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// Reads every ASMFilterDeployment in a (possibly multi-document) YAML text.
/// Empty documents are skipped; a text with none is an error.
pub fn parse_documents(text: &str) -> Result<Vec<FilterDeployment>, RenderError> {
    let mut out = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde::Deserialize::deserialize(document).map_err(|e| RenderError::Yaml {
            document: index + 1,
            detail: e.to_string(),
        })?;
        if matches!(value, Value::Null) {
            continue;
        }
        let deployment = from_value(&value).map_err(|e| e.in_document(index + 1))?;
        out.push(deployment);
    }
    if out.is_empty() {
        return Err(RenderError::Empty);
    }
    Ok(out)
}

/// Checks one parsed YAML document.
pub fn from_value(value: &Value) -> Result<FilterDeployment, RenderError> {
    let root = mapping(value, "")?;
    reject_unknown(
        root,
        "",
        &["apiVersion", "kind", "metadata", "spec", "status"],
    )?;

    let api_version = required_string(root, "", "apiVersion")?;
    if api_version != API_VERSION {
        return Err(RenderError::field(
            "apiVersion",
            format!("{api_version:?} is not supported; use {API_VERSION:?}"),
        ));
    }
    let kind = required_string(root, "", "kind")?;
    if kind != KIND {
        return Err(RenderError::field(
            "kind",
            format!("{kind:?} is not an {KIND}; this command renders only {KIND} resources"),
        ));
    }

    let metadata = mapping(required(root, "", "metadata")?, "metadata")?;
    let name = required_string(metadata, "metadata", "name")?;
    check_dns_subdomain(&name, "metadata.name")?;
    let namespace = optional_string(metadata, "metadata", "namespace")?;
    if let Some(ns) = &namespace
        && (ns.len() > 63 || !DNS_LABEL.is_match(ns))
    {
        return Err(RenderError::field(
            "metadata.namespace",
            format!(
                "{ns:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
            ),
        ));
    }

    let spec = mapping(required(root, "", "spec")?, "spec")?;
    reject_unknown(spec, "spec", &["workload", "filter", "wasmPlugin"])?;
    let plugin = match spec.get("wasmPlugin") {
        None | Some(Value::Null) => Default::default(),
        Some(block) => super::plugin_settings::PluginSettings::from_yaml(block)?,
    };

    let workload = mapping(required(spec, "spec", "workload")?, "spec.workload")?;
    reject_unknown(workload, "spec.workload", &["kind", "labels"])?;
    let workload_kind = optional_string(workload, "spec.workload", "kind")?
        .unwrap_or_else(|| "Deployment".to_string());
    if !WORKLOAD_KINDS.contains(&workload_kind.as_str()) {
        return Err(RenderError::field(
            "spec.workload.kind",
            format!(
                "{workload_kind:?} has no pod template to patch; use one of {}",
                WORKLOAD_KINDS.join(", ")
            ),
        ));
    }
    let labels = labels(workload)?;

    let filter = mapping(required(spec, "spec", "filter")?, "spec.filter")?;
    reject_unknown(
        filter,
        "spec.filter",
        &["parameters", "image", "imagePullOptions", "rootID", "id"],
    )?;

    let image = required_string(filter, "spec.filter", "image")?;
    let image = image.trim().to_string();
    if image.is_empty() {
        return Err(RenderError::field("spec.filter.image", "is empty"));
    }
    if image.contains("://") {
        return Err(RenderError::field(
            "spec.filter.image",
            format!(
                "{image:?}: write the image without a URL scheme, e.g. registry.example.com/repo/filter:v1"
            ),
        ));
    }
    crate::reference::parse(&image)
        .map_err(|e| RenderError::field("spec.filter.image", e.to_string()))?;

    let pull_secret = match filter.get("imagePullOptions") {
        None | Some(Value::Null) => None,
        Some(options) => {
            let options = mapping(options, "spec.filter.imagePullOptions")?;
            reject_unknown(options, "spec.filter.imagePullOptions", &["pullSecret"])?;
            let secret = optional_string(options, "spec.filter.imagePullOptions", "pullSecret")?;
            if let Some(secret) = &secret {
                check_dns_subdomain(secret, "spec.filter.imagePullOptions.pullSecret")?;
            }
            secret
        }
    };

    let root_id = optional_string(filter, "spec.filter", "rootID")?;
    if let Some(root) = &root_id
        && (root.is_empty() || root.len() > 256)
    {
        return Err(RenderError::field(
            "spec.filter.rootID",
            "must be 1 to 256 characters (it becomes WasmPlugin.pluginName), or be left out",
        ));
    }

    // The article's ids read `<name>.<namespace>`; keep that convention when none is given.
    let id = match optional_string(filter, "spec.filter", "id")? {
        Some(id) => id,
        None => format!("{name}.{}", namespace.as_deref().unwrap_or("default")),
    };
    if id.len() > 200 || !FILTER_ID.is_match(&id) {
        return Err(RenderError::field(
            "spec.filter.id",
            format!(
                "{id:?} cannot be used: it names the module file on every node, so use letters, \
                 digits, '-', '_' and '.' (at most 200, starting and ending with a letter or digit)"
            ),
        ));
    }

    let (parameters_text, parameters) = parameters(filter)?;

    Ok(FilterDeployment {
        name,
        namespace,
        workload_kind,
        labels,
        filter: FilterSpec {
            id,
            image,
            pull_secret,
            root_id,
            parameters_text,
            parameters,
        },
        plugin,
    })
}

fn labels(workload: &serde_yaml_ng::Mapping) -> Result<BTreeMap<String, String>, RenderError> {
    let raw = match workload.get("labels") {
        None | Some(Value::Null) => {
            return Err(RenderError::field(
                "spec.workload.labels",
                "is missing: name at least one pod label, e.g. app: details",
            ));
        }
        Some(raw) => mapping(raw, "spec.workload.labels")?,
    };
    if raw.is_empty() {
        return Err(RenderError::field(
            "spec.workload.labels",
            "is empty: an empty selector would put the filter on every workload in the namespace",
        ));
    }
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let Value::String(key) = key else {
            return Err(RenderError::field(
                "spec.workload.labels",
                format!("label key {} is not a string", describe(key)),
            ));
        };
        let path = format!("spec.workload.labels.{key}");
        check_label_key(key, &path)?;
        let value = match value {
            Value::String(s) => s.clone(),
            other => {
                return Err(RenderError::field(
                    &path,
                    format!(
                        "label values are strings; {} is not (quote it)",
                        describe(other)
                    ),
                ));
            }
        };
        if value.len() > 63 || !(value.is_empty() || LABEL_NAME.is_match(&value)) {
            return Err(RenderError::field(
                &path,
                format!(
                    "{value:?} is not a valid label value (at most 63 letters, digits, '-', '_', '.', \
                     starting and ending with a letter or digit; no wildcards)"
                ),
            ));
        }
        out.insert(key.clone(), value);
    }
    Ok(out)
}

fn check_label_key(key: &str, path: &str) -> Result<(), RenderError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && DNS_SUBDOMAIN.is_match(p));
    if !prefix_ok || name.len() > 63 || !LABEL_NAME.is_match(name) {
        return Err(RenderError::field(
            path,
            format!("{key:?} is not a valid label key ([prefix/]name, name at most 63 characters)"),
        ));
    }
    Ok(())
}

/// `parameters` is a JSON text (as in the article) or, for convenience, a YAML mapping.
/// Either way it must be a JSON object: WasmPlugin.pluginConfig is a protobuf Struct.
/// The parameters as written (or as compact JSON) and parsed.
type Parameters = (
    Option<String>,
    Option<serde_json::Map<String, serde_json::Value>>,
);

fn parameters(filter: &serde_yaml_ng::Mapping) -> Result<Parameters, RenderError> {
    const FIELD: &str = "spec.filter.parameters";
    let (text, parsed) = match filter.get("parameters") {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(Value::String(text)) => {
            let parsed: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                RenderError::field(
                    FIELD,
                    format!(
                        "is not JSON ({e}); write the filter's configuration as a JSON object in \
                         a quoted string, e.g. '{{\"name\":\"hello\"}}'"
                    ),
                )
            })?;
            (text.clone(), parsed)
        }
        Some(value @ Value::Mapping(_)) => {
            let parsed: serde_json::Value =
                serde_yaml_ng::from_value(value.clone()).map_err(|e| {
                    RenderError::field(FIELD, format!("cannot be turned into JSON: {e}"))
                })?;
            let text = serde_json::to_string(&parsed).map_err(|e| {
                RenderError::field(FIELD, format!("cannot be turned into JSON: {e}"))
            })?;
            (text, parsed)
        }
        Some(other) => {
            return Err(RenderError::field(
                FIELD,
                format!("must be a JSON object in a string, not {}", describe(other)),
            ));
        }
    };
    match parsed {
        serde_json::Value::Object(map) => Ok((Some(text), Some(map))),
        other => Err(RenderError::field(
            FIELD,
            format!(
                "must be a JSON object, not {} (WasmPlugin.pluginConfig is a protobuf Struct)",
                json_kind(&other)
            ),
        )),
    }
}

fn check_dns_subdomain(value: &str, path: &str) -> Result<(), RenderError> {
    if value.is_empty() || value.len() > 253 || !DNS_SUBDOMAIN.is_match(value) {
        return Err(RenderError::field(
            path,
            format!(
                "{value:?} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.', \
                 at most 253, starting and ending with a letter or digit)"
            ),
        ));
    }
    Ok(())
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn mapping<'a>(value: &'a Value, path: &str) -> Result<&'a serde_yaml_ng::Mapping, RenderError> {
    match value {
        Value::Mapping(m) => Ok(m),
        other => Err(RenderError::field(
            if path.is_empty() { "(document)" } else { path },
            format!("must be a mapping, not {}", describe(other)),
        )),
    }
}

fn required<'a>(
    map: &'a serde_yaml_ng::Mapping,
    parent: &str,
    key: &str,
) -> Result<&'a Value, RenderError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(RenderError::field(&join(parent, key), "is missing")),
        Some(v) => Ok(v),
    }
}

fn required_string(
    map: &serde_yaml_ng::Mapping,
    parent: &str,
    key: &str,
) -> Result<String, RenderError> {
    match required(map, parent, key)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(RenderError::field(
            &join(parent, key),
            format!("must be a string, not {}", describe(other)),
        )),
    }
}

fn optional_string(
    map: &serde_yaml_ng::Mapping,
    parent: &str,
    key: &str,
) -> Result<Option<String>, RenderError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(RenderError::field(
            &join(parent, key),
            format!("must be a string, not {}", describe(other)),
        )),
    }
}

/// Typos (`imagePullOption`, `rootId`) would otherwise be dropped without a word.
fn reject_unknown(
    map: &serde_yaml_ng::Mapping,
    parent: &str,
    known: &[&str],
) -> Result<(), RenderError> {
    for key in map.keys() {
        let name = match key {
            Value::String(s) => s.as_str(),
            other => {
                return Err(RenderError::field(
                    if parent.is_empty() {
                        "(document)"
                    } else {
                        parent
                    },
                    format!("has a non-string key {}", describe(other)),
                ));
            }
        };
        if !known.contains(&name) {
            return Err(RenderError::field(
                &join(parent, name),
                format!("is not a known field; expected one of {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

//! One WasmPlugin document (extensions.istio.io/v1alpha1) read into what
//! serve needs. Invalid values are errors naming their path; unknown fields
//! and fields that select workloads are warnings.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::super::bootstrap::node::{Node, Notes, Parsed};

pub(crate) const API_VERSION: &str = "extensions.istio.io/v1alpha1";

/// Where Istio inserts a plugin, in chain order (AUTHN first; a plugin
/// without a phase goes last, just before the router).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Authn,
    Authz,
    Stats,
    Unspecified,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Authn => "AUTHN",
            Phase::Authz => "AUTHZ",
            Phase::Stats => "STATS",
            Phase::Unspecified => "UNSPECIFIED_PHASE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullPolicy {
    IfNotPresent,
    Always,
}

/// Where the module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// `oci://` (or no scheme, Istio's default): a registry reference.
    Oci(String),
    /// `file://` or a plain path to a .wasm file.
    File(String),
}

#[derive(Debug, Clone)]
pub(crate) struct PluginSpec {
    pub name: String,
    pub namespace: String,
    /// metadata.creationTimestamp as written (RFC 3339), Istio's first tie-break.
    pub created: Option<String>,
    pub url: String,
    pub source: Source,
    /// 64 lowercase hex digits, or None.
    pub sha256: Option<String>,
    /// What the document says; the pull applies Istio's default (read only
    /// with the `oci` feature: a module file has no policy).
    #[cfg_attr(not(feature = "oci"), allow(dead_code))]
    pub pull_policy: Option<PullPolicy>,
    pub root_id: String,
    /// pluginConfig as JSON text (empty when absent).
    pub configuration: Vec<u8>,
    pub phase: Phase,
    pub priority: Option<i32>,
    pub fail_open: bool,
    pub reload_on_failure: bool,
    pub env: BTreeMap<String, String>,
    /// Where the document is, for messages (`file[2]`).
    pub place: String,
}

impl PluginSpec {
    /// The plugin's name in Envoy's config as Istio writes it.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// Fields that choose workloads or ports: on one machine every plugin applies.
const SELECTING: [&str; 4] = ["match", "selector", "targetRef", "targetRefs"];

/// Reads one document, or None (with a warning) when it is another kind.
pub(crate) fn document(root: &Node, place: &str, notes: &mut Notes) -> Parsed<Option<PluginSpec>> {
    root.fields(
        &["apiVersion", "kind", "metadata", "spec", "status"],
        &[],
        notes,
    )?;
    let kind = root.need("kind")?.str()?;
    if kind != "WasmPlugin" {
        notes.warn(format!("a {kind}, not a WasmPlugin; skipped"));
        return Ok(None);
    }
    let version = root.need("apiVersion")?;
    if version.str()? != API_VERSION {
        return Err(version.error(&format!(
            "is {}; harness serve reads WasmPlugin {API_VERSION}",
            version.str()?
        )));
    }
    let metadata = root.need("metadata")?;
    metadata.fields(
        &[
            "name",
            "namespace",
            "creationTimestamp",
            "labels",
            "annotations",
        ],
        &[],
        notes,
    )?;
    let name = metadata.need("name")?.str()?.to_string();
    let namespace = metadata
        .str_at("namespace")?
        .unwrap_or("default")
        .to_string();
    let created = metadata.str_at("creationTimestamp")?.map(str::to_string);
    let spec = root.need("spec")?;
    spec.fields(
        &[
            "url",
            "sha256",
            "imagePullPolicy",
            "imagePullSecret",
            "pluginName",
            "pluginConfig",
            "phase",
            "priority",
            "failStrategy",
            "vmConfig",
            "type",
            "match",
            "selector",
            "targetRef",
            "targetRefs",
        ],
        &["verificationKey"],
        notes,
    )?;
    for key in SELECTING {
        if let Some(node) = spec.get(key) {
            notes.warn(format!(
                "{}: selects workloads in a mesh; on one machine every plugin applies to serve's listener",
                node.path
            ));
        }
    }
    if let Some(secret) = spec.get("imagePullSecret") {
        notes.warn(format!(
            "{}: a Kubernetes Secret; on one machine the registry credentials come from the Docker config \
             (~/.docker/config.json, `publish login` writes it)",
            secret.path
        ));
    }
    plugin_type(&spec)?;
    let strategy = fail_strategy(&spec)?;
    let url_node = spec.need("url")?;
    let url = url_node.str()?.to_string();
    let source = source(&url_node, &url)?;
    Ok(Some(PluginSpec {
        name,
        namespace,
        created,
        source,
        sha256: sha256(&spec)?,
        pull_policy: pull_policy(&spec)?,
        root_id: spec.str_at("pluginName")?.unwrap_or_default().to_string(),
        configuration: plugin_config(&spec)?,
        phase: phase(&spec)?,
        priority: priority(&spec)?,
        fail_open: strategy == "FAIL_OPEN",
        reload_on_failure: strategy == "FAIL_RELOAD",
        env: env(&spec, notes)?,
        url,
        place: place.to_string(),
    }))
}

fn source(node: &Node, url: &str) -> Parsed<Source> {
    if let Some(reference) = url.strip_prefix("oci://") {
        return Ok(Source::Oci(reference.to_string()));
    }
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Source::File(path.to_string()));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(node.error(
            "http(s):// modules are not fetched by harness serve; download the module and give its \
             path (file:///path/to/filter.wasm), or push it with `publish push` and use oci://",
        ));
    }
    if url.contains("://") {
        return Err(node.error("must be oci://, file:// or a path to a .wasm file"));
    }
    // Istio reads a URL without a scheme as an OCI reference; a file that
    // exists (or a .wasm name) is taken as a local path for convenience.
    if url.ends_with(".wasm") || std::path::Path::new(url).is_file() {
        Ok(Source::File(url.to_string()))
    } else {
        Ok(Source::Oci(url.to_string()))
    }
}

fn sha256(spec: &Node) -> Parsed<Option<String>> {
    let Some(node) = spec.get("sha256") else {
        return Ok(None);
    };
    let text = node.str()?;
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() != 64
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(node.error(
            "must be 64 lowercase hex digits (for oci:// the manifest digest without `sha256:`, \
             as `publish push` prints it)",
        ));
    }
    Ok(Some(text.to_string()))
}

fn pull_policy(spec: &Node) -> Parsed<Option<PullPolicy>> {
    let Some(node) = spec.get("imagePullPolicy") else {
        return Ok(None);
    };
    match node.str()? {
        "UNSPECIFIED_POLICY" => Ok(None),
        "IfNotPresent" => Ok(Some(PullPolicy::IfNotPresent)),
        "Always" => Ok(Some(PullPolicy::Always)),
        other => Err(node.error(&format!(
            "'{other}' is not one of IfNotPresent, Always, UNSPECIFIED_POLICY"
        ))),
    }
}

/// pluginConfig reaches the plugin as JSON text, as Istio sends it.
fn plugin_config(spec: &Node) -> Parsed<Vec<u8>> {
    let Some(node) = spec.get("pluginConfig") else {
        return Ok(Vec::new());
    };
    let Value::Mapping(_) = node.value else {
        return Err(node.error("must be an object (it reaches the plugin as JSON text)"));
    };
    serde_json::to_vec(node.value)
        .map_err(|e| node.error(&format!("cannot be written as JSON: {e}")))
}

fn phase(spec: &Node) -> Parsed<Phase> {
    let Some(node) = spec.get("phase") else {
        return Ok(Phase::Unspecified);
    };
    match node.str()? {
        "AUTHN" => Ok(Phase::Authn),
        "AUTHZ" => Ok(Phase::Authz),
        "STATS" => Ok(Phase::Stats),
        "UNSPECIFIED_PHASE" => Ok(Phase::Unspecified),
        other => Err(node.error(&format!(
            "'{other}' is not one of AUTHN, AUTHZ, STATS, UNSPECIFIED_PHASE"
        ))),
    }
}

fn priority(spec: &Node) -> Parsed<Option<i32>> {
    let Some(node) = spec.get("priority") else {
        return Ok(None);
    };
    node.value
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            node.error("must be a whole number that fits in 32 bits (higher runs first)")
        })
}

fn fail_strategy(spec: &Node) -> Parsed<&'static str> {
    let Some(node) = spec.get("failStrategy") else {
        return Ok("FAIL_CLOSE");
    };
    match node.str()? {
        "FAIL_CLOSE" => Ok("FAIL_CLOSE"),
        "FAIL_OPEN" => Ok("FAIL_OPEN"),
        "FAIL_RELOAD" => Ok("FAIL_RELOAD"),
        other => Err(node.error(&format!(
            "'{other}' is not one of FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD"
        ))),
    }
}

fn plugin_type(spec: &Node) -> Parsed<()> {
    let Some(node) = spec.get("type") else {
        return Ok(());
    };
    match node.str()? {
        "HTTP" | "UNSPECIFIED_PLUGIN_TYPE" => Ok(()),
        "NETWORK" => Err(node.error(
            "NETWORK plugins are not run by `harness serve --wasmplugin`, whose listener is HTTP; \
             run a network filter with `harness serve -c envoy.yaml` (envoy.filters.network.wasm before tcp_proxy)",
        )),
        other => Err(node.error(&format!("'{other}' is not one of HTTP, NETWORK"))),
    }
}

/// vmConfig.env: inline values, and `valueFrom: HOST` from serve's own environment.
fn env(spec: &Node, notes: &mut Notes) -> Parsed<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    let Some(vm) = spec.get("vmConfig") else {
        return Ok(env);
    };
    vm.fields(&["env"], &[], notes)?;
    for entry in vm.list_at("env")? {
        entry.fields(&["name", "value", "valueFrom"], &[], notes)?;
        let name = entry.need("name")?.str()?;
        if name.is_empty() {
            return Err(entry.error("name must not be empty"));
        }
        let from = entry.str_at("valueFrom")?.unwrap_or("INLINE");
        match from {
            "INLINE" => {
                let value = entry.str_at("value")?.unwrap_or_default();
                env.insert(name.to_string(), value.to_string());
            }
            "HOST" => match std::env::var(name) {
                Ok(value) => {
                    env.insert(name.to_string(), value);
                }
                Err(_) => notes.warn(format!(
                    "{}: '{name}' is not set in serve's environment, so the plugin does not see it",
                    entry.path
                )),
            },
            other => {
                return Err(entry.error(&format!("valueFrom '{other}' is not one of INLINE, HOST")));
            }
        }
    }
    Ok(env)
}

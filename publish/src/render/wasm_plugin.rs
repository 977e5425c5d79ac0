//! The Istio WasmPlugin for the same filter: istio-agent pulls the image itself,
//! so it needs neither the workload patch nor the node agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::envoy_filter::ObjectMeta;
use super::plugin_settings::{
    EnvVar, FailStrategy, PullPolicy, TargetRef, TrafficMatch, TrafficMode,
};
use super::{FilterDeployment, RenderOptions, TrafficContext};

pub const API_VERSION: &str = "extensions.istio.io/v1alpha1";
pub const KIND: &str = "WasmPlugin";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmPlugin {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: WasmPluginSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    /// Left out when targetRefs are given (Istio accepts only one of the two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
    pub url: String,
    /// Manifest digest hex: istio-agent refuses an image whose manifest differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<VmConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    pub fail_strategy: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "match")]
    pub match_: Vec<TrafficMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmConfig {
    pub env: Vec<EnvVar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
}

impl TrafficContext {
    /// WasmPlugin `match.mode`: sidecar inbound listeners are SERVER traffic,
    /// outbound are CLIENT; gateways get none (their proxies have only gateway
    /// listeners anyway).
    pub fn traffic_mode(self) -> Option<TrafficMode> {
        match self {
            TrafficContext::Inbound => Some(TrafficMode::Server),
            TrafficContext::Outbound => Some(TrafficMode::Client),
            TrafficContext::Gateway => None,
        }
    }
}

/// The warning for an image on a registry istio-agent would have to reach over plain HTTP.
pub fn insecure_registry_warning(registry: &str) -> String {
    format!(
        "{registry} is reached over plain HTTP here, but istio-agent pulls oci:// images over HTTPS \
         unless the registry is listed in its WASM_INSECURE_REGISTRIES environment variable \
         (e.g. meshConfig.defaultConfig.proxyMetadata or the proxy.istio.io/config annotation)"
    )
}

/// Integers beyond 2^53 do not survive protobuf Struct (numbers are doubles).
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Renders the WasmPlugin; the second value lists warnings about the result.
pub fn render(
    deployment: &FilterDeployment,
    options: &RenderOptions,
    manifest_digest: Option<&str>,
) -> (WasmPlugin, Vec<String>) {
    let filter = &deployment.filter;
    let mut warnings = Vec::new();
    if let Some(params) = &filter.parameters {
        let mut inexact = Vec::new();
        find_inexact_integers(params, "", &mut inexact);
        for path in inexact {
            warnings.push(format!(
                "WasmPlugin.pluginConfig{path}: integer beyond 2^53 will be rounded (protobuf Struct \
                 numbers are doubles); write it as a string or use the EnvoyFilter, which passes the \
                 parameters text unchanged"
            ));
        }
    }
    let settings = options.settings_for(deployment);
    let match_ = if settings.match_.is_empty() {
        options
            .context
            .traffic_mode()
            .map(|mode| TrafficMatch {
                mode: Some(mode),
                ports: Vec::new(),
            })
            .into_iter()
            .collect()
    } else {
        settings.match_.clone()
    };
    if let Ok(reference) = crate::reference::parse(&filter.image)
        && crate::reference::is_loopback(reference.resolve_registry())
    {
        warnings.push(insecure_registry_warning(reference.resolve_registry()));
    }
    let plugin = WasmPlugin {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: ObjectMeta::of(deployment),
        spec: WasmPluginSpec {
            selector: settings.target_refs.is_empty().then(|| Selector {
                match_labels: deployment.labels.clone(),
            }),
            target_refs: settings.target_refs.clone(),
            url: format!("oci://{}", filter.image),
            sha256: manifest_digest.map(|d| d.trim_start_matches("sha256:").to_string()),
            image_pull_secret: settings
                .image_pull_secret
                .clone()
                .or_else(|| filter.pull_secret.clone()),
            image_pull_policy: settings.image_pull_policy,
            plugin_name: filter.root_id.clone(),
            plugin_config: filter.parameters.clone(),
            vm_config: (!settings.env.is_empty()).then(|| VmConfig {
                env: settings.env.clone(),
            }),
            phase: settings.phase.map(|p| p.as_str().to_string()),
            priority: settings.priority,
            fail_strategy: match settings.fail_strategy.unwrap_or(FailStrategy::FailClose) {
                FailStrategy::FailClose => "FAIL_CLOSE",
                FailStrategy::FailOpen => "FAIL_OPEN",
                FailStrategy::FailReload => "FAIL_RELOAD",
            }
            .into(),
            plugin_type: settings.filter_type.unwrap_or_default().as_str().into(),
            match_,
        },
    };
    (plugin, warnings)
}

fn find_inexact_integers(
    map: &serde_json::Map<String, serde_json::Value>,
    path: &str,
    out: &mut Vec<String>,
) {
    for (key, value) in map {
        check_value(value, &format!("{path}.{key}"), out);
    }
}

fn check_value(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Number(n) => {
            let too_big = n.as_u64().is_some_and(|v| v > MAX_EXACT_INTEGER)
                || n.as_i64()
                    .is_some_and(|v| v.unsigned_abs() > MAX_EXACT_INTEGER);
            if too_big {
                out.push(path.to_string());
            }
        }
        serde_json::Value::Object(map) => find_inexact_integers(map, path, out),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_value(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

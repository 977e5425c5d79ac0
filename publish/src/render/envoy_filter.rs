//! The Istio EnvoyFilter the ASM controller creates: one HTTP_FILTER patch that
//! inserts `envoy.filters.http.wasm` before the router of the HTTP connection
//! manager, loading the module from the file the node agent writes. A network
//! (TCP) filter gets a NETWORK_FILTER patch instead, inserting
//! `envoy.filters.network.wasm` before `envoy.filters.network.tcp_proxy` in the
//! listener's filter chain (the same PluginConfig inside).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plugin_settings::FilterType;
use super::{FilterDeployment, MODULE_DIR, RenderOptions};

pub const API_VERSION: &str = "networking.istio.io/v1alpha3";
pub const KIND: &str = "EnvoyFilter";
pub const HCM: &str = "envoy.filters.network.http_connection_manager";
pub const ROUTER: &str = "envoy.filters.http.router";
pub const WASM_FILTER: &str = "envoy.filters.http.wasm";
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
pub const NETWORK_WASM_FILTER: &str = "envoy.filters.network.wasm";
/// The typed config is the Wasm filter's own proto, not a `udpa.type.v1.TypedStruct`
/// wrapping it. TypedStruct is what 2020-era Istio (1.5 to 1.8) and ASM examples
/// used, when istiod could not decode the Wasm proto; since Istio 1.9 istiod knows
/// the type, so the direct form is what it validates on `kubectl apply` (a typo in
/// a field fails then, not later in Envoy) and it is the same message Istio itself
/// sends Envoy for a WasmPlugin.
pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const NETWORK_WASM_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
pub const STRING_VALUE_TYPE_URL: &str = "type.googleapis.com/google.protobuf.StringValue";
pub const V8_RUNTIME: &str = "envoy.wasm.runtime.v8";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilter {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: EnvoyFilterSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ObjectMeta {
    pub fn of(deployment: &FilterDeployment) -> Self {
        ObjectMeta {
            name: deployment.name.clone(),
            namespace: deployment.namespace.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilterSpec {
    pub workload_selector: WorkloadSelector,
    /// Order among EnvoyFilters in the same context (lower first; Istio's default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    pub config_patches: Vec<ConfigPatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSelector {
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPatch {
    pub apply_to: String,
    #[serde(rename = "match")]
    pub match_: PatchMatch,
    pub patch: Patch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchMatch {
    pub context: String,
    pub listener: ListenerMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerMatch {
    pub filter_chain: FilterChainMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterChainMatch {
    pub filter: FilterMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterMatch {
    pub name: String,
    /// The HTTP filter inside the connection manager; none for a network filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<SubFilterMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubFilterMatch {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    pub operation: String,
    pub value: InsertedFilter,
}

/// Envoy's `HttpFilter`, or a listener's network `Filter` (both `name` and
/// `typed_config`; snake_case: it is Envoy config, not an Istio field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsertedFilter {
    pub name: String,
    pub typed_config: WasmTypedConfig,
}

/// `envoy.extensions.filters.http.wasm.v3.Wasm` (or `...network.wasm.v3.Wasm`,
/// the same single `config` field) as an Any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WasmTypedConfig {
    #[serde(rename = "@type")]
    pub type_url: String,
    pub config: PluginConfig,
}

/// `envoy.extensions.wasm.v3.PluginConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<StringValue>,
    pub vm_config: VmConfig,
    /// Only written with `--fail-open`; Envoy's default is to fail closed. Envoy 1.31
    /// deprecates it for `failure_policy`, but only `fail_open` is understood by every
    /// Envoy an Istio mesh of the article's era or later runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StringValue {
    #[serde(rename = "@type")]
    pub type_url: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmConfig {
    pub runtime: String,
    pub vm_id: String,
    pub code: VmCode,
    /// `envoy.extensions.wasm.v3.EnvironmentVariables`: the same env as the WasmPlugin's vmConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<EnvironmentVariables>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentVariables {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_env_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_values: BTreeMap<String, String>,
}

impl EnvironmentVariables {
    fn from_env(env: &[super::plugin_settings::EnvVar]) -> Option<Self> {
        if env.is_empty() {
            return None;
        }
        let mut vars = EnvironmentVariables {
            host_env_keys: Vec::new(),
            key_values: BTreeMap::new(),
        };
        for var in env {
            match (&var.value_from, &var.value) {
                (Some(from), _) if from == "HOST" => vars.host_env_keys.push(var.name.clone()),
                (_, value) => {
                    vars.key_values
                        .insert(var.name.clone(), value.clone().unwrap_or_default());
                }
            }
        }
        Some(vars)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmCode {
    pub local: LocalFile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalFile {
    pub filename: String,
}

/// The module's path inside the sidecar (the host directory is mounted at the same path).
pub fn module_path(file_name: &str) -> String {
    format!("{MODULE_DIR}/{file_name}")
}

/// Where the patch goes and what it inserts, per filter type.
struct Placement {
    apply_to: &'static str,
    filter_match: FilterMatch,
    name: &'static str,
    type_url: &'static str,
}

impl Placement {
    fn of(filter_type: FilterType) -> Placement {
        match filter_type {
            FilterType::Http => Placement {
                apply_to: "HTTP_FILTER",
                filter_match: FilterMatch {
                    name: HCM.into(),
                    sub_filter: Some(SubFilterMatch {
                        name: ROUTER.into(),
                    }),
                },
                name: WASM_FILTER,
                type_url: WASM_TYPE_URL,
            },
            // tcp_proxy chooses its cluster when iteration reaches it, so a
            // filter routing by filter state must come before it.
            FilterType::Network => Placement {
                apply_to: "NETWORK_FILTER",
                filter_match: FilterMatch {
                    name: TCP_PROXY.into(),
                    sub_filter: None,
                },
                name: NETWORK_WASM_FILTER,
                type_url: NETWORK_WASM_TYPE_URL,
            },
        }
    }
}

pub fn render(deployment: &FilterDeployment, options: &RenderOptions) -> EnvoyFilter {
    let filter = &deployment.filter;
    let settings = options.settings_for(deployment);
    let placement = Placement::of(settings.filter_type.unwrap_or_default());
    let fail_open = settings.fail_strategy == Some(super::plugin_settings::FailStrategy::FailOpen);
    let file_name = super::node_list::file_name_for(&filter.id);
    EnvoyFilter {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: ObjectMeta::of(deployment),
        spec: EnvoyFilterSpec {
            workload_selector: WorkloadSelector {
                labels: deployment.labels.clone(),
            },
            priority: settings.envoy_filter_priority,
            config_patches: vec![ConfigPatch {
                apply_to: placement.apply_to.into(),
                match_: PatchMatch {
                    context: options.context.envoy_filter_context().into(),
                    listener: ListenerMatch {
                        filter_chain: FilterChainMatch {
                            filter: placement.filter_match,
                        },
                    },
                },
                patch: Patch {
                    operation: "INSERT_BEFORE".into(),
                    value: InsertedFilter {
                        name: placement.name.into(),
                        typed_config: WasmTypedConfig {
                            type_url: placement.type_url.into(),
                            config: PluginConfig {
                                name: filter.id.clone(),
                                root_id: filter.root_id.clone(),
                                configuration: filter.parameters_text.as_ref().map(|text| {
                                    StringValue {
                                        type_url: STRING_VALUE_TYPE_URL.into(),
                                        value: text.clone(),
                                    }
                                }),
                                vm_config: VmConfig {
                                    runtime: V8_RUNTIME.into(),
                                    vm_id: filter.id.clone(),
                                    code: VmCode {
                                        local: LocalFile {
                                            filename: module_path(&file_name),
                                        },
                                    },
                                    environment_variables: EnvironmentVariables::from_env(
                                        &settings.env,
                                    ),
                                },
                                fail_open: fail_open.then_some(true),
                            },
                        },
                    },
                },
            }],
        },
    }
}

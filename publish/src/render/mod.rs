//! `publish render`: turns the ASMFilterDeployment resource of Alibaba Cloud
//! Service Mesh into the files a user can apply without the ASM controller:
//!
//! 1. an Istio EnvoyFilter inserting the Wasm filter before the router (a
//!    network filter, `--type network`: before tcp_proxy), loading the module
//!    from the node's `/var/local/lib/wasm-filters`;
//! 2. a strategic-merge patch for the workload's pod template that mounts that
//!    host directory into the sidecar;
//! 3. the list `publish sync` (the node agent) reads to put the modules there;
//! 4. an Istio WasmPlugin, the modern single resource that replaces 1 to 3
//!    (apply either the WasmPlugin or the other three, never both: the filter
//!    would run twice).

pub mod cli;
pub mod core_schema;
pub mod directory;
pub mod envoy_filter;
pub mod input;
pub mod node_agent;
pub mod node_list;
pub mod output;
pub mod plugin_settings;
pub mod schema;
pub mod validate;
pub mod wasm_plugin;
pub mod workload_patch;
pub mod yaml;

use std::collections::BTreeMap;

pub use input::FilterDeployment;

/// Where the node agent writes modules and the sidecar reads them.
pub const MODULE_DIR: &str = "/var/local/lib/wasm-filters";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{field}: {problem}")]
    Field { field: String, problem: String },

    /// Displays the inner error itself (it is not also a `source`, which would
    /// print it twice in an error chain).
    #[error("document {document}: {error}")]
    InDocument {
        document: usize,
        error: Box<RenderError>,
    },

    #[error("document {document} is not valid YAML: {detail}")]
    Yaml { document: usize, detail: String },

    #[error("no ASMFilterDeployment found (the input has no YAML documents)")]
    Empty,

    #[error("{0}")]
    Conflict(String),
}

impl RenderError {
    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        RenderError::Field {
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    fn in_document(self, document: usize) -> Self {
        RenderError::InDocument {
            document,
            error: Box::new(self),
        }
    }

    /// The field an error is about, through the document wrapper.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            RenderError::Field { field, .. } => Some(field),
            RenderError::InDocument { error, .. } => error.field_name(),
            _ => None,
        }
    }
}

/// Which Envoy listeners get the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TrafficContext {
    /// Requests arriving at the workload (the article's case).
    #[default]
    Inbound,
    /// Requests the workload sends.
    Outbound,
    /// An Istio ingress/egress gateway selected by the labels.
    Gateway,
}

impl TrafficContext {
    /// EnvoyFilter `match.context`.
    pub fn envoy_filter_context(self) -> &'static str {
        match self {
            TrafficContext::Inbound => "SIDECAR_INBOUND",
            TrafficContext::Outbound => "SIDECAR_OUTBOUND",
            TrafficContext::Gateway => "GATEWAY",
        }
    }
}

/// WasmPlugin phase (where in the chain Istio inserts it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[value(rename_all = "UPPER")]
#[serde(rename_all = "UPPERCASE")]
pub enum Phase {
    Authn,
    Authz,
    Stats,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Authn => "AUTHN",
            Phase::Authz => "AUTHZ",
            Phase::Stats => "STATS",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderOptions {
    pub context: TrafficContext,
    /// WasmPlugin phase; unset keeps Istio's default (just before the router,
    /// where the EnvoyFilter puts it).
    pub phase: Option<Phase>,
    /// WasmPlugin priority within its phase.
    pub priority: Option<i32>,
    /// Let traffic through when the module cannot be loaded or crashes.
    pub fail_open: bool,
    /// The other WasmPlugin/EnvoyFilter settings given by flag; they win over
    /// the input's `spec.wasmPlugin` block.
    pub plugin: plugin_settings::PluginSettings,
    /// Manifest digests (`sha256:<hex>`) by image reference, from `--resolve`.
    pub digests: BTreeMap<String, String>,
}

impl RenderOptions {
    /// The flag settings for `deployment`, over its `spec.wasmPlugin` block.
    pub fn settings_for(&self, deployment: &FilterDeployment) -> plugin_settings::PluginSettings {
        let mut flags = self.plugin.clone();
        flags.phase = self.phase.or(flags.phase);
        flags.priority = self.priority.or(flags.priority);
        if self.fail_open {
            flags.fail_strategy = Some(plugin_settings::FailStrategy::FailOpen);
        }
        deployment.plugin.overlay(&flags)
    }
}

/// Everything rendered for one ASMFilterDeployment.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedFilter {
    pub source: FilterDeployment,
    pub filter_type: plugin_settings::FilterType,
    pub envoy_filter: envoy_filter::EnvoyFilter,
    pub wasm_plugin: wasm_plugin::WasmPlugin,
    pub module: node_list::ModuleEntry,
}

/// The result for a whole input file.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub filters: Vec<RenderedFilter>,
    /// One patch serves every filter: it mounts the whole module directory.
    pub workload_patch: workload_patch::WorkloadPatch,
    pub node_list: node_list::NodeList,
    /// Things that render but deserve a look (printed on stderr by the CLI).
    pub warnings: Vec<String>,
}

/// Renders every resource for the given deployments.
pub fn render(
    deployments: &[FilterDeployment],
    options: &RenderOptions,
) -> Result<Bundle, RenderError> {
    let mut filters = Vec::new();
    let mut warnings = Vec::new();
    let mut modules: Vec<node_list::ModuleEntry> = Vec::new();
    for deployment in deployments {
        if let Some(previous) = filters.iter().find(|f: &&RenderedFilter| {
            f.source.name == deployment.name && f.source.namespace == deployment.namespace
        }) {
            return Err(RenderError::Conflict(format!(
                "two ASMFilterDeployments are named {:?} (filter ids {:?} and {:?}); their resources would overwrite each other",
                deployment.name, previous.source.filter.id, deployment.filter.id
            )));
        }
        let digest = options
            .digests
            .get(&deployment.filter.image)
            .map(String::as_str);
        let module = node_list::ModuleEntry::for_filter(&deployment.filter, digest);
        if let Some(clash) = modules.iter().find(|m| m.file_name == module.file_name) {
            if clash.image != module.image {
                return Err(RenderError::Conflict(format!(
                    "filter id {:?} is used for two images ({} and {}); each filter needs its own id \
                     because the id names the module file",
                    deployment.filter.id, clash.image, module.image
                )));
            }
        } else {
            modules.push(module.clone());
        }
        let (wasm_plugin, plugin_warnings) = wasm_plugin::render(deployment, options, digest);
        warnings.extend(
            plugin_warnings
                .into_iter()
                .map(|w| format!("{}: {w}", deployment.name)),
        );
        filters.push(RenderedFilter {
            source: deployment.clone(),
            filter_type: options
                .settings_for(deployment)
                .filter_type
                .unwrap_or_default(),
            envoy_filter: envoy_filter::render(deployment, options),
            wasm_plugin,
            module,
        });
    }
    Ok(Bundle {
        filters,
        workload_patch: workload_patch::WorkloadPatch::new(),
        node_list: node_list::NodeList::new(modules),
        warnings,
    })
}

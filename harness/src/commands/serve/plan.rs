//! What `harness serve` runs, however it was configured (the quick flags
//! or an Envoy bootstrap file): listeners, each with its filter chain and
//! route table, the clusters http_calls reach, the admin listener.
//! Everything in a plan is checked and every module compiled, so running
//! it only binds sockets and starts workers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use harness::{ClusterSpec, FilterModule, HarnessConfig, HttpCalloutAnswer, TraceLevel};

use super::access_log::AccessLogs;
use super::http::Upstream;
use super::routes::RouteTable;

pub(crate) struct Plan {
    pub listeners: Vec<ListenerPlan>,
    /// Clusters the filters may http_call, by name.
    pub clusters: Vec<(String, Upstream)>,
    pub admin: Option<SocketAddr>,
    /// The files it was made from (`--watch` reloads when one changes).
    pub watched: Vec<PathBuf>,
}

pub(crate) struct ListenerPlan {
    /// For log lines (`listener <name>`).
    pub name: String,
    pub address: SocketAddr,
    /// The wasm filters in chain order (HTTP filters before the router,
    /// or network filters before tcp_proxy); one [`FilterModule::PassThrough`]
    /// when the connection manager has only the router, or the network
    /// chain only tcp_proxy ([`pass_through`]).
    pub chain: Vec<(FilterModule, HarnessConfig)>,
    /// Where each chain entry came from when a WasmPlugin named it (url,
    /// resolved digests), in chain order; empty otherwise.
    pub origins: Vec<serde_json::Value>,
    pub kind: ListenerKind,
    /// The connection manager's access loggers (none for a TCP listener).
    pub access_log: Arc<AccessLogs>,
}

pub(crate) enum ListenerKind {
    /// An HTTP connection manager: its routes.
    Http(Arc<RouteTable>),
    /// Network filters, then tcp_proxy to this cluster (unless a filter
    /// picks another through `envoy.tcp_proxy.cluster`).
    Tcp { cluster: String },
}

/// A plugin configuration as serve runs it: no trace, and every cluster's
/// callouts held for the real answer, which the worker fetches.
pub(crate) fn served(mut config: HarnessConfig, clusters: &[(String, Upstream)]) -> HarnessConfig {
    config.trace = TraceLevel::Off;
    config.clusters = clusters
        .iter()
        .map(|(name, _)| ClusterSpec {
            name: name.clone(),
            http: vec![HttpCalloutAnswer {
                hold: true,
                ..HttpCalloutAnswer::default()
            }],
            ..ClusterSpec::default()
        })
        .collect();
    config
}

/// The chain of a connection manager or a network filter chain with no
/// wasm filter: one position named `terminal` (the router, tcp_proxy) that
/// continues every stream and connection, so requests still go through the
/// filter manager, the router (timeouts, x-request-id, ...) and the access
/// log, and connections through the network filter manager and tcp_proxy.
/// (Give its configuration to [`served`] like any other's.)
pub(crate) fn pass_through(terminal: &str) -> (FilterModule, HarnessConfig) {
    let mut config = HarnessConfig::default();
    config.plugin.name = terminal.to_string();
    (FilterModule::PassThrough, config)
}

impl ListenerPlan {
    /// The wasm filters of the chain (not a pass-through position).
    pub fn filters(&self) -> impl Iterator<Item = &(FilterModule, HarnessConfig)> {
        self.chain
            .iter()
            .filter(|(module, _)| !matches!(module, FilterModule::PassThrough))
    }

    /// The plugins' names in chain order, for log lines.
    pub fn plugin_names(&self) -> Vec<String> {
        self.filters().map(|(_, c)| c.plugin.name.clone()).collect()
    }
}

/// What `/config_dump` shows of a plan: listeners with their filters
/// (plugin, root id, VM id, configuration, the module's SHA-256) and the
/// clusters.
pub(crate) fn config_dump(
    listeners: &[ListenerPlan],
    clusters: &[(String, Upstream)],
) -> serde_json::Value {
    use serde_json::json;
    let listeners: Vec<_> = listeners
        .iter()
        .map(|l| {
            let filters: Vec<_> = l
                .filters()
                .enumerate()
                .map(|(index, (module, config))| {
                    let p = &config.plugin;
                    let (file, sha256) = match module {
                        harness::FilterModule::Wasm(m) => (m.name().to_string(), Some(m.sha256())),
                        #[cfg(unix)]
                        harness::FilterModule::Native(_) => ("native twin".to_string(), None),
                        harness::FilterModule::PassThrough => ("none".to_string(), None),
                    };
                    let mut filter = json!({
                        "name": p.name, "root_id": p.root_id, "vm_id": p.vm_id,
                        "configuration": String::from_utf8_lossy(&p.configuration.0),
                        "fail_open": p.fail_open,
                        "module": {"file": file, "sha256": sha256},
                    });
                    if let Some(origin) = l.origins.get(index) {
                        filter["wasmplugin"] = origin.clone();
                    }
                    filter
                })
                .collect();
            let kind = match &l.kind {
                ListenerKind::Http(_) => json!("http"),
                ListenerKind::Tcp { cluster } => json!({"tcp_proxy": cluster}),
            };
            json!({"name": l.name, "address": l.address.to_string(), "kind": kind, "filters": filters})
        })
        .collect();
    let clusters: Vec<_> = clusters
        .iter()
        .map(|(name, up)| json!({"name": name, "address": up.authority()}))
        .collect();
    json!({"listeners": listeners, "clusters": clusters})
}

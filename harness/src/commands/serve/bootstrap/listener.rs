//! `static_resources.listeners`: each listener's address and its one
//! filter chain: an HTTP connection manager and the HTTP filters in it,
//! or network wasm filters (none or more) before tcp_proxy.

use std::sync::Arc;

use super::cluster::bind_address;
use super::node::{Node, Notes, Parsed};
use super::route_config::route_config;
use super::wasm::{self, Modules};
use super::{HCM, NETWORK_WASM, ROUTER, TCP_PROXY, WASM, typed_config};
use crate::commands::serve::access_log::AccessLogs;
use crate::commands::serve::http::Upstream;
use crate::commands::serve::plan::{ListenerKind, ListenerPlan};

/// One listener as a plan (its chain compiled, its routes resolved).
pub(crate) fn listener(
    node: &Node,
    clusters: &[(String, Upstream)],
    modules: &mut Modules,
    notes: &mut Notes,
) -> Parsed<ListenerPlan> {
    node.fields(
        &["name", "address", "filter_chains", "default_filter_chain"],
        &[
            "listener_filters",
            "per_connection_buffer_limit_bytes",
            "traffic_direction",
            "socket_options",
            "access_log",
            "enable_reuse_port",
        ],
        notes,
    )?;
    let address = bind_address(&node.need("address")?, notes)?;
    let name = node
        .str_at("name")?
        .map_or_else(|| address.to_string(), str::to_string);
    if node.get("default_filter_chain").is_some() {
        return Err(
            node.error("default_filter_chain is not served; put the chain in filter_chains")
        );
    }
    let chains = node.list_at("filter_chains")?;
    let chain = match chains.as_slice() {
        [one] => one,
        [] => return Err(node.error(&format!("listener '{name}' has no filter_chains"))),
        more => {
            return Err(more[1].error(&format!(
                "listener '{name}' has {} filter chains; harness serve takes one per listener \
                 (filter_chain_match picks by TLS or address, which serve does not see)",
                more.len()
            )));
        }
    };
    chain.fields(
        &["filters", "name", "transport_socket"],
        &["filter_chain_match"],
        notes,
    )?;
    if chain.get("transport_socket").is_some() {
        return Err(chain.error(
            "transport_socket (TLS) is not served; harness serve listens on plain HTTP: remove it",
        ));
    }
    let filters = chain.list_at("filters")?;
    let mut labelled = Vec::new();
    for filter in &filters {
        labelled.push((typed_config(filter, notes)?, filter));
    }
    let kinds: Vec<&str> = labelled.iter().map(|((l, _), _)| l.kind.as_str()).collect();
    let mut access_log = AccessLogs::default();
    let (chain, kind) = match kinds.as_slice() {
        [] => return Err(chain.error("the filter chain has no filters")),
        [HCM] => {
            let ((_, message), _) = &labelled[0];
            let (chain, routes) = connection_manager(message, clusters, modules, notes)?;
            access_log = super::access_log::access_logs(message, notes)?;
            (chain, ListenerKind::Http(Arc::new(routes)))
        }
        [.., TCP_PROXY] => network_chain(&labelled, clusters, modules, notes)?,
        _ => {
            // Name the first filter that does not fit either shape.
            let at = kinds
                .iter()
                .position(|k| *k != NETWORK_WASM && *k != TCP_PROXY)
                .or_else(|| (kinds.len() > 1).then_some(1))
                .unwrap_or(0);
            let ((label, _), filter) = &labelled[at];
            return Err(filter.error(&format!(
                "({}) is not served: harness serve takes one envoy.filters.network.http_connection_manager, \
                 or envoy.filters.network.wasm filters ending with envoy.filters.network.tcp_proxy",
                label.name
            )));
        }
    };
    Ok(ListenerPlan {
        name,
        address,
        chain,
        origins: Vec::new(),
        kind,
        access_log: Arc::new(access_log),
    })
}

type Labelled<'a, 'b> = ((super::Label, Node<'a>), &'b Node<'a>);

/// Network wasm filters, then tcp_proxy (`cluster`).
fn network_chain(
    labelled: &[Labelled],
    clusters: &[(String, Upstream)],
    modules: &mut Modules,
    notes: &mut Notes,
) -> Parsed<(Chain, ListenerKind)> {
    let Some((((_, proxy), _), filters)) = labelled.split_last() else {
        return Err("a network filter chain needs tcp_proxy".to_string());
    };
    let mut chain = Vec::new();
    for ((label, message), filter) in filters {
        if label.kind != NETWORK_WASM {
            return Err(filter.error(&format!(
                "({}) is not served before tcp_proxy: only envoy.filters.network.wasm filters are",
                label.name
            )));
        }
        chain.push(wasm::filter(message, &label.name, modules, notes)?);
    }
    if chain.is_empty() {
        // tcp_proxy alone: connections still go through the network filter
        // manager, and tcp_proxy connects and copies bytes as in Envoy.
        chain.push(super::super::plan::pass_through("tcp_proxy"));
    }
    proxy.fields(
        &["stat_prefix", "cluster", "weighted_clusters"],
        &[
            "idle_timeout",
            "access_log",
            "max_connect_attempts",
            "upstream_idle_timeout",
        ],
        notes,
    )?;
    let Some(name_node) = proxy.get("cluster") else {
        return Err(proxy.error("give tcp_proxy a cluster (weighted_clusters is not served yet)"));
    };
    let cluster = name_node.str()?.to_string();
    if !clusters.iter().any(|(n, _)| *n == cluster) {
        return Err(name_node.error(&format!(
            "no cluster named '{cluster}' in static_resources.clusters; add it or fix the name"
        )));
    }
    Ok((chain, ListenerKind::Tcp { cluster }))
}

type Chain = Vec<(harness::FilterModule, harness::HarnessConfig)>;

fn connection_manager(
    hcm: &Node,
    clusters: &[(String, Upstream)],
    modules: &mut Modules,
    notes: &mut Notes,
) -> Parsed<(Chain, crate::commands::serve::routes::RouteTable)> {
    hcm.fields(
        &[
            "stat_prefix",
            "route_config",
            "http_filters",
            "codec_type",
            "rds",
            "scoped_routes",
            "stream_idle_timeout",
            "access_log",
        ],
        &[
            "use_remote_address",
            "xff_num_trusted_hops",
            "generate_request_id",
            "server_name",
            "normalize_path",
            "merge_slashes",
            "common_http_protocol_options",
            "http_protocol_options",
            "http2_protocol_options",
            "request_timeout",
            "tracing",
            "upgrade_configs",
            "internal_address_config",
            "path_with_escaped_slashes_action",
        ],
        notes,
    )?;
    if hcm.get("rds").is_some() || hcm.get("scoped_routes").is_some() {
        return Err(hcm.error("rds needs a control plane; give the routes inline in route_config"));
    }
    let routes = route_config(&hcm.need("route_config")?, clusters, notes)?;
    let filters = hcm.list_at("http_filters")?;
    let mut chain = Vec::new();
    for (index, filter) in filters.iter().enumerate() {
        let (label, message) = typed_config(filter, notes)?;
        let is_last = index + 1 == filters.len();
        match label.kind.as_str() {
            WASM => chain.push(wasm::filter(&message, &label.name, modules, notes)?),
            ROUTER if is_last && message.value.is_null() => {}
            ROUTER if is_last => message.fields(
                &[],
                &[
                    "dynamic_stats",
                    "start_child_span",
                    "upstream_log",
                    "suppress_envoy_headers",
                ],
                notes,
            )?,
            ROUTER => {
                return Err(filter.error(
                    "(envoy.filters.http.router) must be the last HTTP filter: filters after it never run",
                ));
            }
            _ => {
                return Err(filter.error(&format!(
                    "({}) is not served: harness serve runs envoy.filters.http.wasm filters and the router; \
                     remove this filter (or run the behaviour in a wasm filter)",
                    label.name
                )));
            }
        }
    }
    match filters
        .last()
        .map(|f| typed_config(f, &mut Notes::default()))
    {
        Some(Ok((label, _))) if label.kind == ROUTER => {}
        _ => {
            return Err(hcm.error(
                "http_filters must end with envoy.filters.http.router (typed_config @type \
                 type.googleapis.com/envoy.extensions.filters.http.router.v3.Router)",
            ));
        }
    }
    if chain.is_empty() {
        // The router alone: streams still go through the filter manager.
        chain.push(super::super::plan::pass_through("router"));
    }
    // The connection manager's, so every filter of its chain carries it
    // (the library reads it from the chain's first).
    if let Some(idle) = hcm.get("stream_idle_timeout") {
        let ms = idle.duration_ms()?;
        for (_, config) in &mut chain {
            config.stream_idle_timeout_ms = ms;
        }
    }
    Ok((chain, routes))
}

//! `static_resources.listeners`: each listener's address, its one filter
//! chain (an HTTP connection manager) and the HTTP filters in it.

use std::sync::Arc;

use super::cluster::bind_address;
use super::node::{Node, Notes, Parsed};
use super::route_config::route_config;
use super::wasm::{self, Modules};
use super::{HCM, ROUTER, WASM, typed_config};
use crate::commands::serve::http::Upstream;
use crate::commands::serve::plan::ListenerPlan;

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
    let Some(first) = filters.first() else {
        return Err(chain.error("the filter chain has no filters"));
    };
    // A network filter serve cannot run is named first, wherever it is.
    for filter in &filters {
        let (label, _) = typed_config(filter, notes)?;
        if label.kind != HCM {
            let why = if label.kind.contains("network.wasm") || label.kind.contains("tcp_proxy") {
                "harness serve has no TCP listener yet (`harness run --tcp` runs a network filter on one connection)"
            } else {
                "harness serve takes an HTTP listener: one envoy.filters.network.http_connection_manager"
            };
            return Err(filter.error(&format!("({}) is not served: {why}", label.name)));
        }
    }
    if let Some(second) = filters.get(1) {
        return Err(second
            .error("the http_connection_manager must be the only network filter of its chain"));
    }
    let (_, message) = typed_config(first, notes)?;
    let (chain, routes) = connection_manager(&message, clusters, modules, notes)?;
    Ok(ListenerPlan {
        name,
        address,
        chain,
        routes: Arc::new(routes),
    })
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
        ],
        &[
            "access_log",
            "use_remote_address",
            "xff_num_trusted_hops",
            "generate_request_id",
            "server_name",
            "normalize_path",
            "merge_slashes",
            "common_http_protocol_options",
            "http_protocol_options",
            "http2_protocol_options",
            "stream_idle_timeout",
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
        return Err(hcm.error(
            "http_filters has no envoy.filters.http.wasm filter; harness serve serves wasm filters",
        ));
    }
    Ok((chain, routes))
}

//! `static_resources.clusters` and the socket addresses listeners, the
//! admin and endpoints are written with.

use std::net::{IpAddr, SocketAddr};

use super::node::{Node, Notes, Parsed};
use crate::commands::serve::http::Upstream;

/// `socket_address {address, port_value}`: a host (name or IP) and a port.
pub(crate) fn socket_address(node: &Node, notes: &mut Notes) -> Parsed<(String, u16)> {
    node.fields(
        &["address", "port_value", "protocol", "named_port"],
        &["ipv4_compat", "resolver_name"],
        notes,
    )?;
    if let Some(protocol) = node.str_at("protocol")?
        && protocol != "TCP"
    {
        return Err(node.error(&format!(
            "protocol {protocol} is not served; harness serve listens on TCP only"
        )));
    }
    if node.get("named_port").is_some() {
        return Err(node.error("named_port is not supported; give port_value"));
    }
    let host = node.need("address")?.str()?.to_string();
    let port_node = node.need("port_value")?;
    let port = u16::try_from(port_node.u64()?)
        .map_err(|_| port_node.error("must be a port number, 0 to 65535"))?;
    Ok((host, port))
}

/// An `address` that must be an IP address to bind (a listener, the admin).
pub(crate) fn bind_address(node: &Node, notes: &mut Notes) -> Parsed<SocketAddr> {
    node.fields(&["socket_address"], &[], notes)?;
    let socket = node.need("socket_address")?;
    let (host, port) = socket_address(&socket, notes)?;
    let ip: IpAddr = host.parse().map_err(|_| {
        socket.error(&format!(
            "address '{host}' must be an IP address to listen on, such as 127.0.0.1 or 0.0.0.0"
        ))
    })?;
    Ok(SocketAddr::new(ip, port))
}

/// `admin`: only its address matters to serve.
pub(crate) fn admin(node: &Node, notes: &mut Notes) -> Parsed<SocketAddr> {
    node.fields(
        &["address"],
        &[
            "access_log",
            "access_log_path",
            "profile_path",
            "socket_options",
        ],
        notes,
    )?;
    bind_address(&node.need("address")?, notes)
}

/// One cluster: its name and the endpoint requests to it go to (the
/// first endpoint: serve does not balance load).
pub(crate) fn cluster(node: &Node, notes: &mut Notes) -> Parsed<(String, Upstream)> {
    node.fields(
        &[
            "name",
            "type",
            "load_assignment",
            "connect_timeout",
            "transport_socket",
        ],
        &[
            "lb_policy",
            "dns_lookup_family",
            "dns_refresh_rate",
            "respect_dns_ttl",
            "http2_protocol_options",
            "typed_extension_protocol_options",
            "circuit_breakers",
            "outlier_detection",
            "health_checks",
            "common_lb_config",
            "upstream_connection_options",
        ],
        notes,
    )?;
    let name = node.need("name")?.str()?.to_string();
    let kind = node.str_at("type")?.unwrap_or("STATIC");
    if !matches!(kind, "STATIC" | "STRICT_DNS" | "LOGICAL_DNS") {
        return Err(node.error(&format!(
            "cluster '{name}' has type {kind}; harness serve takes STATIC, STRICT_DNS and LOGICAL_DNS clusters with a load_assignment"
        )));
    }
    if node.get("transport_socket").is_some() {
        return Err(node.error(&format!(
            "cluster '{name}' has a transport_socket (TLS); harness serve reaches plain-HTTP upstreams only: remove it and point the cluster at a plain-HTTP port"
        )));
    }
    let assignment = node.need("load_assignment")?;
    assignment.fields(&["cluster_name", "endpoints"], &["policy"], notes)?;
    let mut endpoints = Vec::new();
    for locality in assignment.list_at("endpoints")? {
        locality.fields(
            &["lb_endpoints"],
            &["locality", "load_balancing_weight", "priority"],
            notes,
        )?;
        for lb in locality.list_at("lb_endpoints")? {
            lb.fields(
                &["endpoint"],
                &["health_status", "load_balancing_weight", "metadata"],
                notes,
            )?;
            let endpoint = lb.need("endpoint")?;
            endpoint.fields(&["address"], &["health_check_config", "hostname"], notes)?;
            let address = endpoint.need("address")?;
            address.fields(&["socket_address"], &[], notes)?;
            let socket = address.need("socket_address")?;
            endpoints.push((socket_address(&socket, notes)?, socket));
        }
    }
    let Some(((host, port), at)) = endpoints.first() else {
        return Err(assignment.error(&format!(
            "cluster '{name}' has no endpoint; add endpoints[].lb_endpoints[].endpoint.address.socket_address"
        )));
    };
    if kind == "STATIC" && host.parse::<IpAddr>().is_err() {
        return Err(at.error(&format!(
            "a STATIC cluster's address must be an IP address, not '{host}' (use type: STRICT_DNS for a host name)"
        )));
    }
    if endpoints.len() > 1 {
        notes.warn(format!(
            "{}: cluster '{name}' has {} endpoints; harness serve sends everything to the first, {host}:{port}",
            assignment.path,
            endpoints.len()
        ));
    }
    let authority = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    Ok((name, Upstream::at(authority)))
}

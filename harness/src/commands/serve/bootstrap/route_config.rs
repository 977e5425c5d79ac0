//! `route_config`: virtual hosts and their routes, checked against the
//! clusters (an unknown cluster is refused when the file loads, as
//! Envoy's `validate_clusters` does for routes given inline).

use super::node::{Node, Notes, Parsed};
use crate::commands::serve::http::Upstream;
use crate::commands::serve::routes::{
    Action, DEFAULT_TIMEOUT_MS, Forward, HeaderMatch, HeaderRule, PathMatch, Route, RouteTable,
    VirtualHost,
};

pub(crate) fn route_config(
    node: &Node,
    clusters: &[(String, Upstream)],
    notes: &mut Notes,
) -> Parsed<RouteTable> {
    node.fields(
        &["name", "virtual_hosts", "validate_clusters"],
        &[
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "internal_only_headers",
        ],
        notes,
    )?;
    let mut table = RouteTable::default();
    for host in node.list_at("virtual_hosts")? {
        host.fields(
            &["name", "domains", "routes"],
            &[
                "require_tls",
                "cors",
                "typed_per_filter_config",
                "retry_policy",
                "request_headers_to_add",
                "response_headers_to_add",
            ],
            notes,
        )?;
        let mut domains = Vec::new();
        for domain in host.list_at("domains")? {
            domains.push(domain.str()?.to_ascii_lowercase());
        }
        if domains.is_empty() {
            return Err(host.error("a virtual host needs domains (\"*\" for any host)"));
        }
        let routes = host
            .list_at("routes")?
            .iter()
            .map(|r| route(r, clusters, notes))
            .collect::<Parsed<Vec<_>>>()?;
        table.virtual_hosts.push(VirtualHost { domains, routes });
    }
    Ok(table)
}

fn route(node: &Node, clusters: &[(String, Upstream)], notes: &mut Notes) -> Parsed<Route> {
    node.fields(
        &["name", "match", "route", "direct_response", "redirect"],
        &[
            "typed_per_filter_config",
            "decorator",
            "metadata",
            "request_headers_to_add",
            "response_headers_to_add",
        ],
        notes,
    )?;
    let matcher = node.need("match")?;
    let unserved = [
        "path_separated_prefix",
        "path_match_policy",
        "query_parameters",
        "grpc",
        "runtime_fraction",
        "dynamic_metadata",
        "tls_context",
    ];
    let mut known = vec!["prefix", "path", "safe_regex", "headers", "case_sensitive"];
    known.extend(unserved);
    matcher.fields(&known, &[], notes)?;
    if let Some(key) = unserved.iter().find(|k| matcher.get(k).is_some()) {
        return Err(matcher.error(&format!(
            "match.{key} is not served yet; match on prefix, path and headers"
        )));
    }
    let regex = matcher.get("safe_regex");
    let path = match (matcher.str_at("prefix")?, matcher.str_at("path")?, regex) {
        (Some(prefix), None, None) => PathMatch::Prefix(prefix.to_string()),
        (None, Some(path), None) => PathMatch::Exact(path.to_string()),
        (None, None, Some(regex)) => PathMatch::Regex(safe_regex(&regex, notes)?),
        _ => return Err(matcher.error("give exactly one of prefix, path or safe_regex")),
    };
    let case_sensitive = matcher
        .get("case_sensitive")
        .map_or(Ok(true), |n| n.bool())?;
    let headers = matcher
        .list_at("headers")?
        .iter()
        .map(|h| header_match(h, notes))
        .collect::<Parsed<Vec<_>>>()?;
    let action = match (node.get("route"), node.get("direct_response")) {
        (Some(forward), None) => Action::Forward(route_action(&forward, clusters, notes)?),
        (None, Some(direct)) => {
            direct.fields(&["status", "body"], &[], notes)?;
            let status_node = direct.need("status")?;
            let status = u16::try_from(status_node.u64()?)
                .ok()
                .filter(|s| (200..600).contains(s))
                .ok_or_else(|| status_node.error("must be an HTTP status, 200 to 599"))?;
            let body = match direct.get("body") {
                Some(body) => {
                    body.fields(&["inline_string"], &[], notes)?;
                    body.need("inline_string")?.str()?.as_bytes().to_vec()
                }
                None => Vec::new(),
            };
            Action::Direct { status, body }
        }
        _ => {
            return Err(node.error(
                "a route needs exactly one of route (with cluster) or direct_response \
                 (redirect is not served yet)",
            ));
        }
    };
    Ok(Route {
        name: node.str_at("name")?.map(str::to_string),
        path,
        case_sensitive,
        headers,
        action,
    })
}

fn route_action(
    node: &Node,
    clusters: &[(String, Upstream)],
    notes: &mut Notes,
) -> Parsed<Forward> {
    node.fields(
        &[
            "cluster",
            "timeout",
            "prefix_rewrite",
            "weighted_clusters",
            "cluster_header",
        ],
        &[
            "retry_policy",
            "idle_timeout",
            "host_rewrite_literal",
            "auto_host_rewrite",
            "hash_policy",
            "max_stream_duration",
        ],
        notes,
    )?;
    let Some(name_node) = node.get("cluster") else {
        return Err(node.error(
            "give route.cluster (weighted_clusters and cluster_header are not served yet)",
        ));
    };
    let name = name_node.str()?;
    let upstream = clusters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, u)| u.clone())
        .ok_or_else(|| {
            name_node.error(&format!(
                "no cluster named '{name}' in static_resources.clusters; add it or fix the name"
            ))
        })?;
    let timeout_ms = node
        .get("timeout")
        .map_or(Ok(DEFAULT_TIMEOUT_MS), |t| t.duration_ms())?;
    Ok(Forward {
        cluster: Some(name.to_string()),
        upstream,
        timeout_ms,
        prefix_rewrite: node.str_at("prefix_rewrite")?.map(str::to_string),
    })
}

/// A `headers` matcher: the legacy fields (`exact_match`, `prefix_match`,
/// ...) and `string_match`.
fn header_match(node: &Node, notes: &mut Notes) -> Parsed<HeaderMatch> {
    let legacy = [
        "exact_match",
        "prefix_match",
        "suffix_match",
        "contains_match",
        "safe_regex_match",
    ];
    let mut known = vec!["name", "invert_match", "present_match", "string_match"];
    known.extend(legacy);
    node.fields(&known, &[], notes)?;
    let name = node.need("name")?.str()?.to_ascii_lowercase();
    let text = |key: &str| -> Parsed<Option<String>> { Ok(node.str_at(key)?.map(str::to_string)) };
    let mut rules = Vec::new();
    for (key, make) in [
        ("exact_match", HeaderRule::Exact as fn(String) -> HeaderRule),
        ("prefix_match", HeaderRule::Prefix),
        ("suffix_match", HeaderRule::Suffix),
        ("contains_match", HeaderRule::Contains),
    ] {
        if let Some(value) = text(key)? {
            rules.push(make(value));
        }
    }
    if let Some(regex) = node.get("safe_regex_match") {
        rules.push(HeaderRule::Regex(safe_regex(&regex, notes)?));
    }
    if let Some(present) = node.get("present_match") {
        rules.push(HeaderRule::Present(present.bool()?));
    }
    if let Some(matcher) = node.get("string_match") {
        rules.push(string_match(&matcher, notes)?);
    }
    let rule = match rules.len() {
        0 => HeaderRule::Present(true),
        1 => rules.remove(0),
        _ => return Err(node.error("give one way to match the header, not several")),
    };
    let invert = node.get("invert_match").map_or(Ok(false), |n| n.bool())?;
    Ok(HeaderMatch { name, rule, invert })
}

/// `string_match` (envoy.type.matcher.v3.StringMatcher).
fn string_match(node: &Node, notes: &mut Notes) -> Parsed<HeaderRule> {
    node.fields(
        &["exact", "prefix", "suffix", "contains", "safe_regex"],
        &["ignore_case"],
        notes,
    )?;
    if let Some(regex) = node.get("safe_regex") {
        return Ok(HeaderRule::Regex(safe_regex(&regex, notes)?));
    }
    for (key, make) in [
        ("exact", HeaderRule::Exact as fn(String) -> HeaderRule),
        ("prefix", HeaderRule::Prefix),
        ("suffix", HeaderRule::Suffix),
        ("contains", HeaderRule::Contains),
    ] {
        if let Some(value) = node.str_at(key)? {
            return Ok(make(value.to_string()));
        }
    }
    Err(node.error("give exact, prefix, suffix, contains or safe_regex"))
}

/// A RegexMatcher (`{regex}`), which must match the whole text, as
/// Envoy's RE2 matchers do.
fn safe_regex(node: &Node, notes: &mut Notes) -> Parsed<regex::Regex> {
    node.fields(&["regex"], &["google_re2"], notes)?;
    let pattern = node.need("regex")?;
    let text = pattern.str()?;
    regex::Regex::new(&format!("^(?:{text})$")).map_err(|e| {
        pattern.error(&format!(
            "'{text}' is not a regular expression serve can use (RE2 syntax): {e}"
        ))
    })
}

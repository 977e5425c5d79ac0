//! `harness serve -c envoy.yaml`: the part of Envoy's static bootstrap
//! (envoy.config.bootstrap.v3.Bootstrap) that filter READMEs ship, read
//! into a [`Plan`]. YAML or JSON. Everything is checked and every module
//! compiled here, before serve binds a socket; what serve cannot do is
//! an error naming the place in the file, unknown fields a warning.

mod access_log;
mod cluster;
mod listener;
// The WasmPlugin reader walks its YAML with the same paths and notes.
pub(crate) mod node;
mod route_config;
#[cfg(test)]
mod tests;
mod wasm;

use std::path::Path;

use serde_yaml_ng::Value;

use harness::HarnessError;

use super::plan::{Plan, served};
use node::{Node, Notes, Parsed};

pub(crate) const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub(crate) const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub(crate) const NETWORK_WASM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
pub(crate) const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
pub(crate) const ROUTER: &str =
    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
/// A field that is absent, for a TypedStruct without `value`.
static ABSENT: Value = Value::Null;

const TYPED_STRUCTS: [&str; 2] = [
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];

/// Reads and checks the bootstrap file; its warnings are printed.
pub(crate) fn load(path: &Path) -> Result<Plan, HarnessError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::Usage(format!("cannot read the bootstrap file {shown}: {e}")))?;
    let mut notes = Notes::default();
    let planned = parse(&text, &mut notes);
    for warning in &notes.warnings {
        eprintln!("harness serve: warning: {shown}: {warning}");
    }
    let mut plan = planned.map_err(|e| {
        HarnessError::Usage(format!(
            "{shown}: {e}\n(nothing was started; fix the file and run serve again)"
        ))
    })?;
    plan.watched.insert(0, path.to_path_buf());
    Ok(plan)
}

/// The file's text (YAML, of which JSON is a subset) as a plan.
pub(crate) fn parse(text: &str, notes: &mut Notes) -> Parsed<Plan> {
    let mut value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("is not valid YAML or JSON: {e}"))?;
    value
        .apply_merge()
        .map_err(|e| format!("has a YAML merge (<<) that does not apply: {e}"))?;
    let root = Node::root(&value);
    root.fields(
        &["static_resources", "admin", "dynamic_resources"],
        &[
            "node",
            "layered_runtime",
            "stats_config",
            "stats_sinks",
            "stats_flush_interval",
            "cluster_manager",
            "watchdogs",
            "overload_manager",
            "bootstrap_extensions",
        ],
        notes,
    )?;
    if root.get("dynamic_resources").is_some() {
        return Err(root.error(
            "dynamic_resources (xDS) needs a control plane; harness serve reads static_resources only",
        ));
    }
    let statics = root.need("static_resources")?;
    statics.fields(&["listeners", "clusters"], &["secrets"], notes)?;
    let clusters = statics
        .list_at("clusters")?
        .iter()
        .map(|c| cluster::cluster(c, notes))
        .collect::<Parsed<Vec<_>>>()?;
    for (i, (name, _)) in clusters.iter().enumerate() {
        if clusters[..i].iter().any(|(n, _)| n == name) {
            return Err(statics.error(&format!("two clusters are named '{name}'")));
        }
    }
    let mut modules = wasm::Modules::default();
    let mut listeners = Vec::new();
    for node in statics.list_at("listeners")? {
        let mut plan = listener::listener(&node, &clusters, &mut modules, notes)?;
        if listeners
            .iter()
            .any(|l: &super::plan::ListenerPlan| l.name == plan.name)
        {
            return Err(node.error(&format!(
                "a second listener named '{}'; listener names must differ",
                plan.name
            )));
        }
        plan.chain = plan
            .chain
            .into_iter()
            .map(|(module, config)| (module, served(config, &clusters)))
            .collect();
        listeners.push(plan);
    }
    if listeners.is_empty() {
        return Err(statics.error("has no listeners; add static_resources.listeners"));
    }
    let admin = root
        .get("admin")
        .map(|a| cluster::admin(&a, notes))
        .transpose()?;
    Ok(Plan {
        listeners,
        clusters,
        admin,
        watched: modules.files(),
    })
}

/// What a filter entry is: its `name`, and the `@type` of its
/// typed_config (a TypedStruct unwrapped to its `type_url` and `value`).
pub(crate) struct Label {
    pub name: String,
    pub kind: String,
}

/// A filter entry (`name`, `typed_config`) as its label and its message.
pub(crate) fn typed_config<'a>(filter: &Node<'a>, notes: &mut Notes) -> Parsed<(Label, Node<'a>)> {
    filter.fields(
        &["name", "typed_config", "disabled"],
        &["is_optional"],
        notes,
    )?;
    let name = filter.str_at("name")?.unwrap_or_default().to_string();
    if let Some(disabled) = filter.get("disabled")
        && disabled.bool()?
    {
        return Err(filter.error(&format!(
            "({name}) is disabled, to be enabled per route, which harness serve does not do; \
             remove the filter or `disabled: true`"
        )));
    }
    let Some(typed) = filter.get("typed_config") else {
        // Filters written by name only: Envoy still knows these two.
        let kind = match name.as_str() {
            "envoy.filters.http.router" => ROUTER,
            "envoy.filters.network.http_connection_manager" => HCM,
            "envoy.filters.network.tcp_proxy" => TCP_PROXY,
            _ => {
                return Err(filter.error(&format!(
                    "({name}) has no typed_config; give its typed_config with an @type"
                )));
            }
        };
        let empty = Node {
            value: &ABSENT,
            path: format!("{}.typed_config", filter.path),
        };
        return Ok((label(name, kind), empty));
    };
    let kind = typed.need("@type")?.str()?;
    if TYPED_STRUCTS.contains(&kind) {
        typed.fields(&["@type", "type_url", "value"], &[], notes)?;
        let inner = typed.need("type_url")?.str()?;
        let value = typed.get("value").unwrap_or_else(|| Node {
            value: &ABSENT,
            path: format!("{}.value", typed.path),
        });
        return Ok((label(name, inner), value));
    }
    Ok((label(name, kind), typed))
}

fn label(name: String, kind: &str) -> Label {
    let name = if name.is_empty() {
        kind.rsplit('/').next().unwrap_or(kind).to_string()
    } else {
        name
    };
    Label {
        name,
        kind: kind.to_string(),
    }
}

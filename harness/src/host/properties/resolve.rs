//! Which source answers a property path, in the order current Envoy tries
//! them (`source/extensions/common/wasm/context.cc`, `Context::findValue`):
//!
//! 1. the CEL attributes of `StreamActivation::FindValue`
//!    (`source/extensions/filters/common/expr/evaluator.cc`): `xds` always
//!    (only `xds.node` without stream info), `request`, `response`,
//!    `connection`, `upstream`, `source`, `destination`, `metadata`,
//!    `filter_state`, `upstream_filter_state` only with stream info;
//! 2. the Wasm tokens `plugin_name`, `plugin_root_id`, `plugin_vm_id` and
//!    `connection_id` (the last needs a connection);
//! 3. any other top-level name is the filter state object `wasm.<name>`
//!    that `proxy_set_property` stores (`Context::setProperty`).
//!
//! A root context has no stream info, so everything but `xds.node` and the
//! `plugin_*` names is NOT_FOUND there. Built-in attributes come first, so a
//! filter cannot shadow `request.path` by setting a property.

use super::{PropertyStore, StreamFacts, derived};

/// `proxy_set_property` stores its value as filter state under this prefix
/// plus the raw path (Envoy's `CelStateKeyPrefix`).
pub(crate) const FILTER_STATE_PREFIX: &[u8] = b"wasm.";

/// Attributes that need stream info (`StreamActivation::FindValue`).
const STREAM_ATTRIBUTES: &[&[u8]] = &[
    b"request",
    b"response",
    b"connection",
    b"upstream",
    b"source",
    b"destination",
    b"metadata",
    b"filter_state",
    b"upstream_filter_state",
];

/// The fields Envoy's `XDSWrapper` serves; only `node` without stream info.
const XDS_FIELDS: &[&[u8]] = &[
    b"node",
    b"cluster_name",
    b"cluster_metadata",
    b"route_name",
    b"route_metadata",
    b"virtual_host_name",
    b"virtual_host_metadata",
    b"upstream_host_metadata",
    b"filter_chain_name",
    b"listener_metadata",
    b"listener_direction",
];

/// Top-level names older Envoy served that now live under `xds.` only.
const MOVED_TO_XDS: &[&[u8]] = &[
    b"node",
    b"cluster_name",
    b"cluster_metadata",
    b"route_name",
    b"route_metadata",
    b"listener_direction",
    b"listener_metadata",
    b"upstream_host_metadata",
];

const PLUGIN_TOKENS: &[&[u8]] = &[b"plugin_name", b"plugin_root_id", b"plugin_vm_id"];

/// Where a lookup may look.
pub(crate) struct Sources<'a> {
    /// The plugin's properties: the defaults and `HarnessConfig::properties`.
    pub plugin: &'a PropertyStore,
    /// The stream whose info Envoy would use; `None` in a root context.
    pub stream: Option<StreamSources<'a>>,
}

/// A stream's own property sources.
pub(crate) struct StreamSources<'a> {
    /// `Exchange::properties` for this stream.
    pub exchange: &'a PropertyStore,
    /// What the filter stored with `proxy_set_property`, by filter-state key.
    pub filter_state: Option<&'a PropertyStore>,
    /// What the stream itself tells (`request.*`, `response.*`).
    pub facts: StreamFacts<'a>,
}

/// The answer to a lookup.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The value is in the output buffer.
    Value,
    /// NOT_FOUND.
    Missing,
    /// NOT_FOUND, and the filter likely meant something else: warn once
    /// per plugin under `key`.
    Hint { key: String, message: String },
}

fn found(ok: bool) -> Found {
    if ok { Found::Value } else { Found::Missing }
}

/// A filter-state value answers only its own path: Envoy's default
/// `CelState` is bytes, which have no fields below them.
fn filter_state_value(value: &[u8], deeper: bool, out: &mut Vec<u8>) -> Found {
    if deeper {
        return Found::Missing;
    }
    out.clear();
    out.extend_from_slice(value);
    Found::Value
}

/// Resolves `path` (segments joined by NUL) into `out`.
pub(crate) fn find(path: &[u8], src: &Sources<'_>, out: &mut Vec<u8>) -> Found {
    let mut segs = path.split(|b| *b == 0);
    let top = segs.next().unwrap_or_default();
    let second = segs.next();
    let deeper = segs.next().is_some();
    let stream = src.stream.as_ref();
    let caller = |out: &mut Vec<u8>| {
        stream.is_some_and(|s| s.exchange.lookup(path, out)) || src.plugin.lookup(path, out)
    };

    if top == b"xds" {
        let Some(field) = second else {
            return Found::Missing;
        };
        let served = XDS_FIELDS.contains(&field) && (field == b"node" || stream.is_some());
        return found(served && caller(out));
    }
    if STREAM_ATTRIBUTES.contains(&top) {
        let Some(s) = stream else {
            return Found::Missing;
        };
        if top == b"filter_state"
            && let Some(key) = second
            && let Some(value) = s.filter_state.and_then(|state| state.exact(key))
        {
            return filter_state_value(value, deeper, out);
        }
        return found(caller(out) || derived(path, &s.facts, out));
    }
    if PLUGIN_TOKENS.contains(&top) {
        return found(second.is_none() && src.plugin.lookup(path, out));
    }
    if top == b"connection_id" {
        let id = b"connection\0id";
        return found(
            second.is_none()
                && stream.is_some_and(|s| s.exchange.lookup(id, out) || src.plugin.lookup(id, out)),
        );
    }
    if let Some(s) = stream
        && let Some(value) = s
            .filter_state
            .and_then(|state| state.exact(&filter_state_key(top)))
    {
        return filter_state_value(value, second.is_some(), out);
    }
    let name = String::from_utf8_lossy(top);
    if MOVED_TO_XDS.contains(&top) {
        return Found::Hint {
            key: format!("moved:{name}"),
            message: format!(
                "property `{name}` is NOT_FOUND: current Envoy serves it only as \
                 `xds.{name}` (get_property([\"xds\", \"{name}\", ...])); the top-level \
                 name is looked up as filter state `wasm.{name}`, which nothing set"
            ),
        };
    }
    if caller(out) {
        return Found::Hint {
            key: format!("unserved:{name}"),
            message: format!(
                "property `{name}` is NOT_FOUND although the harness configuration sets it: \
                 Envoy serves no attribute of that name, only filter state `wasm.{name}`; \
                 configure it as [filter_state, wasm.{name}] or use one of Envoy's attributes"
            ),
        };
    }
    Found::Missing
}

/// The filter-state key `proxy_set_property(path)` writes (Envoy's
/// `Context::setProperty`: the prefix plus the raw path, NULs and all).
pub(crate) fn filter_state_key(path: &[u8]) -> Vec<u8> {
    [FILTER_STATE_PREFIX, path].concat()
}

/// A warning for a `proxy_set_property` whose value no `proxy_get_property`
/// path can reach: Envoy keys filter state by the whole raw path, but reads
/// only `wasm.<first segment>`.
pub(crate) fn unreachable_set(path: &[u8]) -> Option<(String, String)> {
    if !path.contains(&0) {
        return None;
    }
    let shown = String::from_utf8_lossy(path).replace('\0', ".");
    let first = String::from_utf8_lossy(path.split(|b| *b == 0).next().unwrap_or_default());
    Some((
        format!("set:{shown}"),
        format!(
            "set_property on the path `{shown}` stores filter state `wasm.` plus the whole \
             path, NULs included; get_property only finds `wasm.{first}` for a top-level \
             `{first}`, so this value cannot be read back. Set a single-segment path instead."
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::headers::HeaderMap;
    use crate::model::{Properties, PropertyValue};

    fn store(pairs: &[(&str, PropertyValue)]) -> PropertyStore {
        let props: Properties = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        PropertyStore::from_properties(&props)
    }

    fn facts(request: Option<&HeaderMap>) -> StreamFacts<'_> {
        StreamFacts {
            request_headers: request,
            ..StreamFacts::default()
        }
    }

    fn text(v: &str) -> PropertyValue {
        PropertyValue::String(v.into())
    }

    /// Runs `check` with the plugin's store and an empty stream.
    fn on_a_stream(check: impl FnOnce(&Sources<'_>)) {
        let plugin = plugin_store();
        let empty = PropertyStore::default();
        let stream = Sources {
            plugin: &plugin,
            stream: Some(StreamSources {
                exchange: &empty,
                filter_state: None,
                facts: facts(None),
            }),
        };
        check(&stream);
    }

    fn plugin_store() -> PropertyStore {
        store(&[
            ("plugin_name", text("p")),
            ("xds.node.id", text("sidecar~1")),
            ("xds.route_name", text("r1")),
            ("xds.no_such_field", text("x")),
            ("source.port", PropertyValue::Int(9)),
            ("connection.id", PropertyValue::Int(7)),
            ("route_name", text("old")),
            ("custom", text("c")),
        ])
    }

    fn get(path: &[u8], src: &Sources<'_>) -> (Found, Vec<u8>) {
        let mut out = Vec::new();
        let found = find(path, src, &mut out);
        (found, out)
    }

    #[test]
    fn a_root_context_sees_only_node_and_plugin_tokens() {
        let plugin = plugin_store();
        let root = Sources {
            plugin: &plugin,
            stream: None,
        };
        assert_eq!(get(b"plugin_name", &root), (Found::Value, b"p".to_vec()));
        assert_eq!(
            get(b"xds\0node\0id", &root),
            (Found::Value, b"sidecar~1".to_vec())
        );
        for path in [
            &b"xds\0route_name"[..],
            b"source\0port",
            b"connection_id",
            b"request\0path",
        ] {
            assert_eq!(get(path, &root).0, Found::Missing);
        }
    }

    #[test]
    fn a_stream_sees_attributes_but_not_unknown_xds_fields() {
        on_a_stream(|stream| {
            assert_eq!(
                get(b"xds\0route_name", stream),
                (Found::Value, b"r1".to_vec())
            );
            assert_eq!(get(b"xds\0no_such_field", stream).0, Found::Missing);
            assert_eq!(
                get(b"connection_id", stream),
                (Found::Value, 7u64.to_le_bytes().to_vec())
            );
            assert_eq!(get(b"plugin_name\0x", stream).0, Found::Missing);
        });
    }

    #[test]
    fn moved_and_unserved_names_are_not_found_with_a_hint() {
        on_a_stream(|stream| {
            let Found::Hint { key, message } = get(b"route_name", stream).0 else {
                panic!("route_name must be NOT_FOUND with a hint");
            };
            assert_eq!(key, "moved:route_name");
            assert!(message.contains("`xds.route_name`"), "{message}");
            let Found::Hint { message, .. } = get(b"custom", stream).0 else {
                panic!("custom must be NOT_FOUND with a hint");
            };
            assert!(message.contains("[filter_state, wasm.custom]"), "{message}");
            assert_eq!(get(b"nothing\0here", stream).0, Found::Missing);
        });
    }

    #[test]
    fn filter_state_answers_its_own_name_but_never_shadows_attributes() {
        let plugin = plugin_store();
        let empty = PropertyStore::default();
        let mut state = PropertyStore::default();
        for (path, value) in [
            (&b"request\0path"[..], &b"shadow"[..]),
            (b"my_key", b"v"),
            (b"a\0b", b"deep"),
        ] {
            state.set_raw(&filter_state_key(path), value);
        }
        let mut h = HeaderMap::default();
        h.add(b":path", b"/real");
        let stream = Sources {
            plugin: &plugin,
            stream: Some(StreamSources {
                exchange: &empty,
                filter_state: Some(&state),
                facts: facts(Some(&h)),
            }),
        };
        assert_eq!(
            get(b"request\0path", &stream),
            (Found::Value, b"/real".to_vec())
        );
        assert_eq!(get(b"my_key", &stream), (Found::Value, b"v".to_vec()));
        assert_eq!(
            get(b"filter_state\0wasm.my_key", &stream),
            (Found::Value, b"v".to_vec())
        );
        assert_eq!(get(b"my_key\0sub", &stream).0, Found::Missing);
        assert_eq!(get(b"a\0b", &stream).0, Found::Missing);
        assert!(unreachable_set(b"a\0b").is_some());
        assert!(unreachable_set(b"my_key").is_none());
    }
}

//! Envoy's foreign functions through `proxy_call_foreign_function`, as the
//! probe filter sees them: exact statuses and result bytes
//! (source/extensions/common/wasm/foreign.cc).

use std::io::{Read, Write};

use harness::LogLevel;
use serde_json::{Value, json};

use crate::support::*;

fn foreign(label: &str, name: &str, args_hex: &str, decode: &str) -> Value {
    json!({"op": "call_foreign", "label": label, "name": name, "args_hex": args_hex, "decode": decode})
}

/// A protobuf message of length-delimited (string / bytes) fields.
fn message(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, value) in fields {
        assert!(value.len() < 128, "one-byte lengths only");
        out.extend_from_slice(&[number << 3 | 2, value.len() as u8]);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn filter_state_args(path: &str, value: &str) -> String {
    hex(&message(&[(1, path), (2, value)]))
}

fn on_request(steps: Vec<Value>) -> harness::Outcome {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": steps}}}));
    exchange(&mut envoy, get("/"), ok_upstream())
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn compress_output_is_zlib_and_uncompress_gives_it_back() {
    let text = "the quick brown fox jumps over the lazy dog; ".repeat(20);
    let outcome = on_request(vec![foreign(
        "compress",
        "compress",
        &hex(text.as_bytes()),
        "hex",
    )]);
    let line = result(&outcome, "compress");
    let packed = unhex(line.strip_prefix("compress: OK result=").unwrap());
    assert!(packed.len() < text.len() / 4, "compressed: {line}");
    // An independent zlib decoder reads it.
    let mut unpacked = String::new();
    flate2::read::ZlibDecoder::new(&packed[..])
        .read_to_string(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, text);

    let outcome = on_request(vec![foreign(
        "uncompress",
        "uncompress",
        &hex(&packed),
        "str",
    )]);
    assert_eq!(
        result(&outcome, "uncompress"),
        format!("uncompress: OK result={text:?}")
    );
}

#[test]
fn uncompress_refuses_malformed_input_and_zip_bombs_with_serialization_failure() {
    let packed = zlib(b"some text to cut short");
    let outcome = on_request(vec![
        foreign("garbage", "uncompress", &hex(b"not zlib at all"), "str"),
        foreign("empty", "uncompress", "", "str"),
        foreign(
            "truncated",
            "uncompress",
            &hex(&packed[..packed.len() - 4]),
            "str",
        ),
        foreign("compress empty", "compress", "", "hex"),
    ]);
    for label in ["garbage", "empty", "truncated"] {
        assert_eq!(
            result(&outcome, label),
            format!("{label}: SERIALIZATION_FAILURE result=\"\"")
        );
    }
    // zlib's compress of no bytes is still a stream (header, empty block, checksum).
    let empty = result(&outcome, "compress empty");
    assert!(empty.starts_with("compress empty: OK result=78"), "{empty}");

    // 17 MiB of zeros packs into ~17 KB: past the harness's 16 MiB limit.
    let bomb = zlib(&vec![0u8; 17 << 20]);
    let outcome = on_request(vec![foreign("bomb", "uncompress", &hex(&bomb), "str")]);
    assert_eq!(
        result(&outcome, "bomb"),
        "bomb: SERIALIZATION_FAILURE result=\"\""
    );
    assert!(
        outcome
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message.contains("limit of 16 MiB")),
        "{:#?}",
        outcome.logs
    );
}

#[test]
fn set_envoy_filter_state_stores_objects_readable_as_filter_state() {
    let get = |label: &str, key: &str| json!({"op": "get_property", "label": label, "path": ["filter_state", key]});
    let idle = "envoy.tcp_proxy.per_connection_idle_timeout_ms";
    let mut with_span = message(&[(1, "envoy.network.upstream_server_name"), (2, "lyft.com")]);
    with_span.extend_from_slice(&[0x18, 2]); // span = DownstreamConnection
    let outcome = on_request(vec![
        get("before", "envoy.tcp_proxy.cluster"),
        foreign(
            "cluster",
            "set_envoy_filter_state",
            &filter_state_args("envoy.tcp_proxy.cluster", "backend"),
            "str",
        ),
        get("cluster value", "envoy.tcp_proxy.cluster"),
        foreign(
            "idle",
            "set_envoy_filter_state",
            &filter_state_args(idle, "+42"),
            "str",
        ),
        get("idle value", idle),
        foreign("sni", "set_envoy_filter_state", &hex(&with_span), "str"),
        get("sni value", "envoy.network.upstream_server_name"),
        foreign(
            "again",
            "set_envoy_filter_state",
            &filter_state_args("envoy.tcp_proxy.cluster", "other"),
            "str",
        ),
        get("replaced", "envoy.tcp_proxy.cluster"),
    ]);
    assert_eq!(result(&outcome, "before"), "before: NOT_FOUND");
    assert_eq!(result(&outcome, "cluster"), "cluster: OK result=\"\"");
    assert_eq!(
        result(&outcome, "cluster value"),
        "cluster value: OK value=\"backend\""
    );
    assert_eq!(result(&outcome, "idle"), "idle: OK result=\"\"");
    // Stored as the factory's object serializes (a uint32).
    assert_eq!(
        result(&outcome, "idle value"),
        "idle value: OK value=\"42\""
    );
    assert_eq!(result(&outcome, "sni"), "sni: OK result=\"\"");
    assert_eq!(
        result(&outcome, "sni value"),
        "sni value: OK value=\"lyft.com\""
    );
    assert_eq!(result(&outcome, "again"), "again: OK result=\"\"");
    assert_eq!(result(&outcome, "replaced"), "replaced: OK value=\"other\"");
}

#[test]
fn set_envoy_filter_state_refuses_malformed_arguments_values_and_unknown_factories() {
    let outcome = on_request(vec![
        foreign(
            "truncated",
            "set_envoy_filter_state",
            "0a09656e766f79",
            "str",
        ),
        foreign("not utf-8", "set_envoy_filter_state", "0a02c328", "str"),
        foreign(
            "bad value",
            "set_envoy_filter_state",
            &filter_state_args("envoy.tcp_proxy.per_connection_idle_timeout_ms", "soon"),
            "str",
        ),
        foreign(
            "bad bool",
            "set_envoy_filter_state",
            &filter_state_args("envoy.tcp_proxy.disable_tunneling", "yes"),
            "str",
        ),
        foreign(
            "unknown",
            "set_envoy_filter_state",
            &filter_state_args("my.own.key", "v"),
            "str",
        ),
        foreign("empty path", "set_envoy_filter_state", "", "str"),
        json!({"op": "get_property", "label": "nothing stored", "path": ["filter_state", "my.own.key"]}),
    ]);
    for (label, status) in [
        ("truncated", "BAD_ARGUMENT"),
        ("not utf-8", "BAD_ARGUMENT"),
        ("bad value", "BAD_ARGUMENT"),
        ("bad bool", "BAD_ARGUMENT"),
        ("unknown", "NOT_FOUND"),
        // An empty message parses: its path "" names no factory.
        ("empty path", "NOT_FOUND"),
    ] {
        assert_eq!(
            result(&outcome, label),
            format!("{label}: {status} result=\"\"")
        );
    }
    assert_eq!(
        result(&outcome, "nothing stored"),
        "nothing stored: NOT_FOUND"
    );

    // A root context has no stream info: NOT_FOUND even for a good object.
    let envoy = probe(json!({"configure": [
        foreign("from root", "set_envoy_filter_state", &filter_state_args("envoy.string", "v"), "str")
    ]}));
    assert_eq!(
        result(envoy.startup(), "from root"),
        "from root: NOT_FOUND result=\"\""
    );
}

#[test]
fn declare_property_refuses_a_second_declaration_on_the_same_context() {
    let mut readonly = message(&[(1, "my_prop")]);
    readonly.extend_from_slice(&[0x10, 1]); // readonly = true
    let declare = hex(&readonly);
    let other = hex(&message(&[(1, "other_prop")]));
    let mut envoy = probe(json!({
        "configure": [
            foreign("first", "declare_property", &declare, "str"),
            foreign("second", "declare_property", &declare, "str"),
            foreign("other", "declare_property", &other, "str"),
            foreign("malformed", "declare_property", "0a", "str")
        ],
        "http": {"request_headers": {"steps": [
            foreign("on stream", "declare_property", &declare, "str"),
            foreign("on stream again", "declare_property", &declare, "str")
        ]}}
    }));
    let startup = envoy.startup();
    assert_eq!(result(startup, "first"), "first: OK result=\"\"");
    assert_eq!(
        result(startup, "second"),
        "second: BAD_ARGUMENT result=\"\""
    );
    assert_eq!(result(startup, "other"), "other: OK result=\"\"");
    assert_eq!(
        result(startup, "malformed"),
        "malformed: BAD_ARGUMENT result=\"\""
    );
    // Envoy keeps declarations on the calling context: a stream has its own.
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(result(&outcome, "on stream"), "on stream: OK result=\"\"");
    assert_eq!(
        result(&outcome, "on stream again"),
        "on stream again: BAD_ARGUMENT result=\"\""
    );
}

#[test]
fn a_readonly_declared_property_takes_its_first_value_only() {
    // Context::setProperty checks the root context's declarations: a
    // read-only property may be set once, then writes are BAD_ARGUMENT.
    let mut readonly = message(&[(1, "my_prop")]);
    readonly.extend_from_slice(&[0x10, 1]);
    let mut envoy = probe(json!({
        "configure": [foreign("declare", "declare_property", &hex(&readonly), "str")],
        "http": {"request_headers": {"steps": [
            {"op": "set_property", "path": ["my_prop"], "value": "a", "label": "first"},
            {"op": "set_property", "path": ["my_prop"], "value": "b", "label": "second"},
            {"op": "set_property", "path": ["free"], "value": "x", "label": "free"},
            {"op": "set_property", "path": ["free"], "value": "y", "label": "free again"},
            {"op": "get_property", "path": ["my_prop"], "label": "read"}]}}
    }));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(result(&outcome, "first"), "first: OK");
    assert_eq!(result(&outcome, "second"), "second: BAD_ARGUMENT");
    assert_eq!(result(&outcome, "free again"), "free again: OK");
    assert_eq!(result(&outcome, "read"), r#"read: OK value="a""#);
}

#[test]
fn filter_state_is_the_streams_and_every_filter_of_the_chain_shares_it() {
    // Context::setProperty / setEnvoyFilterState write to the stream
    // info's filter state, which is one per stream; a key created read-only
    // by one filter's declaration refuses a later write from any filter.
    let mut readonly = message(&[(1, "my_prop")]);
    readonly.extend_from_slice(&[0x10, 1]);
    let set = |label: &str, path: &str, value: &str| json!({"op": "set_property", "path": [path], "value": value, "label": label});
    let read =
        |label: &str, path: &[&str]| json!({"op": "get_property", "path": path, "label": label});
    let first = json!({
        "configure": [foreign("declare", "declare_property", &hex(&readonly), "str")],
        "http": {
            "request_headers": {"steps": [
                set("ro", "my_prop", "a"),
                set("free", "free", "x"),
                foreign("object", "set_envoy_filter_state",
                    &filter_state_args("envoy.tcp_proxy.cluster", "backend"), "str")]},
            "response_headers": {"steps": [read("free later", &["free"])]}
        }
    });
    let second = json!({"http": {"request_headers": {"steps": [
        read("ro seen", &["my_prop"]),
        read("object seen", &["filter_state", "envoy.tcp_proxy.cluster"]),
        set("ro overwrite", "my_prop", "b"),
        set("free overwrite", "free", "y")]}}});
    for shared_vm in [false, true] {
        let out = probe_chain_get(vec![first.clone(), second.clone()], |i, plugin| {
            plugin.vm_id = if shared_vm {
                "one".into()
            } else {
                format!("vm-{i}")
            };
        });
        let (a, b) = (&out.filters[0], &out.filters[1]);
        let case = if shared_vm { "one VM" } else { "two VMs" };
        assert_eq!(result(b, "ro seen"), r#"ro seen: OK value="a""#, "{case}");
        assert_eq!(
            result(b, "object seen"),
            r#"object seen: OK value="backend""#,
            "{case}"
        );
        assert_eq!(
            result(b, "ro overwrite"),
            "ro overwrite: BAD_ARGUMENT",
            "{case}"
        );
        assert_eq!(result(b, "free overwrite"), "free overwrite: OK", "{case}");
        assert_eq!(
            result(a, "free later"),
            r#"free later: OK value="y""#,
            "{case}"
        );
    }
}

#[test]
fn signing_functions_refuse_bad_arguments_like_envoy_then_report_bad_keys_in_the_result() {
    let verify = hex(&message(&[
        (1, "sha256"),
        (2, "der key"),
        (3, "sig"),
        (4, "text"),
    ]));
    let verify_both = hex(&message(&[(2, "der key"), (5, "pem key")]));
    let sign = hex(&message(&[(1, "sha256"), (3, "text"), (4, "pem key")]));
    let sign_none = hex(&message(&[(1, "sha256"), (3, "text")]));
    let outcome = on_request(vec![
        foreign("verify", "verify_signature", &verify, "hex"),
        foreign("verify both keys", "verify_signature", &verify_both, "str"),
        foreign("verify malformed", "verify_signature", "0a7f", "str"),
        foreign("sign", "sign", &sign, "hex"),
        foreign("sign no key", "sign", &sign_none, "str"),
    ]);
    for (label, status) in [
        ("verify both keys", "BAD_ARGUMENT"),
        ("verify malformed", "BAD_ARGUMENT"),
        ("sign no key", "BAD_ARGUMENT"),
    ] {
        assert_eq!(
            result(&outcome, label),
            format!("{label}: {status} result=\"\"")
        );
    }
    // A key that does not parse is no status: the result message says it
    // (VerifySignatureResult.error = 2, SignResult.error = 3).
    let error = |number: u8, text: &str| hex(&message(&[(number, text)]));
    assert_eq!(
        result(&outcome, "verify"),
        format!(
            "verify: OK result={}",
            error(2, "Failed to initialize digest verify.")
        )
    );
    assert_eq!(
        result(&outcome, "sign"),
        format!(
            "sign: OK result={}",
            error(
                3,
                "Invalid key type: private key required for signing operation."
            )
        )
    );
}

#[test]
fn clear_route_cache_is_ok_and_unsimulated_functions_warn() {
    let outcome = on_request(vec![
        foreign("clear", "clear_route_cache", "", "str"),
        foreign("expr", "expr_create", &hex(b"request.path"), "str"),
        foreign("unknown", "no_such_function", "", "str"),
    ]);
    assert_eq!(result(&outcome, "clear"), "clear: OK result=\"\"");
    assert_eq!(result(&outcome, "expr"), "expr: NOT_FOUND result=\"\"");
    assert_eq!(
        result(&outcome, "unknown"),
        "unknown: NOT_FOUND result=\"\""
    );
    let warnings: Vec<&str> = outcome
        .logs
        .iter()
        .filter(|l| l.level == LogLevel::Warn)
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        warnings,
        ["[harness] foreign function expr_create exists in Envoy but is not simulated: NOT_FOUND"]
    );
}

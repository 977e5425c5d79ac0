//! Envoy's smaller habits, each one a test: the chain's teardown order,
//! headers return values, local replies from a root context, queues
//! resolved without a vm_id, ticks after a clock jump.

use serde_json::{Value, json};

use crate::hostile::{compile, filter};
use crate::support::*;

fn step(op: &str, label: &str, mut fields: Value) -> Value {
    fields["op"] = json!(op);
    fields["label"] = json!(label);
    fields
}

#[test]
fn a_chain_logs_every_filter_before_any_is_destroyed() {
    // Two VMs sharing a vm_id (so shared data) but not a VM (other
    // vm_config). The second filter's on_log writes a key; the first
    // filter's on_done reads it: it is there only if every on_log ran
    // before any on_done, as Envoy's filter manager orders them.
    let scripts = [
        json!({"http": {"done": [
            step("get_shared_data", "done sees log", json!({"key": "logged"}))]}}),
        json!({"http": {"log": [
            step("set_shared_data", "log", json!({"key": "logged", "value": "yes"}))]}}),
    ];
    let out = probe_chain_get(scripts.to_vec(), |i, plugin| {
        plugin.vm_id = "shared".into();
        plugin.vm_config = format!("{{\"trace\": {}}}", i == 0).into();
    });
    let seen = result(&out.filters[0], "done sees log");
    assert!(
        seen.starts_with(r#"done sees log: OK value="yes""#),
        "{seen}"
    );
}

/// A WAT filter whose on_request_headers returns `value`.
fn returning(value: u32) -> harness::CompiledModule {
    let wat = filter(
        "",
        "",
        &format!(
            r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                 i32.const {value})"#
        ),
    );
    compile(&format!("headers-returns-{value}.wat"), &wat)
}

#[test]
fn headers_callbacks_returning_2_continue_and_other_values_stop() {
    for (value, forwarded) in [(0, true), (1, false), (2, true), (3, false), (7, false)] {
        let module = returning(value);
        let mut envoy = harness::Harness::new(&module, crate::hostile::config()).unwrap();
        let outcome = envoy.exchange(&crate::hostile::get()).unwrap();
        assert_eq!(
            outcome.upstream_request.is_some(),
            forwarded,
            "on_request_headers returned {value}: {:?}",
            outcome.end
        );
    }
}

#[test]
fn a_local_reply_from_a_root_context_is_ok_and_does_nothing() {
    let mut config = probe_config(json!({"configure": [
        step("send_local_response", "root reply", json!({"status": 403}))]}));
    config.plugin.log_level = harness::LogLevel::Info;
    let envoy = start(config);
    let startup = envoy.startup();
    assert_eq!(result(startup, "root reply"), "root reply: OK");
    assert!(
        startup
            .logs
            .iter()
            .any(|l| l.message.contains("from a root context does nothing")),
        "{:#?}",
        startup.logs
    );
}

#[test]
fn an_empty_vm_id_resolves_a_queue_of_the_callers_own_vm() {
    let mut config = probe_config(json!({"configure": [
        {"op": "register_queue", "name": "jobs"},
        step("resolve_queue", "own", json!({"vm_id": "", "name": "jobs"})),
        step("resolve_queue", "other vm", json!({"vm_id": "elsewhere", "name": "jobs"}))]}));
    config.plugin.vm_id = "mine".into();
    let envoy = start(config);
    assert_eq!(result(envoy.startup(), "own"), "own: OK id=1");
    assert_eq!(
        result(envoy.startup(), "other vm"),
        "other vm: NOT_FOUND id=0"
    );
}

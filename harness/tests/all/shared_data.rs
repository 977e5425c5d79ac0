//! Shared data, shared queues and metrics, with Envoy's rules, as the
//! probe filter sees them.

use harness::{Harness, MetricKind, SharedHost};
use serde_json::{Value, json};

use crate::hostcalls::step;
use crate::support::*;

// ---------------------------------------------------------------- shared data and queues

#[test]
fn shared_data_cas_rules() {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": [
        step("get_shared_data", "missing", json!({"key": "k"})),
        step("set_shared_data", "first set", json!({"key": "k", "value": "v1", "cas": 0})),
        {"op": "get_shared_data", "key": "k", "label": "read", "save": "cas"},
        step("set_shared_data", "set with current cas", json!({"key": "k", "value": "v2", "cas": "$cas"})),
        step("set_shared_data", "set with stale cas", json!({"key": "k", "value": "v3", "cas": "$cas"})),
        step("get_shared_data", "after", json!({"key": "k"})),
        step("set_shared_data", "unconditional", json!({"key": "k", "value": "v4", "cas": 0})),
        step("get_shared_data", "final", json!({"key": "k"}))
    ]}}}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(result(&outcome, "missing"), "missing: NOT_FOUND");
    assert_eq!(result(&outcome, "first set"), "first set: OK");
    let read = result(&outcome, "read");
    assert!(read.starts_with(r#"read: OK value="v1" cas="#), "{read}");
    assert!(
        !read.ends_with(" cas=0"),
        "the CAS counter is never 0: {read}"
    );
    assert_eq!(
        result(&outcome, "set with current cas"),
        "set with current cas: OK"
    );
    assert_eq!(
        result(&outcome, "set with stale cas"),
        "set with stale cas: CAS_MISMATCH"
    );
    assert!(result(&outcome, "after").starts_with(r#"after: OK value="v2" cas="#));
    assert_eq!(result(&outcome, "unconditional"), "unconditional: OK");
    assert!(result(&outcome, "final").starts_with(r#"final: OK value="v4" cas="#));
}

#[test]
fn shared_data_is_shared_by_workers_of_the_same_vm_id_only() {
    let writer = json!({"configure": [step("set_shared_data", "write", json!({"key": "shared-key", "value": "from worker 1"}))]});
    let reader =
        json!({"configure": [step("get_shared_data", "read", json!({"key": "shared-key"}))]});
    let shared = SharedHost::new();
    let with_vm = |script: Value, vm: &str| {
        let mut config = probe_config(script);
        config.plugin.vm_id = vm.into();
        config
    };
    let first = Harness::with_shared(probe_module(), with_vm(writer, "vm-a"), shared.clone())
        .expect("worker 1");
    assert_eq!(result(first.startup(), "write"), "write: OK");
    let second = Harness::with_shared(
        probe_module(),
        with_vm(reader.clone(), "vm-a"),
        shared.clone(),
    )
    .expect("worker 2");
    assert!(result(second.startup(), "read").starts_with(r#"read: OK value="from worker 1""#));
    let other_vm = Harness::with_shared(probe_module(), with_vm(reader.clone(), "vm-b"), shared)
        .expect("other vm");
    assert_eq!(result(other_vm.startup(), "read"), "read: NOT_FOUND");
    let unshared = start(with_vm(reader, "vm-a"));
    assert_eq!(
        result(unshared.startup(), "read"),
        "read: NOT_FOUND",
        "separate harnesses share nothing"
    );
}

#[test]
fn queues_register_resolve_enqueue_dequeue_and_notify_the_root() {
    let mut config = probe_config(json!({"trace": true,
        "configure": [
            {"op": "register_queue", "name": "jobs", "save": "queue"},
            step("resolve_queue", "resolve", json!({"vm_id": "probe-vm", "name": "jobs"})),
            step("resolve_queue", "resolve unknown", json!({"vm_id": "probe-vm", "name": "nope"})),
            step("enqueue", "enqueue unknown", json!({"queue": 777, "data": "x"})),
            step("dequeue", "dequeue unknown", json!({"queue": 777})),
            step("dequeue", "dequeue empty", json!({"queue": "$queue"}))
        ],
        "http": {"request_headers": {"steps": [
            step("enqueue", "enqueue", json!({"queue": "$queue", "data": "job-1"}))
        ]}},
        "queue_ready": [
            step("dequeue", "dequeue", json!({"queue": "$queue"})),
            step("dequeue", "dequeue again", json!({"queue": "$queue"}))
        ]
    }));
    config.plugin.vm_id = "probe-vm".into();
    let mut envoy = start(config);
    let startup = envoy.startup().clone();
    assert_eq!(
        result(&startup, "register_queue"),
        "register_queue: OK id=1"
    );
    assert_eq!(result(&startup, "resolve"), "resolve: OK id=1");
    assert_eq!(
        result(&startup, "resolve unknown"),
        "resolve unknown: NOT_FOUND id=0"
    );
    assert_eq!(
        result(&startup, "enqueue unknown"),
        "enqueue unknown: NOT_FOUND"
    );
    assert_eq!(
        result(&startup, "dequeue unknown"),
        "dequeue unknown: NOT_FOUND"
    );
    assert_eq!(result(&startup, "dequeue empty"), "dequeue empty: EMPTY");

    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(result(&outcome, "enqueue"), "enqueue: OK");
    let later = envoy.advance(1).expect("advance");
    let mut lines: Vec<String> = outcome.logs.iter().map(|l| l.message.clone()).collect();
    lines.extend(later.logs.iter().map(|l| l.message.clone()));
    assert_in_order(
        &lines,
        &[
            "enqueue: OK",
            "cb queue_ready ctx=1 queue=1",
            r#"dequeue: OK data="job-1""#,
            "dequeue again: EMPTY",
        ],
    );
    let ready_at = lines
        .iter()
        .position(|l| l == "cb queue_ready ctx=1 queue=1");
    let enqueue_at = lines.iter().position(|l| l == "enqueue: OK");
    assert!(
        ready_at > enqueue_at,
        "on_queue_ready is posted, not called inside enqueue"
    );
}

// ---------------------------------------------------------------- metrics

#[test]
fn metrics_follow_envoys_rules() {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": [
        {"op": "define_metric", "kind": "counter", "name": "requests", "save": "counter"},
        {"op": "define_metric", "kind": "gauge", "name": "in_flight", "save": "gauge"},
        {"op": "define_metric", "kind": "histogram", "name": "latency", "save": "histogram"},
        {"op": "define_metric", "kind": "counter", "name": "requests", "label": "define again", "save": "again"},
        step("increment_metric", "increment via second id", json!({"id": "$again", "offset": 1})),
        step("increment_metric", "histogram increment", json!({"id": "$histogram", "offset": 1})),
        step("increment_metric", "counter +1", json!({"id": "$counter", "offset": 1})),
        step("increment_metric", "counter +0", json!({"id": "$counter", "offset": 0})),
        step("increment_metric", "counter -1", json!({"id": "$counter", "offset": -1})),
        step("record_metric", "counter record 5", json!({"id": "$counter", "value": 5})),
        step("get_metric", "counter value", json!({"id": "$counter"})),
        step("increment_metric", "gauge +10", json!({"id": "$gauge", "offset": 10})),
        step("increment_metric", "gauge -3", json!({"id": "$gauge", "offset": -3})),
        step("get_metric", "gauge value", json!({"id": "$gauge"})),
        step("record_metric", "gauge set 42", json!({"id": "$gauge", "value": 42})),
        step("get_metric", "gauge after set", json!({"id": "$gauge"})),
        step("record_metric", "histogram sample", json!({"id": "$histogram", "value": 12})),
        step("record_metric", "histogram sample 2", json!({"id": "$histogram", "value": 30})),
        step("get_metric", "histogram value", json!({"id": "$histogram"})),
        // An id no define returned, with a counter's kind bits (Envoy keeps
        // the kind in the low 2 bits of an id).
        step("get_metric", "unknown metric", json!({"id": 99996})),
        step("increment_metric", "unknown increment", json!({"id": 99996, "offset": 1})),
        step("record_metric", "unknown record", json!({"id": 99996, "value": 1}))
    ]}}}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    let ids = results(&outcome, "define_metric");
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter().all(|l| l.starts_with("define_metric: OK id=")),
        "{ids:?}"
    );
    // Defining a name again gives a new id for the same stat, as Envoy's
    // Context::defineMetric does (a filter must not compare ids).
    let again = result(&outcome, "define again");
    assert!(again.starts_with("define again: OK id="), "{again}");
    let first_id = ids[0].trim_start_matches("define_metric: OK id=");
    assert_ne!(again.trim_start_matches("define again: OK id="), first_id);
    assert_eq!(
        result(&outcome, "increment via second id"),
        "increment via second id: OK"
    );
    assert_eq!(
        result(&outcome, "histogram increment"),
        "histogram increment: BAD_ARGUMENT",
        "histograms are recorded, not incremented"
    );
    assert_eq!(result(&outcome, "counter +1"), "counter +1: OK");
    assert_eq!(result(&outcome, "counter +0"), "counter +0: BAD_ARGUMENT");
    assert_eq!(result(&outcome, "counter -1"), "counter -1: BAD_ARGUMENT");
    assert_eq!(result(&outcome, "counter record 5"), "counter record 5: OK");
    assert_eq!(
        result(&outcome, "counter value"),
        "counter value: OK value=7",
        "both ids and record add to the one counter"
    );
    assert_eq!(result(&outcome, "gauge +10"), "gauge +10: OK");
    assert_eq!(result(&outcome, "gauge -3"), "gauge -3: OK");
    assert_eq!(result(&outcome, "gauge value"), "gauge value: OK value=7");
    assert_eq!(
        result(&outcome, "gauge after set"),
        "gauge after set: OK value=42",
        "record sets a gauge"
    );
    assert_eq!(result(&outcome, "histogram sample"), "histogram sample: OK");
    assert_eq!(
        result(&outcome, "histogram value"),
        "histogram value: BAD_ARGUMENT value=0"
    );
    assert_eq!(
        result(&outcome, "unknown metric"),
        "unknown metric: NOT_FOUND value=0"
    );
    assert_eq!(
        result(&outcome, "unknown increment"),
        "unknown increment: NOT_FOUND"
    );
    assert_eq!(
        result(&outcome, "unknown record"),
        "unknown record: NOT_FOUND"
    );

    let counter = outcome.metric("requests").expect("counter snapshot");
    assert_eq!((counter.kind, counter.value), (MetricKind::Counter, 7));
    let gauge = outcome.metric("in_flight").expect("gauge snapshot");
    assert_eq!((gauge.kind, gauge.value), (MetricKind::Gauge, 42));
    let histogram = outcome.metric("latency").expect("histogram snapshot");
    assert_eq!(
        (histogram.kind, histogram.value, histogram.samples.clone()),
        (MetricKind::Histogram, 2, vec![12, 30])
    );
}

#[test]
fn a_lean_envoy_leaves_metric_snapshots_out_of_its_outcomes_but_keeps_logs() {
    let script = json!({"http": {"request_headers": {"steps": [
        {"op": "define_metric", "kind": "histogram", "name": "latency", "save": "histogram"},
        step("record_metric", "sample", json!({"id": "$histogram", "value": 12})),
        {"op": "log", "level": 2, "message": "seen"}
    ]}}});
    let exchange = harness::Exchange {
        request: get("/"),
        upstream: ok_upstream(),
        properties: Default::default(),
    };
    let plugins = [(
        harness::FilterModule::from(probe_module()),
        probe_config(script),
    )];
    let mut full = harness::Envoy::builder().plugins(&plugins).build().unwrap();
    let full_out = full.exchange(&exchange).unwrap().outcome;
    assert!(
        full_out.metric("latency").is_some(),
        "a full outcome has the snapshot"
    );
    assert!(!full_out.hostcalls.is_empty());
    let full_response = full_out.response.as_ref().expect("a response");
    assert!(!full_response.message.headers.0.is_empty());
    assert!(full_out.upstream_request.is_some());

    let mut lean = harness::Envoy::builder()
        .plugins(&plugins)
        .lean()
        .build()
        .unwrap();
    for _ in 0..3 {
        let out = lean.exchange(&exchange).unwrap().outcome;
        assert!(
            out.metrics.is_empty() && out.hostcalls.is_empty(),
            "{out:?}"
        );
        assert_eq!(out.response.as_ref().map(|r| r.status), Some(200));
        assert!(
            out.upstream_request.is_none()
                && out
                    .response
                    .as_ref()
                    .is_some_and(|r| r.message.headers.0.is_empty()),
            "a lean outcome copies no message: {out:?}"
        );
        assert!(
            out.logs.iter().any(|l| l.message == "seen"),
            "{:?}",
            out.logs
        );
    }
    let shared = lean.shared().metrics();
    let latency = shared
        .iter()
        .find(|m| m.name == "latency")
        .expect("the histogram");
    assert_eq!(
        latency.samples,
        vec![12, 12, 12],
        "recorded in the shared host"
    );
}

#[test]
fn a_lean_envoy_moving_its_clock_with_nothing_due_still_fires_the_next_tick_on_time() {
    let script = json!({
        "configure": [{"op": "set_tick_period", "ms": 100}],
        "tick": [{"op": "log", "level": 2, "message": "tick"}]
    });
    let plugins = [(
        harness::FilterModule::from(probe_module()),
        probe_config(script),
    )];
    let mut lean = harness::Envoy::builder()
        .plugins(&plugins)
        .lean()
        .build()
        .unwrap();
    let ticks = |out: &harness::Outcome| out.logs.iter().filter(|l| l.message == "tick").count();
    // Many small moves with nothing due take the quiet path.
    for _ in 0..9 {
        assert_eq!(ticks(&lean.advance(10).unwrap()), 0);
    }
    assert_eq!(lean.now_ms(), 90);
    assert_eq!(ticks(&lean.advance(10).unwrap()), 1, "the tick at 100 ms");
    assert_eq!(ticks(&lean.advance(250).unwrap()), 2, "200 and 300 ms");
}

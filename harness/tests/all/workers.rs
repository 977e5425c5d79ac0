//! Several workers, as a multi-worker Envoy runs a plugin: one VM, root
//! context and tick timer per worker; shared data and queues shared; queue
//! notifications to the worker that registered the queue; round robin.

use harness::{Envoy, Exchange, FilterModule, Outcome};
use serde_json::{Value, json};

use crate::support::{callbacks, get, info, ok_upstream, probe_config, probe_module};

fn workers(script: Value, count: usize) -> Envoy {
    let mut config = probe_config(script);
    config.plugin.vm_id = "probe-vm".into();
    let plugins = [(FilterModule::from(probe_module()), config)];
    Envoy::builder()
        .plugins(&plugins)
        .workers(count)
        .build()
        .unwrap_or_else(|e| panic!("start-up failed: {e}"))
}

fn request(path: &str) -> Exchange {
    Exchange {
        request: get(path),
        upstream: ok_upstream(),
        properties: Default::default(),
    }
}

fn count(outcome: &Outcome, line: &str) -> usize {
    info(outcome).iter().filter(|l| l.as_str() == line).count()
}

#[test]
fn every_worker_starts_its_own_vm_and_root_context() {
    let envoy = workers(json!({"trace": true}), 3);
    assert_eq!(envoy.workers(), 3);
    for w in 0..3 {
        let startup = envoy.vms(w)[0].startup();
        assert!(
            callbacks(startup)
                .iter()
                .any(|c| c.starts_with("configure ctx=1")),
            "worker {w} configured its own root context 1: {:?}",
            callbacks(startup)
        );
    }
}

#[test]
fn each_worker_has_its_own_tick_timer() {
    let mut envoy = workers(
        json!({"trace": true, "configure": [{"op": "set_tick_period", "ms": 1000}]}),
        2,
    );
    let per_worker = envoy.advance_each(3000).expect("advance");
    assert_eq!(per_worker.len(), 2);
    for (w, outcome) in per_worker.iter().enumerate() {
        assert_eq!(
            count(&outcome.outcome, "cb tick ctx=1"),
            3,
            "worker {w}: one tick per second on its own root context: {:?}",
            info(&outcome.outcome)
        );
    }
    // A worker that served a long request catches up with its ticks first.
    assert_eq!(envoy.now_ms(), 3000);
    let merged = envoy.advance(1000).expect("advance");
    assert_eq!(
        count(&merged, "cb tick ctx=1"),
        2,
        "one tick on each of the two workers"
    );
}

#[test]
fn requests_go_round_robin_and_each_worker_numbers_its_own_streams() {
    let mut envoy = workers(json!({"trace": true}), 2);
    let served: Vec<(usize, u32)> = (0..4)
        .map(|_| {
            let out = envoy.exchange(&request("/")).expect("exchange");
            (out.worker, out.outcome.context_id)
        })
        .collect();
    assert_eq!(served, vec![(0, 2), (1, 2), (0, 3), (1, 3)]);
    let named = envoy.exchange_on(1, &request("/")).expect("exchange");
    assert_eq!((named.worker, named.outcome.context_id), (1, 4));
    let missing = envoy
        .exchange_on(2, &request("/"))
        .expect_err("no worker 2");
    assert!(missing.to_string().contains("2 worker(s)"), "{missing}");
}

#[test]
fn shared_data_written_on_one_worker_is_read_on_another() {
    let mut envoy = workers(
        json!({"routes": {
            "/set": {"request_headers": {"steps": [
                {"op": "set_shared_data", "label": "set", "key": "k", "value": "from-worker-0"}]}},
            "/get": {"request_headers": {"steps": [
                {"op": "get_shared_data", "label": "get", "key": "k"}]}}
        }}),
        2,
    );
    let before = envoy.exchange_on(1, &request("/get")).expect("get");
    assert!(
        info(&before.outcome).iter().any(|l| l == "get: NOT_FOUND"),
        "{:?}",
        info(&before.outcome)
    );
    let set = envoy.exchange_on(0, &request("/set")).expect("set");
    assert!(info(&set.outcome).iter().any(|l| l.starts_with("set: OK")));
    let after = envoy.exchange_on(1, &request("/get")).expect("get");
    assert!(
        info(&after.outcome)
            .iter()
            .any(|l| l.starts_with("get: OK") && l.contains("from-worker-0")),
        "{:?}",
        info(&after.outcome)
    );
}

/// Worker `owner` registers the queue during a request; the other enqueues.
fn queue_script() -> Value {
    json!({"trace": true,
        "routes": {
            "/register": {"request_headers": {"steps": [
                {"op": "register_queue", "label": "register", "name": "jobs", "save": "q"}]}},
            "/enqueue": {"request_headers": {"steps": [
                {"op": "resolve_queue", "label": "resolve", "vm_id": "probe-vm", "name": "jobs", "save": "r"},
                {"op": "enqueue", "label": "enqueue", "queue": "$r", "data": "job-1"}]}}
        },
        "queue_ready": [{"op": "dequeue", "label": "dequeue", "queue": "$q"}]
    })
}

#[test]
fn queue_readiness_goes_to_the_worker_that_registered_the_queue() {
    for (owner, producer) in [(0, 1), (1, 0)] {
        let mut envoy = workers(queue_script(), 2);
        envoy
            .exchange_on(owner, &request("/register"))
            .expect("register");
        let out = envoy
            .exchange_on(producer, &request("/enqueue"))
            .expect("enqueue");
        // The producer's own stream: it enqueued and was not notified.
        let own = &out.filters[0];
        assert!(
            info(own).iter().any(|l| l == "enqueue: OK"),
            "{:?}",
            info(own)
        );
        assert_eq!(
            count(own, "cb queue_ready ctx=1 queue=1"),
            0,
            "{:?}",
            info(own)
        );
        // The owner ran on_queue_ready on its root context and dequeued the item.
        let all = info(&out.outcome);
        let ready = all.iter().position(|l| l == "cb queue_ready ctx=1 queue=1");
        let dequeued = all
            .iter()
            .position(|l| l.starts_with("dequeue: OK") && l.contains("job-1"));
        assert!(
            ready.is_some() && dequeued > ready,
            "owner {owner} notified and dequeued: {all:?}"
        );
        // Nothing is left for anybody.
        let later = envoy.advance(10).expect("advance");
        assert_eq!(count(&later, "cb queue_ready ctx=1 queue=1"), 0);
    }
}

#[test]
fn a_trap_fails_only_the_worker_whose_vm_trapped() {
    let mut envoy = workers(
        json!({"routes": {"/boom": {"request_headers": {"steps": [
            {"op": "panic", "message": "boom"}]}}}}),
        2,
    );
    let trapped = envoy.exchange_on(0, &request("/boom")).expect("exchange");
    assert!(trapped.outcome.trap.is_some());
    assert_eq!(trapped.outcome.response.map(|r| r.status), Some(503));
    // Worker 0's VM is failed (fail closed); worker 1's clone is untouched.
    let failed = envoy.exchange_on(0, &request("/")).expect("exchange");
    assert_eq!(failed.outcome.response.map(|r| r.status), Some(503));
    let healthy = envoy.exchange_on(1, &request("/")).expect("exchange");
    assert_eq!(healthy.outcome.response.map(|r| r.status), Some(200));
    assert!(envoy.vms(1)[0].vm_failure().is_none());
}

#[test]
fn a_worker_catches_up_with_the_others_time_before_it_takes_a_request() {
    // Worker 0's request waits for its own timer (100 virtual ms); worker 1,
    // idle meanwhile, runs its tick first when it takes the next request.
    let mut envoy = workers(
        json!({"trace": true,
            "configure": [{"op": "set_tick_period", "ms": 100}],
            "routes": {"/wait": {"request_headers": {"action": "pause", "steps": []}}},
            "tick": [
                {"op": "set_effective_context", "label": "effective", "id": 2},
                {"op": "continue_stream", "label": "continue", "stream": "request"}
            ]
        }),
        2,
    );
    let waited = envoy.exchange_on(0, &request("/wait")).expect("exchange");
    assert_eq!(waited.outcome.elapsed_ms, 100);
    assert_eq!(waited.outcome.end, harness::StreamEnd::Completed);
    let next = envoy.exchange_on(1, &request("/")).expect("exchange");
    let lines = info(&next.outcome);
    let tick = lines.iter().position(|l| l == "cb tick ctx=1");
    let stream = lines
        .iter()
        .position(|l| l.starts_with("cb create_http_context"));
    assert!(
        tick.is_some() && tick < stream,
        "catch-up tick first: {lines:?}"
    );
    assert_eq!(
        next.outcome.hostcalls.get("proxy_set_effective_context"),
        Some(&1),
        "the catch-up's hostcalls are counted"
    );
    assert_eq!(
        count(&next.filters[0], "cb tick ctx=1"),
        0,
        "not part of the exchange itself"
    );
    assert_eq!(envoy.vms(1)[0].now_ms(), 100);
}

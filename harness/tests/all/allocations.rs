//! Heap allocations per request on the lean path without a trace (what
//! serve and `harness bench` run), counted per thread by the allocator this test binary
//! installs (main.rs): a guard on the count, not a timing. A collected
//! stream leaves its lists, queues and unshared header maps, and an
//! exchange its outcome list, to the next (manager/spare.rs), so a steady
//! stream of header-only requests allocates nothing.

use harness::bench::allocations::on_this_thread;
use serde_json::json;

use crate::support::*;

#[test]
fn a_steady_lean_exchange_allocates_nothing() {
    // As serve and `harness bench` run it: no callback trace.
    let mut config = probe_config(json!({}));
    config.trace = harness::TraceLevel::Off;
    let plugins = [(harness::FilterModule::from(probe_module()), config)];
    let mut envoy = harness::Envoy::builder()
        .plugins(&plugins)
        .lean()
        .build()
        .unwrap();
    let exchange = harness::Exchange {
        request: request("GET /items/7", &[("host", "shop"), ("x-a", "1")]),
        upstream: ok_upstream(),
        properties: Default::default(),
    };
    // The first requests fill the spares.
    for _ in 0..20 {
        envoy.exchange(&exchange).unwrap();
    }
    let requests = 200;
    let before = on_this_thread().unwrap();
    for _ in 0..requests {
        let status = envoy
            .exchange(&exchange)
            .unwrap()
            .outcome
            .response
            .map(|r| r.status);
        assert_eq!(status, Some(200));
    }
    let made = on_this_thread().unwrap() - before;
    assert!(
        made == 0,
        "{made} allocations for {requests} requests: the lean path should make none"
    );
}

//! Two Envoy workers share one token bucket through shared data: the limit
//! holds across them, and both workers' timers together refill a period once.
//! Runs the built wasm module in the harness (it is built here if missing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harness::{
    DownstreamRequest, FilterModule, Harness, HarnessConfig, PluginConfig, SharedHost,
    UpstreamResponse,
};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The release wasm build, made and compiled once per test process (a no-op
/// build after `make build`). It uses target/wasm32-wasip1, so it does not wait
/// on this test build's lock.
fn module() -> FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let status = Command::new(cargo)
                .current_dir(workspace_root())
                .args([
                    "build",
                    "--quiet",
                    "--target",
                    "wasm32-wasip1",
                    "--release",
                    "-p",
                    "local-rate-limit",
                ])
                .status()
                .expect("run cargo to build local-rate-limit for wasm32-wasip1");
            assert!(status.success(), "building local_rate_limit.wasm failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace_root().join("target"), PathBuf::from);
            FilterModule::from_file(target.join("wasm32-wasip1/release/local_rate_limit.wasm"))
                .unwrap()
        })
        .clone()
}

fn worker(module: &FilterModule, shared: &SharedHost) -> Harness {
    let config = HarnessConfig {
        plugin: PluginConfig {
            name: "local-rate-limit".into(),
            configuration:
                r#"{"key_from":"global","max_tokens":4,"tokens_per_fill":2,"fill_interval":"1s"}"#
                    .into(),
            ..PluginConfig::default()
        },
        ..HarnessConfig::default()
    };
    Harness::with_shared(module.clone(), config, shared.clone()).unwrap()
}

fn status(worker: &mut Harness) -> u16 {
    let outcome = worker
        .send(&DownstreamRequest::default(), &UpstreamResponse::default())
        .unwrap();
    assert!(outcome.trap.is_none(), "{:?}", outcome.trap);
    outcome.response.expect("a response").status
}

#[test]
fn two_workers_share_the_bucket_and_refill_it_once_per_period() {
    let module = module();
    let shared = SharedHost::new();
    let mut a = worker(&module, &shared);
    let mut b = worker(&module, &shared);

    // Four tokens in total, whichever worker takes them.
    let first = vec![
        status(&mut a),
        status(&mut b),
        status(&mut a),
        status(&mut b),
    ];
    assert_eq!(first, vec![200, 200, 200, 200]);
    assert_eq!(status(&mut a), 429);
    assert_eq!(status(&mut b), 429);

    // Both timers see the same period end; only one refill of 2 tokens counts.
    a.advance(1000).unwrap();
    b.advance(1000).unwrap();
    let after = vec![status(&mut b), status(&mut a), status(&mut b)];
    assert_eq!(after, vec![200, 200, 429]);
}

#[test]
fn a_worker_alone_has_its_own_bucket_when_nothing_is_shared() {
    let module = module();
    let mut a = worker(&module, &SharedHost::new());
    let mut b = worker(&module, &SharedHost::new());
    for _ in 0..4 {
        assert_eq!(status(&mut a), 200);
    }
    assert_eq!(status(&mut a), 429);
    assert_eq!(status(&mut b), 200);
}

//! Many streams live at once on one worker VM, as in Envoy: callbacks of
//! different streams interleave, callout answers and timers arrive in any
//! order and each reaches its own stream; chains move frame by frame.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use harness::scenario::{Detail, Runner};
use harness::{
    Body, ClusterSpec, CompiledModule, DownstreamRequest, Envoy, Exchange, FilterModule,
    HarnessConfig, HttpCalloutAnswer, StreamEnd, UpstreamResponse,
};
use serde_json::{Value, json};

use crate::support::{
    assert_in_order, callbacks, get, info, module, ok_upstream, probe_config, probe_module,
    request, wasm_dir, workspace_root,
};

/// One VM per filter: the same module and vm_id with a different VM
/// configuration is another VM key (shared data stays one namespace).
fn chain_of(scripts: &[Value], clusters: Vec<ClusterSpec>) -> Envoy {
    let plugins: Vec<(FilterModule, HarnessConfig)> = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut config = probe_config(s.clone());
            config.clusters = clusters.clone();
            config.plugin.vm_config = format!("{{\"trace\": {}}}", i % 2 == 0).into();
            (FilterModule::from(probe_module()), config)
        })
        .collect();
    Envoy::builder()
        .plugins(&plugins)
        .build()
        .unwrap_or_else(|e| panic!("start-up failed: {e}"))
}

fn exchange(request: DownstreamRequest) -> Exchange {
    Exchange {
        request,
        upstream: ok_upstream(),
        properties: Default::default(),
    }
}

fn answer(body: &str, delay_ms: u64) -> HttpCalloutAnswer {
    HttpCalloutAnswer {
        status: 200,
        body: Body::single(body),
        delay_ms,
        ..Default::default()
    }
}

/// Pauses request headers on an http_call to `auth`; the answer's body is
/// logged and the request resumed from the stream's callout callback.
fn callout_script() -> Value {
    json!({"trace": true, "http": {
        "request_headers": {"action": "pause", "steps": [
            {"op": "http_call", "cluster": "auth", "timeout_ms": 1000,
             "headers": [[":method", "GET"], [":path", "/check"], [":authority", "auth"]]}
        ]},
        "callouts": {"http_call_response": [
            {"op": "get_buffer", "buffer": "http_call_response_body", "label": "answer"},
            {"op": "continue_stream", "stream": "request"}
        ]}
    }})
}

#[test]
fn two_streams_paused_on_callouts_answered_in_reverse_order_each_get_their_own_answer() {
    let auth = ClusterSpec {
        name: "auth".into(),
        // The first call is answered after the second.
        http: vec![answer("for-a", 20), answer("for-b", 10)],
        grpc: vec![],
        refuse_connections: false,
    };
    let mut chain = chain_of(&[callout_script()], vec![auth]);
    let (a, opened_a) = chain
        .open(&exchange(get("/a")), Some(ok_upstream()))
        .expect("open");
    let (b, _) = chain
        .open(&exchange(get("/b")), Some(ok_upstream()))
        .expect("open");
    assert!(
        callbacks(&opened_a.outcome).contains(&"request_headers ctx=2 headers=6 eos=true".into()),
        "{:?}",
        callbacks(&opened_a.outcome)
    );

    let b_done = chain.finish(b).expect("b ends").outcome;
    assert_eq!(
        b_done.context_id, 3,
        "stream ids come from the VM's one counter"
    );
    assert_eq!(b_done.elapsed_ms, 10);
    assert_eq!(b_done.end, StreamEnd::Completed);
    assert_in_order(
        &info(&b_done),
        &[
            "cb http_call_response ctx=3 token=2 headers=2 body=5 trailers=0",
            r#"answer: OK bytes="for-b""#,
        ],
    );
    assert!(
        !info(&b_done).iter().any(|l| l.contains("for-a")),
        "b's outcome holds only b's own lines: {:?}",
        info(&b_done)
    );

    let a_done = chain.finish(a).expect("a ends").outcome;
    assert_eq!((a_done.context_id, a_done.elapsed_ms), (2, 20));
    assert_eq!(a_done.end, StreamEnd::Completed);
    assert!(info(&a_done).contains(&r#"answer: OK bytes="for-a""#.to_string()));
    let upstream = a_done.upstream_request.expect("a reached the upstream");
    assert_eq!(upstream.headers.get_text(":path").as_deref(), Some("/a"));
}

#[test]
fn a_stream_paused_on_a_timer_waits_while_another_completes() {
    let script = json!({"trace": true,
        "configure": [{"op": "set_tick_period", "ms": 100}],
        "tick": [
            {"op": "set_effective_context", "id": 2},
            {"op": "continue_stream", "stream": "request"}
        ],
        "routes": {"/slow": {"request_headers": {"action": "pause", "steps": []}}}
    });
    let mut chain = chain_of(&[script], vec![]);
    let (slow, _) = chain
        .open(&exchange(get("/slow")), Some(ok_upstream()))
        .expect("open");
    let fast = chain
        .exchange(&exchange(get("/fast")))
        .expect("fast")
        .outcome;
    assert_eq!((fast.context_id, fast.elapsed_ms), (3, 0));
    assert_eq!(fast.end, StreamEnd::Completed);
    assert!(
        !callbacks(&fast).iter().any(|c| c.starts_with("tick")),
        "the fast stream needed no time to pass: {:?}",
        callbacks(&fast)
    );
    let slow = chain.finish(slow).expect("slow").outcome;
    assert_eq!((slow.context_id, slow.elapsed_ms), (2, 100));
    assert_eq!(slow.end, StreamEnd::Completed);
    assert!(slow.upstream_request.is_some());
}

#[test]
fn a_held_upstream_answers_when_told_while_other_requests_pass() {
    let mut chain = chain_of(&[json!({"trace": true})], vec![]);
    let (held, _) = chain.open(&exchange(get("/held")), None).expect("open");
    let other = chain
        .exchange(&exchange(get("/other")))
        .expect("other")
        .outcome;
    assert_eq!(other.end, StreamEnd::Completed);
    chain
        .respond(
            held,
            UpstreamResponse {
                status: 202,
                ..Default::default()
            },
        )
        .expect("respond");
    let done = chain.finish(held).expect("held").outcome;
    assert_eq!(done.response.expect("response").status, 202);
    let error = chain
        .respond(held, UpstreamResponse::default())
        .expect_err("a finished stream cannot be answered");
    assert!(
        error
            .to_string()
            .contains("has ended (or was never opened): nothing more can be sent on it"),
        "{error}"
    );
    assert!(chain.finish(held).is_err(), "a stream is finished once");
}

#[test]
fn in_a_chain_request_headers_reach_the_second_filter_before_the_first_sees_the_body() {
    // The second filter marks in shared data that its headers callback ran
    // and pauses; the first filter's body callback looks for the mark.
    let first = json!({"trace": true, "http": {
        "request_body": {"steps": [
            {"op": "get_shared_data", "key": "second-saw-headers", "label": "mark"}
        ]}
    }});
    let second = json!({"trace": true,
        "configure": [{"op": "set_tick_period", "ms": 50}],
        "tick": [
            {"op": "set_effective_context", "id": 2},
            {"op": "continue_stream", "stream": "request"}
        ],
        "http": {"request_headers": {"action": "pause", "steps": [
            {"op": "set_shared_data", "key": "second-saw-headers", "value": "yes"}
        ]}}
    });
    let mut chain = chain_of(&[first, second], vec![]);
    let mut post = request("POST /upload", &[("content-type", "text/plain")]);
    post.body = Body::single("payload");
    let out = chain.exchange(&exchange(post)).expect("exchange");
    let [a, b] = [&out.filters[0], &out.filters[1]];
    assert!(
        info(a)
            .iter()
            .any(|l| l.starts_with(r#"mark: OK value="yes""#)),
        "the first filter's body callback ran after the second's headers: {:?}",
        info(a)
    );
    // The paused second filter holds only itself: the body reached it after its resume.
    assert_in_order(
        &callbacks(b),
        &[
            "request_headers ctx=2 headers=7 eos=false",
            "tick ctx=1",
            "request_body ctx=2 size=7 eos=true",
        ],
    );
    let upstream = out
        .outcome
        .upstream_request
        .expect("request reached upstream");
    assert_eq!(upstream.body.as_bytes(), b"payload");
    assert_eq!(out.outcome.elapsed_ms, 50);
}

fn streams_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/streams")
}

fn build_stream_state_filter() {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--target", "wasm32-wasip1", "--release", "--quiet"])
            .args(["-p", "test-filter-stream-state"])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        built,
        "building test-filter-stream-state for wasm32-wasip1 failed"
    );
    assert!(wasm_dir().join("test_filter_stream_state.wasm").is_file());
}

#[test]
fn per_request_data_kept_in_the_root_context_fails_with_two_live_streams() {
    build_stream_state_filter();
    let mut out = Vec::new();
    let summary = Runner::new().run_paths(&[streams_dir()], &mut out);
    let out = String::from_utf8(out).expect("utf-8 report");
    assert_eq!((summary.passed, summary.failed), (2, 1), "{out}");
    let bad = summary
        .files
        .iter()
        .find(|f| f.file.ends_with("must-fail-stream-state-root.yaml"))
        .expect("the root-context file ran");
    let interleaved = &bad.cases[0];
    assert_eq!(interleaved.name, "each stream answers with its own path");
    let failure = &interleaved.failures[0];
    assert_eq!(failure.what, "response header x-request-path", "{out}");
    assert_eq!(
        failure.detail,
        Detail::Mismatch {
            expected: r#""/a""#.into(),
            actual: r#""/b""#.into()
        }
    );
    assert!(
        bad.cases[1].failures.is_empty(),
        "one at a time hides it: {out}"
    );
    let fixed = summary
        .files
        .iter()
        .find(|f| f.file.ends_with("stream-state-fixed.yaml"))
        .expect("the fixed file ran");
    assert!(fixed.cases.iter().all(|c| c.failures.is_empty()), "{out}");
}

#[test]
fn scenario_steps_on_named_streams_are_checked_before_anything_runs() {
    let base = "plugin: {module: m.wasm}\ncases:\n  - name: c\n    steps:\n";
    for (steps, message) in [
        (
            "      - finish: a\n",
            r#"step 1: "a" is not opened by an earlier step"#,
        ),
        (
            "      - {open: a, request: GET /}\n      - {open: a, request: GET /}\n",
            r#"step 2: "a" is opened twice"#,
        ),
        ("      - open: a\n", "step 1: `open: a` needs a `request`"),
        (
            "      - {open: a, request: GET /}\n      - {finish: a, advance_ms: 5}\n",
            "step 2: a step does one thing, this one has `finish`, `advance_ms`",
        ),
        (
            "      - {send: a, body: [x]}\n",
            r#"step 1: "a" is not opened by an earlier step"#,
        ),
        (
            "      - {open: a, request: GET /}\n      - {finish: a, body: [x]}\n",
            "step 2: `body` does not go with `finish`",
        ),
        (
            "      - {open: a, request: GET /}\n      - {finish: a}\n      - {reset: a}\n",
            r#"step 3: "a" was finished by an earlier step"#,
        ),
        (
            "      - {answer: {cluster: auth, nth: 0}}\n",
            "step 1: `answer.nth` counts from 1",
        ),
        (
            "      - {open: a, request: GET /}\n      - {respond: a, worker: 1}\n",
            "step 2: `worker` does not go with `respond` (a named stream stays on the worker",
        ),
        (
            "      - hold_upstream: true\n",
            "step 1: `hold_upstream` belongs to an `open` step",
        ),
    ] {
        let text = format!("{base}{steps}");
        let error = harness::scenario::parse(&text, "t.yaml").expect_err(&text);
        assert!(error.contains(message), "{error}\nwanted: {message}");
    }
}

#[test]
fn named_stream_steps_send_parts_answer_held_callouts_and_reset() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/stream-steps");
    let mut out = Vec::new();
    let summary = Runner::new().run_paths(&[dir], &mut out);
    let out = String::from_utf8(out).expect("utf-8 report");
    assert_eq!((summary.passed, summary.failed), (5, 0), "{out}");
}

#[test]
fn plugins_with_one_vm_key_share_a_vm_with_roots_in_order_and_one_id_counter() {
    let plugins = |vm_ids: [&str; 2]| -> Vec<(FilterModule, HarnessConfig)> {
        vm_ids
            .iter()
            .map(|vm_id| {
                let mut config = probe_config(json!({"trace": true}));
                config.plugin.vm_id = vm_id.to_string();
                (FilterModule::from(probe_module()), config)
            })
            .collect()
    };
    let mut shared = Envoy::builder()
        .plugins(&plugins(["same", "same"]))
        .build()
        .expect("start");
    assert_eq!(shared.vms(0).len(), 1, "one VM for both plugins");
    assert_eq!(shared.root_ids(0), vec![1, 2]);
    let startup = callbacks(shared.vms(0)[0].startup());
    assert_in_order(
        &startup,
        &["configure ctx=1 size=14", "configure ctx=2 size=14"],
    );
    for (first, second) in [(3, 4), (5, 6)] {
        let out = shared.exchange(&exchange(get("/"))).expect("exchange");
        let seen = callbacks(&out.outcome);
        assert_in_order(
            &seen,
            &[
                &format!("create_http_context ctx={first} root=1"),
                &format!("request_headers ctx={first} headers=6 eos=true"),
                &format!("create_http_context ctx={second} root=2"),
                &format!("request_headers ctx={second} headers=6 eos=true"),
            ],
        );
        assert_eq!(out.outcome.end, StreamEnd::Completed);
        // Each position reports its own contexts' share of the shared VM.
        let own = |p: usize, ctx: u32| {
            let lines = callbacks(&out.filters[p]);
            let mine = format!("request_headers ctx={ctx} ");
            lines.iter().any(|l| l.starts_with(&mine))
        };
        assert!(
            own(0, first) && !own(0, second),
            "position 0: {:?}",
            callbacks(&out.filters[0])
        );
        assert!(
            own(1, second) && !own(1, first),
            "position 1: {:?}",
            callbacks(&out.filters[1])
        );
    }

    let separate = Envoy::builder()
        .plugins(&plugins(["one", "two"]))
        .build()
        .expect("start");
    assert_eq!(separate.vms(0).len(), 2, "different vm_ids, different VMs");
    assert_eq!(separate.root_ids(0), vec![1, 1]);

    // The key holds the code, not the load: the same file loaded twice
    // shares a VM (cpp-host makeVmKey hashes the bytes); other code does not.
    let reloaded =
        CompiledModule::from_file(wasm_dir().join("test_filter_probe.wasm")).expect("second load");
    let mut twice = plugins(["same", "same"]);
    twice[1].0 = FilterModule::from(reloaded);
    let twice = Envoy::builder().plugins(&twice).build().expect("start");
    assert_eq!(twice.vms(0).len(), 1, "same bytes, one VM");
    assert_eq!(twice.root_ids(0), vec![1, 2]);
    let mut other_code = plugins(["same", "same"]);
    other_code[1].0 = FilterModule::from(module("response_header.wasm"));
    other_code[1].1.plugin.configuration = r#"{"name":"x","value":"y"}"#.into();
    let other_code = Envoy::builder().plugins(&other_code).build();
    let other_code = other_code.expect("start");
    assert_eq!(other_code.vms(0).len(), 2, "different code, different VMs");
}

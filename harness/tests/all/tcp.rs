//! TCP connections through network filters, as Envoy's network filter
//! manager, Wasm network context and tcp_proxy run them: callback order,
//! data buffers and their reach, pausing and continuing, choosing the
//! tcp_proxy cluster, closes from either side, failures. The modules are
//! raw WAT filters; the callback trace shows what Envoy would call.

use harness::{
    ClusterSpec, CompiledModule, ConnectionClose, ConnectionSpec, Envoy, EnvoyOutcome,
    HarnessConfig, Outcome, Properties, StreamEnd, StreamHandle, StreamInput, TraceEvent,
    TraceLevel,
};

use crate::hostile::{compile, filter};

const IMPORTS: &str = r#"
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
  (import "env" "proxy_call_foreign_function" (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_every (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))"#;

/// Scratch at 0 (returned pointer and size), a status line at 300, the
/// foreign function's name at 400 and its argument (cluster `blue`) at 450.
const DATA: &str = r#"
  (data (i32.const 300) "status ")
  (data (i32.const 320) "HELLO")
  (data (i32.const 400) "set_envoy_filter_state")
  (data (i32.const 450) "\0a\17envoy.tcp_proxy.cluster\12\04blue")"#;

/// Helpers every module has: log a buffer's bytes, log a status as two
/// digits, choose cluster `blue`; `$conn` keeps the last connection context.
const HELPERS: &str = r#"
  (global $conn (mut i32) (i32.const 0))
  (func $log_buffer (param $type i32) (param $size i32)
    (drop (call $get_buffer (local.get $type) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4)))
    (drop (call $proxy_log_ (i32.const 2) (i32.load (i32.const 0)) (i32.load (i32.const 4)))))
  (func $log_status (param $s i32)
    (i32.store8 (i32.const 307) (i32.add (i32.const 48) (i32.div_u (local.get $s) (i32.const 10))))
    (i32.store8 (i32.const 308) (i32.add (i32.const 48) (i32.rem_u (local.get $s) (i32.const 10))))
    (drop (call $proxy_log_ (i32.const 2) (i32.const 300) (i32.const 9))))
  (func $choose_blue (result i32)
    (call $foreign (i32.const 400) (i32.const 22) (i32.const 450) (i32.const 31) (i32.const 0) (i32.const 4)))"#;

/// The callback bodies of a test filter (each leaves its i32 result, when
/// it has one); `$ctx`, `$size` and `$eos` name the arguments.
struct Bodies<'a> {
    new_connection: &'a str,
    downstream: &'a str,
    upstream: &'a str,
    extra: &'a str,
}

impl Default for Bodies<'_> {
    fn default() -> Self {
        Bodies {
            new_connection: "i32.const 0",
            downstream: "(call $log_buffer (i32.const 2) (local.get $size)) i32.const 0",
            upstream: "(call $log_buffer (i32.const 3) (local.get $size)) i32.const 0",
            extra: "",
        }
    }
}

fn tcp_filter(name: &str, b: Bodies<'_>) -> CompiledModule {
    let funcs = format!(
        r#"{HELPERS}
  (func (export "proxy_on_new_connection") (param $ctx i32) (result i32)
    (global.set $conn (local.get $ctx)) {new}) 
  (func (export "proxy_on_downstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    {down})
  (func (export "proxy_on_upstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    {up})
  (func (export "proxy_on_downstream_connection_close") (param i32 i32))
  (func (export "proxy_on_upstream_connection_close") (param i32 i32))
  (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
  {extra}"#,
        new = b.new_connection,
        down = b.downstream,
        up = b.upstream,
        extra = b.extra,
    );
    compile(name, &filter(IMPORTS, DATA, &funcs))
}

fn config() -> HarnessConfig {
    let mut c = crate::hostile::config();
    c.trace = TraceLevel::Callbacks;
    c.clusters.push(ClusterSpec {
        name: "blue".to_string(),
        ..ClusterSpec::default()
    });
    c
}

fn start(module: &CompiledModule, config: HarnessConfig) -> Envoy {
    Envoy::builder()
        .plugin(module, config)
        .build()
        .unwrap_or_else(|e| panic!("start-up failed: {e}"))
}

fn connect(envoy: &mut Envoy) -> (StreamHandle, EnvoyOutcome) {
    envoy
        .connect(None, &ConnectionSpec::default(), &Properties::new())
        .unwrap_or_else(|e| panic!("connect failed: {e}"))
}

fn client(envoy: &mut Envoy, c: StreamHandle, data: &str, end_stream: bool) -> Outcome {
    let data = data.as_bytes().to_vec();
    let input = StreamInput::Downstream { data, end_stream };
    envoy.send(c, input).expect("client sends").outcome
}

fn upstream(envoy: &mut Envoy, c: StreamHandle, data: &str, end_stream: bool) -> Outcome {
    let data = data.as_bytes().to_vec();
    let input = StreamInput::Upstream { data, end_stream };
    envoy.send(c, input).expect("upstream sends").outcome
}

const VOID: [&str; 6] = [
    "context_create",
    "downstream_connection_close",
    "upstream_connection_close",
    "log",
    "delete",
    "tick",
];

/// The network callbacks in an outcome's trace: `name(args)=result`,
/// without the `proxy_on_` prefix.
fn calls(outcome: &Outcome) -> Vec<String> {
    outcome
        .trace
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Callback {
                name, args, result, ..
            } => {
                let short = name.strip_prefix("proxy_on_").unwrap_or(name);
                let args: Vec<String> = args.iter().map(u64::to_string).collect();
                // Callbacks without a result are traced as 0.
                let void = VOID.contains(&short);
                let result = result
                    .filter(|_| !void)
                    .map(|r| format!("={r}"))
                    .unwrap_or_default();
                Some(format!("{short}({}){result}", args.join(",")))
            }
            TraceEvent::Hostcall { .. } => None,
        })
        .collect()
}

/// Runs the connection until it closes; what each side received.
fn closed_record(envoy: &mut Envoy, c: StreamHandle) -> harness::ConnectionRecord {
    let done = envoy.finish(c).expect("finish").outcome;
    done.connection.expect("a connection record")
}

fn logs(outcome: &Outcome) -> Vec<String> {
    outcome.logs.iter().map(|l| l.message.clone()).collect()
}

#[test]
fn a_connection_runs_envoys_network_callbacks_in_order() {
    let module = tcp_filter("order.wat", Bodies::default());
    let mut envoy = start(&module, config());
    let (c, opened) = connect(&mut envoy);
    assert_eq!(
        calls(&opened.outcome),
        ["context_create(2,1)", "new_connection(2)=0"]
    );
    let sent = client(&mut envoy, c, "hello", false);
    assert_eq!(calls(&sent), ["downstream_data(2,5,0)=0"]);
    assert_eq!(
        logs(&sent),
        ["hello"],
        "DOWNSTREAM_DATA holds the client's bytes"
    );
    let answered = upstream(&mut envoy, c, "world", true);
    assert_eq!(
        calls(&answered),
        ["upstream_data(2,5,1)=0", "upstream_connection_close(2,0)"],
        "the upstream's FIN: on_upstream_connection_close(UNKNOWN) right after its data"
    );
    let closed = client(&mut envoy, c, "", true);
    assert_eq!(
        calls(&closed),
        [
            "downstream_data(2,0,1)=0",
            "downstream_connection_close(2,2)",
            "done(2)=1",
            "log(2)",
            "delete(2)"
        ],
        "the client's FIN completes the close: REMOTE, then done, log, delete"
    );
    let done = envoy.finish(c).expect("finish").outcome;
    let record = done.connection.expect("a connection record");
    assert_eq!(record.upstream_received.to_text(), "hello");
    assert_eq!(record.downstream_received.to_text(), "world");
    assert!(record.upstream_end && record.downstream_end);
    assert_eq!(record.cluster.as_deref(), Some("upstream"));
    assert_eq!(record.closed_by, Some(ConnectionClose::Client));
    assert_eq!(done.end, StreamEnd::Completed);
}

#[test]
fn envoys_own_fin_last_closes_the_connection_locally() {
    let module = tcp_filter("local.wat", Bodies::default());
    let mut envoy = start(&module, config());
    let (c, _) = connect(&mut envoy);
    client(&mut envoy, c, "ping", true);
    let closed = upstream(&mut envoy, c, "pong", true);
    let names = calls(&closed);
    assert!(
        names.contains(&"downstream_connection_close(2,1)".to_string()),
        "{names:?}"
    );
    let record = closed_record(&mut envoy, c);
    assert_eq!(record.closed_by, Some(ConnectionClose::Envoy));
}

#[test]
fn tcp_proxy_takes_the_cluster_chosen_before_it_is_reached() {
    // Pausing in on_new_connection keeps tcp_proxy unreached until the
    // first bytes decide; a filter that continued at once has no say.
    for (pause, expected) in [("i32.const 1", "blue"), ("i32.const 0", "upstream")] {
        let module = tcp_filter(
            "route.wat",
            Bodies {
                new_connection: pause,
                downstream: "(drop (call $choose_blue)) i32.const 0",
                ..Bodies::default()
            },
        );
        let mut envoy = start(&module, config());
        let (c, _) = connect(&mut envoy);
        client(&mut envoy, c, "GET", false);
        upstream(&mut envoy, c, "", true);
        client(&mut envoy, c, "", true);
        let record = closed_record(&mut envoy, c);
        assert_eq!(
            record.cluster.as_deref(),
            Some(expected),
            "on_new_connection: {pause}"
        );
        assert_eq!(record.upstream_received.to_text(), "GET");
    }
}

#[test]
fn paused_client_data_accumulates_until_the_filter_continues() {
    // Pauses every chunk; the tick continues the connection's reading.
    let module = tcp_filter(
        "hold.wat",
        Bodies {
            new_connection: "(drop (call $tick_every (i32.const 10))) i32.const 0",
            downstream: "(call $log_buffer (i32.const 2) (local.get $size)) i32.const 1",
            extra: r#"(func (export "proxy_on_tick") (param i32)
                (drop (call $effective (global.get $conn)))
                (drop (call $continue (i32.const 2))))"#,
            ..Bodies::default()
        },
    );
    let mut envoy = start(&module, config());
    let (c, _) = connect(&mut envoy);
    client(&mut envoy, c, "ab", false);
    let second = client(&mut envoy, c, "cd", false);
    assert_eq!(
        calls(&second),
        ["downstream_data(2,4,0)=1"],
        "the whole buffer again"
    );
    assert_eq!(logs(&second), ["abcd"]);
    envoy.advance(10).expect("advance");
    client(&mut envoy, c, "", true);
    upstream(&mut envoy, c, "", true);
    let record = closed_record(&mut envoy, c);
    assert_eq!(record.upstream_received.to_text(), "abcd");
}

#[test]
fn the_data_buffers_follow_buffer_copy_rules_and_their_reach() {
    // In its callback DOWNSTREAM_DATA is rewritten (start 0 drains and
    // prepends); in on_upstream_data it is out of reach: empty to read,
    // BAD_ARGUMENT to write.
    let module = tcp_filter(
        "rewrite.wat",
        Bodies {
            downstream: "(call $log_status (call $set_buffer (i32.const 2) (i32.const 0) (local.get $size) (i32.const 320) (i32.const 5))) i32.const 0",
            upstream: "(call $log_buffer (i32.const 2) (i32.const 100)) (call $log_status (call $set_buffer (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 320) (i32.const 5))) i32.const 0",
            ..Bodies::default()
        },
    );
    let mut envoy = start(&module, config());
    let (c, _) = connect(&mut envoy);
    assert_eq!(logs(&client(&mut envoy, c, "hello", false)), ["status 00"]);
    let answered = upstream(&mut envoy, c, "x", false);
    assert_eq!(
        logs(&answered),
        ["", "status 02"],
        "out of reach: no bytes, BAD_ARGUMENT"
    );
    client(&mut envoy, c, "", true);
    upstream(&mut envoy, c, "", true);
    let record = closed_record(&mut envoy, c);
    // The FIN's callback (size 0) prepends once more.
    assert_eq!(record.upstream_received.to_text(), "HELLOHELLO");
}

#[test]
fn close_stream_closes_the_client_connection_after_the_callback() {
    let module = tcp_filter(
        "close.wat",
        Bodies {
            downstream: "(drop (call $close (i32.const 2))) i32.const 0",
            ..Bodies::default()
        },
    );
    let mut envoy = start(&module, config());
    let (c, _) = connect(&mut envoy);
    let sent = client(&mut envoy, c, "bad", false);
    assert_eq!(
        calls(&sent),
        [
            "downstream_data(2,3,0)=0",
            "downstream_connection_close(2,1)",
            "done(2)=1",
            "log(2)",
            "delete(2)"
        ]
    );
    let record = closed_record(&mut envoy, c);
    assert!(
        record.upstream_received.0.is_empty(),
        "the close stops the data"
    );
    assert_eq!(record.closed_by, Some(ConnectionClose::Envoy));
    assert_eq!(
        record.close_reason.as_deref(),
        Some("wasm_downstream_close")
    );
}

#[test]
fn continuing_the_upstream_direction_is_unimplemented_as_in_envoy() {
    let module = tcp_filter(
        "resume-up.wat",
        Bodies {
            upstream: "(call $log_status (call $continue (i32.const 3))) i32.const 0",
            ..Bodies::default()
        },
    );
    let mut envoy = start(&module, config());
    let (c, _) = connect(&mut envoy);
    let answered = upstream(&mut envoy, c, "x", false);
    assert!(
        logs(&answered).contains(&"status 12".to_string()),
        "{:?}",
        logs(&answered)
    );
}

#[test]
fn a_refused_upstream_or_unknown_cluster_closes_the_client_connection() {
    let module = tcp_filter("refused.wat", Bodies::default());
    let mut refusing = config();
    refusing.clusters.push(ClusterSpec {
        name: "upstream".to_string(),
        refuse_connections: true,
        ..ClusterSpec::default()
    });
    let mut envoy = start(&module, refusing);
    let (c, opened) = connect(&mut envoy);
    assert_eq!(
        calls(&opened.outcome),
        [
            "context_create(2,1)",
            "new_connection(2)=0",
            "downstream_connection_close(2,1)",
            "done(2)=1",
            "log(2)",
            "delete(2)"
        ]
    );
    let record = closed_record(&mut envoy, c);
    assert!(record.upstream_failed);
    assert_eq!(record.closed_by, Some(ConnectionClose::Envoy));

    let module = tcp_filter(
        "nowhere.wat",
        Bodies {
            new_connection: "i32.const 1",
            downstream: "(drop (call $choose_blue)) i32.const 0",
            ..Bodies::default()
        },
    );
    let mut without_blue = config();
    without_blue.clusters.retain(|c| c.name != "blue");
    let mut envoy = start(&module, without_blue);
    let (c, _) = connect(&mut envoy);
    client(&mut envoy, c, "x", false);
    let record = closed_record(&mut envoy, c);
    assert!(record.upstream_failed);
    assert!(
        record
            .close_reason
            .unwrap_or_default()
            .contains("no cluster named blue")
    );
}

#[test]
fn a_trap_closes_the_connection_unless_fail_open() {
    let trapping = Bodies {
        downstream: "unreachable",
        ..Bodies::default()
    };
    let module = tcp_filter("trap.wat", trapping);
    let mut envoy = start(&module, config());
    let (c, _) = connect(&mut envoy);
    let sent = client(&mut envoy, c, "x", false);
    assert!(sent.trap.is_some());
    let names = calls(&sent);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("downstream_connection_close")),
        "a failed VM gets no more callbacks: {names:?}"
    );
    let record = closed_record(&mut envoy, c);
    assert_eq!(record.close_reason.as_deref(), Some("wasm_fail_stream"));
    assert!(record.upstream_received.0.is_empty());

    let module = tcp_filter(
        "trap-open.wat",
        Bodies {
            downstream: "unreachable",
            ..Bodies::default()
        },
    );
    let mut open = config();
    open.plugin.fail_open = true;
    let mut envoy = start(&module, open);
    let (c, _) = connect(&mut envoy);
    client(&mut envoy, c, "through", true);
    upstream(&mut envoy, c, "", true);
    let record = closed_record(&mut envoy, c);
    assert_eq!(
        record.upstream_received.to_text(),
        "through",
        "fail_open lets data pass"
    );
}

#[test]
fn a_client_reset_closes_at_once_without_the_upstream_close() {
    let module = tcp_filter("reset.wat", Bodies::default());
    let mut envoy = start(&module, config());
    let (c, _) = connect(&mut envoy);
    client(&mut envoy, c, "x", false);
    let reset = envoy.send(c, StreamInput::Reset).expect("reset").outcome;
    assert_eq!(
        calls(&reset),
        [
            "downstream_connection_close(2,2)",
            "done(2)=1",
            "log(2)",
            "delete(2)"
        ]
    );
    assert!(
        envoy.send(c, StreamInput::Reset).is_err(),
        "a closed connection takes nothing more"
    );
}

#[test]
fn read_filters_run_in_chain_order_and_write_filters_in_reverse() {
    // Each filter prepends its letter to the data in both directions (320
    // holds "HELLO": the first filter prepends "H", the second "E").
    let prepend = |name: &str, at: &str| {
        let body = |buffer: u32| {
            format!(
                "(drop (call $set_buffer (i32.const {buffer}) (i32.const 0) (i32.const 0) (i32.const {at}) (i32.const 1))) i32.const 0"
            )
        };
        tcp_filter(
            name,
            Bodies {
                downstream: &body(2),
                upstream: &body(3),
                ..Bodies::default()
            },
        )
    };
    let (h, e) = (prepend("h.wat", "320"), prepend("e.wat", "321"));
    let mut envoy = Envoy::builder()
        .plugin(&h, config())
        .plugin(&e, config())
        .build()
        .expect("start-up");
    let (c, opened) = connect(&mut envoy);
    let each: Vec<Vec<String>> = opened.filters.iter().map(calls).collect();
    assert_eq!(each, [["context_create(2,1)", "new_connection(2)=0"]; 2]);
    client(&mut envoy, c, "c", true);
    upstream(&mut envoy, c, "r", true);
    let record = closed_record(&mut envoy, c);
    assert_eq!(
        record.upstream_received.to_text(),
        "EHc",
        "read: first filter first"
    );
    assert_eq!(
        record.downstream_received.to_text(),
        "HEr",
        "write: last filter first"
    );
}

#[test]
fn an_http_filter_on_a_tcp_connection_is_named_as_such() {
    // The Rust SDK makes an HTTP context for the connection, then panics
    // in on_new_connection (`invalid context_id`), as it would in Envoy.
    let module = crate::support::probe_module();
    let mut envoy = start(&module, crate::support::probe_config(serde_json::json!({})));
    let (c, opened) = connect(&mut envoy);
    let trap = opened.outcome.trap.clone().expect("the SDK traps");
    assert_eq!(trap.callback, "proxy_on_new_connection");
    let hint = logs(&opened.outcome)
        .into_iter()
        .find(|l| l.contains("HTTP filter on a TCP listener"));
    assert!(hint.is_some(), "{:?}", opened.outcome.logs);
    let record = closed_record(&mut envoy, c);
    assert_eq!(
        record.closed_by,
        Some(ConnectionClose::Envoy),
        "fail closed"
    );
}

#[test]
fn harness_run_tcp_prints_the_connection_like_nc() {
    use crate::cli::{harness, stdout};
    let wat = crate::support::workspace_root().join("harness/wat-filters/tcp-count/tcp_count.wat");
    let wat = wat.to_string_lossy();
    let args = [
        "run",
        &wat,
        "--tcp",
        "--send",
        "hello",
        "--upstream-send",
        "hi!",
    ];
    let output = harness(&args);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    for line in [
        "Connection to 10.0.0.2 9000 port [tcp/*] succeeded!",
        "> hello",
        "< hi!",
        "* the upstream (cluster upstream) received 5 bytes: hello",
        "* the client received 3 bytes: hi!",
        "* metric tcp_count.downstream_bytes (counter) = 5",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in:\n{text}"
        );
    }
    let refused = harness(&["run", &wat, "--tcp", "--request", "GET /"]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        crate::cli::stderr(&refused)
    );
    assert!(crate::cli::stderr(&refused).contains("--tcp runs a connection"));
}

/// `GET /check` to cluster `c` (the test config's), as a header map.
const CHECK_CALL: &str = r#"(data (i32.const 600) "c")
  (data (i32.const 640) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\01\00\00\00\3a\6d\65\74\68\6f\64\00\47\45\54\00\3a\70\61\74\68\00\2f\63\68\65\63\6b\00\3a\61\75\74\68\6f\72\69\74\79\00\63\00")"#;

#[test]
fn a_connection_can_wait_for_a_callout_and_continue_from_its_answer() {
    // The first chunk asks cluster `c` and pauses; the answer (to the root
    // context) sets the connection as effective context and continues it.
    let funcs = format!(
        r#"{HELPERS}
  {CHECK_CALL}
  (global $asked (mut i32) (i32.const 0))
  (func (export "proxy_on_new_connection") (param $ctx i32) (result i32)
    (global.set $conn (local.get $ctx)) i32.const 0)
  (func (export "proxy_on_downstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (if (result i32) (global.get $asked)
      (then i32.const 0)
      (else
        (global.set $asked (i32.const 1))
        (call $log_status (call $http_call (i32.const 600) (i32.const 1) (i32.const 640) (i32.const 66)
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8)))
        i32.const 1)))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (drop (call $effective (global.get $conn)))
    (drop (call $continue (i32.const 2))))"#
    );
    let imports = format!(
        r#"{IMPORTS}
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#
    );
    let module = compile("callout.wat", &filter(&imports, DATA, &funcs));
    let mut envoy = start(&module, config());
    let (c, _) = connect(&mut envoy);
    let sent = envoy
        .send(
            c,
            StreamInput::Downstream {
                data: b"abc".to_vec(),
                end_stream: false,
            },
        )
        .expect("send")
        .outcome;
    assert_eq!(logs(&sent), ["status 00"]);
    assert_eq!(sent.http_calls.len(), 1);
    let record = sent.connection.expect("record");
    assert_eq!(
        record.upstream_received.to_text(),
        "abc",
        "the answer continued the connection"
    );
}

#[test]
fn connections_go_round_robin_over_workers_each_with_its_own_contexts() {
    let module = tcp_filter("workers.wat", Bodies::default());
    let mut envoy = Envoy::builder()
        .plugin(&module, config())
        .workers(2)
        .build()
        .expect("start-up");
    let (a, _) = connect(&mut envoy);
    let (b, _) = connect(&mut envoy);
    assert_ne!(a.worker(), b.worker());
    for c in [a, b] {
        let sent = client(&mut envoy, c, "x", false);
        assert_eq!(
            calls(&sent),
            ["downstream_data(2,1,0)=0"],
            "context 2 on each worker"
        );
    }
}

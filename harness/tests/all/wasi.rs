//! Envoy's restricted WASI, probed by a hand-written module
//! (harness/wat-filters/wasi/wasi_details.wat): what each call answers is
//! what proxy-wasm-cpp-host's `wasi_unstable_*` functions answer.

use harness::{CompiledModule, DownstreamRequest, Harness, HarnessConfig, PluginConfig};

use crate::support::{exchange, ok_upstream};

fn details(env: &[(&str, &str)]) -> harness::Outcome {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wat-filters/wasi/wasi_details.wat");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let module = CompiledModule::from_bytes("wasi_details.wat", text.as_bytes()).unwrap();
    let config = HarnessConfig {
        plugin: PluginConfig {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PluginConfig::default()
        },
        ..HarnessConfig::default()
    };
    let mut envoy = Harness::new(&module, config).unwrap();
    let request = DownstreamRequest::from_request_line("GET /wasi").unwrap();
    exchange(&mut envoy, request, ok_upstream())
}

#[test]
fn wasi_answers_as_envoy_does() {
    let outcome = details(&[("ONLY", "this"), ("AND", "that")]);
    let upstream = outcome.upstream_request.as_ref().expect("forwarded");
    let fields = upstream.headers.get_text("x-wasi").expect("x-wasi");
    let fields: Vec<&str> = fields.split(' ').collect();
    assert_eq!(
        fields,
        [
            "00", // clock_res_get(realtime): success
            "01", // its resolution: 1 ns
            "58", // clock_res_get(process cputime): ENOTSUP
            "58", // clock_time_get(process cputime): ENOTSUP
            "00", // fd_seek: success, no effect
            "00", // fd_close: success, no effect
            "08", // fd_write to fd 3: EBADF
            "02", // environ: the two configured variables only
        ]
    );
    assert!(
        !outcome.logs.iter().any(|l| l.message.contains("lost")),
        "nothing written to fd 3 is logged: {:?}",
        outcome.logs
    );
}

#[test]
fn proc_exit_returns_to_the_guest_as_envoy_does() {
    let outcome = details(&[]);
    let response = outcome.response.as_ref().expect("response");
    assert_eq!(
        response.message.headers.get_text("x-after-exit").as_deref(),
        Some("yes"),
        "the code after proc_exit ran"
    );
    assert!(outcome.trap.is_none(), "no trap: {:?}", outcome.trap);
    assert!(
        outcome
            .logs
            .iter()
            .any(|l| l.message.contains("proc_exit(3)")),
        "{:?}",
        outcome.logs
    );
}

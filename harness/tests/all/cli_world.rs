//! `harness run` with its world from flags alone (`--cluster`,
//! `--property`, `--advance`, no request) or from a scenario file
//! (`--world`), on the probe filter.

use serde_json::{Value, json};

use crate::cli::{harness, run_probe, stderr, stdout};
use crate::support::{probe_module, wasm_dir};

fn probe_path() -> String {
    let _ = probe_module();
    wasm_dir()
        .join("test_filter_probe.wasm")
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// The transcript's filter log lines that hold `needle`.
fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_timer_only_plugin_runs_with_advance_and_no_request() {
    let script = json!({
        "configure": [{"op": "set_tick_period", "ms": 1000}],
        "tick": [{"op": "get_current_time", "label": "tick at"}],
    });
    let out = run_probe(&script, &["--advance", "3s"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("* virtual clock advanced 3000ms with no stream"),
        "{text}"
    );
    assert!(
        !text.contains("never reached the upstream") && !text.contains("response as the client"),
        "no request was sent: {text}"
    );
    let ticks = lines_with(&text, "tick at: OK ns=");
    assert_eq!(ticks.len(), 3, "{text}");
    // 2024-01-01T00:00:00Z plus one, two and three seconds.
    for (i, line) in ticks.iter().enumerate() {
        let ns = (1_704_067_200_000 + 1000 * (i as u64 + 1)) * 1_000_000;
        assert!(line.ends_with(&format!("ns={ns}")), "{line}");
    }

    let json_out = run_probe(&script, &["--advance", "1500ms", "--json"]);
    let doc: Value = serde_json::from_slice(&json_out.stdout).expect("one JSON document");
    assert!(doc.get("outcome").is_none(), "no exchange: {doc}");
    assert_eq!(doc["advance"]["ms"], 1500);
    let logs = doc["advance"]["outcome"]["logs"].as_array().expect("logs");
    let ticks = logs
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("tick at"))
        })
        .count();
    assert_eq!(ticks, 1, "{doc}");
}

#[test]
fn request_flags_without_a_request_under_advance_are_refused() {
    let out = run_probe(&json!({}), &["--advance", "1s", "-H", "x: y"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("add --request"), "{}", stderr(&out));
    let out = run_probe(&json!({}), &["--advance", "soon"]);
    assert!(stderr(&out).contains("500ms, 2s, 1m"), "{}", stderr(&out));
}

/// Pauses each request for a call to `auth`, resumes on its answer, and
/// reads two properties (one with a dot inside a segment).
fn callout_script() -> Value {
    json!({
        "http": {
            "request_headers": {"action": "pause", "steps": [
                {"op": "get_property", "label": "lb key", "decode": "str",
                 "path": ["metadata", "filter_metadata", "envoy.lb", "k"]},
                {"op": "get_property", "label": "port", "decode": "i64", "path": ["source", "port"]},
                {"op": "http_call", "cluster": "auth", "timeout_ms": 1000,
                 "headers": [[":method", "GET"], [":path", "/check"], [":authority", "auth"]]}
            ]},
            "callouts": {"http_call_response": [
                {"op": "get_current_time", "label": "answered at"},
                {"op": "get_buffer", "label": "answer", "buffer": "http_call_response_body"},
                {"op": "continue_stream", "stream": "request"}
            ]}
        }
    })
}

#[test]
fn a_callout_plugin_runs_from_cluster_and_property_flags_alone() {
    let out = run_probe(
        &callout_script(),
        &[
            "--request",
            "GET /x",
            "--cluster",
            "auth={http: [{status: 200, body: ok, delay_ms: 20}]}",
            "--property",
            r#"["metadata","filter_metadata","envoy.lb","k"]=v1"#,
            "--property",
            "source.port=8080",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("* http_call #1 to auth -> answered (status 200)"),
        "{text}"
    );
    assert!(text.contains("< HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("lb key: OK value=\"v1\""), "{text}");
    assert!(text.contains("port: OK value=8080"), "{text}");
    // The answer arrived 20 virtual ms after the call.
    let at = lines_with(&text, "answered at: OK ns=");
    assert_eq!(at.len(), 1, "{text}");
    assert!(at[0].ends_with("ns=1704067200020000000"), "{}", at[0]);

    // Without the cluster, Envoy rejects the call: the request stays paused.
    let out = run_probe(&callout_script(), &["--request", "GET /x"]);
    assert!(
        stdout(&out).contains("STREAM STALLED") || stdout(&out).contains("local reply"),
        "{}",
        stdout(&out)
    );

    let out = run_probe(&callout_script(), &["--cluster", "auth={htp: []}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--cluster auth"), "{}", stderr(&out));
}

#[test]
fn world_takes_a_scenario_files_plugin_clusters_and_properties() {
    let dir = tempdir();
    let script = callout_script().to_string();
    let scenario = format!(
        "plugin:\n  module: {module}\n  name: from-world\n  config: '{script}'\n\
         clusters:\n  - name: auth\n    http: [{{status: 200, body: world-answer}}]\n\
         properties:\n  source.port: 9090\n  \"metadata\\0filter_metadata\\0envoy.lb\\0k\": w\n\
         cases:\n  - name: unused\n    request: GET /\n",
        module = probe_path(),
    );
    let file = dir.join("world.yaml");
    std::fs::write(&file, scenario).expect("write scenario");
    let file = file.to_str().expect("utf-8");

    let out = harness(&["run", "--world", file, "--request", "GET /w"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("answer: OK") && text.contains("world-answer"),
        "{text}"
    );
    assert!(text.contains("port: OK value=9090"), "{text}");
    assert!(text.contains("lb key: OK value=\"w\""), "{text}");
    assert!(text.contains("< HTTP/1.1 200 OK"), "{text}");

    // Flags win over the file: a cluster of the same name, a property.
    let out = harness(&[
        "run",
        "--world",
        file,
        "--cluster",
        "auth={http: [{status: 200, body: flag-answer}]}",
        "--property",
        "source.port=1",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("flag-answer") && !text.contains("world-answer"),
        "{text}"
    );
    assert!(
        lines_with(&text, "port: OK value=")
            .iter()
            .all(|l| l.ends_with("value=1")),
        "{text}"
    );

    // A world file without a module or cases takes the command line's module.
    let bare = dir.join("bare.yaml");
    std::fs::write(
        &bare,
        format!(
            "plugin:\n  config: '{script}'\nclusters: [{{name: auth, http: [{{body: bare}}]}}]\n"
        ),
    )
    .expect("write");
    let bare = bare.to_str().expect("utf-8");
    let module = probe_path();
    let out = harness(&["run", &module, "--world", bare]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("bare"), "{text}");
    let out = harness(&["run", "--world", bare]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("plugin.module is required"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the system temp dir.
pub fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "harness-cli-world-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

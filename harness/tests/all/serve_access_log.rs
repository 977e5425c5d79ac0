//! `harness serve -c` with the connection manager's `access_log`: file
//! and stderr loggers in text and JSON formats, none at all, and a format
//! serve cannot write.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{curl, python_server, spawn_serve_to};
use crate::serve_bootstrap::{TempFile, bootstrap, cluster};
use crate::support::workspace_root;

/// A listener routing everything to cluster `api` (route name `all`),
/// with `access_log` (YAML list items at the HCM's indentation).
fn listener(access_log: &str) -> String {
    format!(
        r#"
  - name: front
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
{access_log}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: rewrite
                match: {{ prefix: /old/ }}
                route: {{ cluster: api, prefix_rewrite: /new/ }}
              - name: to-api
                match: {{ prefix: / }}
                route: {{ cluster: api }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"#
    )
}

/// Waits (up to 10 s) until `path` holds `lines` lines; its text.
fn lines_in(path: &std::path::Path, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("harness-access-log-{}-{name}", std::process::id()))
}

#[test]
fn file_and_stderr_loggers_write_their_formats() {
    let (_api, api) = python_server(0.0, "from api");
    let text_log = temp_path("text.log");
    let _ = std::fs::remove_file(&text_log);
    let access_log = format!(
        r#"          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              log_format:
                text_format_source:
                  inline_string: "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(:PATH)% %RESPONSE_CODE% %UPSTREAM_CLUSTER% %ROUTE_NAME% %REQ(X-TAG):4% %RESPONSE_CODE_DETAILS%\n"
          - name: envoy.access_loggers.stderr
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog
              log_format:
                json_format:
                  code: "%RESPONSE_CODE%"
                  agent: "%REQ(USER-AGENT)%"
                  missing: "%REQ(X-NONE)%"
                  bytes: "%BYTES_SENT%""#,
        text_log.display()
    );
    let file = TempFile::new(
        "yaml",
        &bootstrap(&[listener(&access_log)], &[cluster("api", api)]),
    );
    let served = spawn_serve_to(
        &["-c", &stdout_arg(&file), "--concurrency", "1"],
        1,
        &[],
        Stdio::null(),
    );
    let url = format!("http://{}/items?x=1", served.listeners["front"]);
    let (status, _, body) = curl(&["-H", "x-tag: abcdefgh", "-A", "probe/1"], &url);
    assert_eq!((status, body.as_str()), (200, "from api"));

    // A prefix_rewrite: the router keeps the client's path in
    // x-envoy-original-path, which the default line's operator prefers.
    let rewritten = format!("http://{}/old/x", served.listeners["front"]);
    assert_eq!(curl(&[], &rewritten).0, 200);
    let text = lines_in(&text_log, 2);
    assert_eq!(
        text,
        "GET /items?x=1 /items?x=1 200 api to-api abcd via_upstream\n\
         GET /old/x /new/x 200 api rewrite - via_upstream\n"
    );
    let json_line = served
        .log_line_with("\"agent\"")
        .expect("the stderr logger's JSON line");
    let value: serde_json::Value = serde_json::from_str(&json_line).expect("one JSON object");
    assert_eq!(
        value,
        serde_json::json!({"code": 200, "agent": "probe/1", "missing": null, "bytes": 8})
    );
    let _ = std::fs::remove_file(&text_log);
}

fn stdout_arg(file: &TempFile) -> String {
    file.path().to_string_lossy().into_owned()
}

#[test]
fn without_access_log_serve_prints_no_access_log_line() {
    let (_api, api) = python_server(0.0, "from api");
    let file = TempFile::new("yaml", &bootstrap(&[listener("")], &[cluster("api", api)]));
    let out_path = temp_path("stdout.log");
    let out = std::fs::File::create(&out_path).expect("the temp dir is writable");
    let served = spawn_serve_to(
        &["-c", &stdout_arg(&file), "--concurrency", "1"],
        1,
        &[],
        Stdio::from(out),
    );
    let url = format!("http://{}/", served.listeners["front"]);
    for _ in 0..3 {
        assert_eq!(curl(&[], &url).0, 200);
    }
    drop(served);
    let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert_eq!(printed, "", "Envoy logs nothing without an access_log");
    let _ = std::fs::remove_file(&out_path);
}

#[test]
fn an_operator_serve_cannot_write_stops_it_with_the_path() {
    let access_log = r#"          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source: { inline_string: "%DOWNSTREAM_PEER_URI_SAN%\n" }"#;
    let file = TempFile::new(
        "yaml",
        &bootstrap(&[listener(access_log)], &[cluster("api", 9)]),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["serve", "-c", &stdout_arg(&file)])
        .current_dir(workspace_root())
        .output()
        .expect("harness serve runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "access_log[0].typed_config.log_format.text_format_source.inline_string: \
             %DOWNSTREAM_PEER_URI_SAN% is not served"
        ),
        "{stderr}"
    );
}

//! `harness serve` on real sockets: curl (HTTP/1.1 and HTTP/2 with prior
//! knowledge) in front, python3 HTTP servers as the upstream and as a
//! cluster the filter calls, with real delays and timeouts.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{wasm_dir, workspace_root};

/// A process stopped (by its PID) when dropped.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A threaded python3 server on a free loopback port answering every GET
/// after `delay` seconds with `body` (and an `x-user-id` header); its port.
pub(crate) fn python_server(delay: f64, body: &str) -> (Running, u16) {
    let script = r#"
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
delay, body = float(sys.argv[1]), sys.argv[2].encode()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(delay)
        self.send_response(200)
        self.send_header("x-user-id", "u1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer.request_queue_size = 128
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
    python_script(script, &[&delay.to_string(), body])
}

/// Runs a python3 server `script` (with `args`) that prints the loopback
/// port it listens on as its first line; the process and that port.
pub(crate) fn python_script(script: &str, args: &[&str]) -> (Running, u16) {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/setup.sh installs it)");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the server prints its port");
    let port = line.trim().parse().expect("a port number");
    (Running(child), port)
}

/// A running `harness serve`: its process, its listeners by name, its
/// admin address, and every stderr line so far.
pub(crate) struct Served {
    pub(crate) process: Running,
    pub(crate) listeners: HashMap<String, String>,
    pub(crate) admin: Option<String>,
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// The address of its one listener.
    pub(crate) fn address(&self) -> String {
        self.listeners.values().next().cloned().unwrap_or_default()
    }

    /// Waits (up to 20 s) for a stderr line containing `text`.
    pub(crate) fn log_line_with(&self, text: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let lines = self.log.lock().unwrap();
            if let Some(line) = lines.iter().find(|l| l.contains(text)) {
                return Some(line.clone());
            }
            drop(lines);
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// `harness serve ARGS` until `count` listeners are up; its stderr keeps
/// being read (and kept) so it never blocks on a full pipe.
pub(crate) fn spawn_serve(args: &[&str], count: usize) -> Served {
    spawn_serve_with_env(args, count, &[])
}

/// [`spawn_serve`] with these environment variables set for serve.
pub(crate) fn spawn_serve_with_env(args: &[&str], count: usize, env: &[(&str, &str)]) -> Served {
    spawn_serve_to(args, count, env, Stdio::null())
}

/// [`spawn_serve_with_env`] with serve's stdout (the access log) to `stdout`.
pub(crate) fn spawn_serve_to(
    args: &[&str],
    count: usize,
    env: &[(&str, &str)],
    stdout: Stdio,
) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("harness serve starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let (mut listeners, mut admin, mut seen) = (HashMap::new(), None, Vec::new());
    while listeners.len() < count {
        let line = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("harness serve stopped before listening:\n{seen:#?}"));
        if let Some(rest) = line.strip_prefix("harness serve: admin on http://") {
            admin = Some(rest.trim().to_string());
        }
        let listening = line
            .strip_prefix("harness serve: listening on ")
            .and_then(|rest| rest.split_once("://"))
            .map(|(_, rest)| rest);
        if let Some(rest) = listening {
            let address = rest.split_whitespace().next().unwrap_or_default();
            let name = rest
                .rsplit_once("(listener ")
                .map(|(_, n)| n.trim_end_matches(')'))
                .unwrap_or_default();
            listeners.insert(name.to_string(), address.to_string());
        }
        seen.push(line);
    }
    let log = Arc::new(Mutex::new(seen));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Served {
        process: Running(child),
        listeners,
        admin,
        log,
    }
}

/// `harness serve` with these arguments on a free port.
fn serve(args: &[&str]) -> Served {
    spawn_serve(&[args, &["--listen", "127.0.0.1:0"]].concat(), 1)
}

/// curl's status code, headers and body for `url`.
pub(crate) fn curl(extra: &[&str], url: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "--max-time", "20"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

pub(crate) fn module(file: &str) -> String {
    crate::support::module(file);
    wasm_dir().join(file).to_string_lossy().into_owned()
}

#[test]
fn a_filter_serves_real_requests_over_http1_and_h2c() {
    let (_upstream, port) = python_server(0.0, "hello from upstream");
    let response_header = module("response_header.wasm");
    let config = json!({"name": "x-demo", "value": "served"}).to_string();
    let upstream = format!("http://127.0.0.1:{port}");
    let served = serve(&[
        &response_header,
        "--config",
        &config,
        "--upstream",
        &upstream,
    ]);
    let at = served.address();
    for extra in [&[][..], &["--http2-prior-knowledge"][..]] {
        let (status, head, body) = curl(extra, &format!("http://{at}/index.html"));
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("x-demo: served"), "{head}");
        assert!(head.contains("server: envoy"), "{head}");
        assert_eq!(body, "hello from upstream");
    }
}

#[test]
fn without_a_module_serve_is_the_router_alone() {
    // The upstream answers with the request headers it received.
    let script = r#"
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = "".join(f"{k.lower()}: {v}\n" for k, v in self.headers.items()).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
    let (_upstream, port) = python_script(script, &[]);
    let upstream = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_path = dir.path().join("access.log");
    let log = std::fs::File::create(&log_path).expect("the access log file");
    let served = spawn_serve_to(
        &[
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        1,
        &[],
        Stdio::from(log),
    );
    let (status, head, body) = curl(
        &["-A", "probe/1", "-H", "x-forwarded-for: 10.0.0.7"],
        &format!("http://{}/r", served.address()),
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("server: envoy"), "{head}");
    assert!(head.contains("x-envoy-upstream-service-time: "), "{head}");
    for added in [
        "x-request-id: ",
        "x-forwarded-proto: http",
        "x-envoy-expected-rq-timeout-ms: 15000",
    ] {
        assert!(body.contains(added), "{added} in {body}");
    }
    // Envoy's default access-log line, with the request id the upstream got.
    let request_id = body
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a request id")
        .to_string();
    // The line is written when the stream is torn down, maybe just after
    // curl has its response.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    while line.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        line = std::fs::read_to_string(&log_path).expect("the access log");
    }
    let fields = format!("\"GET /r HTTP/1.1\" 200 - 0 {} ", body.len());
    assert!(line.contains(&fields), "{fields} in {line}");
    let tail = format!(
        "\"10.0.0.7\" \"probe/1\" \"{request_id}\" \"{}\" \"127.0.0.1:{port}\"",
        served.address()
    );
    assert!(
        line.trim_end().ends_with(&tail),
        "{tail} at the end of {line}"
    );
    let admin = served.admin.clone().expect("an admin address");
    let (_, _, dump) = curl(&[], &format!("http://{admin}/config_dump"));
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("config_dump is JSON");
    assert_eq!(dump["listeners"][0]["filters"], json!([]), "{dump}");
    // A plugin's flags without a plugin are a usage error, not ignored.
    let refused = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["serve", "--upstream", &upstream, "--config", "{}"])
        .output()
        .expect("harness runs");
    assert_eq!(refused.status.code(), Some(2));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("<MODULE>"), "{text}");
}

/// The probe pauses every request on an http_call to `auth` and continues
/// when the answer (or the router's timeout reply) arrives.
fn callout_probe(timeout_ms: u64) -> String {
    json!({"routes": {"/": {
        "request_headers": {"action": "pause", "steps": [{
            "op": "http_call", "cluster": "auth", "timeout_ms": timeout_ms,
            "headers": [[":method", "GET"], [":path", "/check"], [":authority", "auth"]]
        }]},
        "callouts": {"http_call_response": [{"op": "continue_stream", "stream": "request"}]}
    }}})
    .to_string()
}

/// serve with the callout probe (`timeout_ms`), upstream port `up`, and
/// cluster `auth` at `auth_url`.
fn serve_probe(timeout_ms: u64, up: u16, auth_url: &str) -> (Served, String) {
    let probe = module("test_filter_probe.wasm");
    let config = callout_probe(timeout_ms);
    let upstream = format!("http://127.0.0.1:{up}");
    let cluster = format!("auth={auth_url}");
    let args = [
        "--config",
        &config,
        "--upstream",
        &upstream,
        "--cluster",
        &cluster,
    ];
    let mut all = vec![probe.as_str()];
    all.extend(args);
    let served = serve(&all);
    let at = served.address();
    (served, at)
}

#[test]
fn sixteen_requests_paused_on_a_one_second_callout_finish_together() {
    let (_upstream, up) = python_server(0.0, "ok");
    let (_auth, auth) = python_server(1.0, "");
    let (_serve, at) = serve_probe(0, up, &format!("http://127.0.0.1:{auth}"));
    let url = format!("http://{at}/");
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || curl(&[], &url).0)
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap_or(0)).collect();
    let took = started.elapsed();
    assert_eq!(statuses, [200; 16]);
    // One after another they would take 16 s; side by side about one callout.
    assert!(took < Duration::from_secs(8), "16 callouts took {took:?}");
}

#[test]
fn a_callout_timeout_fires_in_real_time_and_a_refused_cluster_answers() {
    let (_upstream, up) = python_server(0.0, "ok");
    let (_slow, slow) = python_server(5.0, "");
    let (_serve, at) = serve_probe(200, up, &format!("http://127.0.0.1:{slow}"));
    let started = Instant::now();
    let (status, _, body) = curl(&[], &format!("http://{at}/"));
    assert_eq!(
        (status, body.as_str()),
        (200, "ok"),
        "the probe continues after the 504"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 200 ms timeout, not the 5 s answer"
    );
    // Nothing listens on port 9 here: the call is refused and answered at once.
    let (_serve, at) = serve_probe(200, up, "http://127.0.0.1:9");
    let (status, _, _) = curl(&[], &format!("http://{at}/"));
    assert_eq!(status, 200);
}

#[test]
fn a_plugin_that_does_not_configure_stops_serve_before_it_listens() {
    let response_header = module("response_header.wasm");
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "serve",
            &response_header,
            "--config",
            "{}",
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("harness serve runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not start"), "{stderr}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
}

#[test]
fn the_admin_listener_serves_ready_stats_server_info_config_dump_logging_and_quitquitquit() {
    let (_upstream, up) = python_server(0.0, "ok");
    let probe = module("test_filter_probe.wasm");
    let config = json!({
        "configure": [{"op": "define_metric", "kind": "counter",
                       "name": "route=.=all;.;probe_requests", "save": "requests"}],
        "http": {"request_headers": {"steps": [
            {"op": "increment_metric", "id": "$requests", "offset": 1},
            {"op": "log", "level": 1, "message": "a debug line"}]}}
    })
    .to_string();
    let upstream = format!("http://127.0.0.1:{up}");
    let args = [&*probe, "--config", &config, "--upstream", &upstream];
    let mut served = serve(&[&args[..], &["--admin", "127.0.0.1:0"]].concat());
    let at = served.address();
    let admin = served
        .admin
        .clone()
        .expect("serve says where its admin listens");
    assert_eq!(curl(&[], &format!("http://{admin}/ready")).0, 200);
    for _ in 0..2 {
        assert_eq!(curl(&[], &format!("http://{at}/")).0, 200);
    }
    let (_, _, stats) = curl(&[], &format!("http://{admin}/stats"));
    assert!(
        stats.contains("wasmcustom.route=.=all;.;probe_requests: 2"),
        "{stats}"
    );
    let (_, _, prometheus) = curl(&[], &format!("http://{admin}/stats/prometheus"));
    assert!(
        prometheus.contains("# TYPE probe_requests counter"),
        "{prometheus}"
    );
    assert!(
        prometheus.contains("probe_requests{route=\"all\"} 2"),
        "{prometheus}"
    );
    let (status, _, info) = curl(&[], &format!("http://{admin}/server_info"));
    let info: serde_json::Value = serde_json::from_str(&info).expect("server_info is JSON");
    assert_eq!(
        (status, info["state"].as_str()),
        (200, Some("LIVE")),
        "{info}"
    );
    // /config_dump names the module loaded by its digest.
    let (_, _, dump) = curl(&[], &format!("http://{admin}/config_dump"));
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("config_dump is JSON");
    let digest = {
        use sha2::Digest;
        let bytes = std::fs::read(&probe).expect("read the module");
        let hash = sha2::Sha256::digest(bytes);
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let filter = &dump["listeners"][0]["filters"][0];
    assert_eq!(
        filter["module"]["sha256"].as_str(),
        Some(digest.as_str()),
        "{dump}"
    );
    assert_eq!(filter["configuration"].as_str(), Some(config.as_str()));
    let (_, _, logging) = curl(&[], &format!("http://{admin}/logging"));
    assert!(logging.contains("wasm: info"), "{logging}");
    assert!(
        !served
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("a debug line")),
        "below info, the filter's debug line is dropped"
    );
    // Envoy's /logging sets the wasm logger every plugin logs through: the
    // filters see the new level at once, on every worker.
    let (status, _, logging) = curl(
        &["-X", "POST"],
        &format!("http://{admin}/logging?level=debug"),
    );
    assert_eq!(status, 200);
    assert!(logging.contains("wasm: debug"), "{logging}");
    assert_eq!(curl(&[], &format!("http://{at}/")).0, 200);
    assert!(
        served.log_line_with("a debug line").is_some(),
        "the filter logs at debug after POST /logging?level=debug"
    );
    let (status, _, logging) = curl(
        &["-X", "POST"],
        &format!("http://{admin}/logging?level=warn"),
    );
    assert_eq!(status, 200);
    assert!(logging.contains("wasm: warn"), "{logging}");
    let (status, _, _) = curl(
        &["-X", "POST"],
        &format!("http://{admin}/logging?level=loud"),
    );
    assert_eq!(status, 400);

    let (status, _, _) = curl(&["-X", "POST"], &format!("http://{admin}/quitquitquit"));
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served.process.0.try_wait().ok().flatten().is_none() {
        assert!(
            Instant::now() < deadline,
            "serve did not stop after /quitquitquit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_stops_accepting_and_drains_the_requests_in_flight() {
    let (_upstream, up) = python_server(1.0, "slow but answered");
    let response_header = module("response_header.wasm");
    let upstream = format!("http://127.0.0.1:{up}");
    let config = json!({"name": "x-demo", "value": "drained"}).to_string();
    let args = [
        &*response_header,
        "--config",
        &config,
        "--upstream",
        &upstream,
    ];
    let mut served = serve(&args);
    let at = served.address();
    let url = format!("http://{at}/");
    let in_flight = std::thread::spawn(move || curl(&[], &url));
    std::thread::sleep(Duration::from_millis(300));
    let pid = served.process.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    // The listener closes at once; the request in flight still gets its answer.
    std::thread::sleep(Duration::from_millis(200));
    let refused = std::net::TcpStream::connect(&at);
    assert!(
        refused.is_err(),
        "a new connection during the drain must be refused"
    );
    let (status, _, body) = in_flight.join().expect("curl thread");
    assert_eq!((status, body.as_str()), (200, "slow but answered"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = served.process.0.try_wait().ok().flatten() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after the drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn watch_reloads_a_changed_configuration_without_losing_a_request_and_keeps_a_broken_one_out() {
    let (_upstream, up) = python_server(0.0, "ok");
    let response_header = module("response_header.wasm");
    let dir = crate::cli_world::tempdir();
    let config = dir.join("config.json");
    let write = |value: &str| {
        std::fs::write(
            &config,
            json!({"name": "x-demo", "value": value}).to_string(),
        )
        .expect("write the configuration")
    };
    write("one");
    let upstream = format!("http://127.0.0.1:{up}");
    let at_config = format!("@{}", config.display());
    let served = serve(&[
        &response_header,
        "--config",
        &at_config,
        "--upstream",
        &upstream,
        "--watch",
    ]);
    let at = served.address();
    let url = format!("http://{at}/");
    let header = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("x-demo: "))
            .map(|v| v.trim().to_string())
    };
    assert_eq!(header(&curl(&[], &url).1).as_deref(), Some("one"));

    // Requests keep going while the configuration changes: none is lost.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, url) = (std::sync::Arc::clone(&stop), url.clone());
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                statuses.push(curl(&[], &url).0);
            }
            statuses
        })
    };
    write("two");
    let deadline = Instant::now() + Duration::from_secs(20);
    while header(&curl(&[], &url).1).as_deref() != Some("two") {
        assert!(
            Instant::now() < deadline,
            "no reload: {:#?}",
            served.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.join().expect("load thread");
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == 200),
        "{statuses:?}"
    );

    // A configuration the filter rejects keeps the running one.
    std::fs::write(&config, "{not json").unwrap();
    let refusal = served.log_line_with("reload refused");
    assert!(
        refusal.is_some(),
        "no refusal: {:#?}",
        served.log.lock().unwrap()
    );
    assert_eq!(header(&curl(&[], &url).1).as_deref(), Some("two"));
}

//! `harness serve -c` with a TCP listener: tcp-guard (an
//! envoy.filters.network.wasm filter) before tcp_proxy, proxying real
//! connections to python3 TCP servers.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::serve::{Running, module};
use crate::serve_bootstrap::{TempFile, bootstrap, cluster, serve_file};

/// A python3 TCP server on a free port: reads until the client's FIN,
/// answers `tag` + what it read, closes; its port.
fn tagging_tcp_server(tag: &str) -> (Running, u16) {
    let script = r#"
import socketserver, sys
tag = sys.argv[1].encode()
class H(socketserver.BaseRequestHandler):
    def handle(self):
        data = b""
        while True:
            chunk = self.request.recv(65536)
            if not chunk:
                break
            data += chunk
        self.request.sendall(tag + data)
socketserver.ThreadingTCPServer.allow_reuse_address = True
server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, tag])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Running(child), line.trim().parse().unwrap())
}

/// Sends `data`, half-closes, and reads until the other side closes.
fn tcp_exchange(address: &str, data: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(data).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn a_tcp_listener_runs_network_filters_before_tcp_proxy_to_real_servers() {
    let (_a, a) = tagging_tcp_server("A:");
    let (_b, b) = tagging_tcp_server("B:");
    let guard = module("tcp_guard.wasm");
    let config = json!({
        "routes": [{"prefix": "PING", "cluster": "b"}],
        "default_cluster": "a",
        "max_bytes": 64
    })
    .to_string();
    let listener = format!(
        r#"
  - name: tcp
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.wasm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
          config:
            name: tcp-guard
            vm_config:
              code: {{ local: {{ filename: {guard} }} }}
            configuration:
              "@type": type.googleapis.com/google.protobuf.StringValue
              value: {config}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: a"#,
        config = serde_json::to_string(&config).unwrap()
    );
    let file = TempFile::new(
        "yaml",
        &bootstrap(&[listener], &[cluster("a", a), cluster("b", b)]),
    );
    let served = serve_file(&file, 1);
    let at = &served.listeners["tcp"];
    // The filter picks the cluster from the first bytes.
    assert_eq!(tcp_exchange(at, b"PING hello"), b"B:PING hello");
    assert_eq!(tcp_exchange(at, b"hello"), b"A:hello");
    // Past max_bytes the filter closes the connection: nothing comes back.
    assert_eq!(tcp_exchange(at, &[b'x'; 100]), b"");
}

#[test]
fn a_tcp_listener_with_tcp_proxy_alone_proxies_to_its_cluster() {
    let (_a, a) = tagging_tcp_server("A:");
    let listener = r#"
  - name: plain
    address:
      socket_address: { address: 127.0.0.1, port_value: 0 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: plain
          cluster: a"#
        .to_string();
    let file = TempFile::new("yaml", &bootstrap(&[listener], &[cluster("a", a)]));
    let served = serve_file(&file, 1);
    let at = &served.listeners["plain"];
    assert_eq!(tcp_exchange(at, b"hello"), b"A:hello");
    // Bytes past any filter's limit pass too: nothing but tcp_proxy is here.
    let big = vec![b'y'; 256 * 1024];
    let answer = tcp_exchange(at, &big);
    assert_eq!(answer.len(), big.len() + 2);
    assert!(answer.starts_with(b"A:y"));
}

//! `harness run --tcp`: one TCP connection through a network filter,
//! printed like `nc -v`. The client's `--send` chunks go first, then the
//! upstream's `--upstream-send` chunks; then the client closes its side
//! and the upstream its own, and the connection closes.

use std::io::Write;
use std::path::Path;

use clap::Args;

use harness::printable::{escape_bytes, escape_controls};
use harness::{
    ConnectionClose, ConnectionSpec, Envoy, FilterModule, HarnessConfig, HarnessError, Outcome,
    Properties, StreamHandle, StreamInput,
};

use super::text_or_file;
use super::transcript::{print_logs, print_metrics_and_calls, print_trap};

/// The connection flags of `harness run`.
#[derive(Args, Debug, Default)]
pub struct TcpArgs {
    /// Run one TCP connection through the filter as a network filter
    /// (envoy.filters.network.wasm before tcp_proxy) instead of an HTTP request.
    #[arg(long)]
    pub tcp: bool,
    /// With --tcp: bytes the client sends (inline text or @file; repeatable, in order).
    #[arg(long = "send", value_name = "DATA", requires = "tcp")]
    send: Vec<String>,
    /// With --tcp: bytes the upstream sends back (inline or @file; repeatable, in order).
    #[arg(long = "upstream-send", value_name = "DATA", requires = "tcp")]
    upstream_send: Vec<String>,
    /// With --tcp: the client's address, ip:port.
    #[arg(long, value_name = "IP:PORT", requires = "tcp")]
    source: Option<String>,
    /// With --tcp: the SNI the client sent (`connection.requested_server_name`).
    #[arg(long, value_name = "NAME", requires = "tcp")]
    sni: Option<String>,
    /// With --tcp: tcp_proxy's cluster [default: upstream].
    #[arg(long, value_name = "NAME", requires = "tcp")]
    tcp_cluster: Option<String>,
}

impl TcpArgs {
    fn spec(&self) -> ConnectionSpec {
        let mut spec = ConnectionSpec::default();
        if let Some(source) = &self.source {
            spec.source.clone_from(source);
        }
        spec.server_name.clone_from(&self.sni);
        if let Some(cluster) = &self.tcp_cluster {
            spec.cluster.clone_from(cluster);
        }
        spec
    }
}

/// Runs the connection and prints it; true when the filter trapped.
pub fn run(
    args: &TcpArgs,
    module: FilterModule,
    config: HarnessConfig,
    module_path: &Path,
    out: &mut dyn Write,
) -> Result<bool, HarnessError> {
    let mut envoy = Envoy::builder().plugin(module, config).build()?;
    let spec = args.spec();
    super::written(writeln!(
        out,
        "* filter {} started (root context 1)",
        module_path.display()
    ))?;
    let (c, opened) = envoy.connect(Some(0), &spec, &Properties::new())?;
    let (host, port) = spec
        .destination
        .rsplit_once(':')
        .unwrap_or((&spec.destination, ""));
    super::written(writeln!(
        out,
        "Connection to {host} {port} port [tcp/*] succeeded!"
    ))?;
    let mut trapped = show(out, &opened.outcome)?;
    let client = args.send.iter().map(|d| (d, true));
    let upstream = args.upstream_send.iter().map(|d| (d, false));
    for (data, from_client) in client.chain(upstream) {
        let what = if from_client {
            "--send"
        } else {
            "--upstream-send"
        };
        let data = text_or_file(data, what)?;
        let arrow = if from_client { '>' } else { '<' };
        super::written(writeln!(out, "{arrow} {}", escape_bytes(&data)))?;
        let input = if from_client {
            StreamInput::Downstream {
                data,
                end_stream: false,
            }
        } else {
            StreamInput::Upstream {
                data,
                end_stream: false,
            }
        };
        trapped |= step(&mut envoy, c, input, out)?;
    }
    for (from_client, who) in [(true, "client"), (false, "upstream")] {
        let data = Vec::new();
        let input = if from_client {
            StreamInput::Downstream {
                data,
                end_stream: true,
            }
        } else {
            StreamInput::Upstream {
                data,
                end_stream: true,
            }
        };
        if let Some(outcome) = send_if_open(&mut envoy, c, input)? {
            super::written(writeln!(out, "* the {who} closes its side (FIN)"))?;
            trapped |= show(out, &outcome)?;
        }
    }
    let done = envoy.finish(c)?.outcome;
    let record = done.connection.clone().unwrap_or_default();
    super::written(writeln!(
        out,
        "* the upstream (cluster {}) received {} bytes: {}",
        escape_controls(record.cluster.as_deref().unwrap_or("none")),
        record.upstream_received.0.len(),
        escape_bytes(&record.upstream_received.0)
    ))?;
    super::written(writeln!(
        out,
        "* the client received {} bytes: {}",
        record.downstream_received.0.len(),
        escape_bytes(&record.downstream_received.0)
    ))?;
    let by = match record.closed_by {
        Some(ConnectionClose::Client) => "the client",
        Some(ConnectionClose::Envoy) => "Envoy",
        None => "nobody",
    };
    let why = record.close_reason.as_deref().unwrap_or("still open");
    super::written(writeln!(
        out,
        "* connection closed by {by} ({})",
        escape_controls(why)
    ))?;
    super::written(print_metrics_and_calls(out, &done))?;
    Ok(trapped || done.trap.is_some())
}

/// Sends `input` unless the connection closed already (a filter or
/// tcp_proxy may close it early).
fn send_if_open(
    envoy: &mut Envoy,
    c: StreamHandle,
    input: StreamInput,
) -> Result<Option<Outcome>, HarnessError> {
    match envoy.send(c, input) {
        Ok(o) => Ok(Some(o.outcome)),
        Err(HarnessError::Usage(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn step(
    envoy: &mut Envoy,
    c: StreamHandle,
    input: StreamInput,
    out: &mut dyn Write,
) -> Result<bool, HarnessError> {
    match send_if_open(envoy, c, input)? {
        Some(outcome) => show(out, &outcome),
        None => {
            super::written(writeln!(out, "* not sent: the connection is closed"))?;
            Ok(false)
        }
    }
}

/// A step's logs and trap; true when it trapped.
fn show(out: &mut dyn Write, outcome: &Outcome) -> Result<bool, HarnessError> {
    super::written(print_logs(out, "filter logs", outcome))?;
    super::written(print_trap(out, outcome))?;
    Ok(outcome.trap.is_some())
}

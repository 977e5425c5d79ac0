//! The admin listener, on Envoy's conventions: `/ready`, `/stats` (one
//! `name: value` line per stat), `/stats/prometheus` (Envoy's text format;
//! the filters' metrics under their own names, Istio-style `tag=.=value;.;`
//! tags turned into labels) and `POST /quitquitquit`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::Notify;

use harness::{HarnessError, MetricKind, MetricSnapshot, SharedHost};

use super::http::plain;

/// Serves the admin endpoints until `stop` is notified.
pub async fn serve(
    addr: SocketAddr,
    shared: SharedHost,
    stop: Arc<Notify>,
) -> Result<(), HarnessError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| HarnessError::Usage(format!("cannot listen for admin on {addr}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    eprintln!("harness serve: admin on http://{bound}");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (shared, stop) = (shared.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let answer = answer(&request, &shared, &stop);
                        async move { Ok::<_, std::convert::Infallible>(answer) }
                    });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

fn answer(
    request: &hyper::Request<Incoming>,
    shared: &SharedHost,
    stop: &Notify,
) -> hyper::Response<Full<Bytes>> {
    match (request.method().as_str(), request.uri().path()) {
        ("GET", "/ready") => plain(200, "LIVE"),
        ("GET", "/stats") => text(stats(&shared.metrics())),
        ("GET", "/stats/prometheus") => text(prometheus(&shared.metrics())),
        ("POST", "/quitquitquit") => {
            stop.notify_one();
            plain(200, "OK")
        }
        (_, "/quitquitquit") => plain(405, "use POST /quitquitquit"),
        _ => plain(
            404,
            "harness serve admin: /ready, /stats, /stats/prometheus, POST /quitquitquit",
        ),
    }
}

fn text(body: String) -> hyper::Response<Full<Bytes>> {
    hyper::Response::new(Full::new(Bytes::from(body)))
}

/// Envoy's `/stats`: the filters' metrics as Envoy names them
/// (`wasmcustom.<name>`), a histogram by its sample count.
fn stats(metrics: &[MetricSnapshot]) -> String {
    let mut out = String::new();
    for m in metrics {
        out.push_str(&format!("wasmcustom.{}: {}\n", m.name, m.value));
    }
    out
}

/// A metric name in Istio's tag convention split into the bare name and
/// its labels: `a=.=x;.;b=.=y;.;name` is `name{a="x",b="y"}`.
fn split_tags(name: &str) -> (String, Vec<(String, String)>) {
    let mut labels = Vec::new();
    let mut rest = name;
    while let Some((tag, after)) = rest.split_once(";.;") {
        let Some((key, value)) = tag.split_once("=.=") else {
            break;
        };
        labels.push((key.to_string(), value.to_string()));
        rest = after;
    }
    (rest.to_string(), labels)
}

/// Prometheus' names allow `[a-zA-Z0-9_:]`; Envoy writes others as `_`.
fn prometheus_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Envoy's `/stats/prometheus` for the filters' metrics. Envoy registers
/// `wasmcustom` as a custom stat namespace, so these come without the
/// `envoy_` prefix and without the namespace.
fn prometheus(metrics: &[MetricSnapshot]) -> String {
    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    for m in metrics {
        let (bare, labels) = split_tags(&m.name);
        let name = prometheus_name(&bare);
        let (kind, series) = match m.kind {
            MetricKind::Counter => ("counter", name.clone()),
            MetricKind::Gauge => ("gauge", name.clone()),
            MetricKind::Histogram => ("histogram", format!("{name}_count")),
        };
        if typed.insert(name.clone()) {
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{}=\"{v}\"", prometheus_name(k))
            })
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        out.push_str(&format!("{series}{labels} {}\n", m.value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_tags_become_prometheus_labels() {
        let (name, labels) = split_tags("cluster=.=redis;.;tcp_guard_routed_total");
        assert_eq!(name, "tcp_guard_routed_total");
        assert_eq!(labels, [("cluster".to_string(), "redis".to_string())]);
        let m = MetricSnapshot {
            name: "cluster=.=redis;.;tcp_guard_routed_total".to_string(),
            kind: MetricKind::Counter,
            value: 3,
            samples: Vec::new(),
        };
        let text = prometheus(&[m]);
        assert_eq!(
            text,
            "# TYPE tcp_guard_routed_total counter\ntcp_guard_routed_total{cluster=\"redis\"} 3\n"
        );
    }
}

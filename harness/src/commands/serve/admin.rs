//! The admin listener, on Envoy's conventions: `/ready`, `/stats` (one
//! `name: value` line per stat), `/stats/prometheus` (Envoy's text format;
//! the filters' metrics under their own names, Istio-style `tag=.=value;.;`
//! tags turned into labels), `/server_info`, `/config_dump` (what is
//! loaded, module digests included), `/logging` and `POST /quitquitquit`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::Notify;

use harness::{HarnessError, MetricKind, MetricSnapshot, SharedHost};

use super::carry::OutBody;
use super::http::plain;

/// What the admin endpoints read.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub shared: SharedHost,
    pub stop: Arc<Notify>,
    /// `/config_dump`: the plan serving now (a reload replaces it).
    pub loaded: Arc<Mutex<serde_json::Value>>,
    pub started: Instant,
    /// `/server_info`'s command_line_options.
    pub options: serde_json::Value,
}

/// Serves the admin endpoints until `stop` is notified.
pub(crate) async fn serve(addr: SocketAddr, state: AdminState) -> Result<(), HarnessError> {
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
            let state = state.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let answer = answer(&request, &state);
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

fn answer(request: &hyper::Request<Incoming>, state: &AdminState) -> hyper::Response<OutBody> {
    let shared = &state.shared;
    match (request.method().as_str(), request.uri().path()) {
        ("GET", "/ready") => plain(200, "LIVE"),
        ("GET", "/stats") => text(stats(&shared.metrics())),
        ("GET", "/stats/prometheus") => text(prometheus(&shared.metrics())),
        ("GET", "/server_info") => json(&server_info(state)),
        ("GET", "/config_dump") => {
            let loaded = state.loaded.lock().map(|v| v.clone()).unwrap_or_default();
            json(&loaded)
        }
        ("GET", "/logging") => text(logging(shared)),
        ("POST", "/logging") => set_logging(request.uri().query().unwrap_or_default(), shared),
        ("POST", "/quitquitquit") => {
            state.stop.notify_one();
            plain(200, "OK")
        }
        (_, "/quitquitquit") => plain(405, "use POST /quitquitquit"),
        _ => plain(
            404,
            "harness serve admin: /ready, /stats, /stats/prometheus, /server_info, \
             /config_dump, /logging, POST /logging?level=LEVEL, POST /quitquitquit",
        ),
    }
}

fn json(value: &serde_json::Value) -> hyper::Response<OutBody> {
    let body = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut response = text(body + "\n");
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Envoy's `/server_info`: version, state, uptime, the options it runs with.
fn server_info(state: &AdminState) -> serde_json::Value {
    let uptime = format!("{}s", state.started.elapsed().as_secs());
    serde_json::json!({
        "version": format!("harness {}", env!("CARGO_PKG_VERSION")),
        "state": "LIVE",
        "uptime_current_epoch": uptime,
        "uptime_all_epochs": uptime,
        "command_line_options": state.options,
    })
}

/// Envoy's `/logging` listing, for the one logger serve has: the filters'.
fn logging(shared: &SharedHost) -> String {
    let level = shared.log_level().unwrap_or(harness::LogLevel::Info);
    format!("active loggers:\n  wasm: {}\n", level.name())
}

/// `POST /logging?level=LEVEL` (or `?wasm=LEVEL`): the filters' log level
/// from now on, on every worker: what `proxy_get_log_level` reports, and
/// the lowest level captured (and so printed).
fn set_logging(query: &str, shared: &SharedHost) -> hyper::Response<OutBody> {
    let asked = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "level" || key == "wasm").then_some(value)
    });
    let Some(asked) = asked else {
        return plain(
            400,
            "give the level: POST /logging?level=debug (or ?wasm=debug)",
        );
    };
    match crate::commands::run::parse_log_level(asked) {
        Ok(level) => {
            shared.set_log_level(level);
            text(logging(shared))
        }
        Err(message) => plain(400, &message),
    }
}

fn text(body: String) -> hyper::Response<OutBody> {
    hyper::Response::new(OutBody::whole(body))
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

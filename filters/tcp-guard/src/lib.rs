//! tcp-guard: a TCP (network) filter. Counts the bytes each connection
//! carries, closes connections from denied source blocks or past a byte
//! cap, and chooses the tcp_proxy cluster from the connection's first
//! bytes. See README.md.

pub mod cidr;
pub mod config;
pub mod guard;

use config::Config;
use guard::{ConnectionState, Opened, Step};
use sdk_ext::metrics::{Metric, MetricFamily};
use sdk_ext::network::{Connection, NetworkFilter, Side};
use sdk_ext::types::MetricType;
use sdk_ext::{Action, ConfigError};

/// The metrics of one plugin instance, defined when it is configured.
pub struct Metrics {
    connections: Option<Metric>,
    denied: Option<Metric>,
    capped: Option<Metric>,
    downstream_bytes: Option<Metric>,
    upstream_bytes: Option<Metric>,
    bytes: Option<Metric>,
    connection_bytes: Option<Metric>,
    routed: MetricFamily,
}

impl Metrics {
    fn define(prefix: &str) -> Metrics {
        let counter = |name: &str| Metric::counter(&format!("{prefix}_{name}"));
        Metrics {
            connections: counter("connections_total"),
            denied: counter("denied_total"),
            capped: counter("capped_total"),
            downstream_bytes: counter("downstream_bytes_total"),
            upstream_bytes: counter("upstream_bytes_total"),
            bytes: counter("bytes_total"),
            connection_bytes: Metric::histogram(&format!("{prefix}_connection_bytes")),
            routed: MetricFamily::new(
                MetricType::Counter,
                &format!("{prefix}_routed_total"),
                &["cluster"],
            ),
        }
    }
}

fn add(metric: Option<Metric>, amount: u64) {
    if let Some(metric) = metric {
        metric.increment(i64::try_from(amount).unwrap_or(i64::MAX));
    }
}

/// The validated configuration and its metrics.
pub struct Runtime {
    pub config: Config,
    metrics: Metrics,
}

#[derive(Default)]
pub struct TcpGuard {
    state: ConnectionState,
}

impl TcpGuard {
    fn close(connection: &Connection<Self>, why: &str) {
        log::info!("{}: closing the connection: {why}", connection.log_prefix());
        if let Err(status) = connection.close() {
            log::warn!(
                "{}: closing the connection failed: {status}",
                connection.log_prefix()
            );
        }
    }

    fn choose(connection: &Connection<Self>, cluster: Option<&str>) {
        let Some(cluster) = cluster else {
            return; // tcp_proxy keeps the cluster of its own configuration
        };
        match connection.set_tcp_proxy_cluster(cluster) {
            Ok(()) => add(connection.config().metrics.routed.get(&[cluster]), 1),
            Err(error) => log::warn!(
                "{}: routing to cluster {cluster} failed: {error}",
                connection.log_prefix()
            ),
        }
    }

    /// Carries out a data step; `counter` counts the direction's bytes.
    fn apply(
        connection: &Connection<Self>,
        step: Step<'_>,
        size: usize,
        counter: Option<Metric>,
    ) -> Action {
        let metrics = &connection.config().metrics;
        match step {
            Step::Forward { chosen } => {
                if let Some(cluster) = chosen {
                    Self::choose(connection, cluster);
                }
                add(counter, size as u64);
                add(metrics.bytes, size as u64);
                Action::Continue
            }
            // Envoy keeps held bytes and delivers them again with the next chunk.
            Step::Hold | Step::Closing => Action::Pause,
            Step::Close(over) => {
                add(metrics.capped, 1);
                let why = format!(
                    "{} bytes would pass the cap of {} per connection",
                    over.total, over.max
                );
                Self::close(connection, &why);
                Action::Pause
            }
        }
    }
}

impl NetworkFilter for TcpGuard {
    const NAME: &'static str = "tcp-guard";
    type Config = Runtime;

    fn configure(raw: &[u8]) -> Result<Runtime, ConfigError> {
        let config = Config::parse(raw)?;
        let metrics = Metrics::define(&config.stat_prefix);
        Ok(Runtime { config, metrics })
    }

    fn create(_connection: &Connection<Self>) -> Self {
        TcpGuard::default()
    }

    fn on_new_connection(&mut self, connection: &mut Connection<Self>) -> Action {
        let runtime = connection.config();
        add(runtime.metrics.connections, 1);
        match self.state.open(&runtime.config, connection.source_ip()) {
            Opened::Deny(source) => {
                add(runtime.metrics.denied, 1);
                Self::close(connection, &format!("source {source} is denied"));
                Action::Pause
            }
            // tcp_proxy picks its cluster when iteration first reaches it:
            // hold it back until the first bytes have chosen.
            Opened::HoldForRouting => Action::Pause,
            Opened::Continue(cluster) => {
                Self::choose(connection, cluster);
                Action::Continue
            }
        }
    }

    fn on_downstream_data(
        &mut self,
        connection: &mut Connection<Self>,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let runtime = connection.config();
        let step = self.state.downstream(
            &runtime.config,
            size,
            || connection.data(Side::Downstream),
            end_of_stream,
        );
        Self::apply(connection, step, size, runtime.metrics.downstream_bytes)
    }

    fn on_upstream_data(
        &mut self,
        connection: &mut Connection<Self>,
        size: usize,
        _end_of_stream: bool,
    ) -> Action {
        let runtime = connection.config();
        let step = self.state.upstream(&runtime.config, size);
        Self::apply(connection, step, size, runtime.metrics.upstream_bytes)
    }

    fn on_log(&mut self, connection: &mut Connection<Self>) {
        let tally = self.state.tally();
        if let Some(histogram) = connection.config().metrics.connection_bytes {
            histogram.record(tally.total());
        }
        log::debug!(
            "{}: {} bytes from the client, {} from the upstream",
            connection.log_prefix(),
            tally.downstream,
            tally.upstream
        );
    }
}

sdk_ext::network_filter!(TcpGuard);

//! tcp-guard: a TCP (network) filter. Counts the bytes each connection
//! carries, closes connections from denied source blocks or past a byte
//! cap, and chooses the tcp_proxy cluster from the connection's first
//! bytes. See README.md.

pub mod cidr;
pub mod config;
pub mod guard;

use config::Config;
use guard::{Routing, Tally};
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
    tally: Tally,
    /// The cluster is chosen (or nothing is routed by data).
    routed: bool,
    closed: bool,
}

impl TcpGuard {
    fn close(&mut self, connection: &Connection<Self>, why: &str) {
        log::info!("{}: closing the connection: {why}", connection.log_prefix());
        if let Err(status) = connection.close() {
            log::warn!(
                "{}: closing the connection failed: {status}",
                connection.log_prefix()
            );
        }
        self.closed = true;
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

    /// Closes the connection if a buffer of `size` bytes would pass the cap.
    fn over_cap(&mut self, connection: &Connection<Self>, size: usize) -> bool {
        let max = connection.config().config.max_bytes;
        match self.tally.check(size, max) {
            Ok(()) => false,
            Err(over) => {
                add(connection.config().metrics.capped, 1);
                let why = format!(
                    "{} bytes would pass the cap of {} per connection",
                    over.total, over.max
                );
                self.close(connection, &why);
                true
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
        if let Some(source) = connection.source_ip()
            && runtime.config.denies(source)
        {
            add(runtime.metrics.denied, 1);
            self.close(connection, &format!("source {source} is denied"));
            return Action::Pause;
        }
        if runtime.config.routes_by_data() {
            // tcp_proxy picks its cluster when iteration first reaches it:
            // hold it back until the first bytes have chosen.
            return Action::Pause;
        }
        self.routed = true;
        Self::choose(connection, runtime.config.default_cluster.as_deref());
        Action::Continue
    }

    fn on_downstream_data(
        &mut self,
        connection: &mut Connection<Self>,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.closed || self.over_cap(connection, size) {
            return Action::Pause;
        }
        let runtime = connection.config();
        if !self.routed {
            let first_bytes = connection.data(Side::Downstream);
            match runtime.config.route(&first_bytes, end_of_stream) {
                // Envoy keeps the bytes and delivers them again with the next chunk.
                Routing::Wait => return Action::Pause,
                Routing::Cluster(cluster) => {
                    self.routed = true;
                    Self::choose(connection, cluster);
                }
            }
        }
        let size = size as u64;
        self.tally.downstream = self.tally.downstream.saturating_add(size);
        add(runtime.metrics.downstream_bytes, size);
        add(runtime.metrics.bytes, size);
        Action::Continue
    }

    fn on_upstream_data(
        &mut self,
        connection: &mut Connection<Self>,
        size: usize,
        _end_of_stream: bool,
    ) -> Action {
        if self.closed || self.over_cap(connection, size) {
            return Action::Pause;
        }
        let runtime = connection.config();
        let size = size as u64;
        self.tally.upstream = self.tally.upstream.saturating_add(size);
        add(runtime.metrics.upstream_bytes, size);
        add(runtime.metrics.bytes, size);
        Action::Continue
    }

    fn on_log(&mut self, connection: &mut Connection<Self>) {
        if let Some(histogram) = connection.config().metrics.connection_bytes {
            histogram.record(self.tally.total());
        }
        log::debug!(
            "{}: {} bytes from the client, {} from the upstream",
            connection.log_prefix(),
            self.tally.downstream,
            self.tally.upstream
        );
    }
}

sdk_ext::network_filter!(TcpGuard);

//! TCP connections through a network filter chain: how one opens, and what
//! each side received by the time it closed.

use serde::{Deserialize, Serialize};

use super::{ByteString, Properties, PropertyValue};

/// The tcp_proxy cluster a connection goes to unless a filter chooses
/// another through `envoy.tcp_proxy.cluster` filter state.
pub const DEFAULT_TCP_CLUSTER: &str = "upstream";

/// A downstream connection as Envoy's listener accepts it: the addresses
/// and TLS facts its filters read as properties, and tcp_proxy's cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSpec {
    /// The client's address, `ip:port` (`source.address`, `source.port`).
    pub source: String,
    /// The address the client connected to (`destination.*`).
    pub destination: String,
    /// SNI the client sent (`connection.requested_server_name`).
    pub server_name: Option<String>,
    /// The client presented a certificate (`connection.mtls`).
    pub mtls: bool,
    /// tcp_proxy's configured cluster ([`DEFAULT_TCP_CLUSTER`] if unset).
    pub cluster: String,
    /// The upstream host's address once connected (`upstream.address`).
    pub upstream_address: String,
}

impl Default for ConnectionSpec {
    fn default() -> Self {
        ConnectionSpec {
            source: "10.0.0.1:54321".to_string(),
            destination: "10.0.0.2:9000".to_string(),
            server_name: None,
            mtls: false,
            cluster: DEFAULT_TCP_CLUSTER.to_string(),
            upstream_address: "10.0.0.3:9000".to_string(),
        }
    }
}

impl ConnectionSpec {
    /// The properties a network filter reads for this connection, with
    /// connection id `id` (Envoy numbers connections process-wide).
    pub fn properties(&self, id: u64) -> Properties {
        let mut p = Properties::new();
        let mut address = |prefix: &str, value: &str| {
            p.insert(
                format!("{prefix}.address"),
                PropertyValue::String(value.to_string()),
            );
            if let Some(port) = value
                .rsplit_once(':')
                .and_then(|(_, n)| n.parse::<i64>().ok())
            {
                p.insert(format!("{prefix}.port"), PropertyValue::Int(port));
            }
        };
        address("source", &self.source);
        address("destination", &self.destination);
        p.insert("connection.id".into(), PropertyValue::Int(id as i64));
        p.insert("connection.mtls".into(), PropertyValue::Bool(self.mtls));
        if let Some(sni) = &self.server_name {
            p.insert(
                "connection.requested_server_name".into(),
                PropertyValue::String(sni.clone()),
            );
        }
        p
    }
}

/// Who closed a connection, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionClose {
    /// The client closed it (its FIN completed the close, or it reset).
    Client,
    /// Envoy closed it: both halves were done with Envoy's FIN last, or
    /// tcp_proxy or a filter closed it.
    Envoy,
}

/// What a TCP connection carried, as each side saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The cluster tcp_proxy connected to (`None`: it was never reached).
    pub cluster: Option<String>,
    /// The upstream refused the connection, or the cluster does not exist.
    pub upstream_failed: bool,
    /// The bytes the upstream received.
    pub upstream_received: ByteString,
    /// The upstream received the client's end of stream (FIN).
    pub upstream_end: bool,
    /// The bytes the client received.
    pub downstream_received: ByteString,
    /// The client received the upstream's end of stream (FIN).
    pub downstream_end: bool,
    /// Who closed the downstream connection (`None`: still open).
    pub closed_by: Option<ConnectionClose>,
    /// Why, in Envoy's terms (`wasm_downstream_close`, `remote close`, ...).
    pub close_reason: Option<String>,
}

/// One whole connection, for [`crate::Harness::connection`] and benchmarks:
/// the client's chunks, then the upstream's, then each side's FIN.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionExchange {
    /// How the connection opens.
    pub connection: ConnectionSpec,
    /// What the client sends, chunk by chunk.
    pub client: Vec<ByteString>,
    /// What the upstream sends back, chunk by chunk.
    pub upstream: Vec<ByteString>,
}

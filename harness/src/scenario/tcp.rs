//! Expectations on a TCP connection: what each side received, whether
//! its end of stream arrived, the cluster tcp_proxy used, who closed it.

use serde::Deserialize;

use crate::model::{ByteString, ConnectionClose, ConnectionRecord};

/// Checks on a connection after a step (every field optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionExpect {
    /// Every byte the upstream received so far.
    #[serde(default)]
    pub upstream_received: Option<ByteString>,
    /// Every byte the client received so far.
    #[serde(default)]
    pub downstream_received: Option<ByteString>,
    /// The upstream got the client's FIN.
    #[serde(default)]
    pub upstream_end: Option<bool>,
    /// The client got the upstream's FIN.
    #[serde(default)]
    pub downstream_end: Option<bool>,
    /// The cluster tcp_proxy connected to.
    #[serde(default)]
    pub cluster: Option<String>,
    /// tcp_proxy could not connect (refused, or no such cluster).
    #[serde(default)]
    pub upstream_failed: Option<bool>,
    /// `client`, `envoy`, or `open` (not closed yet).
    #[serde(default)]
    pub closed_by: Option<ClosedBy>,
}

/// Who closed the connection, as a scenario writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    /// The client.
    Client,
    /// Envoy (tcp_proxy, a filter, or both halves done with Envoy's FIN last).
    Envoy,
    /// Still open.
    Open,
}

fn closed_by_name(closed: Option<&ConnectionClose>) -> &'static str {
    match closed {
        Some(ConnectionClose::Client) => "client",
        Some(ConnectionClose::Envoy) => "envoy",
        None => "open",
    }
}

/// Each broken expectation as (what, expected, actual), in the file's terms;
/// `show` writes bytes the way the file does.
pub(super) fn check(
    want: &ConnectionExpect,
    got: Option<&ConnectionRecord>,
    show: fn(&ByteString) -> String,
) -> Vec<(String, String, String)> {
    let Some(got) = got else {
        return vec![(
            "connection".to_string(),
            "a TCP connection".to_string(),
            "this step acted on no connection (use `connect`, then steps naming it)".to_string(),
        )];
    };
    let mut out = Vec::new();
    let mut bytes = |what: &str, want: &Option<ByteString>, got: &ByteString| {
        if let Some(want) = want
            && want != got
        {
            out.push((format!("connection {what}"), show(want), show(got)));
        }
    };
    bytes(
        "upstream_received",
        &want.upstream_received,
        &got.upstream_received,
    );
    bytes(
        "downstream_received",
        &want.downstream_received,
        &got.downstream_received,
    );
    let flags = [
        ("upstream_end", want.upstream_end, got.upstream_end),
        ("downstream_end", want.downstream_end, got.downstream_end),
        ("upstream_failed", want.upstream_failed, got.upstream_failed),
    ];
    for (what, want, got) in flags {
        if let Some(want) = want
            && want != got
        {
            out.push((
                format!("connection {what}"),
                want.to_string(),
                got.to_string(),
            ));
        }
    }
    if let Some(cluster) = &want.cluster
        && got.cluster.as_ref() != Some(cluster)
    {
        let actual = got
            .cluster
            .clone()
            .unwrap_or_else(|| "none (tcp_proxy was not reached)".to_string());
        out.push(("connection cluster".to_string(), cluster.clone(), actual));
    }
    if let Some(closed) = want.closed_by {
        let expected = match closed {
            ClosedBy::Client => "client",
            ClosedBy::Envoy => "envoy",
            ClosedBy::Open => "open",
        };
        let actual = closed_by_name(got.closed_by.as_ref());
        if expected != actual {
            let reason = got
                .close_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            out.push((
                "connection closed_by".to_string(),
                expected.to_string(),
                format!("{actual}{reason}"),
            ));
        }
    }
    out
}

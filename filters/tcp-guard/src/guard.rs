//! The per-connection decisions, as plain functions of what the connection
//! has seen: whether its source is denied, which cluster its first bytes
//! choose, and whether a chunk stays within the byte cap; and
//! [`ConnectionState`], which applies them in order to each callback.

use crate::config::Config;
use std::net::IpAddr;

/// What the first bytes decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing<'a> {
    /// A route prefix may still match: hold the bytes and wait for more.
    Wait,
    /// This cluster (a route's, or the default); `None` keeps tcp_proxy's own.
    Cluster(Option<&'a str>),
}

impl Config {
    /// True when the source address falls in a denied block.
    pub fn denies(&self, source: IpAddr) -> bool {
        self.deny.iter().any(|block| block.contains(source))
    }

    /// The first route whose prefix the bytes start with. While an earlier
    /// route could still match (the bytes so far are the start of its
    /// prefix) the answer is [`Routing::Wait`], unless the client has
    /// half-closed or `max_sniff_bytes` are in; then such a route cannot
    /// match and the search goes on.
    pub fn route<'a>(&'a self, first_bytes: &[u8], end_of_stream: bool) -> Routing<'a> {
        let can_wait = !end_of_stream && first_bytes.len() < self.max_sniff_bytes;
        for route in &self.routes {
            if first_bytes.starts_with(&route.prefix) {
                return Routing::Cluster(Some(&route.cluster));
            }
            if can_wait && route.prefix.starts_with(first_bytes) {
                return Routing::Wait;
            }
        }
        Routing::Cluster(self.default_cluster.as_deref())
    }
}

/// Bytes a connection has let through, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub downstream: u64,
    pub upstream: u64,
}

/// The chunk would take the connection past `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCap {
    pub total: u64,
    pub max: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.downstream.saturating_add(self.upstream)
    }

    /// Checks a buffer of `size` bytes not yet let through (for downstream
    /// data held by a Pause, Envoy's buffer still holds the held bytes, so
    /// `size` counts them once).
    pub fn check(&self, size: usize, max: Option<u64>) -> Result<(), OverCap> {
        let Some(max) = max else {
            return Ok(());
        };
        let total = self.total().saturating_add(size as u64);
        if total > max {
            return Err(OverCap { total, max });
        }
        Ok(())
    }
}

/// What to do when the client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened<'a> {
    /// The source is in a denied block: close.
    Deny(IpAddr),
    /// Routes wait for the first bytes: hold tcp_proxy back (Pause).
    HoldForRouting,
    /// Let tcp_proxy connect now, to this cluster if any (set before
    /// returning Continue, so still in time).
    Continue(Option<&'a str>),
}

/// What to do with a chunk of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Let it through; `chosen` is the routing decision this chunk made
    /// (`Some(None)`: no route matched and there is no default).
    Forward { chosen: Option<Option<&'a str>> },
    /// Hold it (Pause): a route may still match.
    Hold,
    /// It would pass the cap: close (and hold it).
    Close(OverCap),
    /// The connection is already closing: hold it.
    Closing,
}

/// One connection's progress: bytes let through, and whether the cluster
/// is chosen or the connection closed.
#[derive(Debug, Clone, Default)]
pub struct ConnectionState {
    tally: Tally,
    routed: bool,
    closed: bool,
}

impl ConnectionState {
    pub fn tally(&self) -> Tally {
        self.tally
    }

    pub fn open<'a>(&mut self, config: &'a Config, source: Option<IpAddr>) -> Opened<'a> {
        if let Some(source) = source
            && config.denies(source)
        {
            self.closed = true;
            return Opened::Deny(source);
        }
        if config.routes_by_data() {
            return Opened::HoldForRouting;
        }
        self.routed = true;
        Opened::Continue(config.default_cluster.as_deref())
    }

    /// `size` bytes from the client (the whole buffer, held bytes included);
    /// `first_bytes` reads them, called only while the route is undecided.
    pub fn downstream<'a>(
        &mut self,
        config: &'a Config,
        size: usize,
        first_bytes: impl FnOnce() -> Vec<u8>,
        end_of_stream: bool,
    ) -> Step<'a> {
        if let Some(stop) = self.admit(config, size) {
            return stop;
        }
        let mut chosen = None;
        if !self.routed {
            match config.route(&first_bytes(), end_of_stream) {
                Routing::Wait => return Step::Hold,
                Routing::Cluster(cluster) => {
                    self.routed = true;
                    chosen = Some(cluster);
                }
            }
        }
        self.tally.downstream = self.tally.downstream.saturating_add(size as u64);
        Step::Forward { chosen }
    }

    /// `size` bytes from the upstream.
    pub fn upstream(&mut self, config: &Config, size: usize) -> Step<'static> {
        if let Some(stop) = self.admit(config, size) {
            return stop;
        }
        self.tally.upstream = self.tally.upstream.saturating_add(size as u64);
        Step::Forward { chosen: None }
    }

    fn admit(&mut self, config: &Config, size: usize) -> Option<Step<'static>> {
        if self.closed {
            return Some(Step::Closing);
        }
        match self.tally.check(size, config.max_bytes) {
            Ok(()) => None,
            Err(over) => {
                self.closed = true;
                Some(Step::Close(over))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(json: &str) -> Config {
        Config::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn the_first_matching_prefix_wins() {
        let c = config(
            r#"{"routes":[{"prefix":"*","cluster":"redis"},{"prefix_hex":"160301","cluster":"tls"},
                {"prefix":"GET ","cluster":"http"}],"default_cluster":"plain"}"#,
        );
        assert_eq!(
            c.route(b"*1\r\n$4\r\nPING", false),
            Routing::Cluster(Some("redis"))
        );
        assert_eq!(
            c.route(&[0x16, 3, 1, 0, 0xa5], false),
            Routing::Cluster(Some("tls"))
        );
        assert_eq!(
            c.route(b"GET / HTTP/1.1", false),
            Routing::Cluster(Some("http"))
        );
        assert_eq!(c.route(b"SSH-2.0", false), Routing::Cluster(Some("plain")));
    }

    #[test]
    fn waits_while_a_prefix_could_still_match() {
        let c =
            config(r#"{"routes":[{"prefix":"GET ","cluster":"http"}],"default_cluster":"plain"}"#);
        assert_eq!(c.route(b"", false), Routing::Wait);
        assert_eq!(c.route(b"GE", false), Routing::Wait);
        assert_eq!(
            c.route(b"GX", false),
            Routing::Cluster(Some("plain")),
            "cannot match any more"
        );
        assert_eq!(
            c.route(b"GE", true),
            Routing::Cluster(Some("plain")),
            "the client half-closed"
        );
        assert_eq!(c.route(b"GET ", false), Routing::Cluster(Some("http")));
    }

    #[test]
    fn an_earlier_undecided_route_holds_back_a_later_match() {
        let c = config(
            r#"{"routes":[{"prefix":"ABCD","cluster":"long"},{"prefix":"AB","cluster":"short"}]}"#,
        );
        assert_eq!(c.route(b"AB", false), Routing::Wait);
        assert_eq!(c.route(b"ABC", false), Routing::Wait);
        assert_eq!(c.route(b"ABCX", false), Routing::Cluster(Some("short")));
        assert_eq!(c.route(b"ABCD", false), Routing::Cluster(Some("long")));
        assert_eq!(c.route(b"AB", true), Routing::Cluster(Some("short")));
    }

    #[test]
    fn the_sniff_limit_stops_the_wait() {
        let c = config(r#"{"routes":[{"prefix":"ABCD","cluster":"a"}],"max_sniff_bytes":4}"#);
        assert_eq!(c.route(b"ABC", false), Routing::Wait);
        let short = Config {
            max_sniff_bytes: 2,
            ..c.clone()
        };
        assert_eq!(short.route(b"AB", false), Routing::Cluster(None));
        assert_eq!(
            c.route(b"XY", false),
            Routing::Cluster(None),
            "no default: tcp_proxy's own"
        );
    }

    #[test]
    fn deny_list_covers_both_families() {
        let c = config(r#"{"deny_cidrs":["192.0.2.0/24","2001:db8::/32"]}"#);
        assert!(c.denies("192.0.2.77".parse().unwrap()));
        assert!(!c.denies("192.0.3.1".parse().unwrap()));
        assert!(c.denies("2001:db8::5".parse().unwrap()));
        assert!(!c.denies("2001:db9::5".parse().unwrap()));
        assert!(!config("{}").denies("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn a_denied_source_is_closed_and_nothing_passes_afterwards() {
        let c = config(r#"{"deny_cidrs":["192.0.2.0/24"],"default_cluster":"d"}"#);
        let mut state = ConnectionState::default();
        let source = "192.0.2.9".parse().ok();
        assert_eq!(state.open(&c, source), Opened::Deny(source.unwrap()));
        assert_eq!(state.downstream(&c, 5, no_read, false), Step::Closing);
        assert_eq!(state.upstream(&c, 5), Step::Closing);
        assert_eq!(state.tally(), Tally::default());
        let mut allowed = ConnectionState::default();
        assert_eq!(
            allowed.open(&c, "192.0.3.1".parse().ok()),
            Opened::Continue(Some("d"))
        );
        assert_eq!(
            ConnectionState::default().open(&c, None),
            Opened::Continue(Some("d")),
            "no IP: not denied"
        );
    }

    fn no_read() -> Vec<u8> {
        panic!("the first bytes are read only while the route is undecided")
    }

    #[test]
    fn routing_holds_until_the_first_bytes_decide_then_counts_once() {
        let c =
            config(r#"{"routes":[{"prefix":"GET ","cluster":"http"}],"default_cluster":"tcp"}"#);
        let mut state = ConnectionState::default();
        assert_eq!(state.open(&c, None), Opened::HoldForRouting);
        assert_eq!(
            state.downstream(&c, 2, || b"GE".to_vec(), false),
            Step::Hold
        );
        // Envoy delivers the held bytes again with the next chunk: 2 + 4.
        assert_eq!(
            state.downstream(&c, 6, || b"GET / ".to_vec(), false),
            Step::Forward {
                chosen: Some(Some("http"))
            }
        );
        assert_eq!(state.tally().downstream, 6, "held bytes are counted once");
        assert_eq!(
            state.downstream(&c, 10, no_read, false),
            Step::Forward { chosen: None },
            "decided once"
        );
        assert_eq!(state.upstream(&c, 7), Step::Forward { chosen: None });
        assert_eq!(
            state.tally(),
            Tally {
                downstream: 16,
                upstream: 7
            }
        );
    }

    #[test]
    fn no_match_without_a_default_keeps_tcp_proxys_cluster() {
        let c = config(r#"{"routes":[{"prefix":"*","cluster":"redis"}]}"#);
        let mut state = ConnectionState::default();
        assert_eq!(state.open(&c, None), Opened::HoldForRouting);
        assert_eq!(
            state.downstream(&c, 3, || b"SSH".to_vec(), false),
            Step::Forward { chosen: Some(None) }
        );
        let mut quiet = ConnectionState::default();
        quiet.open(&c, None);
        assert_eq!(
            quiet.downstream(&c, 0, Vec::new, true),
            Step::Forward { chosen: Some(None) },
            "a client that half-closes at once"
        );
    }

    #[test]
    fn the_cap_closes_in_either_direction_before_routing() {
        let c = config(
            r#"{"max_bytes":10,"routes":[{"prefix":"ABCDEFGH","cluster":"a"}],"max_sniff_bytes":16}"#,
        );
        let mut state = ConnectionState::default();
        state.open(&c, None);
        assert_eq!(
            state.downstream(&c, 4, || b"ABCD".to_vec(), false),
            Step::Hold
        );
        // 11 held bytes are over the cap even though the route is undecided.
        assert_eq!(
            state.downstream(&c, 11, no_read, false),
            Step::Close(OverCap { total: 11, max: 10 })
        );
        assert_eq!(state.upstream(&c, 1), Step::Closing);

        let c = config(r#"{"max_bytes":10}"#);
        let mut state = ConnectionState::default();
        assert_eq!(state.open(&c, None), Opened::Continue(None));
        assert_eq!(
            state.downstream(&c, 6, no_read, false),
            Step::Forward { chosen: None }
        );
        assert_eq!(
            state.upstream(&c, 4),
            Step::Forward { chosen: None },
            "exactly the cap"
        );
        assert_eq!(
            state.upstream(&c, 1),
            Step::Close(OverCap { total: 11, max: 10 })
        );
        assert_eq!(state.tally().total(), 10);
    }

    #[test]
    fn the_cap_counts_both_directions() {
        let mut tally = Tally::default();
        assert_eq!(tally.check(usize::MAX, None), Ok(()), "no cap");
        assert_eq!(
            tally.check(10, Some(10)),
            Ok(()),
            "exactly the cap is allowed"
        );
        tally.downstream = 6;
        tally.upstream = 3;
        assert_eq!(tally.total(), 9);
        assert_eq!(tally.check(1, Some(10)), Ok(()));
        assert_eq!(
            tally.check(2, Some(10)),
            Err(OverCap { total: 11, max: 10 })
        );
    }
}

//! The tcp-guard configuration: JSON as users write it, validated into the
//! form the connection logic uses.

use crate::cidr::Cidr;
use sdk_ext::ConfigError;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_stat_prefix")]
    stat_prefix: String,
    #[serde(default)]
    deny_cidrs: Vec<String>,
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    default_cluster: Option<String>,
    #[serde(default)]
    max_sniff_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    prefix_hex: Option<String>,
    cluster: String,
}

fn default_stat_prefix() -> String {
    "tcp_guard".to_string()
}

/// The most bytes a connection may be held back for routing.
pub const SNIFF_LIMIT_CAP: usize = 64 * 1024;

/// First bytes that choose a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: Vec<u8>,
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub stat_prefix: String,
    pub deny: Vec<Cidr>,
    /// Bytes (both directions together) a connection may carry.
    pub max_bytes: Option<u64>,
    /// In order: the first matching prefix wins.
    pub routes: Vec<Route>,
    pub default_cluster: Option<String>,
    /// How many first bytes the filter holds back at most to decide.
    pub max_sniff_bytes: usize,
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json_or_default_with(raw, || RawConfig {
            stat_prefix: default_stat_prefix(),
            deny_cidrs: Vec::new(),
            max_bytes: None,
            routes: Vec::new(),
            default_cluster: None,
            max_sniff_bytes: None,
        })?;
        if raw.stat_prefix.is_empty()
            || !raw
                .stat_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(ConfigError::new(
                "stat_prefix",
                "must be letters, digits, `_` or `.` (it starts every metric name)",
            ));
        }
        let deny = raw
            .deny_cidrs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Cidr::parse(text).map_err(|e| ConfigError::new(format!("deny_cidrs[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if raw.max_bytes == Some(0) {
            return Err(ConfigError::new(
                "max_bytes",
                "must be at least 1 (leave it out for no cap)",
            ));
        }
        let routes = raw
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, route)| route.validate().map_err(|e| e.in_list("routes", i)))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(cluster) = &raw.default_cluster {
            check_cluster(cluster).map_err(|e| e.in_field("default_cluster"))?;
        }
        let longest = routes.iter().map(|r| r.prefix.len()).max().unwrap_or(0);
        let max_sniff_bytes = raw.max_sniff_bytes.unwrap_or(longest);
        if max_sniff_bytes < longest || max_sniff_bytes > SNIFF_LIMIT_CAP {
            return Err(ConfigError::new(
                "max_sniff_bytes",
                format!(
                    "must be between the longest route prefix ({longest} bytes) and \
                     {SNIFF_LIMIT_CAP}: a longer prefix could never be seen whole"
                ),
            ));
        }
        Ok(Config {
            stat_prefix: raw.stat_prefix,
            deny,
            max_bytes: raw.max_bytes,
            routes,
            default_cluster: raw.default_cluster,
            max_sniff_bytes,
        })
    }

    /// True when a connection must be held back from tcp_proxy until its
    /// first bytes have chosen the cluster.
    pub fn routes_by_data(&self) -> bool {
        !self.routes.is_empty()
    }
}

impl RawRoute {
    fn validate(self) -> Result<Route, ConfigError> {
        let prefix = match (self.prefix, self.prefix_hex) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(hex)) => {
                decode_hex(&hex).map_err(|reason| ConfigError::new("prefix_hex", reason))?
            }
            _ => {
                return Err(ConfigError::root(
                    "give exactly one of `prefix` (text) or `prefix_hex` (bytes)",
                ));
            }
        };
        if prefix.is_empty() {
            return Err(ConfigError::root(
                "the prefix is empty; it would match every connection (use `default_cluster`)",
            ));
        }
        check_cluster(&self.cluster).map_err(|e| e.in_field("cluster"))?;
        Ok(Route {
            prefix,
            cluster: self.cluster,
        })
    }
}

fn check_cluster(cluster: &str) -> Result<(), ConfigError> {
    if cluster.trim().is_empty() || cluster.chars().any(char::is_whitespace) {
        return Err(ConfigError::root(
            "must be a cluster name (not empty, no spaces)",
        ));
    }
    Ok(())
}

/// `"16 03 01"`, `"160301"`: pairs of hex digits, spaces ignored.
fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("`{text}` has an odd number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("`{text}` is not hex (pairs of 0-9, a-f)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_full_configuration() {
        let config = Config::parse(
            br#"{"stat_prefix":"edge","deny_cidrs":["10.0.0.0/8","2001:db8::/32"],
                "max_bytes":1000,"routes":[{"prefix":"*","cluster":"redis"},
                {"prefix_hex":"16 03","cluster":"tls"}],"default_cluster":"plain",
                "max_sniff_bytes":8}"#,
        )
        .unwrap();
        assert_eq!(config.stat_prefix, "edge");
        assert_eq!(config.deny.len(), 2);
        assert_eq!(config.max_bytes, Some(1000));
        assert_eq!(config.routes[1].prefix, [0x16, 0x03]);
        assert_eq!(config.default_cluster.as_deref(), Some("plain"));
        assert_eq!(config.max_sniff_bytes, 8);
        assert!(config.routes_by_data());
    }

    #[test]
    fn an_empty_document_counts_bytes_only() {
        let config = Config::parse(b"").unwrap();
        assert_eq!(config.stat_prefix, "tcp_guard");
        assert!(config.deny.is_empty() && config.routes.is_empty());
        assert_eq!(config.max_bytes, None);
        assert!(!config.routes_by_data());
        assert_eq!(config.max_sniff_bytes, 0);
    }

    #[test]
    fn the_sniff_limit_defaults_to_the_longest_prefix() {
        let config = Config::parse(
            br#"{"routes":[{"prefix":"GET ","cluster":"http"},{"prefix":"PRI * HTTP/2","cluster":"h2"}]}"#,
        )
        .unwrap();
        assert_eq!(config.max_sniff_bytes, 12);
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases: &[(&[u8], &str, &str)] = &[
            (
                br#"{"deny_cidrs":["10.0.0.0/8","10.1.0.0/8"]}"#,
                "deny_cidrs[1]",
                "10.0.0.0/8",
            ),
            (
                br#"{"deny_cidrs":["nope"]}"#,
                "deny_cidrs[0]",
                "not an IPv4",
            ),
            (br#"{"max_bytes":0}"#, "max_bytes", "at least 1"),
            (
                br#"{"routes":[{"cluster":"a"}]}"#,
                "routes[0]",
                "exactly one",
            ),
            (
                br#"{"routes":[{"prefix":"a","prefix_hex":"61","cluster":"a"}]}"#,
                "routes[0]",
                "exactly one",
            ),
            (
                br#"{"routes":[{"prefix":"","cluster":"a"}]}"#,
                "routes[0]",
                "empty",
            ),
            (
                br#"{"routes":[{"prefix_hex":"1","cluster":"a"}]}"#,
                "routes[0].prefix_hex",
                "odd",
            ),
            (
                br#"{"routes":[{"prefix_hex":"zz","cluster":"a"}]}"#,
                "routes[0].prefix_hex",
                "not hex",
            ),
            (
                br#"{"routes":[{"prefix":"a","cluster":" "}]}"#,
                "routes[0].cluster",
                "cluster name",
            ),
            (
                br#"{"default_cluster":""}"#,
                "default_cluster",
                "cluster name",
            ),
            (
                br#"{"routes":[{"prefix":"abcd","cluster":"a"}],"max_sniff_bytes":2}"#,
                "max_sniff_bytes",
                "(4 bytes)",
            ),
            (br#"{"max_sniff_bytes":100000}"#, "max_sniff_bytes", "65536"),
            (br#"{"stat_prefix":"a b"}"#, "stat_prefix", "letters"),
            (br#"{"deny":[]}"#, "deny", "unknown field"),
        ];
        for (raw, path, reason) in cases {
            let err = Config::parse(raw).unwrap_err();
            assert_eq!(err.path(), *path, "{err}");
            assert!(err.reason().contains(reason), "{err}");
        }
    }
}

//! Token buckets in shared data: taking a token on each request, refilling on
//! the timer. Every change is a CAS update, so workers sharing the data never
//! lose or double-count tokens.

use sdk_ext::shared::{SharedStore, Update, UpdateError, update};
use sdk_ext::{ConfigError, LocalResponse};
use serde::Deserialize;
use std::time::Duration;

/// How many times a contended update is retried before failing open.
const CAS_ATTEMPTS: u32 = 16;
/// Bucket used once `max_buckets` distinct keys exist.
pub const OVERFLOW_KEY: &str = "__overflow__";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFrom {
    Global,
    ClientAddress,
    Header,
}

fn default_key_from() -> KeyFrom {
    KeyFrom::Global
}

fn default_status() -> u32 {
    429
}

fn default_body() -> String {
    "rate limited\n".to_string()
}

fn default_max_buckets() -> usize {
    10_000
}

fn default_tokens_per_fill() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_key_from")]
    key_from: KeyFrom,
    #[serde(default)]
    key_header: Option<String>,
    max_tokens: u64,
    #[serde(default = "default_tokens_per_fill")]
    tokens_per_fill: u64,
    fill_interval: String,
    #[serde(default = "default_status")]
    status: u32,
    #[serde(default = "default_body")]
    body: String,
    #[serde(default = "default_max_buckets")]
    max_buckets: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub key_from: KeyFrom,
    pub key_header: Option<String>,
    pub max_tokens: u64,
    pub tokens_per_fill: u64,
    pub fill_interval_ms: u64,
    status: u32,
    body: String,
    max_buckets: usize,
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json(raw)?;
        match (raw.key_from, &raw.key_header) {
            (KeyFrom::Header, None) => {
                return Err(ConfigError::new(
                    "key_header",
                    "is required when `key_from` is `header`",
                ));
            }
            (KeyFrom::Header, Some(h)) if !sdk_ext::headers::is_valid_name(h) => {
                return Err(ConfigError::new("key_header", "is not a valid header name"));
            }
            (KeyFrom::Global | KeyFrom::ClientAddress, Some(_)) => {
                return Err(ConfigError::new(
                    "key_header",
                    "is only used when `key_from` is `header`",
                ));
            }
            _ => {}
        }
        if raw.max_tokens == 0 {
            return Err(ConfigError::new("max_tokens", "must be at least 1"));
        }
        if raw.tokens_per_fill == 0 {
            return Err(ConfigError::new("tokens_per_fill", "must be at least 1"));
        }
        let interval = sdk_ext::config::parse_duration(&raw.fill_interval)
            .map_err(|e| ConfigError::new("fill_interval", e))?;
        let fill_interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        if fill_interval_ms == 0 {
            return Err(ConfigError::new("fill_interval", "must be at least 1ms"));
        }
        if !(400..=599).contains(&raw.status) {
            return Err(ConfigError::new("status", "must be a 4xx or 5xx status"));
        }
        if raw.max_buckets == 0 {
            return Err(ConfigError::new("max_buckets", "must be at least 1"));
        }
        Ok(Config {
            key_from: raw.key_from,
            key_header: raw.key_header.map(|h| h.to_ascii_lowercase()),
            max_tokens: raw.max_tokens,
            tokens_per_fill: raw.tokens_per_fill,
            fill_interval_ms,
            status: raw.status,
            body: raw.body,
            max_buckets: raw.max_buckets,
        })
    }

    /// Refills are checked ten times per interval (1 ms to 1 s), so a bucket is
    /// refilled at most a tenth of an interval late.
    pub fn tick_period(&self) -> Duration {
        Duration::from_millis((self.fill_interval_ms / 10).clamp(1, 1000))
    }

    pub fn limited_reply(&self, retry_after_seconds: u64) -> LocalResponse {
        LocalResponse::new(self.status)
            .header("retry-after", retry_after_seconds.to_string())
            .header("content-type", "text/plain")
            .body(self.body.as_bytes())
            .details("local_rate_limited")
    }
}

/// One bucket as stored: tokens left, and the start of the current fill period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub tokens: u64,
    pub filled_at_ms: u64,
}

impl Bucket {
    pub fn encode(self) -> Vec<u8> {
        let mut out = self.tokens.to_le_bytes().to_vec();
        out.extend_from_slice(&self.filled_at_ms.to_le_bytes());
        out
    }

    pub fn decode(raw: &[u8]) -> Option<Bucket> {
        let tokens = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
        let filled_at_ms = u64::from_le_bytes(raw.get(8..16)?.try_into().ok()?);
        (raw.len() == 16).then_some(Bucket {
            tokens,
            filled_at_ms,
        })
    }

    /// A full bucket whose period starts on an interval boundary, so every
    /// worker agrees on when periods end.
    fn full(config: &Config, now_ms: u64) -> Bucket {
        Bucket {
            tokens: config.max_tokens,
            filled_at_ms: now_ms - now_ms % config.fill_interval_ms,
        }
    }

    /// The bucket after the refills due by `now_ms`, if any are due.
    pub fn refilled(self, config: &Config, now_ms: u64) -> Option<Bucket> {
        let periods = now_ms.saturating_sub(self.filled_at_ms) / config.fill_interval_ms;
        (periods > 0).then(|| Bucket {
            tokens: self
                .tokens
                .saturating_add(periods.saturating_mul(config.tokens_per_fill))
                .min(config.max_tokens),
            filled_at_ms: self.filled_at_ms + periods * config.fill_interval_ms,
        })
    }

    /// Whole seconds until the next refill (at least 1), for `retry-after`.
    pub fn retry_after_seconds(self, config: &Config, now_ms: u64) -> u64 {
        let next = self.filled_at_ms.saturating_add(config.fill_interval_ms);
        next.saturating_sub(now_ms).div_ceil(1000).max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u64 },
    Limited { retry_after_seconds: u64 },
}

/// Shared-data keys of one plugin instance.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(plugin_name: &str) -> Self {
        Self {
            prefix: format!("local-rate-limit/{plugin_name}"),
        }
    }

    fn bucket(&self, key: &str) -> String {
        format!("{}/bucket/{key}", self.prefix)
    }

    fn registry(&self) -> String {
        format!("{}/keys", self.prefix)
    }
}

/// Takes a token from `key`'s bucket, creating the bucket (full) on first use.
pub fn acquire<S: SharedStore>(
    store: &S,
    keys: &Keys,
    config: &Config,
    key: &str,
    now_ms: u64,
) -> Result<Decision, UpdateError> {
    // Only keys without a bucket need the (longer) registry walk.
    let key = match store.get(&keys.bucket(key)) {
        Ok((Some(_), _)) => key.to_string(),
        _ => register(store, keys, config, key)?,
    };
    update(store, &keys.bucket(&key), CAS_ATTEMPTS, |current| {
        let bucket = current
            .and_then(Bucket::decode)
            .unwrap_or_else(|| Bucket::full(config, now_ms));
        if bucket.tokens == 0 {
            return Update::Keep(Decision::Limited {
                retry_after_seconds: bucket.retry_after_seconds(config, now_ms),
            });
        }
        let taken = Bucket {
            tokens: bucket.tokens - 1,
            ..bucket
        };
        Update::Write(
            taken.encode(),
            Decision::Allowed {
                remaining: taken.tokens,
            },
        )
    })
}

/// Makes sure `key` is in the registry the timer walks; past `max_buckets`
/// distinct keys, new keys share the overflow bucket.
fn register<S: SharedStore>(
    store: &S,
    keys: &Keys,
    config: &Config,
    key: &str,
) -> Result<String, UpdateError> {
    update(store, &keys.registry(), CAS_ATTEMPTS, |current| {
        let listed = current.unwrap_or_default();
        if listed.split(|b| *b == b'\n').any(|k| k == key.as_bytes()) {
            return Update::Keep(key.to_string());
        }
        let count = listed
            .split(|b| *b == b'\n')
            .filter(|k| !k.is_empty())
            .count();
        let chosen = if count >= config.max_buckets {
            OVERFLOW_KEY
        } else {
            key
        };
        if chosen == OVERFLOW_KEY
            && listed
                .split(|b| *b == b'\n')
                .any(|k| k == OVERFLOW_KEY.as_bytes())
        {
            return Update::Keep(chosen.to_string());
        }
        let mut next = listed.to_vec();
        if !next.is_empty() {
            next.push(b'\n');
        }
        next.extend_from_slice(chosen.as_bytes());
        Update::Write(next, chosen.to_string())
    })
}

/// Refills every registered bucket whose period ended; returns how many changed.
pub fn refill_all<S: SharedStore>(
    store: &S,
    keys: &Keys,
    config: &Config,
    now_ms: u64,
) -> Result<usize, UpdateError> {
    let (registry, _) = store.get(&keys.registry()).map_err(UpdateError::Host)?;
    let registry = registry.unwrap_or_default();
    let mut refilled = 0;
    for key in registry.split(|b| *b == b'\n').filter(|k| !k.is_empty()) {
        let key = String::from_utf8_lossy(key);
        let changed = update(
            store,
            &keys.bucket(&key),
            CAS_ATTEMPTS,
            |current| match current
                .and_then(Bucket::decode)
                .and_then(|b| b.refilled(config, now_ms))
            {
                Some(next) => Update::Write(next.encode(), true),
                None => Update::Keep(false),
            },
        )?;
        refilled += usize::from(changed);
    }
    Ok(refilled)
}

/// `10.0.0.1:45000` -> `10.0.0.1`, `[::1]:80` -> `::1`.
pub fn address_without_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk_ext::shared::MemoryStore;

    fn config() -> Config {
        Config::parse(br#"{"key_from":"header","key_header":"x-api-key","max_tokens":3,"tokens_per_fill":2,"fill_interval":"1s"}"#)
            .unwrap()
    }

    #[test]
    fn buckets_encode_as_sixteen_bytes() {
        let bucket = Bucket {
            tokens: 7,
            filled_at_ms: 1_700_000_000_123,
        };
        assert_eq!(Bucket::decode(&bucket.encode()), Some(bucket));
        assert_eq!(Bucket::decode(&[0; 15]), None);
    }

    #[test]
    fn over_the_limit_is_refused_with_retry_after() {
        let store = MemoryStore::default();
        let (keys, config) = (Keys::new("t"), config());
        let now = 10_250;
        let decisions: Vec<Decision> = (0..4)
            .map(|_| acquire(&store, &keys, &config, "a", now).unwrap())
            .collect();
        assert_eq!(decisions[0], Decision::Allowed { remaining: 2 });
        assert_eq!(decisions[2], Decision::Allowed { remaining: 0 });
        // The period started at 10 000 (interval boundary): 750 ms left -> 1 s.
        assert_eq!(
            decisions[3],
            Decision::Limited {
                retry_after_seconds: 1
            }
        );
    }

    #[test]
    fn buckets_are_per_key() {
        let store = MemoryStore::default();
        let (keys, config) = (Keys::new("t"), config());
        for _ in 0..3 {
            acquire(&store, &keys, &config, "a", 0).unwrap();
        }
        assert!(matches!(
            acquire(&store, &keys, &config, "a", 0).unwrap(),
            Decision::Limited { .. }
        ));
        assert_eq!(
            acquire(&store, &keys, &config, "b", 0).unwrap(),
            Decision::Allowed { remaining: 2 }
        );
    }

    #[test]
    fn the_timer_refills_by_whole_periods_up_to_the_maximum() {
        let store = MemoryStore::default();
        let (keys, config) = (Keys::new("t"), config());
        for _ in 0..3 {
            acquire(&store, &keys, &config, "a", 0).unwrap();
        }
        assert_eq!(refill_all(&store, &keys, &config, 999).unwrap(), 0);
        assert_eq!(refill_all(&store, &keys, &config, 1_000).unwrap(), 1);
        assert_eq!(
            acquire(&store, &keys, &config, "a", 1_000).unwrap(),
            Decision::Allowed { remaining: 1 }
        );
        // Five periods later the bucket is full (3), not 1 + 10.
        refill_all(&store, &keys, &config, 6_000).unwrap();
        assert_eq!(
            acquire(&store, &keys, &config, "a", 6_000).unwrap(),
            Decision::Allowed { remaining: 2 }
        );
    }

    #[test]
    fn two_workers_ticking_refill_once_per_period() {
        // Both workers' timers fire for the same period; the second finds the
        // period already accounted for.
        let store = MemoryStore::default();
        let (keys, config) = (Keys::new("t"), config());
        for _ in 0..3 {
            acquire(&store, &keys, &config, "a", 0).unwrap();
        }
        assert_eq!(refill_all(&store, &keys, &config, 1_000).unwrap(), 1);
        assert_eq!(refill_all(&store, &keys, &config, 1_050).unwrap(), 0);
        let tokens = (0..5)
            .filter(|_| {
                matches!(
                    acquire(&store, &keys, &config, "a", 1_100).unwrap(),
                    Decision::Allowed { .. }
                )
            })
            .count();
        assert_eq!(tokens, 2);
    }

    #[test]
    fn contended_updates_retry_and_never_lose_a_take() {
        // Another worker writes between our read and our write: the CAS
        // mismatch makes us re-read, so its take is not overwritten.
        let store = MemoryStore::default();
        let (keys, config) = (Keys::new("t"), config());
        acquire(&store, &keys, &config, "a", 0).unwrap();
        store.interfere(3);
        assert!(matches!(
            acquire(&store, &keys, &config, "a", 0),
            Ok(Decision::Allowed { .. })
        ));
        store.interfere(100);
        assert_eq!(
            acquire(&store, &keys, &config, "a", 0),
            Err(UpdateError::Contended {
                attempts: CAS_ATTEMPTS
            })
        );
    }

    #[test]
    fn keys_beyond_max_buckets_share_the_overflow_bucket() {
        let store = MemoryStore::default();
        let keys = Keys::new("t");
        let config =
            Config::parse(br#"{"max_tokens":1,"fill_interval":"1s","max_buckets":2}"#).unwrap();
        acquire(&store, &keys, &config, "a", 0).unwrap();
        acquire(&store, &keys, &config, "b", 0).unwrap();
        assert_eq!(
            acquire(&store, &keys, &config, "c", 0).unwrap(),
            Decision::Allowed { remaining: 0 }
        );
        assert!(matches!(
            acquire(&store, &keys, &config, "d", 0).unwrap(),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn client_addresses_lose_their_port() {
        assert_eq!(address_without_port("10.0.0.1:45000"), "10.0.0.1");
        assert_eq!(address_without_port("[::1]:80"), "::1");
        assert_eq!(address_without_port("10.0.0.1"), "10.0.0.1");
        assert_eq!(address_without_port("::1"), "::1");
    }

    #[test]
    fn configuration_rules() {
        let err = |json: &[u8]| Config::parse(json).unwrap_err();
        assert_eq!(
            err(br#"{"key_from":"header","max_tokens":1,"fill_interval":"1s"}"#).path(),
            "key_header"
        );
        assert_eq!(
            err(br#"{"max_tokens":0,"fill_interval":"1s"}"#).path(),
            "max_tokens"
        );
        assert_eq!(
            err(br#"{"max_tokens":1,"fill_interval":"0ms"}"#).path(),
            "fill_interval"
        );
        assert_eq!(
            err(br#"{"max_tokens":1,"fill_interval":"1s","status":200}"#).path(),
            "status"
        );
        let config = Config::parse(br#"{"max_tokens":1,"fill_interval":"1s"}"#).unwrap();
        assert_eq!(config.tick_period(), Duration::from_millis(100));
        let reply = config.limited_reply(3);
        assert_eq!(reply.status(), 429);
        assert_eq!(reply.header_value("retry-after"), Some(&b"3"[..]));
    }
}

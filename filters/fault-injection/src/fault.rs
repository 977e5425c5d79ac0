//! Which fault, if any, a request gets.

use sdk_ext::random::SeededRandom;
use sdk_ext::{ConfigError, LocalResponse};
use serde::Deserialize;
use std::cell::RefCell;
use std::time::Duration;

fn default_abort_status() -> u32 {
    503
}

fn default_abort_body() -> String {
    "fault filter abort\n".to_string()
}

fn default_header() -> String {
    "x-fault-inject".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Abort {
    #[serde(default = "default_abort_status")]
    pub status: u32,
    #[serde(default = "default_abort_body")]
    pub body: String,
    pub percentage: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelay {
    duration: String,
    percentage: f64,
}

#[derive(Debug, Clone)]
pub struct Delay {
    pub duration: Duration,
    pub percentage: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    abort: Option<Abort>,
    #[serde(default)]
    delay: Option<RawDelay>,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    seed: Option<u64>,
}

#[derive(Debug)]
pub struct Config {
    pub abort: Option<Abort>,
    pub delay: Option<Delay>,
    /// A request carrying this header with `abort` or `delay` gets that fault.
    pub header: String,
    random: RefCell<SeededRandom>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    None,
    Abort,
    Delay(Duration),
}

fn check_percentage(field: &str, value: f64) -> Result<(), ConfigError> {
    if !(0.0..=100.0).contains(&value) {
        return Err(ConfigError::new(
            field,
            format!("{value} is not a percentage (0-100)"),
        ));
    }
    Ok(())
}

impl Config {
    pub fn parse(raw: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = sdk_ext::config::parse_json(raw)?;
        if raw.abort.is_none() && raw.delay.is_none() {
            return Err(ConfigError::root("set `abort` and/or `delay`"));
        }
        if let Some(abort) = &raw.abort {
            check_percentage("abort.percentage", abort.percentage)?;
            if !(200..=599).contains(&abort.status) {
                return Err(ConfigError::new(
                    "abort.status",
                    format!("{} is not an HTTP status (200-599)", abort.status),
                ));
            }
        }
        let delay = match raw.delay {
            Some(d) => {
                check_percentage("delay.percentage", d.percentage)?;
                let duration = sdk_ext::config::parse_duration(&d.duration)
                    .map_err(|e| ConfigError::new("delay.duration", e))?;
                if duration.is_zero() || duration > Duration::from_secs(3600) {
                    return Err(ConfigError::new(
                        "delay.duration",
                        "must be more than 0 and at most 1h",
                    ));
                }
                Some(Delay {
                    duration,
                    percentage: d.percentage,
                })
            }
            None => None,
        };
        if !sdk_ext::headers::is_valid_name(&raw.header) || raw.header.starts_with(':') {
            return Err(ConfigError::new("header", "must be a valid header name"));
        }
        let random = match raw.seed {
            Some(seed) => SeededRandom::new(seed),
            None => SeededRandom::from_host_entropy(),
        };
        Ok(Config {
            abort: raw.abort,
            delay,
            header: raw.header.to_ascii_lowercase(),
            random: RefCell::new(random),
        })
    }

    /// The timer granularity delays need: a tenth of the delay, 1-100 ms.
    pub fn tick_period(&self) -> Option<Duration> {
        self.delay
            .as_ref()
            .map(|d| (d.duration / 10).clamp(Duration::from_millis(1), Duration::from_millis(100)))
    }

    /// Forced by the header (`abort` / `delay`), else drawn: the abort
    /// percentage first, then the delay percentage. Every request draws once
    /// per configured fault, so the sequence is reproducible from the seed.
    pub fn decide(&self, forced: Option<&[u8]>) -> Fault {
        match forced.map(<[u8]>::trim_ascii) {
            Some(b"abort") if self.abort.is_some() => return Fault::Abort,
            Some(b"delay") => {
                if let Some(delay) = &self.delay {
                    return Fault::Delay(delay.duration);
                }
            }
            _ => {}
        }
        let mut random = self.random.borrow_mut();
        let abort = self
            .abort
            .as_ref()
            .is_some_and(|a| random.chance(a.percentage));
        let delay = self.delay.as_ref().filter(|d| random.chance(d.percentage));
        match (abort, delay) {
            (true, _) => Fault::Abort,
            (false, Some(d)) => Fault::Delay(d.duration),
            (false, None) => Fault::None,
        }
    }

    pub fn abort_reply(&self) -> Option<LocalResponse> {
        self.abort.as_ref().map(|a| {
            LocalResponse::new(a.status)
                .header("content-type", "text/plain")
                .body(a.body.as_bytes())
                .details("fault_filter_abort")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] = br#"{"abort":{"status":503,"percentage":20},
        "delay":{"duration":"500ms","percentage":30},"seed":42}"#;

    #[test]
    fn percentages_hold_over_many_requests() {
        let config = Config::parse(CONFIG).unwrap();
        let mut aborts = 0;
        let mut delays = 0;
        for _ in 0..10_000 {
            match config.decide(None) {
                Fault::Abort => aborts += 1,
                Fault::Delay(d) => {
                    assert_eq!(d, Duration::from_millis(500));
                    delays += 1;
                }
                Fault::None => {}
            }
        }
        // 20% abort; 30% of the remaining 80% delay = 24%.
        assert!((1_850..2_150).contains(&aborts), "{aborts}");
        assert!((2_250..2_550).contains(&delays), "{delays}");
    }

    #[test]
    fn same_seed_same_decisions() {
        let a = Config::parse(CONFIG).unwrap();
        let b = Config::parse(CONFIG).unwrap();
        let xs: Vec<Fault> = (0..50).map(|_| a.decide(None)).collect();
        let ys: Vec<Fault> = (0..50).map(|_| b.decide(None)).collect();
        assert_eq!(xs, ys);
    }

    #[test]
    fn the_header_forces_a_fault() {
        let config = Config::parse(
            br#"{"abort":{"percentage":0},"delay":{"duration":"2s","percentage":0}}"#,
        )
        .unwrap();
        assert_eq!(config.decide(Some(b"abort")), Fault::Abort);
        assert_eq!(
            config.decide(Some(b"delay")),
            Fault::Delay(Duration::from_secs(2))
        );
        assert_eq!(config.decide(Some(b"other")), Fault::None);
        assert_eq!(config.decide(None), Fault::None);
        let reply = config.abort_reply().unwrap();
        assert_eq!(reply.status(), 503);
        assert_eq!(reply.body_bytes(), b"fault filter abort\n");
    }

    #[test]
    fn tick_period_is_a_tenth_of_the_delay() {
        let config = Config::parse(CONFIG).unwrap();
        assert_eq!(config.tick_period(), Some(Duration::from_millis(50)));
        let abort_only = Config::parse(br#"{"abort":{"percentage":1}}"#).unwrap();
        assert_eq!(abort_only.tick_period(), None);
    }

    #[test]
    fn bad_configurations_are_explained() {
        let err = |json: &[u8]| Config::parse(json).unwrap_err();
        assert!(err(b"{}").reason().contains("abort"));
        assert_eq!(
            err(br#"{"abort":{"percentage":101}}"#).path(),
            "abort.percentage"
        );
        assert_eq!(
            err(br#"{"abort":{"percentage":1,"status":99}}"#).path(),
            "abort.status"
        );
        assert_eq!(
            err(br#"{"delay":{"duration":"soon","percentage":1}}"#).path(),
            "delay.duration"
        );
        assert_eq!(
            err(br#"{"delay":{"duration":"0s","percentage":1}}"#).path(),
            "delay.duration"
        );
        assert_eq!(err(br#"{"delay":{"duration":"1s"}}"#).path(), "delay");
    }
}

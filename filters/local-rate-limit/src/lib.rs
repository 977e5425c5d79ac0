//! local-rate-limit: token buckets per key in shared data, refilled by the
//! timer; over-limit requests get 429 with `retry-after`. See README.md.

pub mod limiter;

use limiter::{Config, Decision, KeyFrom, Keys};
use sdk_ext::shared::HostStore;
use sdk_ext::{Action, ConfigError, Http, Plugin, Root};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct LocalRateLimit;

/// The configuration plus the shared-data keys of this plugin instance.
pub struct Runtime {
    config: Config,
    keys: Keys,
}

fn now_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Plugin for LocalRateLimit {
    const NAME: &'static str = "local-rate-limit";
    type Config = Runtime;

    fn configure(raw: &[u8]) -> Result<Runtime, ConfigError> {
        let config = Config::parse(raw)?;
        // Buckets are scoped by plugin name, so two instances never share them.
        let name = sdk_ext::property::get_string(&["plugin_name"])
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| Self::NAME.to_string());
        Ok(Runtime {
            config,
            keys: Keys::new(&name),
        })
    }

    fn tick_period(runtime: &Runtime) -> Option<Duration> {
        Some(runtime.config.tick_period())
    }

    fn on_tick(root: &Root<Self>) {
        let runtime = root.config();
        if let Err(error) = limiter::refill_all(
            &HostStore,
            &runtime.keys,
            &runtime.config,
            now_ms(root.now()),
        ) {
            log::warn!("{}: refilling buckets: {error}", Self::NAME);
        }
    }

    fn create(_http: &Http<Self>) -> Self {
        LocalRateLimit
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        let runtime = http.config();
        let config = &runtime.config;
        let key = match (config.key_from, &config.key_header) {
            (KeyFrom::Global, _) => "global".to_string(),
            (KeyFrom::ClientAddress, _) => sdk_ext::property::get_string(&["source", "address"])
                .map_or_else(
                    || "unknown".to_string(),
                    |a| limiter::address_without_port(&a).to_string(),
                ),
            (KeyFrom::Header, Some(name)) => http.request_headers().get(name).map_or_else(
                || "none".to_string(),
                |v| format!("h:{}", String::from_utf8_lossy(&v)),
            ),
            (KeyFrom::Header, None) => "none".to_string(),
        };
        match limiter::acquire(&HostStore, &runtime.keys, config, &key, now_ms(http.now())) {
            Ok(Decision::Allowed { .. }) => Action::Continue,
            Ok(Decision::Limited {
                retry_after_seconds,
            }) => {
                log::info!("{}: rate limited key {key}", http.log_prefix());
                http.send_local_response(&config.limited_reply(retry_after_seconds));
                Action::Pause
            }
            Err(error) => {
                // Never block traffic because the limiter's own state is unavailable.
                log::warn!(
                    "{}: rate limiter unavailable, letting the request through: {error}",
                    http.log_prefix()
                );
                Action::Continue
            }
        }
    }
}

sdk_ext::plugin!(LocalRateLimit);

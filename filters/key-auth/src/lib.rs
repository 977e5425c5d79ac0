//! key-auth: API keys from a header or a query parameter, checked against
//! configured consumers and stripped before the upstream. See README.md.

pub mod keys;

use keys::{Config, Source};
use sdk_ext::{Action, ConfigError, Http, Plugin};

pub struct KeyAuth;

impl Plugin for KeyAuth {
    const NAME: &'static str = "key-auth";
    type Config = Config;

    fn configure(raw: &[u8]) -> Result<Config, ConfigError> {
        Config::parse(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        KeyAuth
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        let headers = http.request_headers();
        let config = http.config();
        let path = headers.get_str(":path").unwrap_or_default();
        let Some(presented) = config.find_key(|name| headers.get(name), &path) else {
            http.send_local_response(&Config::deny("missing API key"));
            return Action::Pause;
        };
        let Some(consumer) = config.consumer(&presented.key) else {
            log::info!(
                "{}: invalid API key from {:?}",
                http.log_prefix(),
                presented.source
            );
            http.send_local_response(&Config::deny("invalid API key"));
            return Action::Pause;
        };
        // Every configured key location is cleared, not only the one used.
        for name in &config.header_names {
            headers.remove(name);
        }
        if let Some(stripped) = config.strip_query(&path) {
            headers.set(":path", stripped);
        }
        headers.set(&config.consumer_header, consumer);
        if let Source::Query(name) = &presented.source {
            log::debug!(
                "{}: key taken from query parameter {name}",
                http.log_prefix()
            );
        }
        Action::Continue
    }
}

sdk_ext::plugin!(KeyAuth);

//! basic-auth: HTTP Basic authentication against configured consumers.
//! See README.md.

pub mod auth;

use auth::Config;
use sdk_ext::{Action, ConfigError, Http, Plugin};

pub struct BasicAuth;

impl Plugin for BasicAuth {
    const NAME: &'static str = "basic-auth";
    type Config = Config;

    fn configure(raw: &[u8]) -> Result<Config, ConfigError> {
        Config::parse(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        BasicAuth
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        let headers = http.request_headers();
        let config = http.config();
        let path = headers.get_str(":path").unwrap_or_default();
        if !config.protects(&path) {
            // Nobody may claim to be a consumer on a path we did not check.
            headers.remove(&config.consumer_header);
            return Action::Continue;
        }
        match config.check(headers.get("authorization").as_deref()) {
            Ok(consumer) => {
                // The upstream learns who called, never the password.
                headers.remove("authorization");
                headers.set(&config.consumer_header, consumer);
                Action::Continue
            }
            Err(denial) => {
                log::info!("{}: denied {path}: {}", http.log_prefix(), denial.text());
                http.send_local_response(&config.challenge(denial));
                Action::Pause
            }
        }
    }
}

sdk_ext::plugin!(BasicAuth);

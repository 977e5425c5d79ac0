//! jwt-auth: verifies JWTs (HS256, RS256, ES256) against inline JWK sets,
//! using the host clock, and copies claims into request headers. See README.md.

pub mod keys;
mod rs256;
pub mod verify;

use sdk_ext::{Action, ConfigError, Http, Plugin};
use verify::{Config, Reject};

pub struct JwtAuth;

impl Plugin for JwtAuth {
    const NAME: &'static str = "jwt-auth";
    type Config = Config;

    fn configure(raw: &[u8]) -> Result<Config, ConfigError> {
        Config::parse(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        JwtAuth
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        let headers = http.request_headers();
        let config = http.config();
        // Claim headers are ours alone: never pass client-sent values on.
        for mapping in &config.claims_to_headers {
            headers.remove(&mapping.header);
        }
        let value = headers.get(&config.from_header);
        let result = match value.as_deref() {
            None if config.allow_missing => return Action::Continue,
            None => Err(Reject::Missing),
            Some(value) => match config.token_from(value) {
                Some(token) => config.verify(token, sdk_ext::clock::unix_seconds(http.now())),
                None => Err(Reject::Malformed("expected `Bearer <token>`")),
            },
        };
        match result {
            Ok(verified) => {
                for mapping in &config.claims_to_headers {
                    if let Some(text) = verified.claim_text(&mapping.claim) {
                        headers.set(&mapping.header, text);
                    }
                }
                if !config.forward {
                    headers.remove(&config.from_header);
                }
                Action::Continue
            }
            Err(reject) => {
                log::info!(
                    "{}: rejected token: {}",
                    http.log_prefix(),
                    reject.description()
                );
                http.send_local_response(&reject.reply());
                Action::Pause
            }
        }
    }
}

sdk_ext::plugin!(JwtAuth);

//! cors: answers CORS preflights locally and adds the access-control headers
//! to responses for allowed origins. Foreign origins get nothing. See README.md.

pub mod policy;

use policy::Policy;
use sdk_ext::{Action, ConfigError, Http, Plugin};

pub struct Cors {
    /// The request's origin, when the policy allows it.
    allowed_origin: Option<String>,
}

impl Plugin for Cors {
    const NAME: &'static str = "cors";
    type Config = Policy;

    fn configure(raw: &[u8]) -> Result<Policy, ConfigError> {
        sdk_ext::config::from_json(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        Cors {
            allowed_origin: None,
        }
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        let headers = http.request_headers();
        let Some(origin) = headers.get_str("origin") else {
            return Action::Continue;
        };
        if !http.config().allows_origin(&origin) {
            log::debug!("{}: origin {origin} not allowed", http.log_prefix());
            return Action::Continue;
        }
        let method = headers.get_str(":method").unwrap_or_default();
        let requested_method = headers.get_str("access-control-request-method");
        if policy::is_preflight(&method, Some(&origin), requested_method.as_deref()) {
            let requested_headers = headers.get_str("access-control-request-headers");
            let reply = http
                .config()
                .preflight(&origin, requested_headers.as_deref());
            http.send_local_response(&reply);
            return Action::Pause;
        }
        self.allowed_origin = Some(origin);
        Action::Continue
    }

    fn on_response_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        if let Some(origin) = &self.allowed_origin {
            for (name, value) in http.config().decoration(origin) {
                // Keep the upstream's own Vary entries; own the access-control ones.
                if name == "vary" {
                    http.response_headers().add(name, value);
                } else {
                    http.response_headers().set(name, value);
                }
            }
        }
        Action::Continue
    }
}

sdk_ext::plugin!(Cors);

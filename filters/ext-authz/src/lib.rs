//! ext-authz: pauses each request while an external HTTP service decides.
//! See README.md.

pub mod authz;

use authz::{Config, Verdict};
use sdk_ext::{Action, ConfigError, Http, Plugin};

pub struct ExtAuthz;

impl Plugin for ExtAuthz {
    const NAME: &'static str = "ext-authz";
    type Config = Config;

    fn configure(raw: &[u8]) -> Result<Config, ConfigError> {
        Config::parse(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        ExtAuthz
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        let headers = http.request_headers();
        let method = headers.get_str(":method").unwrap_or_default();
        let path = headers.get_str(":path").unwrap_or_default();
        let call = http
            .config()
            .check_call(&method, &path, |name| headers.get(name));
        let dispatched = http.dispatch_call(&call, |_plugin, http, outcome| {
            let verdict = http.config().verdict(&outcome);
            if apply(http, verdict) == Action::Continue {
                http.resume_request();
            }
        });
        match dispatched {
            Ok(_) => Action::Pause,
            Err(status) => {
                log::warn!(
                    "{}: calling cluster {} failed: {status}",
                    http.log_prefix(),
                    http.config().cluster
                );
                let verdict = http.config().on_failure();
                apply(http, verdict)
            }
        }
    }
}

/// Applies a verdict: `Continue` lets the request go on (after setting the
/// headers the verdict carries), `Pause` means a local reply was sent.
fn apply(http: &mut Http<ExtAuthz>, verdict: Verdict) -> Action {
    match verdict {
        Verdict::Allow(headers) => {
            for (name, value) in &headers {
                http.request_headers().set(name, value);
            }
            Action::Continue
        }
        Verdict::Deny(reply) => {
            log::info!("{}: denied with {}", http.log_prefix(), reply.status());
            http.send_local_response(&reply);
            Action::Pause
        }
    }
}

sdk_ext::plugin!(ExtAuthz);

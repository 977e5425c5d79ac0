//! body-redact: buffers eligible response bodies to the end of the stream and
//! replaces every regex match. See README.md.

pub mod redact;

use redact::Config;
use sdk_ext::{Action, ConfigError, Http, Plugin};

pub struct BodyRedact {
    /// The response is of a handled type and not known to be too large.
    buffering: bool,
}

impl Plugin for BodyRedact {
    const NAME: &'static str = "body-redact";
    type Config = Config;
    // Its log lines are written from the response hooks.
    const KEEP_REQUEST_HEADERS: &'static [&'static str] = &["x-request-id"];

    fn configure(raw: &[u8]) -> Result<Config, ConfigError> {
        Config::parse(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        BodyRedact { buffering: false }
    }

    fn on_response_headers(&mut self, http: &mut Http<Self>, end_of_stream: bool) -> Action {
        let headers = http.response_headers();
        let config = http.config();
        let content_type = headers.get_str("content-type").unwrap_or_default();
        let declared_length = headers
            .get_str("content-length")
            .and_then(|l| l.trim().parse::<usize>().ok());
        if end_of_stream
            || !config.handles_content_type(&content_type)
            || declared_length.is_some_and(|len| len > config.max_body_bytes)
        {
            return Action::Continue;
        }
        // The headers leave before the body is known, so the length the
        // upstream declared cannot be kept; Envoy re-frames the response.
        headers.remove("content-length");
        self.buffering = true;
        Action::Continue
    }

    fn on_response_body(
        &mut self,
        http: &mut Http<Self>,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if !self.buffering {
            return Action::Continue;
        }
        if body_size > http.config().max_body_bytes {
            // Too large to hold: let what is buffered and the rest through unchanged.
            log::info!(
                "{}: response body over {} bytes, passed unredacted",
                http.log_prefix(),
                http.config().max_body_bytes
            );
            self.buffering = false;
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish(http);
        Action::Continue
    }

    fn on_response_trailers(&mut self, http: &mut Http<Self>) -> Action {
        // Trailers end the body instead of an end_of_stream chunk.
        if self.buffering {
            self.finish(http);
        }
        Action::Continue
    }
}

impl BodyRedact {
    fn finish(&mut self, http: &mut Http<Self>) {
        self.buffering = false;
        let body = http.response_body();
        log::debug!(
            "{}: checking a {}-byte response body",
            http.log_prefix(),
            body.len()
        );
        if let Some((redacted, count)) = http.config().redact(&body) {
            log::info!(
                "{}: redacted {count} match(es) in the response body",
                http.log_prefix()
            );
            http.set_response_body(&redacted);
        }
    }
}

sdk_ext::plugin!(BodyRedact);

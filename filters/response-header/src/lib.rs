//! response-header: the Alibaba Cloud Service Mesh demo filter. Adds the
//! configured headers to every response, local replies included. See README.md.

pub mod config;

use config::Config;
use sdk_ext::{Action, ConfigError, Http, Plugin};

pub struct ResponseHeader;

impl Plugin for ResponseHeader {
    const NAME: &'static str = "response-header";
    type Config = Config;

    fn configure(raw: &[u8]) -> Result<Config, ConfigError> {
        Config::parse(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        ResponseHeader
    }

    fn on_response_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        for header in &http.config().headers {
            http.response_headers().add(&header.name, &header.value);
        }
        Action::Continue
    }
}

sdk_ext::plugin!(ResponseHeader);

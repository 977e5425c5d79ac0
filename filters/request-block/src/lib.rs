//! request-block: answers matching requests with a configured local reply.
//! See README.md.

pub mod config;

use sdk_ext::rules::RequestFacts;
use sdk_ext::{Action, ConfigError, Http, Plugin};

pub struct RequestBlock;

impl Plugin for RequestBlock {
    const NAME: &'static str = "request-block";
    type Config = config::Config;

    fn configure(raw: &[u8]) -> Result<config::Config, ConfigError> {
        config::parse(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        RequestBlock
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        let facts = RequestFacts::from_headers(&http.request_headers());
        let block = http.config().select(&facts);
        let headers = http.request_headers();
        match block.check(&facts, |name| headers.get(name).is_some()) {
            Some(reason) => {
                log::info!(
                    "{}: blocked {} {} ({reason:?})",
                    http.log_prefix(),
                    facts.method,
                    facts.path
                );
                http.send_local_response(&block.reply(&reason));
                Action::Pause
            }
            None => Action::Continue,
        }
    }
}

sdk_ext::plugin!(RequestBlock);

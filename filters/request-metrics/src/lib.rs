//! request-metrics: a request counter per tag set and a latency histogram,
//! named with Istio's tag convention. See README.md.

pub mod tags;

use sdk_ext::{Action, ConfigError, Http, Plugin};
use std::time::SystemTime;
use tags::{Config, From, Observed};

pub struct RequestMetrics {
    started: Option<SystemTime>,
    seen: Observed,
}

impl Plugin for RequestMetrics {
    const NAME: &'static str = "request-metrics";
    type Config = Config;

    fn configure(raw: &[u8]) -> Result<Config, ConfigError> {
        Config::parse(raw)
    }

    fn create(_http: &Http<Self>) -> Self {
        RequestMetrics {
            started: None,
            seen: Observed::default(),
        }
    }

    fn on_request_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        self.started = Some(http.now());
        let headers = http.request_headers();
        self.seen.method = headers.get_str(":method").unwrap_or_default();
        for tag in &http.config().tags {
            match (&tag.from, &tag.header) {
                (From::RouteName, _) => {
                    // Current Envoy serves the route name only under `xds.`.
                    self.seen.route_name = sdk_ext::property::get_string(&["xds", "route_name"]);
                }
                (From::Header, Some(name)) => {
                    if let Some(value) = headers.get(name) {
                        let value = String::from_utf8_lossy(&value).into_owned();
                        self.seen.headers.push((name.clone(), value));
                    }
                }
                _ => {}
            }
        }
        Action::Continue
    }

    fn on_response_headers(&mut self, http: &mut Http<Self>, _end_of_stream: bool) -> Action {
        self.seen.response_code = http
            .response_headers()
            .get_str(":status")
            .and_then(|s| s.parse().ok());
        Action::Continue
    }

    fn on_log(&mut self, http: &mut Http<Self>) {
        let config = http.config();
        let values = tags::tag_values(&config.tags, &self.seen);
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        if let Some(counter) = config.requests.get(&values) {
            counter.increment(1);
        }
        if let (Some(started), Some(histogram)) = (self.started, config.duration.get(&values)) {
            let elapsed = http.now().duration_since(started).unwrap_or_default();
            histogram.record(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        }
    }
}

sdk_ext::plugin!(RequestMetrics);

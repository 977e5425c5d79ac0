//! Metrics handles (counter, gauge, histogram) and tagged families.
//!
//! The ABI has no tags: a metric is a flat name. Tags are encoded in the name
//! the way Istio's stats extension does it, `tag=.=value;.;` before the metric
//! name (`method=.=GET;.;code_class=.=2xx;.;demo_requests_total`), so Envoy's
//! `stats_tags` (Istio: `meshConfig.defaultConfig.extraStatTags`) can extract
//! them with regexes like `(method=\.=(.*?);\.;)`.

use crate::types::MetricType;
use proxy_wasm::hostcalls;
use std::cell::RefCell;
use std::collections::HashMap;

/// A defined metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    id: u32,
    kind: MetricType,
}

impl Metric {
    pub fn define(kind: MetricType, name: &str) -> Option<Metric> {
        match hostcalls::define_metric(kind, name) {
            Ok(id) => Some(Metric { id, kind }),
            Err(_) => {
                log::warn!("defining metric `{name}` failed: the host refused it");
                None
            }
        }
    }

    pub fn counter(name: &str) -> Option<Metric> {
        Self::define(MetricType::Counter, name)
    }

    pub fn gauge(name: &str) -> Option<Metric> {
        Self::define(MetricType::Gauge, name)
    }

    pub fn histogram(name: &str) -> Option<Metric> {
        Self::define(MetricType::Histogram, name)
    }

    pub fn kind(&self) -> MetricType {
        self.kind
    }

    /// Adds `delta` (gauges: may be negative). Envoy refuses a counter
    /// increment that is not positive (`Context::incrementMetric` answers
    /// BAD_ARGUMENT): adding 0 to a counter is skipped here, a negative
    /// delta is refused with a warning.
    pub fn increment(&self, delta: i64) {
        if self.kind == MetricType::Counter && delta <= 0 {
            if delta < 0 {
                log::warn!(
                    "counter {} cannot go down (increment by {delta} refused): use a gauge",
                    self.id
                );
            }
            return;
        }
        if hostcalls::increment_metric(self.id, delta).is_err() {
            log::warn!(
                "incrementing metric {} by {delta} failed: the host refused it",
                self.id
            );
        }
    }

    /// Sets a gauge, samples a histogram, or adds to a counter.
    pub fn record(&self, value: u64) {
        if hostcalls::record_metric(self.id, value).is_err() {
            log::warn!(
                "recording {value} in metric {} failed: the host refused it",
                self.id
            );
        }
    }
}

/// `tag=.=value;.;` per tag, then the name. Separator sequences inside values
/// are neutralised so a hostile header cannot forge tags.
pub fn tagged_name(name: &str, tags: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (tag, value) in tags {
        out.push_str(&sanitize(tag));
        out.push_str("=.=");
        out.push_str(&sanitize(value));
        out.push_str(";.;");
    }
    out.push_str(name);
    out
}

fn sanitize(text: &str) -> String {
    text.replace(";.;", "_._").replace("=.=", "_._")
}

/// One metric name with a fixed list of tag names; each distinct list of tag
/// values is defined on first use and cached.
#[derive(Debug)]
pub struct MetricFamily {
    kind: MetricType,
    name: String,
    tag_names: Vec<String>,
    defined: RefCell<HashMap<Vec<String>, Option<Metric>>>,
}

impl MetricFamily {
    pub fn new(kind: MetricType, name: &str, tag_names: &[&str]) -> Self {
        Self {
            kind,
            name: name.to_string(),
            tag_names: tag_names.iter().map(|t| (*t).to_string()).collect(),
            defined: RefCell::new(HashMap::new()),
        }
    }

    /// The full metric name for these tag values (one per tag name, in order).
    pub fn name_for(&self, values: &[&str]) -> String {
        let tags: Vec<(&str, &str)> = self
            .tag_names
            .iter()
            .map(String::as_str)
            .zip(values.iter().copied())
            .collect();
        tagged_name(&self.name, &tags)
    }

    /// The metric for these tag values, defined on first use.
    pub fn get(&self, values: &[&str]) -> Option<Metric> {
        let key: Vec<String> = values.iter().map(|v| (*v).to_string()).collect();
        if let Some(metric) = self.defined.borrow().get(&key) {
            return *metric;
        }
        let metric = Metric::define(self.kind, &self.name_for(values));
        self.defined.borrow_mut().insert(key, metric);
        metric
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_precede_the_name_in_istio_format() {
        assert_eq!(
            tagged_name(
                "demo_requests_total",
                &[("method", "GET"), ("code_class", "2xx")]
            ),
            "method=.=GET;.;code_class=.=2xx;.;demo_requests_total"
        );
        assert_eq!(tagged_name("plain", &[]), "plain");
    }

    #[test]
    fn separators_in_values_cannot_forge_tags() {
        assert_eq!(
            tagged_name("m", &[("user", "x;.;admin=.=1")]),
            "user=.=x_._admin_._1;.;m"
        );
    }

    #[test]
    fn family_names_zip_tag_names_with_values() {
        let family = MetricFamily::new(MetricType::Counter, "rq", &["method", "route"]);
        assert_eq!(
            family.name_for(&["POST", "r1"]),
            "method=.=POST;.;route=.=r1;.;rq"
        );
    }
}

//! The order Istio puts WasmPlugins in one chain (pilot/pkg/model/
//! push_context.go: initWasmPlugins sorts by creation time, then name, then
//! namespace; WasmPluginsByListenerInfo groups by phase and stable-sorts each
//! group by priority, higher first, an unset priority counting as the lowest
//! int32). The phases sit in the chain as AUTHN, AUTHZ, STATS, then the plugins
//! without a phase just before the router.

use super::spec::PluginSpec;

/// Sorts `plugins` into chain order.
pub(crate) fn chain_order(plugins: &mut [PluginSpec]) {
    // A document without creationTimestamp sorts as Kubernetes' zero time
    // (before any stamped one), as Istio's comparison of zero times does.
    plugins.sort_by(|a, b| {
        let created = |p: &PluginSpec| p.created.clone().unwrap_or_default();
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.namespace.cmp(&b.namespace))
    });
    // Stable: equal (phase, priority) keep the creation-time order above.
    plugins.sort_by_key(|p| (p.phase, std::cmp::Reverse(p.priority.unwrap_or(i32::MIN))));
}

#[cfg(test)]
mod tests {
    use super::super::spec::{Phase, Source};
    use super::*;

    fn plugin(
        name: &str,
        phase: Phase,
        priority: Option<i32>,
        created: Option<&str>,
    ) -> PluginSpec {
        PluginSpec {
            name: name.to_string(),
            namespace: "default".to_string(),
            created: created.map(str::to_string),
            url: String::new(),
            source: Source::File(String::new()),
            sha256: None,
            pull_policy: None,
            root_id: String::new(),
            configuration: Vec::new(),
            phase,
            priority,
            fail_open: false,
            reload_on_failure: false,
            env: Default::default(),
            place: String::new(),
        }
    }

    fn names(plugins: &[PluginSpec]) -> Vec<&str> {
        plugins.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn phases_come_in_istio_order_with_unspecified_last() {
        let mut plugins = vec![
            plugin("none", Phase::Unspecified, Some(100), None),
            plugin("stats", Phase::Stats, None, None),
            plugin("authz", Phase::Authz, None, None),
            plugin("authn", Phase::Authn, None, None),
        ];
        chain_order(&mut plugins);
        assert_eq!(names(&plugins), ["authn", "authz", "stats", "none"]);
    }

    #[test]
    fn higher_priority_first_unset_last_ties_by_time_then_name() {
        let mut plugins = vec![
            plugin("unset", Phase::Authn, None, None),
            plugin("low", Phase::Authn, Some(-5), None),
            plugin("b-high", Phase::Authn, Some(10), None),
            plugin(
                "a-high",
                Phase::Authn,
                Some(10),
                Some("2026-01-02T00:00:00Z"),
            ),
            plugin(
                "c-high",
                Phase::Authn,
                Some(10),
                Some("2026-01-01T00:00:00Z"),
            ),
        ];
        chain_order(&mut plugins);
        assert_eq!(
            names(&plugins),
            ["b-high", "c-high", "a-high", "low", "unset"]
        );
    }
}

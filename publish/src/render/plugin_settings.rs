//! The WasmPlugin fields users expect to set (type, phase, priority,
//! failStrategy, imagePullPolicy, imagePullSecret, vmConfig.env, match,
//! targetRefs) and the EnvoyFilter priority. They come from an optional `spec.wasmPlugin` block of
//! the ASMFilterDeployment (publish's own extension; ASM's controller does not
//! read it) and from flags, a flag winning over the block field by field.

use serde::{Deserialize, Serialize};

use super::{Phase, RenderError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailStrategy {
    /// Refuse traffic when the module cannot be loaded or crashes (Istio's default).
    FailClose,
    /// Let traffic through unfiltered.
    FailOpen,
    /// Reload the VM after a crash (Istio 1.24+).
    FailReload,
}

/// Which Envoy filter the module runs as. A module cannot tell: the Rust SDK
/// (and others) export every callback, HTTP and network alike, so the user says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterType {
    /// An HTTP filter in the HTTP connection manager, before the router.
    #[default]
    Http,
    /// A network (TCP) filter in the listener's filter chain, before tcp_proxy.
    Network,
}

impl FilterType {
    /// WasmPlugin `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterType::Http => "HTTP",
            FilterType::Network => "NETWORK",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull only when the cached module is missing (Istio's default for tagged images).
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    /// Pull every time the WasmPlugin changes or the proxy starts.
    #[value(name = "Always")]
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TrafficMode {
    Client,
    Server,
    ClientAndServer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `HOST` reads the proxy's own environment variable of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    pub number: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TrafficMode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSettings {
    /// HTTP (the default) or NETWORK; decides the EnvoyFilter patch too.
    #[serde(default, rename = "type")]
    pub filter_type: Option<FilterType>,
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub fail_strategy: Option<FailStrategy>,
    #[serde(default)]
    pub image_pull_policy: Option<PullPolicy>,
    /// Overrides spec.filter.imagePullOptions.pullSecret for the WasmPlugin.
    #[serde(default)]
    pub image_pull_secret: Option<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default, rename = "match")]
    pub match_: Vec<TrafficMatch>,
    /// Gateway API / Service targets; Istio then refuses a selector, so none is written.
    #[serde(default)]
    pub target_refs: Vec<TargetRef>,
    #[serde(default)]
    pub envoy_filter_priority: Option<i32>,
}

impl PluginSettings {
    /// Reads and checks the `spec.wasmPlugin` block.
    pub fn from_yaml(value: &serde_yaml_ng::Value) -> Result<Self, RenderError> {
        let settings: PluginSettings = serde_yaml_ng::from_value(value.clone())
            .map_err(|e| RenderError::field("spec.wasmPlugin", e.to_string()))?;
        settings.check("spec.wasmPlugin")?;
        Ok(settings)
    }

    /// The rules Istio's CRD would enforce on apply, caught before rendering.
    pub fn check(&self, at: &str) -> Result<(), RenderError> {
        for (i, env) in self.env.iter().enumerate() {
            let field = format!("{at}.env[{i}]");
            if env.name.is_empty() || env.name.len() > 256 {
                return Err(RenderError::field(
                    &field,
                    "name must be 1 to 256 characters",
                ));
            }
            match env.value_from.as_deref() {
                None | Some("INLINE") => {}
                Some("HOST") if env.value.is_none() => {}
                Some("HOST") => {
                    return Err(RenderError::field(
                        &field,
                        "value may only be set when valueFrom is INLINE",
                    ));
                }
                Some(other) => {
                    return Err(RenderError::field(
                        &field,
                        format!("valueFrom {other:?} must be INLINE or HOST"),
                    ));
                }
            }
        }
        for (i, m) in self.match_.iter().enumerate() {
            if let Some(p) = m.ports.iter().find(|p| p.number == 0) {
                return Err(RenderError::field(
                    &format!("{at}.match[{i}].ports"),
                    format!("port {} must be 1 to 65535", p.number),
                ));
            }
        }
        if self.target_refs.len() > 16 {
            return Err(RenderError::field(
                &format!("{at}.targetRefs"),
                "at most 16 targets",
            ));
        }
        Ok(())
    }

    /// `self` with every field `over` sets replaced (flags over the input block).
    pub fn overlay(&self, over: &PluginSettings) -> PluginSettings {
        fn pick<T: Clone>(over: &[T], base: &[T]) -> Vec<T> {
            if over.is_empty() { base } else { over }.to_vec()
        }
        PluginSettings {
            filter_type: over.filter_type.or(self.filter_type),
            phase: over.phase.or(self.phase),
            priority: over.priority.or(self.priority),
            fail_strategy: over.fail_strategy.or(self.fail_strategy),
            image_pull_policy: over.image_pull_policy.or(self.image_pull_policy),
            image_pull_secret: over
                .image_pull_secret
                .clone()
                .or_else(|| self.image_pull_secret.clone()),
            env: pick(&over.env, &self.env),
            match_: pick(&over.match_, &self.match_),
            target_refs: pick(&over.target_refs, &self.target_refs),
            envoy_filter_priority: over.envoy_filter_priority.or(self.envoy_filter_priority),
        }
    }
}

/// `--env NAME=VALUE` (inline) or `--env NAME` (from the proxy's environment).
pub fn parse_env_flag(text: &str) -> Result<EnvVar, String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (text, None),
    };
    if name.is_empty() {
        return Err(format!(
            "{text:?}: give NAME=VALUE, or NAME to pass the proxy's own"
        ));
    }
    Ok(EnvVar {
        name: name.to_string(),
        value_from: value.is_none().then(|| "HOST".to_string()),
        value,
    })
}

/// `--target-ref [GROUP/]KIND/NAME`, e.g. `gateway.networking.k8s.io/Gateway/ingress`.
pub fn parse_target_ref(text: &str) -> Result<TargetRef, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let (group, kind, name) = match parts.as_slice() {
        [kind, name] => (None, *kind, *name),
        [group, kind, name] => (Some(group.to_string()), *kind, *name),
        _ => {
            return Err(format!(
                "{text:?}: give [GROUP/]KIND/NAME, e.g. Service/details"
            ));
        }
    };
    if kind.is_empty() || name.is_empty() {
        return Err(format!("{text:?}: KIND and NAME must not be empty"));
    }
    Ok(TargetRef {
        group,
        kind: kind.to_string(),
        name: name.to_string(),
    })
}

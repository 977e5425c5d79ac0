//! `publish render --validate`: each ASMFilterDeployment's parameters go
//! through the filter's own `proxy_on_configure`, in the harness's simulated
//! Envoy, before anything is written. What the filter refuses is refused here,
//! with the lines the filter logged, instead of in a sidecar after deployment.

use anyhow::{Context as _, bail};
use harness::{CompiledModule, Harness, HarnessConfig, PluginConfig};

use super::FilterDeployment;
use super::RenderOptions;

/// Starts the module with `deployment`'s configuration the way Envoy does
/// (`proxy_on_vm_start`, then `proxy_on_configure` with the parameters text the
/// EnvoyFilter passes); Ok when the filter accepts it.
pub fn check_parameters(
    module: &CompiledModule,
    module_name: &str,
    deployment: &FilterDeployment,
    options: &RenderOptions,
) -> anyhow::Result<()> {
    let filter = &deployment.filter;
    let settings = options.settings_for(deployment);
    let plugin = PluginConfig {
        name: filter.id.clone(),
        root_id: filter.root_id.clone().unwrap_or_default(),
        vm_id: filter.id.clone(),
        configuration: filter
            .parameters_text
            .clone()
            .unwrap_or_default()
            .into_bytes()
            .into(),
        env: settings
            .env
            .iter()
            .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
            .collect(),
        ..PluginConfig::default()
    };
    let config = HarnessConfig {
        plugin,
        ..HarnessConfig::default()
    };
    match Harness::new(module.clone(), config) {
        Ok(_) => Ok(()),
        Err(harness::HarnessError::ConfigurationRejected { callback, logs }) => {
            let said: Vec<String> = logs.iter().map(|l| l.message.clone()).collect();
            bail!(
                "{}: {module_name} refuses spec.filter.parameters ({callback} returned false){}",
                deployment.name,
                if said.is_empty() {
                    " and logged nothing".to_string()
                } else {
                    format!("; the filter said:\n  {}", said.join("\n  "))
                }
            )
        }
        Err(other) => Err(other).with_context(|| {
            format!(
                "{}: starting {module_name} with spec.filter.parameters",
                deployment.name
            )
        }),
    }
}

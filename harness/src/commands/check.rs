//! `harness check`: a preflight for one module against an Envoy or Istio
//! release (see `harness::preflight`): would it load there, and why not.
//! Text for people, `--json` for scripts; exit 0 when it would load, 1
//! when not, 2 for usage errors (an unreadable module file included).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use harness::HarnessError;
use harness::preflight::{
    self, CheckOptions, Feature, StartupInput, Target, default_target, feature_named, target_named,
};
use harness::scenario::plugin_name_of;

use super::text_or_file;

/// `harness check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The filter module (.wasm).
    module: PathBuf,
    /// The host to check for: envoy-1.33 .. envoy-1.36, istio-1.25 .. istio-1.28
    /// [default: the newest Envoy].
    #[arg(long, value_name = "NAME", value_parser = parse_target)]
    target: Option<&'static Target>,
    /// Treat a wasm feature as enabled on the target (repeatable), e.g.
    /// tail-call, for an Envoy whose V8 you know enables it.
    #[arg(long = "allow-feature", value_name = "FEATURE", value_parser = parse_feature)]
    allow_features: Vec<&'static Feature>,
    /// Plugin configuration for the start-up run: inline text (usually
    /// JSON), @file or @-. Without it a refused configuration is a warning.
    #[arg(long)]
    config: Option<String>,
    /// VM configuration for the start-up run: inline text or @file.
    #[arg(long)]
    vm_config: Option<String>,
    /// Root id for the start-up run (the WasmPlugin's/EnvoyFilter's root_id).
    #[arg(long)]
    root_id: Option<String>,
    /// Check the module without starting it in the harness.
    #[arg(long, conflicts_with_all = ["config", "vm_config", "root_id"])]
    no_startup: bool,
    /// Print the report as one JSON document.
    #[arg(long)]
    json: bool,
}

fn parse_target(name: &str) -> Result<&'static Target, String> {
    target_named(name)
}

fn parse_feature(name: &str) -> Result<&'static Feature, String> {
    feature_named(name).ok_or_else(|| {
        let known: Vec<&str> = preflight::all_features().map(|f| f.name).collect();
        format!("unknown wasm feature {name}; known: {}", known.join(", "))
    })
}

/// Runs `harness check`: 0 when the module would load, 1 when it would not,
/// 2 for a usage error.
pub fn command(args: &CheckArgs) -> ExitCode {
    match check(args) {
        Ok(code) => code,
        Err(e) => super::usage_error("harness check", &e.to_string()),
    }
}

fn check(args: &CheckArgs) -> Result<ExitCode, HarnessError> {
    let bytes = std::fs::read(&args.module).map_err(|source| HarnessError::ModuleNotFound {
        path: args.module.clone(),
        source,
    })?;
    let name = args.module.display().to_string();
    let startup = if args.no_startup {
        None
    } else {
        Some(StartupInput {
            configuration: args
                .config
                .as_deref()
                .map(|c| text_or_file(c, "--config"))
                .transpose()?,
            vm_config: match &args.vm_config {
                Some(v) => text_or_file(v, "--vm-config")?,
                None => Vec::new(),
            },
            plugin_name: plugin_name_of(&name).unwrap_or_else(|| "filter".to_string()),
            root_id: args.root_id.clone().unwrap_or_default(),
        })
    };
    let options = CheckOptions {
        target: args.target.unwrap_or_else(default_target),
        allow_features: args.allow_features.clone(),
        startup,
    };
    let report = preflight::check(&name, &bytes, &options);
    let text = if args.json {
        serde_json::to_string_pretty(&report)
            .map(|json| json + "\n")
            .map_err(|e| HarnessError::Usage(format!("cannot encode the report as JSON: {e}")))?
    } else {
        report.to_text()
    };
    super::written(std::io::stdout().write_all(text.as_bytes()))?;
    Ok(if report.loads() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

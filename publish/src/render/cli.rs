//! `publish render`: command-line arguments and the run function main.rs calls.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::core_schema::CoreSchemas;
use super::directory::{self, DirectoryFile};
use super::node_agent::AgentOptions;
use super::output::{self, Part};
use super::plugin_settings::{
    EnvVar, FailStrategy, FilterType, PluginSettings, PortSelector, PullPolicy, TargetRef,
    TrafficMatch, parse_env_flag, parse_target_ref,
};
use super::schema::CrdSchemas;
use super::{Bundle, Phase, RenderOptions, TrafficContext, input};
use crate::cli::args::{Login, Transport};

#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Render EnvoyFilter, workload patch, node-agent list and WasmPlugin from an ASMFilterDeployment",
    long_about = "Renders, from one or more ASMFilterDeployment resources (Alibaba Cloud Service Mesh), \
                  what the ASM controller would create: an Istio EnvoyFilter, a strategic-merge patch \
                  mounting /var/local/lib/wasm-filters into the sidecar, the module list `publish sync` \
                  keeps on every node, and the equivalent Istio WasmPlugin. Apply either the WasmPlugin \
                  or the other three, not both: with -o DIR, `kubectl apply -f DIR/wasmplugin/` or \
                  `kubectl apply -f DIR/envoyfilter/` (EnvoyFilter, node-agent ConfigMap and, with \
                  --agent-image, its DaemonSet) plus the patch in DIR/patches/. What kubectl would \
                  receive is checked first: Istio resources against the bundled CRD schemas, the \
                  ConfigMap and DaemonSet against the Kubernetes schemas.",
    after_help = "The registry flags (--plain-http, --insecure, --ca-file, -u, -p, --password-stdin) serve \
                  --resolve and --validate. An image rendered with --plain-http, or on a loopback registry, \
                  gets a warning: istio-agent pulls over HTTPS unless the registry is in its \
                  WASM_INSECURE_REGISTRIES."
)]
pub struct RenderArgs {
    /// ASMFilterDeployment YAML files (several documents per file are fine); `-` reads stdin.
    #[arg(required = true, value_name = "ASMFilterDeployment.yaml")]
    pub inputs: Vec<PathBuf>,

    /// `-` prints every document; a directory gets DIR/wasmplugin/ and DIR/envoyfilter/
    /// (each applyable alone with `kubectl apply -f`, never both) and DIR/patches/.
    #[arg(short, long, default_value = "-", value_name = "DIR|-")]
    pub output: String,

    /// With -o DIR: the namespace of the node agent's ConfigMap and DaemonSet.
    #[arg(long, default_value = "istio-system", value_name = "NAMESPACE")]
    pub agent_namespace: String,

    /// With -o DIR: also write the DaemonSet running `publish sync` from this image
    /// (one with `publish` on its PATH).
    #[arg(long, value_name = "IMAGE")]
    pub agent_image: Option<String>,

    /// Only these outputs (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,

    /// The filter's kind: `http` (an HTTP filter before the router) or `network` (a TCP
    /// filter before tcp_proxy; WasmPlugin type NETWORK). A module's exports cannot tell
    /// (SDKs export every callback). Default: spec.wasmPlugin.type, else http.
    #[arg(long = "type", value_enum, value_name = "http|network")]
    pub filter_type: Option<FilterType>,

    /// Put the filter on the workload's outbound listeners (SIDECAR_OUTBOUND) instead of inbound.
    #[arg(long, conflicts_with = "gateway")]
    pub outbound: bool,

    /// The labels select an Istio gateway (GATEWAY context).
    #[arg(long)]
    pub gateway: bool,

    /// Look up each image's manifest digest in its registry and pin it
    /// (WasmPlugin.sha256 and the node-agent list's sha256).
    #[arg(long)]
    pub resolve: bool,

    /// WasmPlugin phase (the EnvoyFilter always inserts the filter just before the router,
    /// or before tcp_proxy for --type network).
    #[arg(long, value_enum, ignore_case = true)]
    pub phase: Option<Phase>,

    /// WasmPlugin priority within its phase (higher runs first).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,

    /// Let requests through when the module fails to load or crashes (FAIL_OPEN / fail_open).
    #[arg(long)]
    pub fail_open: bool,

    /// WasmPlugin failStrategy (--fail-open is FAIL_OPEN); default: spec.wasmPlugin, else FAIL_CLOSE.
    #[arg(long, value_enum, conflicts_with = "fail_open")]
    pub fail_strategy: Option<FailStrategy>,

    /// WasmPlugin imagePullPolicy.
    #[arg(long, value_enum)]
    pub image_pull_policy: Option<PullPolicy>,

    /// WasmPlugin imagePullSecret (default: spec.filter.imagePullOptions.pullSecret).
    #[arg(long, value_name = "SECRET")]
    pub image_pull_secret: Option<String>,

    /// An environment variable for the Wasm VM (WasmPlugin vmConfig.env, EnvoyFilter
    /// environment_variables): NAME=VALUE, or NAME to pass the proxy's own. Repeatable.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env_flag)]
    pub env: Vec<EnvVar>,

    /// Filter only traffic to this port (WasmPlugin match ports). Repeatable.
    #[arg(long = "match-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub match_ports: Vec<u16>,

    /// Attach the WasmPlugin to [GROUP/]KIND/NAME instead of the label selector
    /// (targetRefs, e.g. gateway.networking.k8s.io/Gateway/ingress). Repeatable.
    #[arg(long = "target-ref", value_name = "[GROUP/]KIND/NAME", value_parser = parse_target_ref)]
    pub target_refs: Vec<TargetRef>,

    /// EnvoyFilter priority (order among EnvoyFilters of one context).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub envoy_filter_priority: Option<i32>,

    /// Run each filter's parameters through the filter's own on_configure (in the harness's
    /// simulated Envoy) and refuse what it refuses, quoting what it logged. The module is
    /// --module, else the image each deployment names, pulled and verified.
    #[arg(long)]
    pub validate: bool,

    /// --validate: the module (.wasm) to check every deployment's parameters with.
    #[arg(long, value_name = "FILE", requires = "validate")]
    pub module: Option<PathBuf>,

    /// Check the rendered EnvoyFilter and WasmPlugin against these Istio CRDs instead of
    /// the bundled ones (e.g. `kubectl get crd envoyfilters.networking.istio.io
    /// wasmplugins.extensions.istio.io -o yaml`).
    #[arg(long, value_name = "CRDS.yaml")]
    pub check_crds: Option<PathBuf>,

    #[command(flatten)]
    pub transport: Transport,

    #[command(flatten)]
    pub login: Login,
}

impl RenderArgs {
    /// The WasmPlugin/EnvoyFilter settings the flags give.
    fn plugin_settings(&self) -> PluginSettings {
        PluginSettings {
            filter_type: self.filter_type,
            fail_strategy: self.fail_strategy,
            image_pull_policy: self.image_pull_policy,
            image_pull_secret: self.image_pull_secret.clone(),
            env: self.env.clone(),
            match_: if self.match_ports.is_empty() {
                Vec::new()
            } else {
                vec![TrafficMatch {
                    mode: self.context().traffic_mode(),
                    ports: self
                        .match_ports
                        .iter()
                        .map(|&number| PortSelector { number })
                        .collect(),
                }]
            },
            target_refs: self.target_refs.clone(),
            envoy_filter_priority: self.envoy_filter_priority,
            ..Default::default()
        }
    }

    fn context(&self) -> TrafficContext {
        if self.outbound {
            TrafficContext::Outbound
        } else if self.gateway {
            TrafficContext::Gateway
        } else {
            TrafficContext::Inbound
        }
    }
}

/// Reads the inputs, renders, checks and writes. Warnings go to stderr.
pub async fn run(args: RenderArgs) -> anyhow::Result<()> {
    if args.login.password_stdin && args.inputs.iter().any(|p| p == Path::new("-")) {
        bail!(
            "--password-stdin and an input read from stdin (`-`) cannot share stdin; pass the input as a file"
        );
    }
    let password = args.login.password()?;
    let mut deployments = Vec::new();
    for path in &args.inputs {
        let text = read_input(path)?;
        let parsed = input::parse_documents(&text)
            .with_context(|| format!("{}: invalid ASMFilterDeployment", display(path)))?;
        deployments.extend(parsed);
    }

    let mut options = RenderOptions {
        context: args.context(),
        phase: args.phase,
        priority: args.priority,
        fail_open: args.fail_open,
        plugin: args.plugin_settings(),
        digests: BTreeMap::new(),
    };
    if args.resolve {
        options.digests = resolve_digests(&args, password.clone(), &deployments).await?;
    }

    let mut bundle = super::render(&deployments, &options)?;
    if args.validate {
        validate_parameters(&args, password.clone(), &deployments, &options).await?;
    }
    if args.transport.plain_http {
        let mut registries: Vec<String> = Vec::new();
        for deployment in &deployments {
            let reference = crate::reference::parse(&deployment.filter.image)?;
            let registry = reference.resolve_registry().to_string();
            if !crate::reference::is_loopback(&registry) && !registries.contains(&registry) {
                registries.push(registry);
            }
        }
        for registry in registries {
            bundle
                .warnings
                .push(super::wasm_plugin::insecure_registry_warning(&registry));
        }
    }
    for warning in &bundle.warnings {
        eprintln!("warning: {warning}");
    }
    let schemas = load_schemas(args.check_crds.as_deref())?;
    if args.output == "-" {
        let istio = bundle_resources(&bundle)?;
        let checked = check_resources(&istio, &schemas)?;
        if args.check_crds.is_some() {
            eprintln!("{}", checked_summary(&checked));
        }
        let files =
            output::files(&bundle, &args.only).context("serialising the rendered resources")?;
        return write_stdout(&files);
    }
    let agent = AgentOptions {
        namespace: args.agent_namespace.clone(),
        image: args.agent_image.clone(),
    };
    let mut files =
        directory::files(&bundle, &agent).context("serialising the rendered resources")?;
    if !args.only.is_empty() {
        files.retain(|f| args.only.contains(&f.part));
    }
    let resources: Vec<serde_json::Value> =
        files.iter().flat_map(|f| f.resources.clone()).collect();
    let checked = check_resources(&resources, &schemas)?;
    write_directory(&files, Path::new(&args.output))?;
    eprintln!("{}", checked_summary(&checked));
    if agent.image.is_none() && files.iter().any(|f| f.part == Part::NodeAgent) {
        eprintln!(
            "note: no node-agent DaemonSet written; render with --agent-image IMAGE to get one"
        );
    }
    Ok(())
}

/// The Istio CRDs bundled with publish (istio/api's generated WasmPlugin and
/// EnvoyFilter definitions), or the file `--check-crds` names.
fn load_schemas(path: Option<&Path>) -> anyhow::Result<CrdSchemas> {
    const BUNDLED: &str = include_str!("../../schemas/istio-crds.yaml");
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            CrdSchemas::from_yaml(&text).with_context(|| format!("loading {}", path.display()))
        }
        None => CrdSchemas::from_yaml(BUNDLED).context("loading the bundled Istio CRDs"),
    }
}

fn bundle_resources(bundle: &Bundle) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut resources = Vec::new();
    for filter in &bundle.filters {
        resources.push(serde_json::to_value(&filter.envoy_filter)?);
        resources.push(serde_json::to_value(&filter.wasm_plugin)?);
    }
    Ok(resources)
}

/// How many resources each schema source checked, and the kinds neither knows.
#[derive(Debug, Default)]
pub struct Checked {
    pub istio: usize,
    pub kubernetes: usize,
    pub unchecked: Vec<String>,
}

/// Checks every resource against its Istio CRD or its Kubernetes core schema.
pub fn check_resources(
    resources: &[serde_json::Value],
    schemas: &CrdSchemas,
) -> anyhow::Result<Checked> {
    let mut checked = Checked::default();
    let mut core: Option<CoreSchemas> = None;
    for resource in resources {
        let api_version = resource["apiVersion"].as_str().unwrap_or_default();
        let kind = resource["kind"].as_str().unwrap_or_default();
        if schemas.schema_for(api_version, kind).is_some() {
            schemas.check(resource)?;
            checked.istio += 1;
            continue;
        }
        // Generating the core schemas costs a few milliseconds: only when needed.
        let core = core.get_or_insert_with(CoreSchemas::new);
        if core.knows(api_version, kind) {
            core.check(resource)?;
            checked.kubernetes += 1;
        } else {
            checked.unchecked.push(format!("{api_version} {kind}"));
        }
    }
    Ok(checked)
}

/// `N documents valid (...)`, naming any kind no schema covered.
fn checked_summary(checked: &Checked) -> String {
    let total = checked.istio + checked.kubernetes;
    let noun = if total == 1 { "document" } else { "documents" };
    let kubernetes = format!(
        "against the Kubernetes {} schemas",
        super::core_schema::KUBERNETES_VERSION
    );
    let sources: Vec<String> = [
        (checked.istio, "against the Istio CRDs"),
        (checked.kubernetes, kubernetes.as_str()),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, source)| format!("{count} {source}"))
    .collect();
    let mut summary = if sources.is_empty() {
        "no document to check".to_string()
    } else {
        format!("{total} {noun} valid ({})", sources.join(", "))
    };
    if !checked.unchecked.is_empty() {
        summary.push_str(&format!("; no schema for {}", checked.unchecked.join(", ")));
    }
    summary
}

fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".into()
    } else {
        path.display().to_string()
    }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the ASMFilterDeployment from stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Checks every EnvoyFilter and WasmPlugin of the bundle against the CRD file.
pub fn check_against_crds(bundle: &Bundle, crds: &Path) -> anyhow::Result<()> {
    let schemas = load_schemas(Some(crds))?;
    check_resources(&bundle_resources(bundle)?, &schemas)
        .with_context(|| format!("checking against {}", crds.display()))?;
    Ok(())
}

fn write_stdout(files: &[output::OutputFile]) -> anyhow::Result<()> {
    let text: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.join("---\n").as_bytes())
        .context("writing to stdout")?;
    Ok(())
}

fn write_directory(files: &[DirectoryFile], dir: &Path) -> anyhow::Result<()> {
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        crate::cache::write_atomically(&path, file.text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn registry_client(
    args: &RenderArgs,
    password: Option<String>,
    registry: &str,
) -> anyhow::Result<crate::client::RegistryClient> {
    let credentials = args.login.credentials(registry, password)?;
    Ok(crate::client::RegistryClient::new(
        registry,
        credentials,
        args.transport.options(),
    )?)
}

/// `--validate`: every deployment's parameters through its module's on_configure.
async fn validate_parameters(
    args: &RenderArgs,
    password: Option<String>,
    deployments: &[input::FilterDeployment],
    options: &RenderOptions,
) -> anyhow::Result<()> {
    let mut modules: BTreeMap<String, (harness::CompiledModule, String)> = BTreeMap::new();
    for deployment in deployments {
        let image = &deployment.filter.image;
        if !modules.contains_key(image) {
            let (bytes, name) = match &args.module {
                Some(path) => (
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                    path.display().to_string(),
                ),
                None => {
                    let reference = crate::reference::parse(image)?;
                    let client =
                        registry_client(args, password.clone(), reference.resolve_registry())?;
                    let (_, bytes) = crate::fetch_module(&client, &reference, None, None)
                        .await
                        .with_context(|| {
                            format!(
                                "--validate: pulling {image} (spec.filter.image of {}); \
                                 give --module FILE to check with a local module",
                                deployment.name
                            )
                        })?;
                    (bytes, image.clone())
                }
            };
            let compiled = harness::CompiledModule::from_bytes(&name, &bytes)
                .with_context(|| format!("--validate: compiling {name}"))?;
            modules.insert(image.clone(), (compiled, name));
        }
        let (module, name) = &modules[image];
        super::validate::check_parameters(module, name, deployment, options)?;
        eprintln!("{}: {name} accepts spec.filter.parameters", deployment.name);
    }
    Ok(())
}

/// Manifest digest (`sha256:...`) of every distinct image, through the registry client.
async fn resolve_digests(
    args: &RenderArgs,
    password: Option<String>,
    deployments: &[input::FilterDeployment],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut digests = BTreeMap::new();
    for deployment in deployments {
        let image = &deployment.filter.image;
        if digests.contains_key(image) {
            continue;
        }
        let reference = crate::reference::parse(image)?;
        let client = registry_client(args, password.clone(), reference.resolve_registry())?;
        let resolved = crate::resolve(&client, &reference, None)
            .await
            .with_context(|| {
                format!(
                    "--resolve: looking up the manifest digest of {image} (spec.filter.image of {}); \
                     render without --resolve to leave sha256 out",
                    deployment.name
                )
            })?;
        digests.insert(image.clone(), resolved.manifest_digest);
    }
    if digests.is_empty() {
        bail!("--resolve: no image to resolve");
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_each_schema_source_that_checked_something() {
        let summary = |istio, kubernetes, unchecked: &[&str]| {
            checked_summary(&Checked {
                istio,
                kubernetes,
                unchecked: unchecked.iter().map(ToString::to_string).collect(),
            })
        };
        assert_eq!(
            summary(2, 2, &[]),
            "4 documents valid (2 against the Istio CRDs, 2 against the Kubernetes 1.33 schemas)"
        );
        assert_eq!(
            summary(1, 0, &[]),
            "1 document valid (1 against the Istio CRDs)"
        );
        assert_eq!(
            summary(0, 1, &["v1 Secret"]),
            "1 document valid (1 against the Kubernetes 1.33 schemas); no schema for v1 Secret"
        );
        assert_eq!(summary(0, 0, &[]), "no document to check");
    }
}

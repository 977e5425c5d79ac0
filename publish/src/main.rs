//! The `publish` command line. See README.md for each subcommand.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use publish::{Error, Layout, Options, RegistryClient, auth, cache, reference};

#[derive(Parser)]
#[command(
    name = "publish",
    version,
    about = "Push Proxy-Wasm modules to OCI registries in the layouts Istio and ASM load, pull them back verified"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a module and push it (default layout: Wasm image spec "oci", which Istio loads).
    Push(PushArgs),
    /// Pull the module of any layout, verified, written atomically.
    Pull(PullArgs),
    /// Show the layout, whether Istio loads it (and why not), annotations, digests, sizes.
    Inspect(InspectArgs),
    /// Check credentials against a registry and store them in Docker's config.json.
    Login(LoginArgs),
    /// Remove stored credentials for a registry from Docker's config.json.
    Logout(LogoutArgs),
    Render(publish::render::cli::RenderArgs),
    /// The node agent: keep a directory in step with the module list `render` writes.
    Sync(publish::sync::SyncArgs),
}

#[derive(Args, Clone)]
struct Transport {
    /// Use plain HTTP for this registry (automatic for localhost, 127.0.0.1 and ::1 unless
    /// --ca-file or --insecure asks for TLS).
    #[arg(long)]
    plain_http: bool,
    /// Use TLS but accept any certificate (self-signed test registries).
    #[arg(long)]
    insecure: bool,
    /// Trust this PEM CA bundle in addition to the system roots.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Upload each blob with one PUT instead of chunks.
    #[arg(long)]
    monolithic: bool,
    /// Bytes per PATCH request in chunked uploads.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    chunk_size: usize,
    /// Retries after a 5xx, 429 or dropped connection (exponential backoff).
    #[arg(long, default_value_t = 4)]
    retries: u32,
    /// First backoff delay in milliseconds (doubles per retry).
    #[arg(long, default_value_t = 200, value_name = "MS")]
    backoff_ms: u64,
    /// Per-request read timeout in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    timeout: u64,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// User name; the password is read from stdin (--password-stdin). Default: Docker's config.json.
    #[arg(short = 'u', long = "username", value_name = "USER")]
    username: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
}

impl Transport {
    fn options(&self) -> Options {
        Options {
            plain_http: self.plain_http,
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            monolithic: self.monolithic,
            chunk_size: self.chunk_size,
            retries: self.retries,
            backoff: Duration::from_millis(self.backoff_ms),
            timeout: Duration::from_secs(self.timeout),
            progress: !self.no_progress,
        }
    }

    fn client_for(&self, registry: &str) -> publish::Result<RegistryClient> {
        let password = if self.password_stdin {
            Some(auth::read_password_stdin()?)
        } else {
            None
        };
        let credentials = auth::resolve(registry, self.username.as_deref(), password)?;
        RegistryClient::new(registry, credentials, self.options())
    }
}

#[derive(Args)]
struct PushArgs {
    /// The module (.wasm) to push.
    module: PathBuf,
    /// Where: host[:port]/repo[:tag][,tag2,...]
    reference: String,
    /// oci (Istio, Envoy Gateway), compat (image with plugin.wasm), cncf (application/wasm), single (ASM article; Istio refuses it).
    #[arg(long, value_enum, default_value_t = Layout::Oci)]
    layout: Layout,
    /// Use this runtime-config.json instead of generating one.
    #[arg(long, value_name = "FILE")]
    runtime_config: Option<PathBuf>,
    /// Root id(s) for the generated runtime-config.json.
    #[arg(long = "root-id", value_name = "ID")]
    root_ids: Vec<String>,
    /// Extra manifest annotation (repeatable).
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// org.opencontainers.image.version
    #[arg(long = "image-version", value_name = "VERSION")]
    image_version: Option<String>,
    /// org.opencontainers.image.revision (e.g. the git commit)
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
    /// org.opencontainers.image.source (e.g. the repository URL)
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// Refuse modules larger than this many bytes.
    #[arg(long, default_value_t = publish::module::DEFAULT_SIZE_CAP, value_name = "BYTES")]
    max_size: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    transport: Transport,
}

#[derive(Args)]
struct PullArgs {
    /// host[:port]/repo:tag or host/repo@sha256:...
    reference: String,
    /// Where to write the module (written atomically).
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// Pin the manifest digest (hex or sha256:hex), as WasmPlugin.sha256 does.
    #[arg(long, value_name = "DIGEST")]
    sha256: Option<String>,
    /// Always download, never read or fill the blob cache.
    #[arg(long)]
    no_cache: bool,
    /// Blob cache (default: $PUBLISH_CACHE_DIR, $XDG_CACHE_HOME/publish-wasm or ~/.cache/publish-wasm).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    transport: Transport,
}

#[derive(Args)]
struct InspectArgs {
    reference: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    transport: Transport,
}

#[derive(Args)]
struct LoginArgs {
    /// host[:port]
    registry: String,
    #[command(flatten)]
    transport: Transport,
}

#[derive(Args)]
struct LogoutArgs {
    registry: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("publish: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("publish: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Push(args) => push(args).await?,
        Command::Pull(args) => pull(args).await?,
        Command::Inspect(args) => inspect(args).await?,
        Command::Login(args) => login(args).await?,
        Command::Logout(args) => logout(args)?,
        Command::Render(args) => publish::render::cli::run(args).await?,
        Command::Sync(args) => publish::sync::run(args).await?,
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> publish::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Usage(format!("cannot encode the report: {e}")))?;
    println!("{text}");
    Ok(())
}

fn source_date_epoch() -> publish::Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.trim().is_empty() => text.trim().parse().map(Some).map_err(|_| {
            Error::Usage(format!(
                "SOURCE_DATE_EPOCH={text:?} is not a number of seconds"
            ))
        }),
        _ => Ok(None),
    }
}

async fn push(args: PushArgs) -> publish::Result<()> {
    let references = reference::parse_with_tags(&args.reference)?;
    let mut annotations = BTreeMap::new();
    for pair in &args.annotations {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Error::Usage(format!("annotation {pair:?} is not KEY=VALUE")))?;
        annotations.insert(key.to_string(), value.to_string());
    }
    for (key, value) in [
        (publish::manifest::ANNOTATION_VERSION, &args.image_version),
        (publish::manifest::ANNOTATION_REVISION, &args.revision),
        (publish::manifest::ANNOTATION_SOURCE, &args.source),
    ] {
        if let Some(value) = value {
            annotations.insert(key.to_string(), value.clone());
        }
    }
    let request = publish::PushRequest {
        module: args.module,
        references,
        layout: Some(args.layout),
        runtime_config: args.runtime_config,
        root_ids: args.root_ids,
        annotations,
        epoch: source_date_epoch()?,
        size_cap: args.max_size,
    };
    // Validate and build before touching the network (and before reading a password).
    let (artifact, info) = publish::prepare(&request)?;
    match args.layout {
        Layout::Single => eprintln!(
            "publish: warning: the single layout (the ASM article's one-layer oras push) has one layer; \
             Istio's fetcher refuses it (\"number of layers must be 2\"). Use --layout oci for Istio."
        ),
        Layout::Cncf => eprintln!(
            "publish: warning: Istio cannot load the CNCF layout (application/wasm); use --layout oci for Istio."
        ),
        Layout::Oci | Layout::Compat => {}
    }
    let registry = request.references[0].resolve_registry().to_string();
    let client = args.transport.client_for(&registry)?;
    let report = publish::push_prepared(&client, &request.references, &artifact, info).await?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "pushed {} ({} layout)",
        report.references.join(", "),
        report.layout
    );
    println!("manifest digest:   {}", report.manifest_digest);
    println!("url:               {}", report.pinned_url);
    println!("WasmPlugin sha256: {}", report.wasmplugin_sha256);
    println!(
        "module sha256:     {} ({} bytes, ABI {})",
        report.module_digest.trim_start_matches("sha256:"),
        report.module_size,
        report.abi_versions.join(", ")
    );
    println!(
        "blobs:             {} uploaded ({} bytes), {} already in the registry",
        report.uploaded.len(),
        report.uploaded_bytes,
        report.reused.len()
    );
    println!(
        "istio:             {} ({})",
        if report.istio.loads {
            "loads it"
        } else {
            "will NOT load it"
        },
        report.istio.reason
    );
    Ok(())
}

async fn pull(args: PullArgs) -> publish::Result<()> {
    let reference = reference::parse(&args.reference)?;
    let client = args.transport.client_for(reference.resolve_registry())?;
    let cache = if args.no_cache {
        None
    } else {
        args.cache_dir
            .clone()
            .or_else(cache::BlobCache::default_root)
            .map(cache::BlobCache::new)
    };
    let report = publish::pull(
        &client,
        &reference,
        args.sha256.as_deref(),
        &args.output,
        cache.as_ref(),
    )
    .await?;
    if args.json {
        return print_json(&report);
    }
    println!("pulled {} ({} layout)", report.reference, report.layout);
    println!("manifest digest:   {}", report.manifest_digest);
    println!(
        "module:            {} ({} bytes, sha256 {})",
        report.output.display(),
        report.module_size,
        report.module_digest.trim_start_matches("sha256:")
    );
    println!(
        "transfer:          {}",
        if report.from_cache {
            "none (module blob found in the local cache)".to_string()
        } else {
            format!("{} bytes downloaded", report.downloaded_bytes)
        }
    );
    println!(
        "istio:             {} ({})",
        if report.istio.loads {
            "loads it"
        } else {
            "will NOT load it"
        },
        report.istio.reason
    );
    Ok(())
}

async fn inspect(args: InspectArgs) -> publish::Result<()> {
    let reference = reference::parse(&args.reference)?;
    let client = args.transport.client_for(reference.resolve_registry())?;
    let report = publish::inspect(&client, &reference).await?;
    if args.json {
        return print_json(&report);
    }
    println!("reference:         {}", report.reference);
    match (&report.layout, &report.layout_error) {
        (Some(layout), _) => println!("layout:            {layout}"),
        (None, Some(error)) => println!("layout:            unknown ({error})"),
        (None, None) => println!("layout:            unknown"),
    }
    println!(
        "manifest:          {} {}",
        report.media_type, report.manifest_digest
    );
    println!("WasmPlugin sha256: {}", report.wasmplugin_sha256);
    println!(
        "istio:             {} ({})",
        if report.istio.loads {
            "loads it"
        } else {
            "will NOT load it"
        },
        report.istio.reason
    );
    if let Some((runtime, abi)) = &report.runtime {
        println!("runtime:           {runtime}, ABI {}", abi.join(", "));
    }
    println!(
        "config:            {} {} {} bytes",
        report.config.media_type, report.config.digest, report.config.size
    );
    for (i, layer) in report.layers.iter().enumerate() {
        println!(
            "layer {i}:           {} {} {} bytes{}",
            layer.media_type,
            layer.digest,
            layer.size,
            layer
                .title
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        );
    }
    for (key, value) in &report.annotations {
        println!("annotation:        {key}={value}");
    }
    Ok(())
}

async fn login(args: LoginArgs) -> publish::Result<()> {
    let registry = args
        .registry
        .trim_start_matches("oci://")
        .trim_end_matches('/')
        .to_string();
    let (Some(username), true) = (&args.transport.username, args.transport.password_stdin) else {
        return Err(Error::Usage(
            "login needs -u USER --password-stdin (passwords are never taken as arguments)".into(),
        ));
    };
    let password = auth::read_password_stdin()?;
    let credentials = auth::Credentials::Basic {
        username: username.clone(),
        password: password.clone(),
    };
    let client = RegistryClient::new(&registry, credentials, args.transport.options())?;
    let probe = reference::parse(&format!("{registry}/publish-login-check:probe"))?;
    client.check_login(&probe).await?;
    let path = auth::store(&registry, username, &password)?;
    println!(
        "login succeeded; credentials for {registry} stored in {}",
        path.display()
    );
    Ok(())
}

fn logout(args: LogoutArgs) -> publish::Result<()> {
    let registry = args
        .registry
        .trim_start_matches("oci://")
        .trim_end_matches('/');
    if auth::remove(registry)? {
        println!(
            "removed the credentials for {registry} from {}",
            auth::config_dir()?.join("config.json").display()
        );
    } else {
        println!("no credentials stored for {registry}");
    }
    Ok(())
}

//! `push`, `pull` and `inspect`: the commands that move or describe one module.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use super::args::{Connection, Report, Transfer, Upload, print_json};
use crate::errors::{Error, Result};
use crate::layout::Layout;
use crate::{cache, manifest, reference};

#[derive(Args, Debug)]
#[command(
    after_help = "Both argument orders work: `push MODULE REF` and oras's `push REF MODULE[:MEDIATYPE]`."
)]
pub struct PushArgs {
    /// The module (.wasm), then the reference host[:port]/repo[:tag][,tag2,...];
    /// or, in oras's order, the reference then MODULE[:MEDIATYPE].
    #[arg(value_name = "MODULE|REF")]
    pub first: String,
    /// The reference, or the module in oras's order.
    #[arg(value_name = "REF|MODULE")]
    pub second: String,
    /// oci (Istio, Envoy Gateway), compat (image with plugin.wasm), cncf (application/wasm), single (ASM article; Istio refuses it).
    #[arg(long, value_enum, default_value_t = Layout::Oci)]
    pub layout: Layout,
    /// Use this runtime-config.json instead of generating one.
    #[arg(long, value_name = "FILE")]
    pub runtime_config: Option<PathBuf>,
    /// Root id(s) for the generated runtime-config.json.
    #[arg(long = "root-id", value_name = "ID")]
    pub root_ids: Vec<String>,
    /// Extra manifest annotation (repeatable).
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// org.opencontainers.image.version
    #[arg(long = "image-version", value_name = "VERSION")]
    pub image_version: Option<String>,
    /// org.opencontainers.image.revision (e.g. the git commit)
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// org.opencontainers.image.source (e.g. the repository URL)
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// Record org.opencontainers.image.created: `now` or seconds since the epoch. Without it
    /// (and without SOURCE_DATE_EPOCH) no time is stored, so equal inputs give equal digests.
    #[arg(long, value_name = "now|SECONDS")]
    pub created: Option<String>,
    /// Refuse modules larger than this many bytes.
    #[arg(long, default_value_t = crate::module::DEFAULT_SIZE_CAP, value_name = "BYTES")]
    pub max_size: u64,
    /// The Envoy or Istio release the preflight checks the module for
    /// (as `harness check --target`) [default: the newest Envoy].
    #[arg(long, value_name = "NAME", value_parser = harness::preflight::target_named)]
    pub target: Option<&'static harness::preflight::Target>,
    /// Skip the preflight (`harness check`: imports, wasm features, exports, start-up)
    /// that refuses a module the target would not load.
    #[arg(long, conflicts_with = "target")]
    pub no_check: bool,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub upload: Upload,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// host[:port]/repo:tag or host/repo@sha256:...
    pub reference: String,
    /// Where to write the module (written atomically); `-` writes it to stdout.
    #[arg(short, long, value_name = "PATH|-")]
    pub output: PathBuf,
    /// Pin the manifest digest (hex or sha256:hex), as WasmPlugin.sha256 does.
    #[arg(long, value_name = "DIGEST")]
    pub sha256: Option<String>,
    /// Always download, never read or fill the blob cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Blob cache (default: $PUBLISH_CACHE_DIR, $XDG_CACHE_HOME/publish-wasm or ~/.cache/publish-wasm).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub transfer: Transfer,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// host[:port]/repo:tag or host/repo@sha256:...
    pub reference: String,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub connection: Connection,
}

/// The module path, the references and an oras-style media type, from either order.
fn push_operands(first: &str, second: &str) -> Result<(PathBuf, String, Option<String>)> {
    if Path::new(first).is_file() {
        return Ok((first.into(), second.to_string(), None));
    }
    let (path, media_type) = match second.rsplit_once(':') {
        _ if Path::new(second).is_file() => (second, None),
        Some((path, media_type)) if media_type.contains('/') => (path, Some(media_type)),
        _ => (second, None),
    };
    let first_is_reference = reference::parse_with_tags(first).is_ok();
    if Path::new(path).is_file() && first_is_reference {
        return Ok((path.into(), first.to_string(), media_type.map(String::from)));
    }
    let message = if first_is_reference {
        format!("{path}: no such module file (read in oras's order: push REF MODULE[:MEDIATYPE])")
    } else if reference::parse_with_tags(second).is_ok() {
        format!("{first}: no such module file (read as: push MODULE REF)")
    } else {
        format!(
            "push takes MODULE REF (or oras's order, REF MODULE[:MEDIATYPE]), but neither {first:?} nor \
             {second:?} is an existing file, e.g. publish push filter.wasm localhost:5000/filters/f:v1"
        )
    };
    Err(Error::Usage(message))
}

/// The media type the module layer gets in `layout`; none for compat (it is inside a tar).
fn module_media_type(layout: Layout) -> Option<&'static str> {
    match layout {
        Layout::Oci | Layout::Single => Some(manifest::WASM_IMAGE_LAYER),
        Layout::Cncf => Some(manifest::CNCF_WASM_LAYER),
        Layout::Compat => None,
    }
}

fn check_media_type(layout: Layout, given: &str) -> Result<()> {
    let expected = module_media_type(layout);
    if expected == Some(given) {
        return Ok(());
    }
    let hint = [Layout::Oci, Layout::Cncf]
        .into_iter()
        .find(|l| module_media_type(*l) == Some(given))
        .map(|l| format!("; for {given} use --layout {l}"))
        .unwrap_or_default();
    Err(Error::Usage(match expected {
        Some(expected) => format!(
            "the module layer of the {layout} layout is typed {expected}, not {given}{hint}"
        ),
        None => format!(
            "the compat layout stores the module inside a tar layer; drop the :{given} media type{hint}"
        ),
    }))
}

fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.trim().is_empty() => text.trim().parse().map(Some).map_err(|_| {
            Error::Usage(format!(
                "SOURCE_DATE_EPOCH={text:?} is not a number of seconds"
            ))
        }),
        _ => Ok(None),
    }
}

fn created_epoch(flag: Option<&str>) -> Result<Option<u64>> {
    match flag {
        None => source_date_epoch(),
        Some("now") => Ok(Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )),
        Some(seconds) => seconds.parse().map(Some).map_err(|_| {
            Error::Usage(format!(
                "--created {seconds:?}: give `now` or a number of seconds since the epoch"
            ))
        }),
    }
}

/// `harness check` on the module: refuses it, with every reason, when the
/// target would not load it; prints its warnings. With `startup`, the
/// module is also started, under the first `--root-id` (the one Envoy would
/// use); without, only the static checks run (imports, features, exports).
/// It checks `bytes`, the module as [`crate::prepare`] read it for the
/// upload (`module` only names it), so what is checked is what is pushed.
fn preflight(
    module: &Path,
    bytes: &[u8],
    target: Option<&'static harness::preflight::Target>,
    root_ids: &[String],
    startup: bool,
) -> Result<()> {
    use harness::preflight::{
        CheckOptions, Severity, StartupInput, WITHOUT_CONFIG, check, default_target,
    };
    let options = CheckOptions {
        target: target.unwrap_or_else(default_target),
        startup: startup.then(|| StartupInput {
            root_id: root_ids.first().cloned().unwrap_or_default(),
            ..StartupInput::default()
        }),
        ..CheckOptions::default()
    };
    let report = check(&module.display().to_string(), bytes, &options);
    // push has no plugin configuration: a filter refusing to start without
    // one is expected, not worth a warning.
    let warnings = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning && f.code != WITHOUT_CONFIG);
    for warning in warnings {
        eprintln!("publish: warning: preflight: {}", warning.message);
    }
    if report.loads() {
        return Ok(());
    }
    Err(Error::InvalidModule {
        path: module.to_path_buf(),
        reason: format!(
            "{} would not load it (`harness check {}` for the full report; --no-check pushes anyway):\n  {}",
            report.target,
            module.display(),
            report.error_lines().join("\n  ")
        ),
    })
}

pub async fn push(args: PushArgs) -> Result<()> {
    let (module, references, media_type) = push_operands(&args.first, &args.second)?;
    if let Some(media_type) = &media_type {
        check_media_type(args.layout, media_type)?;
    }
    let references = reference::parse_with_tags(&references)?;
    let mut annotations = BTreeMap::new();
    for pair in &args.annotations {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Error::Usage(format!("annotation {pair:?} is not KEY=VALUE")))?;
        annotations.insert(key.to_string(), value.to_string());
    }
    for (key, value) in [
        (manifest::ANNOTATION_VERSION, &args.image_version),
        (manifest::ANNOTATION_REVISION, &args.revision),
        (manifest::ANNOTATION_SOURCE, &args.source),
    ] {
        if let Some(value) = value {
            annotations.insert(key.to_string(), value.clone());
        }
    }
    let request = crate::PushRequest {
        module,
        references,
        layout: Some(args.layout),
        runtime_config: args.runtime_config,
        root_ids: args.root_ids,
        annotations,
        epoch: created_epoch(args.created.as_deref())?,
        size_cap: args.max_size,
    };
    // Validate and build before touching the network (and before reading a password).
    let crate::Prepared {
        artifact,
        info,
        module: module_bytes,
    } = crate::prepare(&request)?;
    // The static checks refuse before any connection; start-up (compiling
    // and starting the module, most of the preflight's time) runs while the
    // blobs upload, and the manifest is put only if it passes.
    let startup = if args.no_check {
        None
    } else {
        preflight(
            &request.module,
            &module_bytes,
            args.target,
            &request.root_ids,
            false,
        )?;
        let (module, target, root_ids) = (
            request.module.clone(),
            args.target,
            request.root_ids.clone(),
        );
        Some(tokio::task::spawn_blocking(move || {
            preflight(&module, &module_bytes, target, &root_ids, true)
        }))
    };
    let gate = async move {
        match startup {
            None => Ok(()),
            Some(task) => task.await.map_err(|e| Error::InvalidModule {
                path: request.module.clone(),
                reason: format!("the preflight did not finish: {e}"),
            })?,
        }
    };
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
    let client = args
        .upload
        .connection()
        .client_for(&registry, args.upload.options())?;
    let report =
        crate::push_prepared_gated(&client, &request.references, &artifact, info, gate).await?;
    if args.report.is_json() {
        return print_json(&report);
    }
    out!(
        "pushed {} ({} layout)",
        report.references.join(", "),
        report.layout
    );
    out!("manifest digest:   {}", report.manifest_digest);
    out!("url:               {}", report.pinned_url);
    out!("WasmPlugin sha256: {}", report.wasmplugin_sha256);
    out!(
        "module sha256:     {} ({} bytes, ABI {})",
        report.module_digest.trim_start_matches("sha256:"),
        report.module_size,
        report.abi_versions.join(", ")
    );
    let mounted = match report.mounted.as_slice() {
        [] => String::new(),
        [first, rest @ ..] if rest.iter().all(|m| m.from == first.from) => {
            format!(", {} mounted from {}", report.mounted.len(), first.from)
        }
        many => format!(", {} mounted from other repositories", many.len()),
    };
    out!(
        "blobs:             {} uploaded ({} bytes), {} already in the registry{mounted}",
        report.uploaded.len(),
        report.uploaded_bytes,
        report.reused.len()
    );
    out!("istio:             {}", verdict(&report.istio));
    Ok(())
}

fn verdict(istio: &crate::layout::IstioVerdict) -> String {
    let loads = if istio.loads {
        "loads it"
    } else {
        "will NOT load it"
    };
    format!("{loads} ({})", istio.reason)
}

pub async fn pull(args: PullArgs) -> Result<()> {
    let reference = reference::parse(&args.reference)?;
    let client = args
        .transfer
        .connection
        .client_for(reference.resolve_registry(), args.transfer.options())?;
    let cache = if args.no_cache {
        None
    } else {
        args.cache_dir
            .clone()
            .or_else(cache::BlobCache::default_root)
            .map(cache::BlobCache::new)
    };
    let to_stdout = args.output == Path::new("-");
    let (mut report, module) =
        crate::fetch_module(&client, &reference, args.sha256.as_deref(), cache.as_ref()).await?;
    report.output = args.output.clone();
    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&module)
            .and_then(|()| stdout.flush())
            .map_err(|e| Error::io("writing the module to stdout", e))?;
    } else {
        cache::write_atomically(&args.output, &module, 0o644)?;
    }
    // With the module on stdout, the report goes to stderr.
    let mut out: Box<dyn std::io::Write> = if to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let text = if args.report.is_json() {
        serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Usage(format!("cannot encode the report: {e}")))?
    } else {
        let module_line = format!(
            "module:            {} ({} bytes, sha256 {})",
            if to_stdout {
                "stdout".to_string()
            } else {
                report.output.display().to_string()
            },
            report.module_size,
            report.module_digest.trim_start_matches("sha256:")
        );
        let transfer = if report.from_cache {
            "none (module blob found in the local cache)".to_string()
        } else {
            format!("{} bytes downloaded", report.downloaded_bytes)
        };
        format!(
            "pulled {} ({} layout)\nmanifest digest:   {}\n{module_line}\ntransfer:          {transfer}\nistio:             {}",
            report.reference,
            report.layout,
            report.manifest_digest,
            verdict(&report.istio)
        )
    };
    writeln!(out, "{text}").map_err(|e| Error::io("writing the report", e))
}

pub async fn inspect(args: InspectArgs) -> Result<()> {
    let reference = reference::parse(&args.reference)?;
    let client = args
        .connection
        .client_for(reference.resolve_registry(), args.connection.options())?;
    let report = crate::inspect(&client, &reference).await?;
    if args.report.is_json() {
        return print_json(&report);
    }
    out!("reference:         {}", report.reference);
    match (&report.layout, &report.layout_error) {
        (Some(layout), _) => out!("layout:            {layout}"),
        (None, Some(error)) => out!("layout:            unknown ({error})"),
        (None, None) => out!("layout:            unknown"),
    }
    out!(
        "manifest:          {} {}",
        report.media_type,
        report.manifest_digest
    );
    out!("WasmPlugin sha256: {}", report.wasmplugin_sha256);
    out!("istio:             {}", verdict(&report.istio));
    if let Some((runtime, abi)) = &report.runtime {
        out!("runtime:           {runtime}, ABI {}", abi.join(", "));
    }
    out!(
        "config:            {} {} {} bytes",
        report.config.media_type,
        report.config.digest,
        report.config.size
    );
    for (i, layer) in report.layers.iter().enumerate() {
        out!(
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
        out!("annotation:        {key}={value}");
    }
    Ok(())
}

//! oci-registry: Proxy-Wasm modules as OCI artifacts. Push them in the layouts
//! Istio and ASM load, pull them back verified (manifest and blob digests),
//! cache blobs on disk, inspect and copy them. No command line here: `publish`
//! and `harness serve --wasmplugin` build on it. See README.md.
//!
//! Modules follow the protocol's nouns: [`reference`], [`manifest`], [`layout`],
//! [`module`], [`auth`], [`client`], [`cache`], [`copy`], [`errors`].

pub mod auth;
pub mod cache;
pub mod client;
pub mod copy;
pub mod errors;
pub mod layout;
pub mod manifest;
pub mod module;
pub mod reference;
#[cfg(feature = "test-support")]
pub mod test_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::client::{Options, RegistryClient};
pub use crate::errors::{Error, Result};
pub use crate::layout::Layout;
use crate::manifest::{OciDescriptor, OciImageManifest, Served};
use crate::reference::Reference;

/// What `push` needs beyond the module file and the references.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    pub module: PathBuf,
    /// Refs sharing one repository; the manifest is tagged with each.
    pub references: Vec<Reference>,
    pub layout: Option<Layout>,
    /// A runtime-config.json to use instead of the generated one.
    pub runtime_config: Option<PathBuf>,
    pub root_ids: Vec<String>,
    /// `-a key=value`, plus version/revision/source given by flags.
    pub annotations: BTreeMap<String, String>,
    /// Seconds since the epoch for `created` (SOURCE_DATE_EPOCH or `--created`); when
    /// None no time is recorded and archive times are 0, so equal inputs give equal digests.
    pub epoch: Option<u64>,
    pub size_cap: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub layout: Layout,
    pub references: Vec<String>,
    pub manifest_digest: String,
    /// `oci://host/repo@sha256:...`
    pub pinned_url: String,
    /// WasmPlugin.sha256 for the oci:// URL: the manifest digest's hex.
    pub wasmplugin_sha256: String,
    pub module_digest: String,
    pub module_size: u64,
    pub abi_versions: Vec<String>,
    /// Digests of the blobs sent in this run.
    pub uploaded: Vec<String>,
    /// Digests of the blobs the registry already had.
    pub reused: Vec<String>,
    /// Blobs the registry linked from another of its repositories (no bytes sent).
    pub mounted: Vec<Mounted>,
    pub uploaded_bytes: u64,
    pub istio: layout::IstioVerdict,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mounted {
    pub digest: String,
    /// The repository it was mounted from.
    pub from: String,
}

/// What [`prepare`] read and built.
pub struct Prepared {
    pub artifact: layout::Artifact,
    pub info: module::ModuleInfo,
    /// The module as read, once (shared with its blob): a check of the
    /// module reads these instead of the file again.
    pub module: bytes::Bytes,
}

/// Builds the artifact for a validated module, without any network access.
pub fn prepare(request: &PushRequest) -> Result<Prepared> {
    let (module_bytes, info) = module::load(&request.module, request.size_cap)?;
    let module_bytes = bytes::Bytes::from(module_bytes);
    let runtime_config = match &request.runtime_config {
        Some(path) => {
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        }
        None => module::RuntimeConfig::for_module(&info, &request.root_ids).to_bytes(),
    };
    let (runtime_type, abi_versions) =
        module::runtime_config_summary(&runtime_config).ok_or_else(|| {
            Error::Usage(
                "the runtime config must be a JSON object with a \"type\" field, e.g. \
                 {\"type\":\"envoy_proxy\",\"abiVersions\":[\"v0.2.1\"]}"
                    .into(),
            )
        })?;
    let abi_versions = if abi_versions.is_empty() {
        info.abi_versions.clone()
    } else {
        abi_versions
    };
    let epoch = request.epoch.unwrap_or(0);
    let title = request
        .module
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("plugin.wasm")
        .to_string();
    let mut annotations = request.annotations.clone();
    if let Some(epoch) = request.epoch
        && !annotations.contains_key(manifest::ANNOTATION_CREATED)
    {
        let created = manifest::rfc3339(epoch).ok_or_else(|| {
            Error::Usage(format!(
                "the creation time {epoch} (seconds since 1970, from --created or \
                 SOURCE_DATE_EPOCH) is past the year 9999, which RFC 3339 cannot write"
            ))
        })?;
        annotations.insert(manifest::ANNOTATION_CREATED.into(), created);
    }
    annotations
        .entry(manifest::ANNOTATION_TITLE.into())
        .or_insert_with(|| title.trim_end_matches(".wasm").to_string());
    let input = layout::BuildInput {
        module: module_bytes.clone(),
        module_digest: &info.digest,
        module_title: &title,
        runtime_config: &runtime_config,
        runtime_type: &runtime_type,
        abi_versions: &abi_versions,
        annotations: &annotations,
        epoch,
    };
    let artifact = layout::build(request.layout.unwrap_or(Layout::Oci), &input)?;
    Ok(Prepared {
        artifact,
        info,
        module: module_bytes,
    })
}

/// Validates, builds and uploads: blobs the registry lacks, then the manifest under every tag.
pub async fn push(client: &RegistryClient, request: &PushRequest) -> Result<PushReport> {
    let prepared = prepare(request)?;
    push_prepared(
        client,
        &request.references,
        &prepared.artifact,
        prepared.info,
    )
    .await
}

/// Uploads an artifact [`prepare`] built.
pub async fn push_prepared(
    client: &RegistryClient,
    references: &[Reference],
    artifact: &layout::Artifact,
    info: module::ModuleInfo,
) -> Result<PushReport> {
    push_prepared_gated(
        client,
        references,
        artifact,
        info,
        std::future::ready(Ok(())),
    )
    .await
}

/// [`push_prepared`], with `gate` (e.g. a check of the module that takes a
/// while) run while the blobs upload: no manifest is put unless it passes,
/// and its error ends the push as soon as it comes (uploads in flight are
/// dropped, so untagged blobs may stay in the repository).
pub async fn push_prepared_gated(
    client: &RegistryClient,
    references: &[Reference],
    artifact: &layout::Artifact,
    info: module::ModuleInfo,
    gate: impl std::future::Future<Output = Result<()>>,
) -> Result<PushReport> {
    let primary = references
        .first()
        .ok_or_else(|| Error::Usage("no reference to push to".into()))?;
    // No authentication up front: the first request that gets a 401 answers
    // the challenge (a registry without auth costs no extra round trip).
    // Distinct blobs (the oci layout's config is also its first layer), each
    // checked and uploaded concurrently: registry latency, not bandwidth,
    // dominates small pushes.
    let mut blobs: Vec<&manifest::Blob> = Vec::new();
    for blob in artifact.blobs() {
        if !blobs.iter().any(|b| b.digest() == blob.digest()) {
            blobs.push(blob);
        }
    }
    let uploads = futures_util::future::try_join_all(
        blobs
            .iter()
            .map(|blob| async move { client.push_blob_if_missing(primary, blob).await }),
    );
    let (outcomes, ()) = futures_util::future::try_join(uploads, gate).await?;
    let mut uploaded: Vec<String> = Vec::new();
    let mut reused: Vec<String> = Vec::new();
    let mut mounted: Vec<Mounted> = Vec::new();
    let mut uploaded_bytes = 0;
    for (blob, stored) in blobs.iter().zip(outcomes) {
        let digest = blob.digest().to_string();
        match stored {
            client::Stored::Uploaded => {
                uploaded_bytes += blob.bytes.len() as u64;
                uploaded.push(digest);
            }
            client::Stored::Present => reused.push(digest),
            client::Stored::Mounted { from } => mounted.push(Mounted { digest, from }),
        }
    }
    for reference in references {
        client
            .push_manifest(
                reference,
                &artifact.manifest.media_type,
                &artifact.manifest.bytes,
            )
            .await?;
    }
    let manifest_digest = artifact.manifest.digest();
    let image: OciImageManifest = match manifest::parse(&artifact.manifest.bytes, None)? {
        Served::Image { manifest, .. } => *manifest,
        Served::Index { .. } => {
            return Err(Error::Layout("built an index, not a manifest".into()));
        }
    };
    Ok(PushReport {
        layout: artifact.layout,
        references: references.iter().map(|r| r.whole()).collect(),
        pinned_url: reference::pinned_url(primary, &manifest_digest),
        wasmplugin_sha256: manifest_digest.trim_start_matches("sha256:").to_string(),
        manifest_digest,
        module_digest: info.digest,
        module_size: info.size,
        abi_versions: info.abi_versions,
        uploaded,
        reused,
        mounted,
        uploaded_bytes,
        istio: layout::istio_verdict(&artifact.manifest.media_type, &image, None),
    })
}

/// A manifest resolved down to one image (indexes are followed).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub reference: Reference,
    pub manifest_digest: String,
    pub media_type: String,
    pub manifest: OciImageManifest,
    /// The index digest when the reference named an index.
    pub index_digest: Option<String>,
}

/// Fetches the manifest for `reference`, checks it against `pin` (hex or sha256:hex),
/// and follows an index to the Wasm (or only) entry.
pub async fn resolve(
    client: &RegistryClient,
    reference: &Reference,
    pin: Option<&str>,
) -> Result<Resolved> {
    client.authenticate(reference, false).await?;
    let (bytes, digest) = client.pull_manifest(reference).await?;
    if let Some(pin) = pin {
        let wanted = if pin.starts_with("sha256:") {
            pin.to_string()
        } else {
            format!("sha256:{pin}")
        };
        if wanted != digest {
            return Err(Error::PinMismatch {
                reference: reference.whole(),
                pinned: wanted,
                actual: digest,
            });
        }
    }
    match manifest::parse(&bytes, None)? {
        Served::Image {
            media_type,
            manifest,
        } => Ok(Resolved {
            reference: reference.clone(),
            manifest_digest: digest,
            media_type,
            manifest: *manifest,
            index_digest: None,
        }),
        Served::Index { index, .. } => {
            let index_digest = digest;
            let entry = index
                .manifests
                .iter()
                .find(|m| {
                    m.platform.as_ref().is_some_and(|p| {
                        let text = serde_json::to_string(p).unwrap_or_default();
                        text.contains("wasm") || text.contains("wasi")
                    })
                })
                .or_else(|| (index.manifests.len() == 1).then(|| &index.manifests[0]))
                .ok_or_else(|| {
                    Error::Layout(format!(
                        "{} is an index of {} manifests and none is for wasm/wasip1; pull one by digest",
                        reference.whole(),
                        index.manifests.len()
                    ))
                })?;
            let child = reference.clone_with_digest(entry.digest.clone());
            let (bytes, digest) = client.pull_manifest(&child).await?;
            match manifest::parse(&bytes, None)? {
                Served::Image {
                    media_type,
                    manifest,
                } => Ok(Resolved {
                    reference: child,
                    manifest_digest: digest,
                    media_type,
                    manifest: *manifest,
                    index_digest: Some(index_digest),
                }),
                Served::Index { .. } => Err(Error::Layout(
                    "nested image indexes are not supported".into(),
                )),
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub reference: String,
    pub layout: Layout,
    pub manifest_digest: String,
    pub module_digest: String,
    pub module_size: u64,
    pub output: PathBuf,
    /// Blob bytes fetched from the registry (0 when the cache had them).
    pub downloaded_bytes: u64,
    pub from_cache: bool,
    pub istio: layout::IstioVerdict,
}

/// Fetches one verified blob, from the cache when it has it.
pub async fn fetch_blob(
    client: &RegistryClient,
    reference: &Reference,
    descriptor: &OciDescriptor,
    cache: Option<&cache::BlobCache>,
) -> Result<(Vec<u8>, bool)> {
    let size = u64::try_from(descriptor.size).unwrap_or(u64::MAX);
    // The manifest names it, so the registry holds it here: a later push to
    // another repository can mount it.
    client.remember(reference, &descriptor.digest);
    if let Some(bytes) = cache.and_then(|c| c.get(&descriptor.digest, size)) {
        return Ok((bytes, true));
    }
    let bytes = client.pull_blob(reference, descriptor).await?;
    if let Some(cache) = cache {
        cache.put(&descriptor.digest, &bytes)?;
    }
    Ok((bytes, false))
}

/// Pulls the module of any of the four layouts and writes it atomically to `output`.
pub async fn pull(
    client: &RegistryClient,
    reference: &Reference,
    pin: Option<&str>,
    output: &Path,
    cache: Option<&cache::BlobCache>,
) -> Result<PullReport> {
    let (mut report, module) = fetch_module(client, reference, pin, cache).await?;
    cache::write_atomically(output, &module, 0o644)?;
    report.output = output.to_path_buf();
    Ok(report)
}

/// Pulls and verifies the module of any of the four layouts, in memory; the
/// report's `output` is left empty for the caller to fill in.
pub async fn fetch_module(
    client: &RegistryClient,
    reference: &Reference,
    pin: Option<&str>,
    cache: Option<&cache::BlobCache>,
) -> Result<(PullReport, Vec<u8>)> {
    let resolved = resolve(client, reference, pin).await?;
    let located = layout::locate(&resolved.media_type, &resolved.manifest)?;
    if u64::try_from(located.blob.size).unwrap_or(u64::MAX) > layout::ISTIO_MODULE_CAP * 2 {
        return Err(Error::Layout(format!(
            "the module blob claims {} bytes, far over any loadable module",
            located.blob.size
        )));
    }
    let (blob, from_cache) = fetch_blob(client, &resolved.reference, &located.blob, cache).await?;
    let downloaded_bytes = if from_cache { 0 } else { blob.len() as u64 };
    let module = layout::extract_module(&located, blob)?;
    if !module.starts_with(b"\0asm") {
        return Err(Error::Layout(format!(
            "{}: the module does not start with the Wasm magic \\0asm; nothing written",
            reference.whole()
        )));
    }
    let report = PullReport {
        reference: reference.whole(),
        layout: located.layout,
        istio: layout::istio_verdict(&resolved.media_type, &resolved.manifest, Some(&module)),
        manifest_digest: resolved.manifest_digest,
        module_digest: module::sha256_digest(&module),
        module_size: module.len() as u64,
        output: PathBuf::new(),
        downloaded_bytes,
        from_cache,
    };
    Ok((report, module))
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub reference: String,
    pub layout: Option<Layout>,
    pub layout_error: Option<String>,
    pub media_type: String,
    pub manifest_digest: String,
    pub wasmplugin_sha256: String,
    pub istio: layout::IstioVerdict,
    pub annotations: BTreeMap<String, String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// runtime-config.json's type and ABI versions when the config is one.
    pub runtime: Option<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    pub title: Option<String>,
}

impl From<&OciDescriptor> for Descriptor {
    fn from(d: &OciDescriptor) -> Self {
        Descriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            title: d
                .annotations
                .as_ref()
                .and_then(|a| a.get(manifest::ANNOTATION_TITLE).cloned()),
        }
    }
}

/// Describes what is stored under `reference` and whether Istio loads it.
pub async fn inspect(client: &RegistryClient, reference: &Reference) -> Result<InspectReport> {
    let resolved = resolve(client, reference, None).await?;
    let located = layout::locate(&resolved.media_type, &resolved.manifest);
    let config = &resolved.manifest.config;
    let runtime = if config.media_type == manifest::WASM_IMAGE_CONFIG && config.size < 1 << 20 {
        let (bytes, _) = fetch_blob(client, &resolved.reference, config, None).await?;
        module::runtime_config_summary(&bytes)
    } else {
        None
    };
    Ok(InspectReport {
        reference: reference.whole(),
        layout: located.as_ref().ok().map(|l| l.layout),
        layout_error: located.as_ref().err().map(|e| e.to_string()),
        media_type: resolved.media_type.clone(),
        wasmplugin_sha256: resolved
            .manifest_digest
            .trim_start_matches("sha256:")
            .to_string(),
        manifest_digest: resolved.manifest_digest.clone(),
        istio: layout::istio_verdict(&resolved.media_type, &resolved.manifest, None),
        annotations: resolved.manifest.annotations.clone().unwrap_or_default(),
        config: config.into(),
        layers: resolved
            .manifest
            .layers
            .iter()
            .map(Descriptor::from)
            .collect(),
        runtime,
    })
}

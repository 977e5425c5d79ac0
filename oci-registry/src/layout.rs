//! The four ways a Wasm module is laid out in a registry: building each one,
//! recognising one when pulled, finding the module inside, and judging whether
//! Istio's fetcher will load it (its rules, restated in our words).

use std::collections::BTreeMap;
use std::io::Read as _;

use flate2::read::GzDecoder;
use serde::Serialize;

use crate::errors::{Error, Result};
use crate::manifest::{self, Blob, EncodedManifest, OciDescriptor, OciImageManifest};
use crate::module::sha256_digest;

/// Istio's size cap for a module.
pub const ISTIO_MODULE_CAP: u64 = 256 * 1024 * 1024;
const COMPAT_MODULE_NAME: &str = "plugin.wasm";
const RUNTIME_CONFIG_NAME: &str = "runtime-config.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Wasm image spec "oci" variant: runtime-config.json as config and first layer, module second.
    Oci,
    /// An ordinary image whose last layer is a tar+gzip holding plugin.wasm.
    Compat,
    /// CNCF Wasm artifact: one application/wasm layer.
    Cncf,
    /// The one-layer push from the ASM article: Istio refuses it.
    Single,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Oci => "oci",
            Layout::Compat => "compat",
            Layout::Cncf => "cncf",
            Layout::Single => "single",
        })
    }
}

/// Everything a layout needs to know about the module being pushed.
#[derive(Debug, Clone)]
pub struct BuildInput<'a> {
    /// Shared with the module blob: building the artifact copies no module bytes.
    pub module: bytes::Bytes,
    /// `sha256:<hex>` of `module` ([`crate::module::ModuleInfo::digest`]), so it is hashed once.
    pub module_digest: &'a str,
    /// Title of the module layer (the file name oras and others extract to).
    pub module_title: &'a str,
    pub runtime_config: &'a [u8],
    pub runtime_type: &'a str,
    pub abi_versions: &'a [String],
    /// org.opencontainers.image.* and user annotations, `created` included.
    pub annotations: &'a BTreeMap<String, String>,
    /// Seconds since the epoch for file times inside archives.
    pub epoch: u64,
}

/// An artifact ready to push: blobs first (config included), then the manifest.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub layout: Layout,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: EncodedManifest,
}

impl Artifact {
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

pub fn build(layout: Layout, input: &BuildInput<'_>) -> Result<Artifact> {
    let mut annotations = input.annotations.clone();
    let created = annotations
        .get(manifest::ANNOTATION_CREATED)
        .cloned()
        .unwrap_or_default();
    let (config, layers, media_type) = match layout {
        Layout::Oci | Layout::Single => {
            annotations.insert(
                manifest::ANNOTATION_RUNTIME_TYPE.into(),
                input.runtime_type.into(),
            );
            annotations.insert(
                manifest::ANNOTATION_ABI_VERSION.into(),
                input.abi_versions.join(","),
            );
            let config = Blob::new(manifest::WASM_IMAGE_CONFIG, input.runtime_config.to_vec());
            let module = Blob::with_digest(
                manifest::WASM_IMAGE_LAYER,
                input.module.clone(),
                input.module_digest,
            )
            .titled(input.module_title);
            let layers = if layout == Layout::Oci {
                vec![config.clone().titled(RUNTIME_CONFIG_NAME), module]
            } else {
                vec![module]
            };
            (config, layers, manifest::OCI_MANIFEST)
        }
        Layout::Compat => {
            annotations.insert(manifest::ANNOTATION_VARIANT.into(), "compat".into());
            let tar = compat_tar(input)?;
            let diff_id = sha256_digest(&tar);
            let layer = Blob::new(manifest::OCI_LAYER_TAR_GZIP, gzip(&tar)?);
            let config = serde_json::json!({
                "created": created,
                "architecture": "wasm",
                "os": "wasip1",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            });
            let config = Blob::new(manifest::OCI_IMAGE_CONFIG, to_json(&config)?);
            (config, vec![layer], manifest::OCI_MANIFEST)
        }
        Layout::Cncf => {
            let module = Blob::with_digest(
                manifest::CNCF_WASM_LAYER,
                input.module.clone(),
                input.module_digest,
            )
            .titled(input.module_title);
            let config = serde_json::json!({
                "created": created,
                "architecture": "wasm",
                "os": "wasip1",
                "layerDigests": [module.digest()],
            });
            let config = Blob::new(manifest::CNCF_WASM_CONFIG, to_json(&config)?);
            (config, vec![module], manifest::OCI_MANIFEST)
        }
    };
    let image = OciImageManifest {
        schema_version: 2,
        media_type: None,
        config: config.descriptor(),
        layers: layers.iter().map(Blob::descriptor).collect(),
        subject: None,
        artifact_type: None,
        annotations: (!annotations.is_empty()).then_some(annotations),
    };
    Ok(Artifact {
        layout,
        config,
        layers,
        manifest: manifest::encode(image, media_type)?,
    })
}

/// Image configs carry `created` only when a time was asked for (an empty string
/// is not a valid time for image-config readers).
fn to_json(value: &serde_json::Value) -> Result<Vec<u8>> {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut()
        && object.get("created").and_then(|c| c.as_str()) == Some("")
    {
        object.remove("created");
    }
    serde_json::to_vec(&value).map_err(|e| Error::Layout(format!("cannot encode the config: {e}")))
}

/// A tar with fixed owners, modes and times, so the digest depends only on content.
fn compat_tar(input: &BuildInput<'_>) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        (COMPAT_MODULE_NAME, &input.module[..]),
        (RUNTIME_CONFIG_NAME, input.runtime_config),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(input.epoch);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, bytes)
            .map_err(|e| Error::io("building the compat layer", e))?;
    }
    builder
        .into_inner()
        .map_err(|e| Error::io("building the compat layer", e))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    // GzBuilder writes mtime 0 and no file name: the output depends only on the input.
    let mut encoder = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(bytes)
        .map_err(|e| Error::io("compressing the compat layer", e))?;
    encoder
        .finish()
        .map_err(|e| Error::io("compressing the compat layer", e))
}

/// Where the module sits in a pulled manifest.
#[derive(Debug, Clone)]
pub struct Located {
    pub layout: Layout,
    /// The blob holding the module (for compat, the tar layer).
    pub blob: OciDescriptor,
    /// Compat only: the module is the plugin.wasm entry of this (maybe gzipped) tar.
    pub in_archive: bool,
}

fn is_tar_layer(media_type: &str) -> bool {
    media_type.contains("tar") || media_type.contains("rootfs.diff")
}

/// Recognises the layout of a manifest and locates the module in it.
pub fn locate(media_type: &str, image: &OciImageManifest) -> Result<Located> {
    let find = |wanted: &str| {
        image
            .layers
            .iter()
            .find(|l| l.media_type == wanted)
            .cloned()
    };
    let found = |layout, blob| {
        Ok(Located {
            layout,
            blob,
            in_archive: false,
        })
    };
    if media_type != manifest::DOCKER_MANIFEST {
        if let Some(module) = find(manifest::WASM_IMAGE_LAYER) {
            let layout = if image.layers.len() == 1 {
                Layout::Single
            } else {
                Layout::Oci
            };
            return found(layout, module);
        }
        if let Some(module) = find(manifest::CNCF_WASM_LAYER) {
            return found(Layout::Cncf, module);
        }
    }
    match image.layers.last() {
        Some(last) if is_tar_layer(&last.media_type) => Ok(Located {
            layout: Layout::Compat,
            blob: last.clone(),
            in_archive: true,
        }),
        _ => Err(Error::Layout(format!(
            "no Wasm module found: config {}, layers [{}] match none of the oci, compat, cncf \
             or single layouts",
            image.config.media_type,
            layer_types(image)
        ))),
    }
}

/// Takes the module out of the verified bytes of the blob `locate` pointed at.
pub fn extract_module(located: &Located, blob: Vec<u8>) -> Result<Vec<u8>> {
    if !located.in_archive {
        return Ok(blob);
    }
    let gzipped = blob.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn std::io::Read> = if gzipped {
        Box::new(GzDecoder::new(blob.as_slice()))
    } else {
        Box::new(blob.as_slice())
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| Error::io("reading the compat layer", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading the compat layer", e))?;
        let is_plugin = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n == COMPAT_MODULE_NAME))
            .unwrap_or(false);
        if is_plugin && entry.header().entry_type().is_file() {
            let mut module = Vec::new();
            entry
                .by_ref()
                .take(ISTIO_MODULE_CAP + 1)
                .read_to_end(&mut module)
                .map_err(|e| Error::io("extracting plugin.wasm", e))?;
            return Ok(module);
        }
    }
    Err(Error::Layout(format!(
        "the last layer {} holds no {COMPAT_MODULE_NAME}",
        located.blob.digest
    )))
}

/// Whether Istio's image fetcher loads this manifest, and if not, why.
#[derive(Debug, Clone, Serialize)]
pub struct IstioVerdict {
    pub loads: bool,
    pub reason: String,
}

/// Lints a manifest against Istio's acceptance rules. `module` is the extracted
/// module when the caller has it (checks the magic and size too).
pub fn istio_verdict(
    media_type: &str,
    image: &OciImageManifest,
    module: Option<&[u8]>,
) -> IstioVerdict {
    let refuse = |reason: String| IstioVerdict {
        loads: false,
        reason,
    };
    let Some(last) = image.layers.last() else {
        return refuse("the manifest has no layers".into());
    };
    let accepted_by = if media_type == manifest::DOCKER_MANIFEST {
        if last.media_type != manifest::DOCKER_LAYER_TAR_GZIP {
            return refuse(format!(
                "Docker image: Istio needs the last layer to be {} holding plugin.wasm, it is {}",
                manifest::DOCKER_LAYER_TAR_GZIP,
                last.media_type
            ));
        }
        "Docker image whose last layer holds plugin.wasm"
    } else if last.media_type == manifest::OCI_LAYER_TAR_GZIP {
        "OCI image whose last tar+gzip layer holds plugin.wasm"
    } else if image.layers.len() != 2 {
        return refuse(format!(
            "Istio reads an OCI Wasm artifact only with exactly 2 layers (\"number of layers \
             must be 2\"), this one has {}; push with --layout oci",
            image.layers.len()
        ));
    } else if !image
        .layers
        .iter()
        .any(|l| l.media_type == manifest::WASM_IMAGE_LAYER)
    {
        return refuse(format!(
            "neither layer has media type {} (Istio does not know {})",
            manifest::WASM_IMAGE_LAYER,
            layer_types(image)
        ));
    } else {
        "Wasm image spec (oci variant): two layers, the module typed content.layer.v1+wasm"
    };
    if let Some(module) = module {
        if !module.starts_with(b"\0asm") {
            return refuse("the module does not start with the Wasm magic \\0asm".into());
        }
        if module.len() as u64 > ISTIO_MODULE_CAP {
            return refuse(format!(
                "the module is over Istio's 256 MiB cap ({} bytes)",
                module.len()
            ));
        }
    }
    IstioVerdict {
        loads: true,
        reason: accepted_by.into(),
    }
}

/// The layers' media types, comma-separated (for messages).
fn layer_types(image: &OciImageManifest) -> String {
    image
        .layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(annotations: &'a BTreeMap<String, String>, abi: &'a [String]) -> BuildInput<'a> {
        BuildInput {
            module: bytes::Bytes::from_static(b"\0asm\x01\0\0\0"),
            module_digest: Box::leak(sha256_digest(b"\0asm\x01\0\0\0").into_boxed_str()),
            module_title: "f.wasm",
            runtime_config: br#"{"type":"envoy_proxy"}"#,
            runtime_type: "envoy_proxy",
            abi_versions: abi,
            annotations,
            epoch: 0,
        }
    }

    #[test]
    fn each_layout_is_recognised_and_linted() {
        let annotations = BTreeMap::new();
        let abi = vec!["v0.2.1".to_string()];
        for (layout, loads) in [
            (Layout::Oci, true),
            (Layout::Compat, true),
            (Layout::Cncf, false),
            (Layout::Single, false),
        ] {
            let artifact = build(layout, &input(&annotations, &abi)).unwrap();
            let crate::manifest::Served::Image {
                media_type,
                manifest,
            } = crate::manifest::parse(&artifact.manifest.bytes, None).unwrap()
            else {
                panic!("index");
            };
            let located = locate(&media_type, &manifest).unwrap();
            assert_eq!(located.layout, layout);
            let blob = artifact
                .layers
                .iter()
                .find(|l| l.digest() == located.blob.digest)
                .unwrap();
            let module = extract_module(&located, blob.bytes.to_vec()).unwrap();
            assert_eq!(module, b"\0asm\x01\0\0\0");
            let verdict = istio_verdict(&media_type, &manifest, Some(&module));
            assert_eq!(verdict.loads, loads, "{layout}: {}", verdict.reason);
        }
    }

    #[test]
    fn istio_refuses_a_module_without_the_magic() {
        let annotations = BTreeMap::new();
        let abi = vec![];
        let artifact = build(Layout::Oci, &input(&annotations, &abi)).unwrap();
        let crate::manifest::Served::Image {
            media_type,
            manifest,
        } = crate::manifest::parse(&artifact.manifest.bytes, None).unwrap()
        else {
            panic!("index");
        };
        let verdict = istio_verdict(&media_type, &manifest, Some(b"PK\x03\x04"));
        assert!(!verdict.loads);
        assert!(verdict.reason.contains("magic"));
    }
}

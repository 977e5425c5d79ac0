//! Copying an artifact whole (manifest, child manifests of an index, every
//! blob, exact bytes so digests survive) between registries and OCI image
//! layout directories (image-spec `image-layout.md`: `oci-layout`,
//! `index.json`, `blobs/sha256/<hex>`), for air-gapped clusters.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::errors::{Error, Result};
use crate::manifest::{self, OciDescriptor, Served};
use crate::module::sha256_digest;
use crate::reference::Reference;
use crate::{RegistryClient, cache};

/// The index.json annotation naming a manifest (the layout's "tag").
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory and the tag within it (`DIR[:TAG]`).
#[derive(Debug, Clone)]
pub struct LayoutRef {
    pub dir: PathBuf,
    pub tag: Option<String>,
}

impl LayoutRef {
    /// `DIR` or `DIR:TAG` (the part after the last ':' is a tag when it has no '/').
    pub fn parse(text: &str) -> LayoutRef {
        match text.rsplit_once(':') {
            Some((dir, tag)) if !tag.is_empty() && !tag.contains('/') && !dir.is_empty() => {
                LayoutRef {
                    dir: dir.into(),
                    tag: Some(tag.to_string()),
                }
            }
            _ => LayoutRef {
                dir: text.into(),
                tag: None,
            },
        }
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| Error::Layout(format!("{digest} is not a sha256 digest")))?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    fn read_index(&self) -> Result<serde_json::Value> {
        let path = self.dir.join("index.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Layout(format!("{}: not a valid index.json: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::OCI_INDEX,
                "manifests": [],
            })),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The descriptor index.json holds for the tag (or its only entry).
    fn top_descriptor(&self) -> Result<OciDescriptor> {
        let index = self.read_index()?;
        let entries: Vec<OciDescriptor> =
            serde_json::from_value(index.get("manifests").cloned().unwrap_or_default())
                .map_err(|e| Error::Layout(format!("{}/index.json: {e}", self.dir.display())))?;
        let name_of = |d: &OciDescriptor| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned()
        };
        let found = match &self.tag {
            Some(tag) => entries.iter().find(|d| name_of(d).as_deref() == Some(tag)),
            None if entries.len() == 1 => entries.first(),
            None => None,
        };
        found.cloned().ok_or_else(|| {
            let names: Vec<String> = entries.iter().filter_map(name_of).collect();
            Error::Layout(format!(
                "{}: no manifest {} in index.json (it names: {}); use DIR:TAG",
                self.dir.display(),
                self.tag
                    .as_deref()
                    .map(|t| format!("tagged {t:?}"))
                    .unwrap_or_else(|| "to pick".into()),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// Reads a blob and checks it against its digest.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(Error::Digest {
                what: path.display().to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.blob_path(digest)?;
        if path.is_file() && self.read_blob(digest).is_ok() {
            return Ok(false);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        cache::write_atomically(&path, bytes, 0o644)?;
        Ok(true)
    }

    /// Records `descriptor` in index.json under the tag, replacing what it named.
    fn add_to_index(&self, mut descriptor: OciDescriptor) -> Result<()> {
        let mut index = self.read_index()?;
        let manifests = index
            .get_mut("manifests")
            .and_then(|m| m.as_array_mut())
            .ok_or_else(|| {
                Error::Layout(format!(
                    "{}/index.json has no manifests list",
                    self.dir.display()
                ))
            })?;
        if let Some(tag) = &self.tag {
            manifests.retain(|m| {
                m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                    .and_then(|v| v.as_str())
                    != Some(tag)
            });
            descriptor.annotations = Some([(REF_NAME.to_string(), tag.clone())].into());
        } else {
            manifests
                .retain(|m| m.get("digest").and_then(|d| d.as_str()) != Some(&descriptor.digest));
        }
        let entry = serde_json::to_value(&descriptor)
            .map_err(|e| Error::Layout(format!("encoding the index entry: {e}")))?;
        manifests.push(entry);
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| Error::Layout(format!("encoding index.json: {e}")))?;
        cache::write_atomically(&self.dir.join("index.json"), &bytes, 0o644)?;
        cache::write_atomically(
            &self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
            0o644,
        )
    }
}

/// One side of a copy.
pub enum Endpoint<'a> {
    Registry {
        client: &'a RegistryClient,
        reference: Reference,
    },
    Layout(LayoutRef),
}

impl Endpoint<'_> {
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Registry { reference, .. } => reference.whole(),
            Endpoint::Layout(layout) => match &layout.tag {
                Some(tag) => format!("{}:{tag} (OCI layout)", layout.dir.display()),
                None => format!("{} (OCI layout)", layout.dir.display()),
            },
        }
    }

    /// Manifest bytes, media type and digest; `digest` None is the top one.
    async fn manifest(&self, digest: Option<&str>) -> Result<(Vec<u8>, String, String)> {
        let (bytes, digest) = match self {
            Endpoint::Registry { client, reference } => {
                let target = match digest {
                    Some(d) => reference.clone_with_digest(d.to_string()),
                    None => reference.clone(),
                };
                client.pull_manifest(&target).await?
            }
            Endpoint::Layout(layout) => {
                let digest = match digest {
                    Some(d) => d.to_string(),
                    None => layout.top_descriptor()?.digest,
                };
                (layout.read_blob(&digest)?, digest)
            }
        };
        let media_type = match manifest::parse(&bytes, None)? {
            Served::Image { media_type, .. } | Served::Index { media_type, .. } => media_type,
        };
        Ok((bytes, media_type, digest))
    }

    async fn blob(&self, descriptor: &OciDescriptor) -> Result<Vec<u8>> {
        match self {
            Endpoint::Registry { client, reference } => {
                client.pull_blob(reference, descriptor).await
            }
            Endpoint::Layout(layout) => layout.read_blob(&descriptor.digest),
        }
    }

    /// True when the blob is already there (checked before downloading it).
    async fn has_blob(&self, digest: &str) -> Result<bool> {
        match self {
            Endpoint::Registry { client, reference } => client.blob_exists(reference, digest).await,
            Endpoint::Layout(layout) => Ok(layout.read_blob(digest).is_ok()),
        }
    }

    async fn put_blob(&self, descriptor: &OciDescriptor, bytes: Vec<u8>) -> Result<bool> {
        match self {
            Endpoint::Registry { client, reference } => {
                client.copy_blob_in(reference, descriptor, bytes).await
            }
            Endpoint::Layout(layout) => layout.write_blob(&descriptor.digest, &bytes),
        }
    }

    /// Stores a manifest; `top` ones get the destination's tag.
    async fn put_manifest(
        &self,
        bytes: &[u8],
        media_type: &str,
        digest: &str,
        top: bool,
    ) -> Result<()> {
        match self {
            Endpoint::Registry { client, reference } => {
                let target = if top && reference.digest().is_none() {
                    reference.clone()
                } else {
                    reference.clone_with_digest(digest.to_string())
                };
                client.push_manifest(&target, media_type, bytes).await
            }
            Endpoint::Layout(layout) => {
                layout.write_blob(digest, bytes)?;
                if top {
                    layout.add_to_index(OciDescriptor {
                        media_type: media_type.to_string(),
                        digest: digest.to_string(),
                        size: bytes.len() as i64,
                        urls: None,
                        annotations: None,
                        artifact_type: None,
                    })?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub source: String,
    pub destination: String,
    pub manifest_digest: String,
    pub media_type: String,
    /// Manifests stored (an index counts with its children).
    pub manifests: usize,
    pub blobs_copied: usize,
    pub blobs_present: usize,
    pub bytes_copied: u64,
}

/// Copies the artifact `source` names to `destination`, byte for byte.
pub async fn copy(source: &Endpoint<'_>, destination: &Endpoint<'_>) -> Result<CopyReport> {
    if let Endpoint::Registry { client, reference } = source {
        client.authenticate(reference, false).await?;
    }
    let (bytes, media_type, digest) = source.manifest(None).await?;
    let mut report = CopyReport {
        source: source.describe(),
        destination: destination.describe(),
        manifest_digest: digest.clone(),
        media_type: media_type.clone(),
        manifests: 0,
        blobs_copied: 0,
        blobs_present: 0,
        bytes_copied: 0,
    };
    let children = match manifest::parse(&bytes, None)? {
        Served::Index { index, .. } => index.manifests.iter().map(|m| m.digest.clone()).collect(),
        Served::Image { .. } => Vec::new(),
    };
    for child in &children {
        let (child_bytes, child_type, child_digest) = source.manifest(Some(child)).await?;
        copy_image_blobs(source, destination, &child_bytes, &mut report).await?;
        destination
            .put_manifest(&child_bytes, &child_type, &child_digest, false)
            .await?;
        report.manifests += 1;
    }
    if children.is_empty() {
        copy_image_blobs(source, destination, &bytes, &mut report).await?;
    }
    destination
        .put_manifest(&bytes, &media_type, &digest, true)
        .await?;
    report.manifests += 1;
    Ok(report)
}

async fn copy_image_blobs(
    source: &Endpoint<'_>,
    destination: &Endpoint<'_>,
    manifest_bytes: &[u8],
    report: &mut CopyReport,
) -> Result<()> {
    let Served::Image { manifest, .. } = manifest::parse(manifest_bytes, None)? else {
        return Err(Error::Layout(
            "nested image indexes are not supported".into(),
        ));
    };
    let mut seen: Vec<&str> = Vec::new();
    for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if seen.contains(&descriptor.digest.as_str()) {
            continue;
        }
        seen.push(&descriptor.digest);
        if destination.has_blob(&descriptor.digest).await? {
            report.blobs_present += 1;
            continue;
        }
        let bytes = source.blob(descriptor).await?;
        let size = bytes.len() as u64;
        if destination.put_blob(descriptor, bytes).await? {
            report.blobs_copied += 1;
            report.bytes_copied += size;
        } else {
            report.blobs_present += 1;
        }
    }
    Ok(())
}

/// True when `text` names an existing directory (the `--oci-layout` side of a copy).
pub fn is_layout_dir(text: &str) -> bool {
    Path::new(&LayoutRef::parse(text).dir).is_dir()
}

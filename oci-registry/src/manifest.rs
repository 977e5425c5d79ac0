//! Manifests and descriptors: the media types the Wasm layouts use, canonical
//! manifest bytes (so identical inputs give identical digests), and parsing of
//! whatever a registry serves (OCI or Docker schema2 manifests, indexes).

use std::collections::BTreeMap;

pub use oci_client::manifest::{OciDescriptor, OciImageIndex, OciImageManifest};

use crate::errors::{Error, Result};
use crate::module::sha256_digest;

// The Wasm image spec (solo-io/wasm), which Istio's fetcher knows. oci-client's
// WASM_* constants are the older wasm-to-oci types, so they are spelt out here.
pub const WASM_IMAGE_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_IMAGE_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
// The CNCF TAG Runtime Wasm artifact.
pub const CNCF_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const CNCF_WASM_LAYER: &str = "application/wasm";

pub const OCI_MANIFEST: &str = oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
pub const OCI_INDEX: &str = oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE;
pub const OCI_IMAGE_CONFIG: &str = oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE;
pub const OCI_LAYER_TAR: &str = oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE;
pub const OCI_LAYER_TAR_GZIP: &str = oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;
pub const DOCKER_MANIFEST: &str = oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE;
pub const DOCKER_MANIFEST_LIST: &str = oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE;
pub const DOCKER_LAYER_TAR_GZIP: &str = oci_client::manifest::IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE;

/// What a pull asks the registry for.
pub const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
];

pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
pub const ANNOTATION_RUNTIME_TYPE: &str = "module.wasm.runtime/type";
pub const ANNOTATION_ABI_VERSION: &str = "module.wasm.runtime/abi_version";
pub const ANNOTATION_VARIANT: &str = "module.wasm.image/variant";

/// A blob to upload with the descriptor fields that go with it.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    /// Shared, so uploads and retries never copy the module.
    pub bytes: bytes::Bytes,
    pub annotations: BTreeMap<String, String>,
    digest: String,
}

impl Blob {
    pub fn new(media_type: &str, bytes: impl Into<bytes::Bytes>) -> Self {
        let bytes = bytes.into();
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
            annotations: BTreeMap::new(),
        }
    }

    /// A blob whose digest the caller already computed over these same bytes
    /// (the module, hashed once by [`crate::module::validate`]).
    pub(crate) fn with_digest(
        media_type: &str,
        bytes: impl Into<bytes::Bytes>,
        digest: &str,
    ) -> Self {
        Blob {
            media_type: media_type.to_string(),
            bytes: bytes.into(),
            annotations: BTreeMap::new(),
            digest: digest.to_string(),
        }
    }

    pub fn titled(mut self, title: &str) -> Self {
        self.annotations
            .insert(ANNOTATION_TITLE.to_string(), title.to_string());
        self
    }

    /// `sha256:<hex>`, computed once.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn descriptor(&self) -> OciDescriptor {
        OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as i64,
            urls: None,
            annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
            artifact_type: None,
        }
    }
}

/// An image manifest ready to push: its exact bytes define its digest.
#[derive(Debug, Clone)]
pub struct EncodedManifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl EncodedManifest {
    pub fn digest(&self) -> String {
        sha256_digest(&self.bytes)
    }
}

/// Serialises a manifest with its mediaType set (oci-client's builder leaves it unset).
pub fn encode(mut manifest: OciImageManifest, media_type: &str) -> Result<EncodedManifest> {
    manifest.media_type = Some(media_type.to_string());
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Layout(format!("cannot encode the manifest: {e}")))?;
    Ok(EncodedManifest {
        media_type: media_type.to_string(),
        bytes,
    })
}

/// A manifest as served by a registry.
#[derive(Debug, Clone)]
pub enum Served {
    Image {
        media_type: String,
        manifest: Box<OciImageManifest>,
    },
    Index {
        media_type: String,
        index: OciImageIndex,
    },
}

/// Parses manifest bytes; the mediaType field wins, then the Content-Type, then the shape.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Served> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Layout(format!("the manifest is not JSON: {e}")))?;
    let declared = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(String::from)
        .or_else(|| content_type.map(String::from));
    let is_index = match declared.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_MANIFEST_LIST) => true,
        Some(_) => false,
        None => value.get("manifests").is_some(),
    };
    if is_index {
        let index: OciImageIndex = serde_json::from_value(value)
            .map_err(|e| Error::Layout(format!("malformed image index: {e}")))?;
        return Ok(Served::Index {
            media_type: declared.unwrap_or_else(|| OCI_INDEX.to_string()),
            index,
        });
    }
    if value.get("schemaVersion").and_then(|v| v.as_i64()) == Some(1) {
        return Err(Error::Layout(
            "Docker schema1 manifests are not supported (re-push the image)".into(),
        ));
    }
    let manifest: OciImageManifest = serde_json::from_value(value)
        .map_err(|e| Error::Layout(format!("malformed image manifest: {e}")))?;
    for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if descriptor.size < 0 {
            return Err(Error::Layout(format!(
                "descriptor {} has a negative size",
                descriptor.digest
            )));
        }
    }
    Ok(Served::Image {
        media_type: declared.unwrap_or_else(|| OCI_MANIFEST.to_string()),
        manifest: Box::new(manifest),
    })
}

/// RFC 3339 UTC time for `seconds` since the Unix epoch (no leap seconds, as
/// in POSIX); None past 9999-12-31T23:59:59Z, where RFC 3339's four-digit
/// years end.
pub fn rfc3339(seconds: u64) -> Option<String> {
    use chrono::Datelike as _;
    let time = chrono::DateTime::from_timestamp(i64::try_from(seconds).ok()?, 0)?;
    (time.year() <= 9999).then(|| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(253_402_300_799).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800), None);
        assert_eq!(rfc3339(u64::MAX), None);
    }

    #[test]
    fn encoded_manifests_carry_their_media_type() {
        let config = Blob::new(WASM_IMAGE_CONFIG, b"{}".to_vec());
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: None,
            config: config.descriptor(),
            layers: vec![],
            subject: None,
            artifact_type: None,
            annotations: None,
        };
        let encoded = encode(manifest, OCI_MANIFEST).unwrap();
        let text = String::from_utf8(encoded.bytes.clone()).unwrap();
        assert!(text.contains(r#""mediaType":"application/vnd.oci.image.manifest.v1+json""#));
        match parse(&encoded.bytes, None).unwrap() {
            Served::Image { media_type, .. } => assert_eq!(media_type, OCI_MANIFEST),
            Served::Index { .. } => panic!("parsed as an index"),
        }
    }
}

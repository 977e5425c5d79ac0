//! Putting blobs and manifests: a HEAD for blobs not known to exist, a
//! cross-repository mount (OCI distribution spec, `POST
//! /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`) when publish has seen
//! the blob in another repository of the registry, else one upload session: a
//! blob up to `--chunk-size` goes in the closing PUT, a larger one as PATCH
//! chunks with the last chunk in the PUT. Every blob counts as stored only on
//! the registry's own word (200 to the HEAD, 201 to the mount or the PUT).

use futures_util::future::BoxFuture;
use oci_client::Reference;
use oci_client::errors::{OciDistributionError, Result as OciResult};
use reqwest::{StatusCode, header};

use super::RegistryClient;
use super::session::{pull_scope, push_scope, status_error};
use crate::errors::{Error, Result};
use crate::manifest::Blob;

/// How a blob came to be in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The registry already had it there.
    Present,
    /// Linked from another repository of the registry, no bytes sent.
    Mounted { from: String },
    /// Its bytes were sent.
    Uploaded,
}

impl RegistryClient {
    pub async fn blob_exists(&self, reference: &Reference, digest: &str) -> Result<bool> {
        let scope = pull_scope(reference);
        self.retry(&format!("checking for blob {digest}"), || {
            self.head_blob(reference, digest, &scope)
        })
        .await
    }

    async fn head_blob(&self, reference: &Reference, digest: &str, scope: &str) -> OciResult<bool> {
        let url = self.v2_url(reference, &format!("blobs/{digest}"));
        let response = self.send(scope, |http| http.head(&url)).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(response).await),
        }
    }

    /// Uploads a blob unless the registry has it (a HEAD first).
    pub async fn push_blob_if_missing(&self, reference: &Reference, blob: &Blob) -> Result<Stored> {
        self.put_blob(reference, blob, true).await
    }

    /// Stores a blob the caller knows the repository lacks: a mount when
    /// publish has seen it in another repository of this registry, else an upload.
    pub(super) async fn put_blob(
        &self,
        reference: &Reference,
        blob: &Blob,
        check_first: bool,
    ) -> Result<Stored> {
        let digest = blob.digest();
        let scope = push_scope(reference, None);
        let mut session = None;
        if let Some(from) = self.mount_source(reference, digest) {
            match self.try_mount(reference, digest, &from).await {
                Ok(MountAnswer::Mounted) => {
                    self.remember(reference, digest);
                    return Ok(Stored::Mounted { from });
                }
                Ok(MountAnswer::Session(location)) => session = Some(location),
                Ok(MountAnswer::Refused) => {}
                Err(error) => tracing::debug!(
                    registry = %self.registry,
                    "mounting {digest} from {from} failed ({}); uploading it",
                    super::diagnose::short(&error)
                ),
            }
            if let Some(locations) = &self.locations {
                locations.forget(&self.registry, digest, &from);
            }
        } else if check_first {
            let present = self
                .retry(&format!("checking for blob {digest}"), || {
                    self.head_blob(reference, digest, &scope)
                })
                .await?;
            if present {
                self.remember(reference, digest);
                return Ok(Stored::Present);
            }
        }
        self.upload(reference, blob, session).await?;
        self.remember(reference, digest);
        Ok(Stored::Uploaded)
    }

    /// The repository to mount `digest` from: one where publish saw it; none
    /// when it saw it in this one (a HEAD then finds it).
    fn mount_source(&self, reference: &Reference, digest: &str) -> Option<String> {
        let repositories = self
            .locations
            .as_ref()?
            .repositories(&self.registry, digest);
        if repositories.iter().any(|r| r == reference.repository()) {
            return None;
        }
        repositories.into_iter().next()
    }

    /// Notes that the registry holds `digest` in `reference`'s repository.
    pub(crate) fn remember(&self, reference: &Reference, digest: &str) {
        if let Some(locations) = &self.locations {
            locations.record(&self.registry, digest, reference.repository());
        }
    }

    async fn try_mount(
        &self,
        reference: &Reference,
        digest: &str,
        from: &str,
    ) -> OciResult<MountAnswer> {
        let mut url = url::Url::parse(&self.v2_url(reference, "blobs/uploads/"))
            .map_err(|e| OciDistributionError::UrlParseError(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let scope = push_scope(reference, Some(from));
        let response = self
            .send(&scope, |http| {
                http.post(url.clone()).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        tracing::debug!(registry = %self.registry, "mount {digest} from {from}: {}", response.status());
        Ok(match response.status() {
            StatusCode::CREATED => MountAnswer::Mounted,
            StatusCode::ACCEPTED => match self.location(&response) {
                Ok(location) => MountAnswer::Session(location),
                Err(_) => MountAnswer::Refused,
            },
            _ => MountAnswer::Refused,
        })
    }

    /// One upload session (the one a refused mount opened, first), retried whole.
    async fn upload(
        &self,
        reference: &Reference,
        blob: &Blob,
        session: Option<url::Url>,
    ) -> Result<()> {
        let digest = blob.digest();
        let progress = self.progress_bar(blob.bytes.len() as u64, digest);
        let opened = std::sync::Mutex::new(session);
        self.retry(&format!("uploading blob {digest}"), || {
            progress.set_position(0);
            let session = opened.lock().ok().and_then(|mut s| s.take());
            self.upload_once(reference, blob, session, &progress)
        })
        .await?;
        progress.finish_and_clear();
        Ok(())
    }

    fn upload_once<'a>(
        &'a self,
        reference: &'a Reference,
        blob: &'a Blob,
        session: Option<url::Url>,
        progress: &'a indicatif::ProgressBar,
    ) -> BoxFuture<'a, OciResult<()>> {
        Box::pin(async move {
            let scope = push_scope(reference, None);
            let mut location = match session {
                Some(location) => location,
                None => {
                    let url = self.v2_url(reference, "blobs/uploads/");
                    let response = self
                        .send(&scope, |http| {
                            http.post(&url).header(header::CONTENT_LENGTH, 0)
                        })
                        .await?;
                    if response.status() != StatusCode::ACCEPTED {
                        return Err(status_error(response).await);
                    }
                    self.location(&response)?
                }
            };
            let data = &blob.bytes;
            let chunk_size = if self.options.monolithic {
                data.len().max(1)
            } else {
                self.options.chunk_size.max(1)
            };
            let mut start = 0;
            // Every chunk but the last as a PATCH; the last rides in the PUT.
            while data.len() - start > chunk_size {
                let chunk = data.slice(start..start + chunk_size);
                let range = format!("{start}-{}", start + chunk.len() - 1);
                let response = self
                    .send(&scope, |http| {
                        http.patch(location.clone())
                            .header(header::CONTENT_TYPE, "application/octet-stream")
                            .header(header::CONTENT_RANGE, &range)
                            .body(chunk.clone())
                    })
                    .await?;
                if response.status() != StatusCode::ACCEPTED {
                    return Err(status_error(response).await);
                }
                location = self.location(&response)?;
                start += chunk_size;
                progress.inc(chunk_size as u64);
            }
            location
                .query_pairs_mut()
                .append_pair("digest", blob.digest());
            let last = data.slice(start..);
            let response = self
                .send(&scope, |http| {
                    http.put(location.clone())
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .body(last.clone())
                })
                .await?;
            if response.status() != StatusCode::CREATED {
                return Err(status_error(response).await);
            }
            progress.inc(last.len() as u64);
            Ok(())
        })
    }

    /// Puts the manifest's exact bytes under `reference` (a tag or a digest).
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let content_type = header::HeaderValue::from_str(media_type)
            .map_err(|e| Error::Layout(format!("media type {media_type:?}: {e}")))?;
        let body = bytes::Bytes::from(bytes.to_vec());
        let tag_or_digest = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let url = self.v2_url(reference, &format!("manifests/{tag_or_digest}"));
        let scope = push_scope(reference, None);
        self.retry(
            &format!("uploading the manifest for {reference}"),
            || async {
                let response = self
                    .send(&scope, |http| {
                        http.put(&url)
                            .header(header::CONTENT_TYPE, content_type.clone())
                            .body(body.clone())
                    })
                    .await?;
                if response.status() != StatusCode::CREATED {
                    return Err(status_error(response).await);
                }
                Ok(())
            },
        )
        .await
    }
}

enum MountAnswer {
    Mounted,
    /// Not mounted; the registry opened an upload session instead (spec: 202).
    Session(url::Url),
    Refused,
}

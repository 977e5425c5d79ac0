//! The registry client: oci-client's `Client` (token negotiation, manifests,
//! streaming digest checks on download) wrapped with what it lacks: retries
//! with backoff on 5xx/429/dropped connections, descriptor size checks on
//! download, exact manifest bytes, and error messages that say what to do
//! (never a bare 401). The push path (blob checks, mounts, uploads, manifest
//! PUTs) makes its own requests: see `session` and `upload`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};

mod diagnose;
mod session;
mod transport;
mod upload;

pub use upload::Stored;

use crate::auth::Credentials;
use crate::errors::{Error, Result};
use crate::manifest::{Blob, OciDescriptor};
use diagnose::{ConnectFailure, connect_failure, is_transient, short};

/// Transport settings shared by every command.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plain HTTP for this registry even when it is not a loopback address.
    pub plain_http: bool,
    /// Accept any TLS certificate.
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// One PUT per blob, however large (else blobs over `chunk_size` are chunked).
    pub monolithic: bool,
    /// Size of each PATCH in a chunked upload; smaller blobs go in one PUT.
    pub chunk_size: usize,
    /// Attempts after the first one for a request that failed transiently.
    pub retries: u32,
    /// First backoff delay; doubles each retry.
    pub backoff: Duration,
    pub timeout: Duration,
    /// Draw a progress bar for large blobs when stderr is a terminal.
    pub progress: bool,
    /// Where to remember which repositories hold each blob (see
    /// [`crate::cache::BlobLocations`]), so pushes can mount instead of upload.
    pub blob_locations: Option<PathBuf>,
    /// The program named at the start of retry lines on stderr.
    pub speaker: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            plain_http: false,
            insecure: false,
            ca_file: None,
            monolithic: false,
            chunk_size: 4 * 1024 * 1024,
            retries: 4,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(60),
            progress: true,
            blob_locations: None,
            speaker: "publish",
        }
    }
}

/// Blobs at least this large get a progress bar.
const PROGRESS_THRESHOLD: u64 = 1024 * 1024;

/// A client bound to one registry and one set of credentials.
pub struct RegistryClient {
    /// oci-client's client and the reqwest clients for the requests made
    /// here (the push path, manifest DELETE), built when first needed; their
    /// pools keep the connections open between requests.
    transport: transport::Transport,
    /// What the registry asked for so far (the push path authenticates lazily).
    authorization: tokio::sync::Mutex<session::Authorization>,
    locations: Option<crate::cache::BlobLocations>,
    /// The highest connection retry announced so far.
    connect_retries_said: AtomicU32,
    /// `http` or `https`, as oci-client chose for this registry.
    scheme: &'static str,
    registry: String,
    credentials: Credentials,
    auth: RegistryAuth,
    options: Options,
}

impl RegistryClient {
    pub fn new(registry: &str, credentials: Credentials, options: Options) -> Result<Self> {
        // Loopback registries speak plain HTTP unless TLS options say otherwise.
        let wants_tls = options.ca_file.is_some() || options.insecure;
        let plain = options.plain_http || (crate::reference::is_loopback(registry) && !wants_tls);
        let transport = transport::Transport::new(registry, plain, &options)?;
        let auth = credentials.to_registry_auth();
        Ok(RegistryClient {
            transport,
            scheme: if plain { "http" } else { "https" },
            registry: registry.to_string(),
            credentials,
            auth,
            authorization: Default::default(),
            connect_retries_said: AtomicU32::new(0),
            locations: options
                .blob_locations
                .clone()
                .map(crate::cache::BlobLocations::new),
            options,
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Negotiates access (a bearer token when the registry asks for one) so a
    /// refused login is reported before any transfer.
    pub async fn authenticate(&self, reference: &Reference, push: bool) -> Result<()> {
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let oci = self.transport.oci()?;
        self.retry("contacting the registry", || {
            oci.auth(reference, &self.auth, op)
        })
        .await
        .map(|_| ())
    }

    /// Checks that the credentials are accepted (what `login` does before saving them).
    pub async fn check_login(&self, reference: &Reference) -> Result<()> {
        self.authenticate(reference, false).await?;
        let probe = crate::module::sha256_digest(b"");
        let oci = self.transport.oci()?;
        self.retry("checking the credentials", || {
            oci.blob_exists(reference, &probe)
        })
        .await
        .map(|_| ())
    }

    /// The manifest's bytes and digest (checked against the reference's digest if it has one).
    pub async fn pull_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String)> {
        let oci = self.transport.oci()?;
        let (bytes, digest) = self
            .retry(&format!("fetching the manifest of {reference}"), || {
                oci.pull_manifest_raw(reference, &self.auth, crate::manifest::ACCEPTED_MANIFESTS)
            })
            .await?;
        Ok((bytes.to_vec(), digest))
    }

    /// Downloads a blob into memory, verifying its digest and its size; refuses
    /// more bytes than the descriptor announces.
    pub async fn pull_blob(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
    ) -> Result<Vec<u8>> {
        let expected = u64::try_from(descriptor.size).map_err(|_| {
            Error::Layout(format!(
                "descriptor {} has a negative size",
                descriptor.digest
            ))
        })?;
        let what = format!("blob {}", descriptor.digest);
        let oci = self.transport.oci()?;
        let progress = self.progress_bar(expected, &descriptor.digest);
        let result = self
            .retry(&format!("downloading {what}"), || async {
                progress.set_position(0);
                let mut sink = CappedBuffer::new(expected, progress.clone());
                oci.pull_blob(reference, descriptor, &mut sink).await?;
                Ok(sink)
            })
            .await;
        progress.finish_and_clear();
        let sink = match result {
            Ok(sink) => sink,
            Err(Error::Registry { detail, .. }) if detail.contains(CappedBuffer::OVERFLOW) => {
                return Err(Error::Size {
                    what,
                    expected,
                    actual: expected + 1,
                });
            }
            Err(other) => return Err(other),
        };
        if sink.bytes.len() as u64 != expected {
            return Err(Error::Size {
                what,
                expected,
                actual: sink.bytes.len() as u64,
            });
        }
        Ok(sink.bytes)
    }

    /// Every tag of the reference's repository, following the registry's pages.
    pub async fn list_tags(&self, reference: &Reference) -> Result<Vec<String>> {
        let oci = self.transport.oci()?;
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page = self
                .retry(
                    &format!("listing the tags of {}", reference.repository()),
                    || oci.list_tags(reference, &self.auth, Some(1000), last.as_deref()),
                )
                .await?;
            let before = tags.len();
            tags.extend(page.tags.into_iter().filter(|t| Some(t) != last.as_ref()));
            if tags.len() - before < 1000 {
                return Ok(tags);
            }
        }
    }

    /// Deletes the manifest `digest` names (registries delete by digest, which
    /// removes every tag pointing at it). oci-client has no DELETE, so this one
    /// request is made here, with the token oci-client negotiated.
    pub async fn delete_manifest(&self, reference: &Reference, digest: &str) -> Result<()> {
        let what = format!(
            "deleting the manifest {digest} of {}",
            reference.repository()
        );
        let oci = self.transport.oci()?;
        let token = self
            .retry("contacting the registry", || {
                oci.auth(reference, &self.auth, RegistryOperation::Push)
            })
            .await?;
        let url = format!(
            "{}://{}/v2/{}/manifests/{digest}",
            self.scheme,
            reference.resolve_registry(),
            reference.repository()
        );
        let parsed = url::Url::parse(&url)
            .map_err(|e| Error::Usage(format!("{what}: the URL {url} is not valid: {e}")))?;
        let mut request = self.transport.http_for(&parsed)?.delete(parsed);
        request = match (&token, &self.credentials) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Credentials::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            (None, Credentials::Token(token)) => request.bearer_auth(token),
            (None, Credentials::Anonymous) => request,
        };
        tracing::debug!(registry = %self.registry, "DELETE {url}");
        let response = request
            .send()
            .await
            .map_err(|e| self.explain(&what, OciDistributionError::RequestError(e), 0))?;
        let status = response.status();
        tracing::debug!(registry = %self.registry, "DELETE {url}: {status}");
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let detail = match status.as_u16() {
            404 => "not found; check the repository and digest".to_string(),
            405 => {
                "the registry does not allow deletes (distribution: storage.delete.enabled: true)"
                    .to_string()
            }
            401 | 403 => {
                return Err(Error::Auth {
                    registry: self.registry.clone(),
                    detail: format!("{what}: refused {} ({status})", self.credentials.describe()),
                    anonymous: matches!(self.credentials, Credentials::Anonymous),
                });
            }
            _ => format!(
                "the registry answered {status}: {}",
                body.lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        };
        Err(Error::Registry {
            what,
            registry: self.registry.clone(),
            detail,
        })
    }

    /// Stores raw bytes the repository lacks as a blob (mounted when publish
    /// saw it in another repository), checking they hash to `digest`; true
    /// when bytes were sent.
    pub async fn copy_blob_in(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
        bytes: Vec<u8>,
    ) -> Result<bool> {
        let blob = Blob::new(&descriptor.media_type, bytes);
        if blob.digest() != descriptor.digest {
            return Err(Error::Digest {
                what: format!("blob {}", descriptor.digest),
                expected: descriptor.digest.clone(),
                actual: blob.digest().to_string(),
            });
        }
        // The caller has checked the registry lacks it.
        let stored = self.put_blob(reference, &blob, false).await?;
        Ok(stored == Stored::Uploaded)
    }

    fn progress_bar(&self, size: u64, digest: &str) -> ProgressBar {
        use std::io::IsTerminal as _;
        if !self.options.progress || size < PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(size);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(digest.chars().take(19).collect::<String>());
        bar
    }

    /// Runs `attempt` until it succeeds, fails for good, or runs out of retries.
    async fn retry<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = oci_client::errors::Result<T>>,
    {
        let mut delay = self.options.backoff;
        let mut tries = 0;
        loop {
            tracing::debug!(registry = %self.registry, "{what}");
            let outcome = attempt().await;
            let error = match outcome {
                Ok(value) => {
                    tracing::debug!(registry = %self.registry, "{what}: done");
                    return Ok(value);
                }
                Err(error) => error,
            };
            tracing::debug!(registry = %self.registry, "{what}: {}", short(&error));
            let failure = connect_failure(&error);
            // Nothing listening, or no such host: a couple of quick retries
            // cover a registry that is starting; more would only delay the answer.
            let limit = match failure {
                Some(ConnectFailure::Refused) => self.options.retries.min(2),
                Some(ConnectFailure::Dns) => self.options.retries.min(1),
                Some(ConnectFailure::Tls) => 0,
                None => self.options.retries,
            };
            match error {
                error if tries < limit && is_transient(&error) => {
                    tries += 1;
                    // Concurrent requests to a registry that is down say so once per retry.
                    let first_to_say = self
                        .connect_retries_said
                        .fetch_max(tries, Ordering::Relaxed)
                        < tries;
                    match failure {
                        Some(_) if !first_to_say => {}
                        Some(kind) => eprintln!(
                            "{}: cannot connect to {} ({}), retry {tries}/{limit} in {} ms",
                            self.options.speaker,
                            self.registry,
                            kind.describe(),
                            delay.as_millis()
                        ),
                        None => eprintln!(
                            "{}: {what} failed ({}), retry {tries}/{limit} in {} ms",
                            self.options.speaker,
                            short(&error),
                            delay.as_millis()
                        ),
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                error => return Err(self.explain(what, error, tries)),
            }
        }
    }
}

/// An in-memory sink that refuses to grow past the size the descriptor announced.
struct CappedBuffer {
    bytes: Vec<u8>,
    limit: u64,
    progress: ProgressBar,
}

impl CappedBuffer {
    const OVERFLOW: &'static str = "blob larger than its descriptor size";

    fn new(limit: u64, progress: ProgressBar) -> Self {
        CappedBuffer {
            bytes: Vec::with_capacity(usize::try_from(limit.min(64 << 20)).unwrap_or(0)),
            limit,
            progress,
        }
    }
}

impl tokio::io::AsyncWrite for CappedBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.bytes.len() as u64 + buf.len() as u64 > self.limit {
            return Poll::Ready(Err(std::io::Error::other(Self::OVERFLOW)));
        }
        self.bytes.extend_from_slice(buf);
        self.progress.inc(buf.len() as u64);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

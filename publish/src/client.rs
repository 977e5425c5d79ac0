//! The registry client: oci-client's `Client` (token negotiation, uploads,
//! manifests, streaming digest checks) wrapped with what it lacks: a blob-exists
//! check before each upload, retries with backoff on 5xx/429/dropped
//! connections, descriptor size checks on download, exact manifest bytes, and
//! error messages that say what to do (never a bare 401).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};

use crate::auth::Credentials;
use crate::errors::{Error, Result};
use crate::manifest::{Blob, OciDescriptor};

/// Transport settings shared by every command.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plain HTTP for this registry even when it is not a loopback address.
    pub plain_http: bool,
    /// Accept any TLS certificate.
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// One PUT per blob instead of POST + PATCH chunks + PUT.
    pub monolithic: bool,
    /// Size of each PATCH in a chunked upload.
    pub chunk_size: usize,
    /// Attempts after the first one for a request that failed transiently.
    pub retries: u32,
    /// First backoff delay; doubles each retry.
    pub backoff: Duration,
    pub timeout: Duration,
    /// Draw a progress bar for large blobs when stderr is a terminal.
    pub progress: bool,
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
        }
    }
}

/// Blobs at least this large get a progress bar.
const PROGRESS_THRESHOLD: u64 = 1024 * 1024;

/// A client bound to one registry and one set of credentials.
pub struct RegistryClient {
    inner: oci_client::Client,
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
        let mut extra_root_certificates = Vec::new();
        if let Some(path) = &options.ca_file {
            let data = std::fs::read(path)
                .map_err(|e| Error::io(format!("reading the CA file {}", path.display()), e))?;
            let parsed = reqwest::Certificate::from_pem_bundle(&data).map_err(|e| {
                Error::Usage(format!(
                    "{}: not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            if parsed.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
                    path.display()
                )));
            }
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::HttpsExcept(vec![registry.to_string()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: options.insecure,
            use_monolithic_push: options.monolithic,
            extra_root_certificates,
            read_timeout: Some(options.timeout),
            connect_timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        let auth = credentials.to_registry_auth();
        // Not Client::new: it falls back to a default client on error, which
        // would silently drop a bad --ca-file.
        let inner = oci_client::Client::try_from(config).map_err(|e| {
            Error::Usage(format!("cannot set up the HTTP client for {registry}: {e}"))
        })?;
        Ok(RegistryClient {
            inner,
            registry: registry.to_string(),
            credentials,
            auth,
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
        self.retry("authenticating", || {
            self.inner.auth(reference, &self.auth, op)
        })
        .await
        .map(|_| ())
    }

    /// Checks that the credentials are accepted (what `login` does before saving them).
    pub async fn check_login(&self, reference: &Reference) -> Result<()> {
        self.authenticate(reference, false).await?;
        let probe = crate::module::sha256_digest(b"");
        self.retry("checking the credentials", || {
            self.inner.blob_exists(reference, &probe)
        })
        .await
        .map(|_| ())
    }

    pub async fn blob_exists(&self, reference: &Reference, digest: &str) -> Result<bool> {
        self.retry(&format!("checking for blob {digest}"), || {
            self.inner.blob_exists(reference, digest)
        })
        .await
    }

    /// Uploads a blob unless the registry has it; true when bytes were sent.
    pub async fn push_blob_if_missing(&self, reference: &Reference, blob: &Blob) -> Result<bool> {
        let digest = blob.digest();
        if self.blob_exists(reference, digest).await? {
            return Ok(false);
        }
        let data = blob.bytes.clone();
        let size = data.len() as u64;
        let progress = self.progress_bar(size, digest);
        let chunk_size = self.options.chunk_size.max(1);
        self.retry(&format!("uploading blob {digest}"), || {
            progress.set_position(0);
            let chunks: Vec<bytes::Bytes> = (0..data.len())
                .step_by(chunk_size)
                .map(|start| data.slice(start..(start + chunk_size).min(data.len())))
                .collect();
            let bar = progress.clone();
            let stream = futures_util::stream::iter(chunks).map(move |chunk| {
                bar.inc(chunk.len() as u64);
                Ok(chunk)
            });
            self.inner
                .push_blob_stream(reference, stream, digest, Some(size))
        })
        .await?;
        progress.finish_and_clear();
        Ok(true)
    }

    /// Puts the manifest's exact bytes under `reference` (a tag or a digest).
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let content_type = reqwest::header::HeaderValue::from_str(media_type)
            .map_err(|e| Error::Layout(format!("media type {media_type:?}: {e}")))?;
        let body = bytes::Bytes::from(bytes.to_vec());
        self.retry(&format!("uploading the manifest for {reference}"), || {
            self.inner
                .push_manifest_raw(reference, body.clone(), content_type.clone())
        })
        .await
        .map(|_| ())
    }

    /// The manifest's bytes and digest (checked against the reference's digest if it has one).
    pub async fn pull_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String)> {
        let (bytes, digest) = self
            .retry(&format!("fetching the manifest of {reference}"), || {
                self.inner.pull_manifest_raw(
                    reference,
                    &self.auth,
                    crate::manifest::ACCEPTED_MANIFESTS,
                )
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
        let progress = self.progress_bar(expected, &descriptor.digest);
        let result = self
            .retry(&format!("downloading {what}"), || async {
                progress.set_position(0);
                let mut sink = CappedBuffer::new(expected, progress.clone());
                self.inner
                    .pull_blob(reference, descriptor, &mut sink)
                    .await?;
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
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if tries < self.options.retries && is_transient(&error) => {
                    tries += 1;
                    eprintln!(
                        "publish: {what} failed ({}), retry {tries}/{} in {} ms",
                        short(&error),
                        self.options.retries,
                        delay.as_millis()
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(error) => return Err(self.explain(what, error, tries)),
            }
        }
    }

    /// Turns an oci-client error into one that says what failed and what to do.
    fn explain(&self, what: &str, error: OciDistributionError, retries: u32) -> Error {
        if let OciDistributionError::DigestError(
            oci_client::errors::DigestError::VerificationError { expected, actual },
        ) = &error
        {
            return Error::Digest {
                what: what.to_string(),
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
        let status = http_status(&error);
        if matches!(error, OciDistributionError::AuthenticationFailure(_))
            || matches!(status, Some(401) | Some(403))
        {
            let detail = match (&self.credentials, status) {
                (Credentials::Anonymous, _) => format!(
                    "{what}: the registry requires credentials and none are configured for {}",
                    self.registry
                ),
                (_, Some(403)) => format!(
                    "{what}: access denied {} (the account lacks permission for this repository)",
                    self.credentials.describe()
                ),
                _ => format!(
                    "{what}: the registry refused the credentials {}",
                    self.credentials.describe()
                ),
            };
            return Error::Auth {
                registry: self.registry.clone(),
                detail,
                anonymous: matches!(self.credentials, Credentials::Anonymous),
            };
        }
        let mut detail = short(&error);
        if let OciDistributionError::RegistryError { envelope, .. } = &error {
            let missing = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            });
            let messages: Vec<String> = envelope.errors.iter().map(|e| e.message.clone()).collect();
            detail = if missing {
                format!(
                    "not found ({}); check the repository and tag",
                    messages.join("; ")
                )
            } else {
                format!("the registry answered: {}", messages.join("; "))
            };
        }
        if retries > 0 {
            detail.push_str(&format!(" (after {retries} retries)"));
        }
        if let OciDistributionError::RequestError(e) = &error {
            if e.is_connect() && connection_failed(e) {
                detail.push_str(&format!("; is the registry running at {}?", self.registry));
            } else if e.is_connect() {
                detail.push_str(
                    "; the TLS handshake failed: use --plain-http if the registry speaks plain HTTP, \
                     --ca-file for a private CA",
                );
            }
        }
        Error::Registry {
            what: what.to_string(),
            registry: self.registry.clone(),
            detail,
        }
    }
}

fn http_status(error: &OciDistributionError) -> Option<u16> {
    match error {
        OciDistributionError::RequestError(e) => e.status().map(|s| s.as_u16()),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                OciErrorCode::Unauthorized => Some(401),
                OciErrorCode::Denied => Some(403),
                OciErrorCode::Toomanyrequests => Some(429),
                _ => None,
            })
        }
        _ => None,
    }
}

/// 5xx, 429 and transport failures (refused or dropped connections, timeouts).
fn is_transient(error: &OciDistributionError) -> bool {
    if let Some(status) = http_status(error) {
        return status >= 500 || status == 429;
    }
    match error {
        // A TLS failure is a connect error too, but retrying cannot fix it.
        OciDistributionError::RequestError(e) if e.is_connect() => connection_failed(e),
        OciDistributionError::RequestError(e) => {
            e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
        }
        OciDistributionError::IoError(e) => !e.to_string().contains(CappedBuffer::OVERFLOW),
        _ => false,
    }
}

/// The connection was refused, reset or timed out (not a TLS or protocol failure).
fn connection_failed(error: &reqwest::Error) -> bool {
    use std::io::ErrorKind as K;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::TimedOut
                    | K::BrokenPipe
                    | K::NotConnected
                    | K::UnexpectedEof
                    | K::AddrNotAvailable
            );
        }
        source = cause.source();
    }
    error.is_timeout()
}

/// One line, without the HTML bodies some proxies return.
fn short(error: &OciDistributionError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let line: String = text.lines().take(3).collect::<Vec<_>>().join(" ");
    if line.len() > 400 {
        format!("{}...", line.chars().take(400).collect::<String>())
    } else {
        line
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

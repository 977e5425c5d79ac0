//! The HTTP clients a [`super::RegistryClient`] may need, each built on its
//! first use. Building one with TLS loads the system's root certificates
//! (every file of /etc/ssl/certs, about 15 ms), and oci-client's client
//! builds two such reqwest clients of its own: a push to a plain-HTTP
//! registry needs none of them, a push over TLS only the one for its own
//! requests, and only pulls, tag lists and logins use oci-client.

use std::sync::OnceLock;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};

use super::Options;
use crate::errors::{Error, Result};

pub(super) struct Transport {
    registry: String,
    plain: bool,
    insecure: bool,
    monolithic: bool,
    timeout: Duration,
    /// The `--ca-file` bundle, read and parsed up front so a bad one is
    /// refused before anything else happens.
    ca_pem: Option<Vec<u8>>,
    ca_certificates: Vec<reqwest::Certificate>,
    /// For https URLs: the system roots, the CA file, `--insecure`.
    tls: OnceLock<reqwest::Client>,
    /// For http URLs: trusts no certificate, so loads none.
    plain_only: OnceLock<reqwest::Client>,
    oci: OnceLock<oci_client::Client>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Transport {
    pub(super) fn new(registry: &str, plain: bool, options: &Options) -> Result<Transport> {
        let mut ca_pem = None;
        let mut ca_certificates = Vec::new();
        if let Some(path) = &options.ca_file {
            let data = std::fs::read(path)
                .map_err(|e| Error::io(format!("reading the CA file {}", path.display()), e))?;
            ca_certificates = reqwest::Certificate::from_pem_bundle(&data).map_err(|e| {
                Error::Usage(format!(
                    "{}: not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            if ca_certificates.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
                    path.display()
                )));
            }
            ca_pem = Some(data);
        }
        Ok(Transport {
            registry: registry.to_string(),
            plain,
            insecure: options.insecure,
            monolithic: options.monolithic,
            timeout: options.timeout,
            ca_pem,
            ca_certificates,
            tls: OnceLock::new(),
            plain_only: OnceLock::new(),
            oci: OnceLock::new(),
        })
    }

    /// The client for a request to `url`: one with TLS roots only for https.
    pub(super) fn http_for(&self, url: &url::Url) -> Result<&reqwest::Client> {
        self.http_for_scheme(url.scheme())
    }

    pub(super) fn http_for_scheme(&self, scheme: &str) -> Result<&reqwest::Client> {
        if scheme == "http" {
            return built(&self.plain_only, || {
                self.finish(self.builder().tls_certs_only(Vec::new()))
            });
        }
        built(&self.tls, || {
            let mut builder = self.builder().danger_accept_invalid_certs(self.insecure);
            for certificate in &self.ca_certificates {
                builder = builder.add_root_certificate(certificate.clone());
            }
            self.finish(builder)
        })
    }

    /// oci-client's client, configured like ours.
    pub(super) fn oci(&self) -> Result<&oci_client::Client> {
        built(&self.oci, || {
            let config = ClientConfig {
                protocol: if self.plain {
                    ClientProtocol::HttpsExcept(vec![self.registry.clone()])
                } else {
                    ClientProtocol::Https
                },
                accept_invalid_certificates: self.insecure,
                use_monolithic_push: self.monolithic,
                extra_root_certificates: self
                    .ca_pem
                    .iter()
                    .map(|data| Certificate {
                        encoding: CertificateEncoding::Pem,
                        data: data.clone(),
                    })
                    .collect(),
                read_timeout: Some(self.timeout),
                connect_timeout: Some(CONNECT_TIMEOUT),
                ..Default::default()
            };
            // Not Client::new: it falls back to a default client on error,
            // which would silently drop a bad --ca-file.
            oci_client::Client::try_from(config).map_err(|e| self.cannot_set_up(e))
        })
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .read_timeout(self.timeout)
            .connect_timeout(CONNECT_TIMEOUT)
    }

    fn finish(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::Client> {
        builder.build().map_err(|e| self.cannot_set_up(e))
    }

    fn cannot_set_up(&self, error: impl std::fmt::Display) -> Error {
        Error::Usage(format!(
            "cannot set up the HTTP client for {}: {error}",
            self.registry
        ))
    }
}

/// The value in `cell`, built by `build` the first time.
fn built<T>(cell: &OnceLock<T>, build: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = build()?;
    Ok(cell.get_or_init(|| value))
}

#[cfg(test)]
mod tests {
    use super::Transport;
    use crate::client::Options;

    #[test]
    fn a_plain_http_request_builds_no_tls_client_and_no_oci_client() {
        let transport = Transport::new("127.0.0.1:5000", true, &Options::default()).unwrap();
        let url = url::Url::parse("http://127.0.0.1:5000/v2/").unwrap();
        let first: *const reqwest::Client = transport.http_for(&url).unwrap();
        let again: *const reqwest::Client = transport.http_for(&url).unwrap();
        assert_eq!(first, again, "the plain client was built twice");
        assert!(transport.tls.get().is_none(), "TLS roots were loaded");
        assert!(
            transport.oci.get().is_none(),
            "oci-client's client was built"
        );
    }

    #[test]
    fn an_https_url_gets_the_tls_client_and_oci_client_is_built_on_demand() {
        let transport = Transport::new("127.0.0.1:5000", true, &Options::default()).unwrap();
        let realm = url::Url::parse("https://auth.example/token").unwrap();
        transport.http_for(&realm).unwrap();
        assert!(transport.tls.get().is_some());
        assert!(transport.plain_only.get().is_none());
        transport.oci().unwrap();
        assert!(transport.oci.get().is_some());
    }

    #[test]
    fn a_bad_ca_file_is_refused_when_the_client_is_made_not_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let options = Options {
            ca_file: Some(path),
            ..Options::default()
        };
        let error = Transport::new("registry.example", false, &options)
            .err()
            .unwrap();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }
}

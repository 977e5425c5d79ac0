//! An oci:// plugin pulled as Istio's agent does (pkg/wasm: the image fetcher
//! and its cache): through oci-registry (manifest and blob digests checked,
//! `sha256` compared with the manifest digest), kept in the blob cache so
//! `IfNotPresent` starts without the registry. Built with the `oci` feature.

use std::path::PathBuf;

use oci_registry::cache::{BlobCache, write_atomically};
use oci_registry::module::sha256_digest;
use oci_registry::reference::Reference;
use oci_registry::{Error as OciError, Options, RegistryClient, auth};
use serde::{Deserialize, Serialize};

use super::fetch::Fetched;
use super::spec::{PluginSpec, PullPolicy};

/// What a pull resolved to, remembered under the cache root so a later
/// IfNotPresent start needs no registry.
#[derive(Serialize, Deserialize)]
struct Remembered {
    reference: String,
    manifest_digest: String,
    module_digest: String,
}

/// Pulls share one runtime and one cache.
pub(crate) struct Puller {
    runtime: tokio::runtime::Runtime,
    cache: Option<BlobCache>,
    root: Option<PathBuf>,
}

impl Puller {
    pub fn new() -> Result<Puller, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime that pulls images: {e}"))?;
        let root = BlobCache::default_root();
        Ok(Puller {
            runtime,
            cache: root.clone().map(BlobCache::new),
            root,
        })
    }

    pub fn image(&self, plugin: &PluginSpec, text: &str) -> Result<Fetched, String> {
        let reference =
            oci_registry::reference::parse(text).map_err(|e| format!("spec.url: {e}"))?;
        let policy = plugin
            .pull_policy
            .unwrap_or_else(|| default_policy(&plugin.url));
        let pin = plugin.sha256.as_ref().map(|hex| format!("sha256:{hex}"));
        // Pinned content (sha256, or a digest in the url) is taken from the
        // cache whatever the policy, as istio-agent's cache does: Always only
        // makes a tag be resolved again.
        let pinned = pin.is_some() || reference.digest().is_some();
        let key = pin.clone().unwrap_or_else(|| reference.whole());
        if (policy == PullPolicy::IfNotPresent || pinned)
            && let Some((remembered, bytes)) = self.cached(&key)
        {
            return Ok(Fetched {
                bytes,
                origin: origin(plugin, &remembered, policy, true),
            });
        }
        let bytes_and_report = self.runtime.block_on(async {
            let registry = reference.resolve_registry().to_string();
            let credentials = auth::from_docker_config(&registry)?;
            let options = Options {
                progress: false,
                speaker: "harness serve",
                ..Options::default()
            };
            let client = RegistryClient::new(&registry, credentials, options)?;
            oci_registry::fetch_module(&client, &reference, pin.as_deref(), self.cache.as_ref())
                .await
        });
        let (report, bytes) = bytes_and_report.map_err(|e| pull_error(plugin, &reference, e))?;
        let remembered = Remembered {
            reference: reference.whole(),
            manifest_digest: report.manifest_digest.clone(),
            module_digest: report.module_digest.clone(),
        };
        self.remember(
            &[key, reference.whole(), remembered.manifest_digest.clone()],
            &remembered,
            &bytes,
        );
        Ok(Fetched {
            bytes,
            origin: origin(plugin, &remembered, policy, false),
        })
    }

    fn index_path(&self, key: &str) -> Option<PathBuf> {
        let root = self.root.as_ref()?;
        Some(
            root.join("wasmplugin")
                .join(&sha256_digest(key.as_bytes())["sha256:".len()..]),
        )
    }

    /// The module an earlier pull of `key` (a pinned digest or a reference) got.
    fn cached(&self, key: &str) -> Option<(Remembered, Vec<u8>)> {
        let text = std::fs::read(self.index_path(key)?).ok()?;
        let remembered: Remembered = serde_json::from_slice(&text).ok()?;
        let path = self
            .root
            .as_ref()?
            .join("blobs/sha256")
            .join(remembered.module_digest.strip_prefix("sha256:")?);
        let size = std::fs::metadata(path).ok()?.len();
        // get() checks the digest again and drops a damaged entry.
        let bytes = self.cache.as_ref()?.get(&remembered.module_digest, size)?;
        Some((remembered, bytes))
    }

    /// Best effort: a cache that cannot be written only costs a pull next time.
    fn remember(&self, keys: &[String], remembered: &Remembered, module: &[u8]) {
        let Some(cache) = &self.cache else { return };
        if let Err(e) = cache.put(&remembered.module_digest, module) {
            eprintln!("harness serve: warning: cannot cache the module: {e}");
            return;
        }
        let Ok(text) = serde_json::to_vec(remembered) else {
            return;
        };
        for key in keys {
            if let Some(path) = self.index_path(key)
                && let Err(e) = write_atomically(&path, &text, 0o644)
            {
                eprintln!("harness serve: warning: cannot remember the pull of {key}: {e}");
            }
        }
    }
}

/// Istio's default (pkg/wasm/cache.go, pullIfNotPresent): Always when the
/// url ends in `:latest`, IfNotPresent otherwise (a url without a tag too).
fn default_policy(url: &str) -> PullPolicy {
    if url.ends_with(":latest") {
        PullPolicy::Always
    } else {
        PullPolicy::IfNotPresent
    }
}

fn pull_error(plugin: &PluginSpec, reference: &Reference, error: OciError) -> String {
    match error {
        OciError::PinMismatch { actual, .. } => format!(
            "spec.sha256 is {} but the manifest of {} is {actual}; for oci:// Istio compares the \
             manifest digest (`publish push` prints it as wasmplugin_sha256, `publish inspect` shows it)",
            plugin.sha256.as_deref().unwrap_or_default(),
            reference.whole()
        ),
        other => format!("cannot pull {}: {other}", plugin.url),
    }
}

fn origin(
    plugin: &PluginSpec,
    remembered: &Remembered,
    policy: PullPolicy,
    from_cache: bool,
) -> serde_json::Value {
    serde_json::json!({
        "url": plugin.url,
        "reference": remembered.reference,
        "manifest_digest": remembered.manifest_digest,
        "module_sha256": remembered.module_digest,
        "image_pull_policy": match policy {
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
        },
        "from_cache": from_cache,
    })
}

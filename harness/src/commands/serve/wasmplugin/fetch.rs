//! A plugin's module bytes: an oci:// image pulled as Istio's agent does
//! (`pull.rs`, with the `oci` feature), or a local file read and, when
//! `sha256` is given, checked against the module's own SHA-256 (the check
//! Istio makes for http(s):// modules).

use std::path::Path;

use harness::backend::CodeHash;

use super::spec::{PluginSpec, Source};

/// The module and where it came from (for `/config_dump` and log lines).
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub origin: serde_json::Value,
}

/// Fetches every plugin of one serve start.
pub(crate) struct Fetcher {
    #[cfg(feature = "oci")]
    puller: super::pull::Puller,
}

impl Fetcher {
    pub fn new() -> Result<Fetcher, String> {
        Ok(Fetcher {
            #[cfg(feature = "oci")]
            puller: super::pull::Puller::new()?,
        })
    }

    pub fn fetch(&self, plugin: &PluginSpec) -> Result<Fetched, String> {
        match &plugin.source {
            Source::File(path) => local(plugin, Path::new(path)),
            #[cfg(feature = "oci")]
            Source::Oci(text) => self.puller.image(plugin, text),
            #[cfg(not(feature = "oci"))]
            Source::Oci(_) => Err(format!(
                "spec.url {} is an OCI image, and this harness was built without OCI pulls \
                 (`make demo` builds it lean); `cargo build -p harness` builds it with them \
                 (the default `oci` feature), or point spec.url at a module file",
                plugin.url
            )),
        }
    }
}

fn local(plugin: &PluginSpec, path: &Path) -> Result<Fetched, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "spec.url: cannot read the module {}: {e} (a relative path is from the directory serve runs in)",
            path.display()
        )
    })?;
    let digest = format!("sha256:{}", CodeHash::of(&bytes).hex());
    if let Some(wanted) = &plugin.sha256
        && digest != format!("sha256:{wanted}")
    {
        return Err(format!(
            "spec.sha256 is {wanted} but the module {} has SHA-256 {}; for a module file the \
             sha256 is the file's own (sha256sum prints it)",
            path.display(),
            digest.trim_start_matches("sha256:")
        ));
    }
    Ok(Fetched {
        bytes,
        origin: serde_json::json!({
            "url": plugin.url,
            "file": path.display().to_string(),
            "module_sha256": digest,
        }),
    })
}

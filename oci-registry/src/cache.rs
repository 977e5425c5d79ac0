//! A local store of verified blobs, addressed by digest, so a pull of content
//! already fetched downloads nothing; and the one atomic file writer used for
//! every file this tool creates (never a partial file on disk).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};
use crate::module::sha256_digest;

/// Writes `bytes` to `path` through a temporary file in the same directory and a
/// rename, so readers see the old file or the whole new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    write_file(path, bytes, mode, true)
}

/// [`write_atomically`], with `durable` false skipping the fsync (for hints
/// whose loss costs only time).
fn write_file(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut file = tempfile::Builder::new()
        .prefix(".publish-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))?;
    }
    file.write_all(bytes)
        .and_then(|()| {
            if durable {
                file.as_file().sync_all()
            } else {
                Ok(())
            }
        })
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    file.persist(path).map_err(|e| {
        Error::io(
            format!("moving the new file to {}", path.display()),
            e.error,
        )
    })?;
    Ok(())
}

/// Blobs stored under `<root>/blobs/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    pub fn new(root: PathBuf) -> Self {
        BlobCache { root }
    }

    /// $PUBLISH_CACHE_DIR, else $XDG_CACHE_HOME/publish-wasm, else ~/.cache/publish-wasm.
    pub fn default_root() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PUBLISH_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(Path::new(&dir).join("publish-wasm"));
        }
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/publish-wasm"))
    }

    fn path_for(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.root.join("blobs/sha256").join(hex))
    }

    /// The cached blob if present and still matching digest and size; a damaged
    /// entry is removed and reported as absent.
    pub fn get(&self, digest: &str, size: u64) -> Option<Vec<u8>> {
        let path = self.path_for(digest)?;
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() as u64 == size && sha256_digest(&bytes) == digest {
            Some(bytes)
        } else {
            // Best effort: a stale entry only costs a download.
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Stores verified bytes; the caller has checked the digest.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let Some(path) = self.path_for(digest) else {
            return Ok(());
        };
        write_atomically(&path, bytes, 0o644)
    }
}

/// Where publish has seen each blob on each registry (pushed, mounted or
/// pulled), like skopeo's blob-info cache: `<root>/<registry>/<hex>` lists
/// repositories, most recent first, so a push to another repository of the
/// same registry can mount the blob instead of uploading it. Only hints: a
/// wrong one costs one refused mount, and losing the files costs uploads.
#[derive(Debug, Clone)]
pub struct BlobLocations {
    root: PathBuf,
}

/// Repositories remembered per blob and registry.
const LOCATIONS_PER_BLOB: usize = 4;

impl BlobLocations {
    pub fn new(root: PathBuf) -> Self {
        BlobLocations { root }
    }

    fn path_for(&self, registry: &str, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        let safe = |text: &str| {
            !text.is_empty()
                && !text.starts_with('.')
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:_[]".contains(&b))
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || !safe(registry) {
            return None;
        }
        Some(self.root.join(registry).join(hex))
    }

    /// Repositories of `registry` that held `digest`, most recent first.
    pub fn repositories(&self, registry: &str, digest: &str) -> Vec<String> {
        self.path_for(registry, digest)
            .and_then(|path| std::fs::read_to_string(path).ok())
            .map(|text| {
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Notes `repository` as the latest place of `digest` (best effort).
    pub fn record(&self, registry: &str, digest: &str, repository: &str) {
        let mut repositories = self.repositories(registry, digest);
        if repositories.first().map(String::as_str) == Some(repository) {
            return;
        }
        repositories.retain(|r| r != repository);
        repositories.insert(0, repository.to_string());
        repositories.truncate(LOCATIONS_PER_BLOB);
        self.store(registry, digest, &repositories);
    }

    /// Drops `repository` after the registry would not mount from it.
    pub fn forget(&self, registry: &str, digest: &str, repository: &str) {
        let mut repositories = self.repositories(registry, digest);
        let before = repositories.len();
        repositories.retain(|r| r != repository);
        if repositories.len() != before {
            self.store(registry, digest, &repositories);
        }
    }

    fn store(&self, registry: &str, digest: &str, repositories: &[String]) {
        let Some(path) = self.path_for(registry, digest) else {
            return;
        };
        let mut text = repositories.join("\n");
        text.push('\n');
        if let Err(error) = write_file(&path, text.as_bytes(), 0o644, false) {
            tracing::debug!("not remembering where {digest} is: {error}");
        }
    }
}

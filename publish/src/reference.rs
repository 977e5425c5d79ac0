//! Image references as users type them: `host[:port]/repo[:tag][,tag2...]` or
//! `host/repo@sha256:...`, with an optional `oci://` prefix.

use crate::errors::{Error, Result};
pub use oci_client::Reference;

/// Parses one reference (no tag list).
pub fn parse(text: &str) -> Result<Reference> {
    let trimmed = text.strip_prefix("oci://").unwrap_or(text);
    if !trimmed.contains('/') {
        return Err(Error::Reference {
            reference: text.to_string(),
            reason: "name the registry host and the repository, e.g. localhost:5000/filters/my-filter:v1".into(),
        });
    }
    trimmed.parse::<Reference>().map_err(|e| Error::Reference {
        reference: text.to_string(),
        reason: e.to_string(),
    })
}

/// Parses `host/repo:tag1,tag2,...` into one reference per tag; the first is
/// the primary one that the manifest is uploaded to first.
pub fn parse_with_tags(text: &str) -> Result<Vec<Reference>> {
    let trimmed = text.strip_prefix("oci://").unwrap_or(text);
    // The tag list starts after the last ':' that follows the last '/'.
    let slash = trimmed.rfind('/').unwrap_or(0);
    let (name, tags) = match trimmed[slash..].find(':') {
        Some(colon) if !trimmed.contains('@') => {
            let at = slash + colon;
            (&trimmed[..at], Some(&trimmed[at + 1..]))
        }
        _ => (trimmed, None),
    };
    match tags {
        None => Ok(vec![parse(text)?]),
        Some(list) => list
            .split(',')
            .map(|tag| {
                if tag.is_empty() {
                    return Err(Error::Reference {
                        reference: text.to_string(),
                        reason: "empty tag in the tag list".into(),
                    });
                }
                parse(&format!("{name}:{tag}"))
            })
            .collect(),
    }
}

/// Registries reached over plain HTTP without asking: the loopback names.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// `oci://host/repo@sha256:...`, the form WasmPlugin.url takes.
pub fn pinned_url(reference: &Reference, manifest_digest: &str) -> String {
    format!(
        "oci://{}/{}@{}",
        reference.resolve_registry(),
        reference.repository(),
        manifest_digest
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_expand_to_one_reference_per_tag() {
        let refs = parse_with_tags("localhost:5000/filters/hdr:v1,latest").unwrap();
        let tags: Vec<_> = refs.iter().map(|r| r.tag().unwrap().to_string()).collect();
        assert_eq!(tags, ["v1", "latest"]);
        assert_eq!(refs[0].registry(), "localhost:5000");
        assert_eq!(refs[1].repository(), "filters/hdr");
    }

    #[test]
    fn registry_port_is_not_a_tag() {
        let refs = parse_with_tags("oci://127.0.0.1:5000/hdr").unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].registry(), "127.0.0.1:5000");
        assert_eq!(refs[0].tag(), Some("latest"));
    }

    #[test]
    fn references_without_a_registry_are_refused() {
        assert!(parse("hdr:v1").is_err());
        assert!(parse_with_tags("localhost:5000/hdr:v1,").is_err());
    }

    #[test]
    fn loopback_hosts_use_plain_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:41234"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
    }
}

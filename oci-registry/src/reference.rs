//! Image references as users type them: `host[:port]/repo[:tag][,tag2...]` or
//! `host/repo@sha256:...`, with an optional `oci://` prefix.

use crate::errors::{Error, Result};
pub use oci_client::Reference;

/// Parses one reference (no tag list). The grammar is checked by hand:
/// oci-client's parser compiles a large regex on first use, which cost about
/// 40 ms of every short command.
pub fn parse(text: &str) -> Result<Reference> {
    let refuse = |reason: &str| Error::Reference {
        reference: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.strip_prefix("oci://").unwrap_or(text);
    let (name, digest) = match trimmed.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (trimmed, None),
    };
    let Some((registry, path)) = name.split_once('/') else {
        return Err(refuse(
            "name the registry host and the repository, e.g. localhost:5000/filters/my-filter:v1",
        ));
    };
    if !is_registry(registry) {
        return Err(refuse(&format!(
            "{registry:?} is not a registry host (host[:port]); name it explicitly, e.g. docker.io/library/x"
        )));
    }
    let last_slash = path.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repository, tag) = match path[last_slash..].find(':') {
        Some(colon) => (
            &path[..last_slash + colon],
            Some(&path[last_slash + colon + 1..]),
        ),
        None => (path, None),
    };
    if !repository.split('/').all(is_path_component) {
        return Err(refuse(&format!(
            "repository {repository:?} must be lowercase letters and digits, separated by '/', '.', '_' or '-'"
        )));
    }
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return Err(refuse(&format!(
            "tag {tag:?} must be 1 to 128 of letters, digits, '_', '.', '-', not starting with '.' or '-'"
        )));
    }
    let (registry, repository) = (registry.to_string(), repository.to_string());
    Ok(match (tag, digest) {
        (_, Some(digest)) => {
            if !is_digest(digest) {
                return Err(refuse(&format!(
                    "digest {digest:?} is not sha256:<64 hex digits>"
                )));
            }
            match tag {
                Some(tag) => {
                    Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into())
                }
                None => Reference::with_digest(registry, repository, digest.into()),
            }
        }
        (Some(tag), None) => Reference::with_tag(registry, repository, tag.into()),
        (None, None) => Reference::with_tag(registry, repository, "latest".into()),
    })
}

fn is_registry(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) => {
                if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                ("v6", port.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    // A bare word like "library" is a repository, not a host (Docker's rule).
    let looks_like_host =
        name.contains('.') || port.is_some() || name == "localhost" || name == "v6";
    port_ok && labels_ok && looks_like_host
}

fn is_path_component(component: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or runs of '-'.
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
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
    fn the_grammar_is_checked() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = parse(&format!(
            "oci://registry.example.com:5000/a/b-c__d.e@{digest}"
        ))
        .unwrap();
        assert_eq!(pinned.digest(), Some(digest.as_str()));
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.repository(), "a/b-c__d.e");
        let both = parse(&format!("localhost/x:v1@{digest}")).unwrap();
        assert_eq!(
            (both.tag(), both.digest()),
            (Some("v1"), Some(digest.as_str()))
        );
        assert_eq!(parse("[::1]:5000/x").unwrap().registry(), "[::1]:5000");
        for bad in [
            "localhost:5000/Upper:v1",
            "localhost:5000/a//b",
            "localhost:5000/a-:v1",
            "localhost:5000/a:.v1",
            "localhost:5000/a@sha256:abc",
            "library/x:v1",
            "host:port/x",
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
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

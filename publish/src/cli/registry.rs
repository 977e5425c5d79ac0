//! Commands on what a registry stores, named as oras names them: `manifest
//! fetch`, `manifest delete`, `repo tags`, `tag`, `copy`.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::{Connection, Report, Upload, print_json};
use crate::copy::{self, Endpoint, LayoutRef};
use crate::errors::{Error, Result};
use crate::{RegistryClient, manifest, reference};

#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Print a manifest exactly as the registry stores it (or its descriptor).
    Fetch(ManifestFetchArgs),
    /// Delete a manifest (by tag or digest; every tag naming it goes too).
    Delete(ManifestDeleteArgs),
}

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// List the tags of a repository.
    Tags(RepoTagsArgs),
}

#[derive(Args, Debug)]
pub struct ManifestFetchArgs {
    /// host[:port]/repo:tag or host/repo@sha256:...
    pub reference: String,
    /// Print the descriptor (mediaType, digest, size) instead of the manifest.
    #[arg(long)]
    pub descriptor: bool,
    /// Write the manifest to this file instead of stdout.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ManifestDeleteArgs {
    /// host[:port]/repo:tag or host/repo@sha256:...
    pub reference: String,
    /// Delete without asking (required when stdin is not a terminal).
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct RepoTagsArgs {
    /// host[:port]/repo (a tag or digest given is ignored)
    pub repository: String,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// The manifest to tag: host[:port]/repo:tag or host/repo@sha256:...
    pub source: String,
    /// New tags in the same repository.
    #[arg(required = true, value_name = "TAG")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
#[command(
    after_help = "An OCI image layout side is written DIR or DIR:TAG; skopeo reads it as oci:DIR[:TAG]."
)]
pub struct CopyArgs {
    /// Where from: a reference, or an OCI layout DIR[:TAG] with --from-oci-layout/--oci-layout.
    pub source: String,
    /// Where to: a reference, or an OCI layout DIR[:TAG] with --to-oci-layout/--oci-layout.
    pub destination: String,
    /// The source is an OCI image layout directory.
    #[arg(long)]
    pub from_oci_layout: bool,
    /// The destination is an OCI image layout directory (created if missing).
    #[arg(long)]
    pub to_oci_layout: bool,
    /// One side is an OCI image layout: the source if it is an existing directory, else the destination.
    #[arg(long, conflicts_with_all = ["from_oci_layout", "to_oci_layout"])]
    pub oci_layout: bool,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub upload: Upload,
}

fn client(connection: &Connection, reference: &reference::Reference) -> Result<RegistryClient> {
    connection.client_for(reference.resolve_registry(), connection.options())
}

pub async fn manifest_fetch(args: ManifestFetchArgs) -> Result<()> {
    let reference = reference::parse(&args.reference)?;
    let client = client(&args.connection, &reference)?;
    client.authenticate(&reference, false).await?;
    let (bytes, digest) = client.pull_manifest(&reference).await?;
    let text = if args.descriptor {
        let media_type = match manifest::parse(&bytes, None)? {
            manifest::Served::Image { media_type, .. }
            | manifest::Served::Index { media_type, .. } => media_type,
        };
        let descriptor = serde_json::json!({
            "mediaType": media_type,
            "digest": digest,
            "size": bytes.len(),
        });
        format!("{descriptor}\n").into_bytes()
    } else {
        bytes
    };
    match &args.output {
        Some(path) => crate::cache::write_atomically(path, &text, 0o644),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&text)
                .and_then(|()| stdout.flush())
                .map_err(|e| Error::io("writing the manifest to stdout", e))
        }
    }
}

pub async fn manifest_delete(args: ManifestDeleteArgs) -> Result<()> {
    use std::io::IsTerminal as _;
    let reference = reference::parse(&args.reference)?;
    if !args.force {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage(format!(
                "deleting {} cannot be undone; add --force to confirm",
                reference.whole()
            )));
        }
        eprint!(
            "delete {} and every tag naming it? [y/N] ",
            reference.whole()
        );
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| Error::io("reading the answer", e))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Error::Usage("not deleted".into()));
        }
    }
    let client = client(&args.connection, &reference)?;
    client.authenticate(&reference, false).await?;
    let (_, digest) = client.pull_manifest(&reference).await?;
    client.delete_manifest(&reference, &digest).await?;
    if args.report.is_json() {
        return print_json(&serde_json::json!({
            "reference": reference.whole(),
            "deleted": digest,
        }));
    }
    out!("deleted {} ({digest})", reference.whole());
    Ok(())
}

pub async fn repo_tags(args: RepoTagsArgs) -> Result<()> {
    let reference = reference::parse(&args.repository)?;
    let client = client(&args.connection, &reference)?;
    client.authenticate(&reference, false).await?;
    let tags = client.list_tags(&reference).await?;
    if args.report.is_json() {
        return print_json(&serde_json::json!({
            "repository": format!("{}/{}", reference.resolve_registry(), reference.repository()),
            "tags": tags,
        }));
    }
    for tag in tags {
        out!("{tag}");
    }
    Ok(())
}

pub async fn tag(args: TagArgs) -> Result<()> {
    let source = reference::parse(&args.source)?;
    let client = client(&args.connection, &source)?;
    client.authenticate(&source, true).await?;
    let (bytes, digest) = client.pull_manifest(&source).await?;
    let media_type = match manifest::parse(&bytes, None)? {
        manifest::Served::Image { media_type, .. } | manifest::Served::Index { media_type, .. } => {
            media_type
        }
    };
    let mut tagged = Vec::new();
    for tag in &args.tags {
        let target = reference::parse(&format!(
            "{}/{}:{tag}",
            source.resolve_registry(),
            source.repository()
        ))?;
        client.push_manifest(&target, &media_type, &bytes).await?;
        tagged.push(target.whole());
    }
    if args.report.is_json() {
        return print_json(&serde_json::json!({ "digest": digest, "tagged": tagged }));
    }
    for target in tagged {
        out!("tagged {target} ({digest})");
    }
    Ok(())
}

pub async fn copy(args: CopyArgs) -> Result<()> {
    let (from_layout, to_layout) = if args.oci_layout {
        let from = copy::is_layout_dir(&args.source);
        (from, !from)
    } else {
        (args.from_oci_layout, args.to_oci_layout)
    };
    let options = args.upload.options();
    let connection = args.upload.connection();
    // Parse both sides before reading a password.
    let source_ref = (!from_layout)
        .then(|| reference::parse(&args.source))
        .transpose()?;
    let destination_ref = (!to_layout)
        .then(|| reference::parse(&args.destination))
        .transpose()?;
    let source_client = source_ref
        .as_ref()
        .map(|r| connection.client_for(r.resolve_registry(), options.clone()))
        .transpose()?;
    // -u/-p serve the destination when it is the source's registry or the source
    // is a layout; another registry uses its own Docker config.json entry.
    let destination_client = match &destination_ref {
        Some(d) => match &source_ref {
            Some(s) if s.resolve_registry() == d.resolve_registry() => None,
            Some(_) => Some(RegistryClient::new(
                d.resolve_registry(),
                crate::auth::from_docker_config(d.resolve_registry())?,
                options.clone(),
            )?),
            None => Some(connection.client_for(d.resolve_registry(), options.clone())?),
        },
        None => None,
    };
    let source = match (&source_ref, &source_client) {
        (Some(reference), Some(client)) => Endpoint::Registry {
            client,
            reference: reference.clone(),
        },
        _ => Endpoint::Layout(LayoutRef::parse(&args.source)),
    };
    let destination = match (
        &destination_ref,
        destination_client.as_ref().or(source_client.as_ref()),
    ) {
        (Some(reference), Some(client)) => Endpoint::Registry {
            client,
            reference: reference.clone(),
        },
        _ => Endpoint::Layout(LayoutRef::parse(&args.destination)),
    };
    let report = copy::copy(&source, &destination).await?;
    if args.report.is_json() {
        return print_json(&report);
    }
    out!("copied {} to {}", report.source, report.destination);
    out!(
        "manifest digest:   {} ({})",
        report.manifest_digest,
        report.media_type
    );
    out!(
        "blobs:             {} copied ({} bytes), {} already there; {} manifest(s)",
        report.blobs_copied,
        report.bytes_copied,
        report.blobs_present,
        report.manifests
    );
    Ok(())
}

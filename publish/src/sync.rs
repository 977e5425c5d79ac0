//! `publish sync`: the node agent. Keeps a directory (the hostPath the workload
//! patch mounts) in step with the module list `publish render` writes: pulls each
//! module with its named pull secret, verifies it, writes it atomically under
//! the file name the EnvoyFilter expects, skips modules whose manifest digest has
//! not changed, optionally removes unlisted modules, and reports every entry on
//! its own so one bad entry never stops the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::auth::Credentials;
use crate::client::{Options, RegistryClient};
use crate::errors::{Error, Result};
use crate::render::MODULE_DIR;
use crate::render::node_list::{ModuleEntry, NodeList};

/// Remembers what each file came from, so an unchanged manifest costs no blob transfer.
pub const STATE_FILE: &str = ".publish-sync.json";

#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// The module list (node-agent.yaml from `publish render`).
    #[arg(value_name = "node-agent.yaml")]
    pub list: PathBuf,

    /// The directory the sidecars mount.
    #[arg(long, default_value = MODULE_DIR)]
    pub dir: PathBuf,

    /// Where pull secrets are: `<name>/.dockerconfigjson` (a mounted docker-registry
    /// Secret) or `<name>.json`. Entries without a pull secret use Docker's config.json.
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Remove `*.wasm` files in the directory that the list no longer names.
    #[arg(long)]
    pub prune: bool,

    /// Keep running: sync again when the list changes or every --interval seconds.
    #[arg(long)]
    pub watch: bool,

    /// Seconds between syncs with --watch.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub interval: u64,

    // --format json: one JSON report per sync instead of text lines.
    #[command(flatten)]
    pub report: crate::cli::args::Report,

    #[command(flatten)]
    pub transport: crate::cli::args::Transport,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Downloaded and written (new module or changed digest).
    Pulled {
        manifest_digest: String,
        module_digest: String,
        bytes: u64,
    },
    /// Same manifest digest and the file on disk still matches: nothing transferred.
    Unchanged { manifest_digest: String },
    /// Nothing written; the previous file (if any) stays in place.
    Failed { error: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryReport {
    pub file_name: String,
    pub image: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    pub entries: Vec<EntryReport>,
    /// Files removed by --prune.
    pub pruned: Vec<String>,
    /// Problems outside any one entry (the state file, pruning).
    pub errors: Vec<String>,
}

impl SyncReport {
    pub fn failed(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Failed { .. }))
            .count()
            + self.errors.len()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    files: BTreeMap<String, StateEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateEntry {
    image: String,
    manifest_digest: String,
    module_digest: String,
}

/// What one sync needs besides the list.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub dir: PathBuf,
    pub secrets_dir: Option<PathBuf>,
    pub prune: bool,
    pub transport: Options,
}

/// Brings `options.dir` in step with `list`, entry by entry.
pub async fn sync_once(list: &NodeList, options: &SyncOptions) -> SyncReport {
    let mut report = SyncReport::default();
    if let Err(e) = std::fs::create_dir_all(&options.dir) {
        report
            .errors
            .push(format!("creating {}: {e}", options.dir.display()));
        return report;
    }
    let state_path = options.dir.join(STATE_FILE);
    let mut state = match read_state(&state_path) {
        Ok(state) => state,
        Err(e) => {
            // A damaged state file only costs a re-download.
            report.errors.push(e.to_string());
            State::default()
        }
    };
    for entry in &list.modules {
        let outcome = match sync_entry(entry, options, &mut state).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed {
                error: e.to_string(),
            },
        };
        report.entries.push(EntryReport {
            file_name: entry.file_name.clone(),
            image: entry.image.clone(),
            outcome,
        });
    }
    if options.prune {
        prune(list, options, &mut state, &mut report);
    }
    state.files.retain(|name, _| {
        list.modules.iter().any(|m| &m.file_name == name) || options.dir.join(name).exists()
    });
    if let Err(e) = write_state(&state_path, &state) {
        report.errors.push(e.to_string());
    }
    report
}

async fn sync_entry(
    entry: &ModuleEntry,
    options: &SyncOptions,
    state: &mut State,
) -> Result<Outcome> {
    let reference = crate::reference::parse(&entry.image)?;
    let registry = reference.resolve_registry().to_string();
    let credentials = credentials_for(entry, &registry, options.secrets_dir.as_deref())?;
    let client = RegistryClient::new(&registry, credentials, options.transport.clone())?;
    let resolved = crate::resolve(&client, &reference, entry.sha256.as_deref()).await?;
    let target = options.dir.join(&entry.file_name);

    if let Some(known) = state.files.get(&entry.file_name) {
        let on_disk = std::fs::read(&target)
            .ok()
            .map(|bytes| crate::module::sha256_digest(&bytes));
        if known.manifest_digest == resolved.manifest_digest
            && on_disk.as_deref() == Some(known.module_digest.as_str())
        {
            return Ok(Outcome::Unchanged {
                manifest_digest: resolved.manifest_digest,
            });
        }
    }

    // Pull next to the target (pull verifies digests and sizes and writes
    // atomically), validate the module fully, then rename over the old file:
    // the sidecar sees the old module or the new one, never a bad one.
    let incoming = options.dir.join(format!(".{}.incoming", entry.file_name));
    let pulled = crate::pull(
        &client,
        &reference,
        Some(&resolved.manifest_digest),
        &incoming,
        None,
    )
    .await;
    let pulled = match pulled {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&incoming);
            return Err(e);
        }
    };
    let checked = std::fs::read(&incoming)
        .map_err(|e| Error::io(format!("reading {}", incoming.display()), e))
        .and_then(|bytes| {
            crate::module::validate(&incoming, &bytes, crate::layout::ISTIO_MODULE_CAP).map(|_| ())
        })
        .and_then(|()| {
            std::fs::rename(&incoming, &target)
                .map_err(|e| Error::io(format!("moving the module to {}", target.display()), e))
        });
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&incoming);
        return Err(e);
    }
    state.files.insert(
        entry.file_name.clone(),
        StateEntry {
            image: entry.image.clone(),
            manifest_digest: pulled.manifest_digest.clone(),
            module_digest: pulled.module_digest.clone(),
        },
    );
    Ok(Outcome::Pulled {
        manifest_digest: pulled.manifest_digest,
        module_digest: pulled.module_digest,
        bytes: pulled.downloaded_bytes,
    })
}

/// The credentials an entry names: its pull secret (a docker config JSON) or,
/// without one, Docker's config.json / anonymous.
fn credentials_for(
    entry: &ModuleEntry,
    registry: &str,
    secrets_dir: Option<&Path>,
) -> Result<Credentials> {
    let Some(secret) = &entry.pull_secret else {
        return crate::auth::from_docker_config(registry);
    };
    let Some(dir) = secrets_dir else {
        return Err(Error::Usage(format!(
            "{} names pull secret {secret:?} but no --secrets-dir was given",
            entry.file_name
        )));
    };
    let candidates = [
        dir.join(secret).join(".dockerconfigjson"),
        dir.join(secret).join("config.json"),
        dir.join(format!("{secret}.json")),
    ];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(Error::Usage(format!(
            "pull secret {secret:?} not found: looked for {}",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential_from_reader(std::io::BufReader::new(file), registry) {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Credentials::Basic { username, password })
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(Credentials::Token(token)),
        Err(E::NoCredentialConfigured) => Err(Error::Usage(format!(
            "pull secret {secret:?} ({}) has no credentials for {registry}",
            path.display()
        ))),
        Err(other) => Err(Error::Usage(format!(
            "reading pull secret {secret:?} ({}): {other}",
            path.display()
        ))),
    }
}

fn prune(list: &NodeList, options: &SyncOptions, state: &mut State, report: &mut SyncReport) {
    let entries = match std::fs::read_dir(&options.dir) {
        Ok(entries) => entries,
        Err(e) => {
            report
                .errors
                .push(format!("listing {}: {e}", options.dir.display()));
            return;
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.ends_with(".wasm") && !name.starts_with('.'))
        .filter(|name| !list.modules.iter().any(|m| &m.file_name == name))
        .collect();
    names.sort();
    for name in names {
        match std::fs::remove_file(options.dir.join(&name)) {
            Ok(()) => {
                state.files.remove(&name);
                report.pruned.push(name);
            }
            Err(e) => report.errors.push(format!("removing {name}: {e}")),
        }
    }
}

fn read_state(path: &Path) -> Result<State> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!(
                "{} is damaged ({e}); every module is pulled again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

fn write_state(path: &Path, state: &State) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::Usage(format!("cannot encode the sync state: {e}")))?;
    crate::cache::write_atomically(path, &bytes, 0o644)
}

fn read_list(path: &Path) -> anyhow::Result<NodeList> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NodeList::from_yaml(&text).with_context(|| format!("{}: invalid module list", path.display()))
}

fn print_report(report: &SyncReport, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("publish sync: cannot encode the report: {e}"),
        }
        return;
    }
    for entry in &report.entries {
        match &entry.outcome {
            Outcome::Pulled {
                manifest_digest,
                bytes,
                ..
            } => println!(
                "pulled     {} <- {} ({manifest_digest}, {bytes} bytes downloaded)",
                entry.file_name, entry.image
            ),
            Outcome::Unchanged { manifest_digest } => println!(
                "unchanged  {} <- {} ({manifest_digest})",
                entry.file_name, entry.image
            ),
            Outcome::Failed { error } => {
                println!("FAILED     {} <- {}: {error}", entry.file_name, entry.image)
            }
        }
    }
    for name in &report.pruned {
        println!("pruned     {name}");
    }
    for error in &report.errors {
        println!("ERROR      {error}");
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs one sync (exit status: failure when any entry failed) or, with --watch, forever.
pub async fn run(args: SyncArgs) -> anyhow::Result<()> {
    let options = SyncOptions {
        dir: args.dir.clone(),
        secrets_dir: args.secrets_dir.clone(),
        prune: args.prune,
        transport: args.transport.options(),
    };
    if !args.watch {
        let list = read_list(&args.list)?;
        let report = sync_once(&list, &options).await;
        print_report(&report, args.report.is_json());
        if report.failed() > 0 {
            bail!(
                "{} of {} entries failed",
                report.failed(),
                report.entries.len().max(report.failed())
            );
        }
        return Ok(());
    }
    let interval = Duration::from_secs(args.interval.max(1));
    loop {
        let seen = modified(&args.list);
        match read_list(&args.list) {
            Ok(list) => print_report(&sync_once(&list, &options).await, args.report.is_json()),
            // A list being rewritten or broken: say so, keep the modules, try again.
            Err(e) => eprintln!("publish sync: {e:#}"),
        }
        let started = tokio::time::Instant::now();
        while started.elapsed() < interval {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if modified(&args.list) != seen {
                break;
            }
        }
    }
}

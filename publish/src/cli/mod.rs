//! The `publish` command line: subcommands, their arguments and what they print.
//! main.rs only parses and dispatches. See README.md for each subcommand.

/// `println!` that returns a closed pipe as an error (which ends the command
/// quietly) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
            .map_err(|e| crate::errors::Error::io("writing to stdout", e))?;
    }};
}

pub mod args;
pub mod login;
pub mod registry;
pub mod transfer;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "publish",
    version,
    about = "Push Proxy-Wasm modules to OCI registries in the layouts Istio and ASM load, pull them back verified"
)]
pub struct Cli {
    /// Show the registry conversation on stderr (-vv: the HTTP stack too); secrets are
    /// redacted. RUST_LOG works as well.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a module and push it (default layout: Wasm image spec "oci", which Istio loads).
    Push(transfer::PushArgs),
    /// Pull the module of any layout, verified, written atomically (or to stdout with -o -).
    Pull(transfer::PullArgs),
    /// Show the layout, whether Istio loads it (and why not), annotations, digests, sizes.
    Inspect(transfer::InspectArgs),
    /// Fetch or delete a manifest.
    #[command(subcommand)]
    Manifest(registry::ManifestCommand),
    /// Repository queries (tags).
    #[command(subcommand)]
    Repo(registry::RepoCommand),
    /// Give a manifest more tags in its repository.
    Tag(registry::TagArgs),
    /// Copy an artifact between registries or to and from an OCI image layout directory.
    #[command(alias = "cp")]
    Copy(registry::CopyArgs),
    /// Check credentials against a registry and store them in Docker's config.json.
    Login(login::LoginArgs),
    /// Remove stored credentials for a registry from Docker's config.json.
    Logout(login::LogoutArgs),
    Render(crate::render::cli::RenderArgs),
    /// The node agent: keep a directory in step with the module list `render` writes.
    Sync(crate::sync::SyncArgs),
    /// Print a shell completion script (e.g. `publish completions bash > /etc/bash_completion.d/publish`).
    Completions(CompletionsArgs),
    /// Print the manual page in roff (e.g. `publish man | man -l -`).
    Man,
}

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

fn completions(args: &CompletionsArgs) -> crate::Result<()> {
    use clap::CommandFactory as _;
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "publish", &mut script);
    write_stdout(&script)
}

/// One page for the whole tool: clap_mangen renders the top command with its subcommand list.
fn man_page() -> crate::Result<()> {
    use clap::CommandFactory as _;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| crate::Error::io("rendering the manual page", e))?;
    write_stdout(&page)
}

fn write_stdout(bytes: &[u8]) -> crate::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| crate::Error::io("writing to stdout", e))
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    use registry::{ManifestCommand, RepoCommand};
    match command {
        Command::Push(args) => transfer::push(args).await?,
        Command::Pull(args) => transfer::pull(args).await?,
        Command::Inspect(args) => transfer::inspect(args).await?,
        Command::Manifest(ManifestCommand::Fetch(args)) => registry::manifest_fetch(args).await?,
        Command::Manifest(ManifestCommand::Delete(args)) => registry::manifest_delete(args).await?,
        Command::Repo(RepoCommand::Tags(args)) => registry::repo_tags(args).await?,
        Command::Tag(args) => registry::tag(args).await?,
        Command::Copy(args) => registry::copy(args).await?,
        Command::Login(args) => login::login(args).await?,
        Command::Logout(args) => login::logout(args)?,
        Command::Render(args) => crate::render::cli::run(args).await?,
        Command::Sync(args) => crate::sync::run(args).await?,
        Command::Completions(args) => completions(&args)?,
        Command::Man => man_page()?,
    }
    Ok(())
}

/// True when the error chain ends in a closed stdout/stderr pipe (`publish ... | head`).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<crate::Error>()
                .is_some_and(|e| matches!(e, crate::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe))
    })
}

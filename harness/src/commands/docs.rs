//! `harness completions SHELL` and `harness man [COMMAND]`: shell
//! completion scripts and roff man pages generated from the same clap
//! definitions the parser uses, so they never drift from the flags.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Command};
use clap_complete::Shell;

/// `harness completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell. Install e.g. with
    /// `harness completions bash > ~/.local/share/bash-completion/completions/harness`.
    shell: Shell,
}

/// `harness man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// A subcommand's page (harness-run(1), ...) instead of harness(1).
    /// View with `harness man | man -l -`.
    command: Option<String>,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: &CompletionsArgs, mut cli: Command) -> ExitCode {
    let name = cli.get_name().to_string();
    // Generated into memory first: clap_complete panics on a write error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, name, &mut script);
    print(&script, "harness completions")
}

/// Prints the man page of the program or of one subcommand.
pub fn man(args: &ManArgs, cli: Command) -> ExitCode {
    const COMMAND: &str = "harness man";
    let program = cli.get_name().to_string();
    let (page, title) = match &args.command {
        None => (cli, program),
        Some(wanted) => {
            let names: Vec<String> = cli
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .collect();
            match cli.find_subcommand(wanted) {
                Some(sub) => {
                    let title = format!("{program}-{wanted}");
                    let page = (sub.clone())
                        .display_name(title.clone())
                        .version(env!("CARGO_PKG_VERSION"));
                    (page, title)
                }
                None => {
                    return super::usage_error(
                        COMMAND,
                        &format!("no subcommand {wanted}; one of: {}", names.join(", ")),
                    );
                }
            }
        }
    };
    let mut roff = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).title(title).render(&mut roff) {
        return super::usage_error(COMMAND, &format!("cannot render the page: {e}"));
    }
    print(&roff, COMMAND)
}

fn print(bytes: &[u8], command: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let result = out.write_all(bytes).and_then(|()| out.flush());
    match super::written(result) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::failed(command, &e),
    }
}

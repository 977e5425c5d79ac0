//! `harness compile`: a precompiled module (.cwasm) that `run`, `test` and
//! `bench` load without compiling (same wasmtime version and settings only).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use harness::{CompiledModule, HarnessError};

use super::ModuleLimitArgs;

/// `harness compile`.
#[derive(Args, Debug)]
pub struct CompileArgs {
    /// The filter module (.wasm or .wat).
    module: PathBuf,
    /// Where to write the precompiled module (default: the module path with `.cwasm`).
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    module_limits: ModuleLimitArgs,
}

/// Runs `harness compile` and prints the artifact's path.
pub fn command(args: &CompileArgs) -> ExitCode {
    match compile(args) {
        Ok(out) => {
            let printed = writeln!(std::io::stdout(), "{}", out.display());
            match super::written(printed) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => super::failed("harness compile", &e),
            }
        }
        Err(e) => super::failed("harness compile", &e),
    }
}

fn compile(args: &CompileArgs) -> Result<PathBuf, HarnessError> {
    let bytes = std::fs::read(&args.module).map_err(|source| HarnessError::ModuleNotFound {
        path: args.module.clone(),
        source,
    })?;
    let name = args.module.display().to_string();
    let engine = args.module_limits.engine()?;
    let artifact = CompiledModule::precompile(&engine, &name, &bytes)?;
    // Check it is a filter the harness accepts before writing it.
    CompiledModule::from_bytes_with(&engine, &name, &bytes)?;
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| args.module.with_extension("cwasm"));
    std::fs::write(&out, artifact)
        .map_err(|e| HarnessError::Usage(format!("cannot write {}: {e}", out.display())))?;
    Ok(out)
}

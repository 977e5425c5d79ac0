//! Runs `publish` on a pseudo-terminal through terminal.py (Python's `pty`
//! module), typing answers to its prompts.

use std::process::Command;

use super::Cli;

/// Wait for `prompt`, then type `answer` and Enter; `hidden` waits first for
/// the program to turn the terminal's echo off.
pub struct Step<'a> {
    pub prompt: &'a str,
    pub answer: &'a str,
    pub hidden: bool,
}

pub struct TerminalRun {
    pub status: i64,
    /// Everything the terminal showed: the program's output and the echo of what was typed.
    pub transcript: String,
}

impl Cli {
    pub fn run_on_terminal(&self, args: &[&str], steps: &[Step]) -> TerminalRun {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/all/support/terminal.py");
        let steps: Vec<serde_json::Value> = steps
            .iter()
            .map(|s| serde_json::json!({"prompt": s.prompt, "type": s.answer, "hidden": s.hidden}))
            .collect();
        let out = Command::new("python3")
            .arg(script)
            .arg(serde_json::Value::from(steps).to_string())
            .arg(env!("CARGO_BIN_EXE_publish"))
            .args(args)
            .env("DOCKER_CONFIG", self.docker_config())
            .env("PUBLISH_CACHE_DIR", self.cache_dir())
            .output()
            .expect("running python3 (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "terminal.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let transcript = report["transcript"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(error) = report["error"].as_str() {
            panic!("on the terminal, {error}; it showed:\n{transcript}");
        }
        TerminalRun {
            status: report["status"].as_i64().unwrap(),
            transcript,
        }
    }
}

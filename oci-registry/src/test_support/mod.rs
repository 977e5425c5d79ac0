//! For integration tests only (feature `test-support`): real tools, checked and
//! never skipped, and a real registry. publish's and harness's test suites
//! both use it, so there is one registry fixture.
// Test fixtures fail the test on any setup error, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod registry;

/// Fails the test (never skips it) when a tool that scripts/setup.sh installs is missing.
pub fn require_tool(name: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed; these tests need it. Run scripts/setup.sh (or: {install})"
    );
}

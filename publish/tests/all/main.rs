//! publish against real things: Debian's docker-registry (no auth, htpasswd,
//! token auth), skopeo, the oras Python client, kubernetes-validate, a
//! pseudo-terminal for prompts, and fault-injecting proxies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod commands;
mod diagnostics;
mod faults;
mod habits;
mod interop;
mod mount;
mod preflight;
// `publish render` tests live beside this binary, in tests/render/.
#[path = "../render/mod.rs"]
mod render;
mod roundtrip;
mod support;
mod terminal;
mod tls;

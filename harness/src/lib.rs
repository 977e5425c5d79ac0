//! harness: see README.md.

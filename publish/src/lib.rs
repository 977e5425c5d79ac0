//! publish: see README.md.

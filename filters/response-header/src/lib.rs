//! response-header: see README.md.

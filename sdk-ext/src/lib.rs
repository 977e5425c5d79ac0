//! sdk-ext: see README.md.

//! Every `proxy_*` host function, written once against a guest-memory trait.

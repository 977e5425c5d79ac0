//! Properties.

use super::*;

/// `proxy_get_property`: built-in attributes first, then the plugin
/// tokens, then the filter's own state (Envoy's `Context::findValue`).
pub fn proxy_get_property<G: Guest>(
    g: &mut G,
    path: u64,
    path_size: u64,
    return_data: u64,
    return_size: u64,
) -> HostcallResult {
    let found = input(g, path, path_size, |h, p| h.lookup_property(p))?;
    if !found {
        return Ok(Status::NotFound);
    }
    return_scratch(g, return_data, return_size)
}

/// `proxy_set_property`: the value becomes filter state `wasm.<path>` of
/// the stream (Envoy's `Context::setProperty`); a root context has no
/// stream info, so NOT_FOUND there.
pub fn proxy_set_property<G: Guest>(
    g: &mut G,
    path: u64,
    path_size: u64,
    value: u64,
    value_size: u64,
) -> HostcallResult {
    Ok(input2(
        g,
        (path, path_size),
        (value, value_size),
        |h, p, v| {
            let root = h.effective_stream_ref().map(|s| s.root_id);
            let Some(root) = root else {
                return Status::NotFound;
            };
            let readonly = crate::host::foreign::is_readonly(h, root, p);
            let key = crate::host::properties::filter_state_key(p);
            let Some(s) = h.effective_stream() else {
                return Status::NotFound;
            };
            let set = s.filter_state_mut().set_property(&key, v, readonly);
            if set == crate::host::filter_state::SetProperty::ReadOnly {
                return Status::BadArgument;
            }
            if let Some((key, message)) = crate::host::properties::unreachable_set(p) {
                crate::host::properties::warn_once(h, key, message);
            }
            Status::Ok
        },
    )?)
}

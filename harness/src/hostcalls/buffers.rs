//! Buffers.

use super::*;
use crate::host::caps;

/// `proxy_get_buffer_bytes`: up to `max_size` bytes from `start`.
pub fn proxy_get_buffer_bytes<G: Guest>(
    g: &mut G,
    buffer_type: u32,
    start: u64,
    max_size: u64,
    return_data: u64,
    return_size: u64,
) -> HostcallResult {
    let Some(bt) = BufferType::from_u32(buffer_type) else {
        return Ok(Status::BadArgument);
    };
    if start.checked_add(max_size).is_none() {
        return Ok(Status::BadArgument);
    }
    return_filled(g, return_data, return_size, |host, out| {
        match host.buffer(bt) {
            None => Status::NotFound,
            // Reading from past the end yields nothing.
            Some(buf) if start >= buf.len() as u64 => {
                out.clear();
                Status::Ok
            }
            Some(buf) => {
                let end = (start + max_size).min(buf.len() as u64);
                out.clear();
                out.extend_from_slice(&buf[start as usize..end as usize]);
                Status::Ok
            }
        }
    })
}

/// `proxy_set_buffer_bytes`, as Envoy's `Buffer::copyFrom`
/// (source/extensions/common/wasm/context.cc): start 0 drains `size`
/// bytes (all of them when `size` is at least the length) and prepends the
/// data; a start at or past the length appends; any other start is
/// BAD_ARGUMENT. A body out of reach, like any read-only buffer, is
/// BAD_ARGUMENT.
pub fn proxy_set_buffer_bytes<G: Guest>(
    g: &mut G,
    buffer_type: u32,
    start: u64,
    size: u64,
    data: u64,
    data_size: u64,
) -> HostcallResult {
    let Some(bt) = BufferType::from_u32(buffer_type) else {
        return Ok(Status::BadArgument);
    };
    let status = input(g, data, data_size, |h, bytes| {
        if h.buffer_mut(bt).is_none() {
            if let Some(field) = Field::of_buffer(bt) {
                h.warn_out_of_reach(field);
            }
            return if h.buffer(bt).is_some() {
                Status::BadArgument
            } else {
                Status::NotFound
            };
        }
        let Some(buf) = h.buffer_mut(bt) else {
            return Status::NotFound;
        };
        let len = buf.len() as u64;
        let drained = if start == 0 {
            size.min(len) as usize
        } else {
            0
        };
        if start != 0 && start < len {
            return Status::BadArgument;
        }
        let after = buf.len() - drained + bytes.len();
        if after > caps::MAX_BODY_BYTES {
            h.harness_log(
                LogLevel::Warn,
                format!(
                    "proxy_set_buffer_bytes in {} refused: the buffer would hold {after} bytes, past the host's {}-byte cap",
                    h.callback,
                    caps::MAX_BODY_BYTES
                ),
            );
            return Status::BadArgument;
        }
        if start == 0 {
            buf.splice(0..drained, bytes.iter().copied());
        } else {
            buf.extend_from_slice(bytes);
        }
        Status::Ok
    })?;
    Ok(status)
}

/// `proxy_get_buffer_status`: length and flags (always 0).
pub fn proxy_get_buffer_status<G: Guest>(
    g: &mut G,
    buffer_type: u32,
    return_length: u64,
    return_flags: u64,
) -> HostcallResult {
    let Some(bt) = BufferType::from_u32(buffer_type) else {
        return Ok(Status::BadArgument);
    };
    let Some(len) = g.host().buffer(bt).map(|b| b.len() as u64) else {
        return Ok(Status::NotFound);
    };
    write_word(g, return_length, len)?;
    write_u32(g, return_flags, 0)?;
    Ok(Status::Ok)
}

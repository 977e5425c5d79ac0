//! Header maps.

use super::*;

/// `proxy_get_header_map_pairs`: a map not available in this phase is OK and empty.
pub fn proxy_get_header_map_pairs<G: Guest>(
    g: &mut G,
    map_type: u32,
    return_data: u64,
    return_size: u64,
) -> HostcallResult {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    return_filled(g, return_data, return_size, |host, out| {
        match host.map(mt) {
            Some(map) => abi::encode_map_into(map.iter(), out),
            None => {
                out.clear();
                warn_map_out_of_reach(host, mt);
            }
        }
        Status::Ok
    })
}

/// `proxy_set_header_map_pairs`: replaces the whole map.
pub fn proxy_set_header_map_pairs<G: Guest>(
    g: &mut G,
    map_type: u32,
    data: u64,
    data_size: u64,
) -> HostcallResult {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    let status = input(g, data, data_size, |h, bytes| {
        let Ok(pairs) = abi::decode_map(bytes) else {
            return Status::BadArgument;
        };
        match h.map_mut(mt) {
            Some(map) => {
                map.set_all(pairs.into_iter());
                Status::Ok
            }
            None => map_out_of_reach(h, mt),
        }
    })?;
    Ok(status)
}

/// `proxy_get_header_map_size`: total key and value bytes (Envoy's byteSize).
/// Envoy looks the map up as if to write it: BAD_ARGUMENT for the callout
/// and gRPC maps and for stream maps not available now.
pub fn proxy_get_header_map_size<G: Guest>(
    g: &mut G,
    map_type: u32,
    return_size: u64,
) -> HostcallResult {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    // Envoy reports the map's byteSize(): the sum of key and value lengths.
    let host = g.host();
    let Some(size) = host.map_mut(mt).map(|m| m.byte_size()) else {
        return Ok(map_out_of_reach(host, mt));
    };
    write_word(g, return_size, size as u64)?;
    Ok(Status::Ok)
}

/// `proxy_get_header_map_value`: the first value, NOT_FOUND when missing
/// (ABI 0.1.0: OK and empty), BAD_ARGUMENT when the map is not available
/// in this phase, except in on_log, where Envoy treats a missing map like
/// a missing key.
pub fn proxy_get_header_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: u64,
    key_size: u64,
    return_data: u64,
    return_size: u64,
) -> HostcallResult {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    let status = input(g, key, key_size, |h, key| {
        let mut out = std::mem::take(&mut h.scratch);
        let status = match h.map(mt) {
            None if h.access_log && h.abi == AbiVersion::V0_1_0 => {
                out.clear();
                Status::Ok
            }
            None if h.access_log => Status::NotFound,
            None => map_out_of_reach(h, mt),
            Some(map) => match map.get(key) {
                Some(v) => {
                    out.clear();
                    out.extend_from_slice(v);
                    Status::Ok
                }
                // ABI 0.1.0 had no NOT_FOUND here: a missing header reads as empty.
                None if h.abi == AbiVersion::V0_1_0 => {
                    out.clear();
                    Status::Ok
                }
                None => Status::NotFound,
            },
        };
        h.scratch = out;
        status
    })?;
    if status != Status::Ok {
        return Ok(status);
    }
    return_scratch(g, return_data, return_size)
}

/// `proxy_replace_header_map_value`: sets the first value, drops the others (key lower-cased).
pub fn proxy_replace_header_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: u64,
    key_size: u64,
    value: u64,
    value_size: u64,
) -> HostcallResult {
    edit_map_value(
        g,
        map_type,
        (key, key_size),
        (value, value_size),
        crate::host::HeaderMap::replace,
    )
}

/// `proxy_remove_header_map_value`: removes every value.
pub fn proxy_remove_header_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: u64,
    key_size: u64,
) -> HostcallResult {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    Ok(input(g, key, key_size, |h, k| match h.map_mut(mt) {
        Some(map) => {
            map.remove(k);
            Status::Ok
        }
        None => map_out_of_reach(h, mt),
    })?)
}

/// `proxy_add_header_map_value`: appends (key lower-cased).
pub fn proxy_add_header_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: u64,
    key_size: u64,
    value: u64,
    value_size: u64,
) -> HostcallResult {
    edit_map_value(
        g,
        map_type,
        (key, key_size),
        (value, value_size),
        crate::host::HeaderMap::add,
    )
}

/// The shared body of add and replace: resolve the map for this phase, then edit it.
fn edit_map_value<G: Guest>(
    g: &mut G,
    map_type: u32,
    key: (u64, u64),
    value: (u64, u64),
    edit: fn(&mut crate::host::HeaderMap, &[u8], &[u8]),
) -> HostcallResult {
    let Some(mt) = MapType::from_u32(map_type) else {
        return Ok(Status::BadArgument);
    };
    Ok(input2(g, key, value, |h, k, v| match h.map_mut(mt) {
        Some(map) if map.has_room_for(k, v) => {
            edit(map, k, v);
            Status::Ok
        }
        Some(map) => {
            let (pairs, bytes) = (map.len(), map.byte_size());
            h.harness_log(
                LogLevel::Warn,
                format!(
                    "a header write in {} refused: the {} map would pass the host's cap of {} pairs or {} bytes (it has {pairs} pairs, {bytes} bytes); no Envoy codec takes such a map",
                    h.callback,
                    mt.name(),
                    abi::MAX_MAP_PAIRS,
                    abi::MAX_MAP_BYTES
                ),
            );
            Status::BadArgument
        }
        None => map_out_of_reach(h, mt),
    })?)
}

/// A stream map out of reach: warned about once, then Envoy's answer.
fn map_out_of_reach(host: &mut Host, map: MapType) -> Status {
    warn_map_out_of_reach(host, map);
    Status::BadArgument
}

fn warn_map_out_of_reach(host: &mut Host, map: MapType) {
    if let Some(field) = Field::of_map(map)
        && !host.access_log
    {
        host.warn_out_of_reach(field);
    }
}

//! Shared data and queues.

use super::*;
use crate::host::caps;

/// `proxy_get_shared_data`: value and CAS for the plugin's vm_id.
pub fn proxy_get_shared_data<G: Guest>(
    g: &mut G,
    key: u64,
    key_size: u64,
    return_data: u64,
    return_size: u64,
    return_cas: u64,
) -> HostcallResult {
    let cas = input(g, key, key_size, |h, k| {
        let mut out = std::mem::take(&mut h.scratch);
        let r = h.shared.get_data(&h.plugin.vm_id, k, &mut out);
        h.scratch = out;
        r
    })?;
    let cas = cas?;
    let status = return_scratch(g, return_data, return_size)?;
    if status != Status::Ok {
        return Ok(status);
    }
    write_u32(g, return_cas, cas)?;
    Ok(Status::Ok)
}

/// `proxy_set_shared_data`: cas 0 unconditional, stale cas CAS_MISMATCH.
pub fn proxy_set_shared_data<G: Guest>(
    g: &mut G,
    key: u64,
    key_size: u64,
    value: u64,
    value_size: u64,
    cas: u32,
) -> HostcallResult {
    Ok(input2(
        g,
        (key, key_size),
        (value, value_size),
        |h, k, v| {
            let status = h.shared.set_data(&h.plugin.vm_id, k, v, cas);
            if status == Status::BadArgument {
                warn_cap(
                    h,
                    "proxy_set_shared_data",
                    "shared data",
                    caps::MAX_SHARED_DATA_BYTES,
                );
            }
            status
        },
    )?)
}

/// A shared-state write refused at a host cap (the status says BAD_ARGUMENT).
fn warn_cap(h: &mut Host, hostcall: &str, what: &str, cap: usize) {
    h.harness_log(
        LogLevel::Warn,
        format!(
            "{hostcall} refused: {what} would pass the host's {cap}-byte cap for the whole process"
        ),
    );
}

/// `proxy_register_shared_queue`: notifications go to this worker's root context.
pub fn proxy_register_shared_queue<G: Guest>(
    g: &mut G,
    name: u64,
    name_size: u64,
    return_id: u64,
) -> HostcallResult {
    let id = input(g, name, name_size, |h, n| {
        let inbox = h.inbox.clone();
        h.shared
            .register_queue(&h.plugin.vm_id, n, &inbox, h.root_context_id)
    })?;
    write_u32(g, return_id, id)?;
    Ok(Status::Ok)
}

/// `proxy_resolve_shared_queue`: NOT_FOUND when no such queue.
pub fn proxy_resolve_shared_queue<G: Guest>(
    g: &mut G,
    vm_id: u64,
    vm_id_size: u64,
    name: u64,
    name_size: u64,
    return_id: u64,
) -> HostcallResult {
    let id = input2(g, (vm_id, vm_id_size), (name, name_size), |h, vm, n| {
        // An empty vm_id means the caller's own (the plugin's vm_id).
        let vm = if vm.is_empty() {
            h.plugin.vm_id.clone()
        } else {
            String::from_utf8_lossy(vm).into_owned()
        };
        h.shared.resolve_queue(&vm, n)
    })?;
    let Some(id) = id else {
        return Ok(Status::NotFound);
    };
    write_u32(g, return_id, id)?;
    Ok(Status::Ok)
}

/// `proxy_dequeue_shared_queue`: NOT_FOUND unknown queue, EMPTY when empty.
pub fn proxy_dequeue_shared_queue<G: Guest>(
    g: &mut G,
    queue_id: u32,
    return_data: u64,
    return_size: u64,
) -> HostcallResult {
    return_filled(g, return_data, return_size, |host, out| {
        host.shared.dequeue(queue_id, out)
    })
}

/// `proxy_enqueue_shared_queue`: posts on_queue_ready to the registering worker.
pub fn proxy_enqueue_shared_queue<G: Guest>(
    g: &mut G,
    queue_id: u32,
    value: u64,
    value_size: u64,
) -> HostcallResult {
    Ok(input(g, value, value_size, |h, v| {
        let status = h.shared.enqueue(queue_id, v);
        if status == Status::BadArgument {
            warn_cap(
                h,
                "proxy_enqueue_shared_queue",
                "queued items",
                caps::MAX_QUEUED_BYTES,
            );
        }
        status
    })?)
}

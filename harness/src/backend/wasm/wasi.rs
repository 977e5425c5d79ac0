//! The restricted WASI Envoy offers filters (not a full WASI), after
//! proxy-wasm-cpp-host's `wasi_unstable_*` functions in `src/exports.cc`:
//! stdout and stderr become log lines, clocks read the virtual clock,
//! randomness comes from the seeded generator, the environment is the
//! plugin's env vars, seeking and closing succeed without effect, and
//! everything else answers ENOSYS. Served under both
//! `wasi_snapshot_preview1` and `wasi_unstable`.

use crate::hostcalls::{Fault, Guest, GuestMemory};
use crate::model::LogLevel;

/// WASI errno values used here.
pub mod errno {
    /// Success.
    pub const SUCCESS: u32 = 0;
    /// Bad file descriptor.
    pub const BADF: u32 = 8;
    /// Bad address.
    pub const FAULT: u32 = 21;
    /// Invalid argument.
    pub const INVAL: u32 = 28;
    /// Function not supported.
    pub const NOSYS: u32 = 52;
    /// Not supported (an unknown clock).
    pub const NOTSUP: u32 = 58;
}

/// The largest `random_get` Envoy serves.
pub const MAX_RANDOM_BYTES: u64 = 64 * 1024;

fn word(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[..4]);
    u64::from(u32::from_le_bytes(b))
}

fn put<G: Guest>(g: &mut G, addr: u64, bytes: &[u8]) -> bool {
    g.with_memory(|_, m| match m.slice_mut(addr, bytes.len() as u64) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    })
}

/// `fd_write`: fd 1 logs at info, fd 2 at error (one trailing newline stripped).
pub fn fd_write<G: Guest>(
    g: &mut G,
    fd: u32,
    iovs: u64,
    iovs_len: u64,
    nwritten: u64,
) -> Result<u32, Fault> {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(errno::BADF),
    };
    let total = g.with_memory(|h, m| {
        let mut text = std::mem::take(&mut h.scratch);
        text.clear();
        let mut ok = true;
        for i in 0..iovs_len {
            let Some(iov) = m.slice(iovs + i * 8, 8) else {
                ok = false;
                break;
            };
            let (ptr, len) = (word(&iov[..4]), word(&iov[4..]));
            match m.slice(ptr, len) {
                Some(data) => text.extend_from_slice(data),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        let total = text.len();
        if ok {
            let line = text.strip_suffix(b"\n").unwrap_or(&text);
            h.log(level, line);
        }
        h.scratch = text;
        ok.then_some(total)
    });
    let Some(total) = total else {
        return Ok(errno::FAULT);
    };
    if !put(g, nwritten, &(total as u32).to_le_bytes()) {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `fd_fdstat_get`: a character device for stdout and stderr.
pub fn fd_fdstat_get<G: Guest>(g: &mut G, fd: u32, stat: u64) -> Result<u32, Fault> {
    if fd != 1 && fd != 2 {
        return Ok(errno::BADF);
    }
    let mut s = [0u8; 24];
    s[0] = 2; // filetype: character device
    // rights_base: fd_write (1 << 6)
    s[8..16].copy_from_slice(&(1u64 << 6).to_le_bytes());
    if !put(g, stat, &s) {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `fd_prestat_get`: no pre-opened directories (EBADF ends libc's scan).
pub fn fd_prestat_get<G: Guest>(_g: &mut G, _fd: u32, _prestat: u64) -> Result<u32, Fault> {
    Ok(errno::BADF)
}

fn environ_strings<G: Guest>(g: &mut G) -> Vec<Vec<u8>> {
    g.host()
        .plugin()
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect()
}

/// `environ_sizes_get`: the plugin's configured env vars only.
pub fn environ_sizes_get<G: Guest>(g: &mut G, count: u64, size: u64) -> Result<u32, Fault> {
    let env = environ_strings(g);
    let total: usize = env.iter().map(Vec::len).sum();
    if !put(g, count, &(env.len() as u32).to_le_bytes())
        || !put(g, size, &(total as u32).to_le_bytes())
    {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `environ_get`.
pub fn environ_get<G: Guest>(g: &mut G, environ: u64, buf: u64) -> Result<u32, Fault> {
    let env = environ_strings(g);
    let mut at = buf;
    for (i, e) in env.iter().enumerate() {
        if !put(g, environ + 4 * i as u64, &(at as u32).to_le_bytes()) || !put(g, at, e) {
            return Ok(errno::FAULT);
        }
        at += e.len() as u64;
    }
    Ok(errno::SUCCESS)
}

/// `args_sizes_get`: no arguments.
pub fn args_sizes_get<G: Guest>(g: &mut G, count: u64, size: u64) -> Result<u32, Fault> {
    if !put(g, count, &0u32.to_le_bytes()) || !put(g, size, &0u32.to_le_bytes()) {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `args_get`: nothing to write.
pub fn args_get<G: Guest>(_g: &mut G, _argv: u64, _buf: u64) -> Result<u32, Fault> {
    Ok(errno::SUCCESS)
}

/// `clock_time_get`: realtime (0) and monotonic (1) from the virtual clock;
/// the CPU-time clocks are ENOTSUP (proxy-wasm-cpp-host
/// `wasi_unstable_clock_time_get` in `src/exports.cc`).
pub fn clock_time_get<G: Guest>(
    g: &mut G,
    id: u32,
    _precision: u64,
    time: u64,
) -> Result<u32, Fault> {
    let now = match id {
        0 => g.host().now_unix_ns(),
        1 => g.host().monotonic_ns(),
        _ => return Ok(errno::NOTSUP),
    };
    if !put(g, time, &now.to_le_bytes()) {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `clock_res_get`: 1 ns for realtime and monotonic, other clocks ENOTSUP
/// (cpp-host `wasi_unstable_clock_res_get`).
pub fn clock_res_get<G: Guest>(g: &mut G, id: u32, resolution: u64) -> Result<u32, Fault> {
    if id > 1 {
        return Ok(errno::NOTSUP);
    }
    if !put(g, resolution, &1u64.to_le_bytes()) {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `fd_seek`: success without doing anything (nothing is written to
/// `new_offset`), as cpp-host's `wasi_unstable_fd_seek` (Envoy only traces
/// the call).
pub fn fd_seek<G: Guest>(
    _g: &mut G,
    _fd: u32,
    _offset: i64,
    _whence: u32,
    _new_offset: u64,
) -> Result<u32, Fault> {
    Ok(errno::SUCCESS)
}

/// `fd_close`: success without doing anything (cpp-host
/// `wasi_unstable_fd_close`; Envoy only traces the call).
pub fn fd_close<G: Guest>(_g: &mut G, _fd: u32) -> Result<u32, Fault> {
    Ok(errno::SUCCESS)
}

/// `random_get`: at most 64 KiB, from the seeded generator.
pub fn random_get<G: Guest>(g: &mut G, buf: u64, len: u64) -> Result<u32, Fault> {
    if len > MAX_RANDOM_BYTES {
        return Ok(errno::INVAL);
    }
    let ok = g.with_memory(|h, m| match m.slice_mut(buf, len) {
        Some(dst) => {
            h.fill_random(dst);
            true
        }
        None => false,
    });
    Ok(if ok { errno::SUCCESS } else { errno::FAULT })
}

/// `poll_oneoff`: reports 0 events.
pub fn poll_oneoff<G: Guest>(
    g: &mut G,
    _in: u64,
    _out: u64,
    _nsubs: u64,
    nevents: u64,
) -> Result<u32, Fault> {
    if !put(g, nevents, &0u32.to_le_bytes()) {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `proc_exit`: returns to the guest, as cpp-host's
/// `wasi_unstable_proc_exit` does (Envoy only traces the call); a libc
/// guest then reaches `unreachable` and traps. The harness says so in a
/// warning, so the trap that follows is explained.
pub fn proc_exit<G: Guest>(g: &mut G, code: u32) -> Result<u32, Fault> {
    g.host().harness_log(
        LogLevel::Warn,
        format!(
            "the filter called WASI proc_exit({code}); Envoy returns to the guest, \
             which usually traps right after"
        ),
    );
    Ok(errno::SUCCESS)
}

/// `sched_yield`: nothing to yield to.
pub fn sched_yield<G: Guest>(_g: &mut G) -> Result<u32, Fault> {
    Ok(errno::SUCCESS)
}

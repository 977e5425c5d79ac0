//! Logging, clock, timers.

use super::*;

/// `proxy_log`: captured per level; levels below the plugin's are dropped.
pub fn proxy_log<G: Guest>(
    g: &mut G,
    level: u32,
    message: u64,
    message_size: u64,
) -> HostcallResult {
    let Some(level) = LogLevel::from_u32(level) else {
        return Ok(Status::BadArgument);
    };
    input(g, message, message_size, |h, m| h.log(level, m))?;
    Ok(Status::Ok)
}

/// `proxy_get_log_level`.
pub fn proxy_get_log_level<G: Guest>(g: &mut G, return_level: u64) -> HostcallResult {
    let level = g.host().log_level().as_u32();
    write_u32(g, return_level, level)?;
    Ok(Status::Ok)
}

/// `proxy_get_current_time_nanoseconds`: the virtual wall clock.
pub fn proxy_get_current_time_nanoseconds<G: Guest>(g: &mut G, return_time: u64) -> HostcallResult {
    let now = g.host().now_unix_ns();
    write_u64(g, return_time, now)?;
    Ok(Status::Ok)
}

/// `proxy_set_tick_period_milliseconds`: the root context's timer (0 stops it).
pub fn proxy_set_tick_period_milliseconds<G: Guest>(g: &mut G, period: u32) -> HostcallResult {
    g.host().set_tick_period(period);
    Ok(Status::Ok)
}

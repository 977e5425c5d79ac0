//! The host clock (`proxy_get_current_time_nanoseconds`): the only time a
//! filter should trust. In the harness it is virtual time.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> SystemTime {
    proxy_wasm::hostcalls::get_current_time().unwrap_or(UNIX_EPOCH)
}

/// Seconds since the Unix epoch, for claims such as JWT `exp`.
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unix_seconds_handles_both_sides_of_the_epoch() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(2500)), 2);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(3)), -3);
    }
}

//! Metrics.

use super::*;
use crate::host::caps;

fn metric_stat(host: &Host, metric_id: u32) -> Option<usize> {
    let ordinal = (metric_id >> 2) as usize;
    ordinal
        .checked_sub(1)
        .and_then(|i| host.metric_ids.get(i))
        .copied()
}

/// `proxy_define_metric`: ids carry the kind in their low 2 bits, like Envoy's.
pub fn proxy_define_metric<G: Guest>(
    g: &mut G,
    metric_type: u32,
    name: u64,
    name_size: u64,
    return_id: u64,
) -> HostcallResult {
    let Some(kind) = MetricType::from_u32(metric_type) else {
        return Ok(Status::BadArgument);
    };
    let id = input(g, name, name_size, |h, n| {
        let stat = (h.metric_ids.len() < caps::MAX_METRIC_IDS)
            .then(|| h.shared.define_metric(kind, &String::from_utf8_lossy(n)))
            .flatten();
        let Some(stat) = stat else {
            h.harness_log(
                LogLevel::Warn,
                format!(
                    "proxy_define_metric refused: past the host's cap of {} metrics per process or {} metric ids per VM",
                    caps::MAX_METRICS,
                    caps::MAX_METRIC_IDS
                ),
            );
            return None;
        };
        // Envoy's Context::defineMetric takes a fresh id on every call,
        // even for a name already defined (both ids name the same stat).
        h.metric_ids.push(stat);
        let ordinal = h.metric_ids.len();
        Some(((ordinal as u32) << 2) | metric_type)
    })?;
    let Some(id) = id else {
        return Ok(Status::BadArgument);
    };
    write_u32(g, return_id, id)?;
    Ok(Status::Ok)
}

/// `proxy_get_metric`: histograms BAD_ARGUMENT, unknown ids NOT_FOUND.
pub fn proxy_get_metric<G: Guest>(g: &mut G, metric_id: u32, return_value: u64) -> HostcallResult {
    let host = g.host();
    let Some(stat) = metric_stat(host, metric_id) else {
        return Ok(Status::NotFound);
    };
    let value = host.shared.get_metric(stat)?;
    write_u64(g, return_value, value)?;
    Ok(Status::Ok)
}

/// `proxy_record_metric`: counter += value, gauge = value, histogram sample.
pub fn proxy_record_metric<G: Guest>(g: &mut G, metric_id: u32, value: u64) -> HostcallResult {
    let host = g.host();
    let Some(stat) = metric_stat(host, metric_id) else {
        return Ok(Status::NotFound);
    };
    Ok(host.shared.record_metric(stat, value))
}

/// `proxy_increment_metric`: counters need a positive offset.
pub fn proxy_increment_metric<G: Guest>(g: &mut G, metric_id: u32, offset: i64) -> HostcallResult {
    let host = g.host();
    let Some(stat) = metric_stat(host, metric_id) else {
        return Ok(Status::NotFound);
    };
    Ok(host.shared.increment_metric(stat, offset))
}

/// Headers as model data (used by callers building traces).
pub fn headers_of(map: &crate::host::HeaderMap) -> Headers {
    map.to_headers()
}

//! Latency statistics (HDR histogram) and the comparisons reported.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Per-request latencies of one run, in nanoseconds.
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl LatencyRecorder {
    /// Records 1 ns .. 100 s with three significant digits.
    pub fn new() -> Result<LatencyRecorder, String> {
        Histogram::new_with_bounds(1, 100_000_000_000, 3)
            .map(|histogram| LatencyRecorder { histogram })
            .map_err(|e| format!("cannot create the latency histogram: {e}"))
    }

    /// Adds one sample (clamped into the histogram's range).
    pub fn record(&mut self, ns: u64) {
        self.histogram.saturating_record(ns.max(1));
    }

    /// The summary of what was recorded.
    pub fn summary(&self) -> Latency {
        let h = &self.histogram;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            samples: h.len(),
            median_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            mean_ns: h.mean(),
            min_ns: h.min(),
            max_ns: h.max(),
        }
    }
}

/// Summary of a latency distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Number of samples.
    pub samples: u64,
    /// 50th percentile.
    pub median_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Arithmetic mean.
    pub mean_ns: f64,
    /// Fastest sample.
    pub min_ns: u64,
    /// Slowest sample.
    pub max_ns: u64,
}

/// `a / b`, or 0 when `b` is 0 (nothing measured).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// The median of a set of repeated measurements (sorts them); 0 when empty.
pub fn median(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reports_median_and_tail() {
        let mut r = LatencyRecorder::new().unwrap();
        for ns in 1..=1000u64 {
            r.record(ns * 100);
        }
        let s = r.summary();
        assert_eq!(s.samples, 1000);
        // Three significant digits: within 0.1% of the exact quantiles.
        assert!((s.median_ns as f64 - 50_000.0).abs() <= 50.0, "{s:?}");
        assert!((s.p99_ns as f64 - 99_000.0).abs() <= 99.0, "{s:?}");
        assert_eq!(s.min_ns, 100);
        assert!((s.mean_ns - 50_050.0).abs() < 60.0, "{s:?}");
    }

    #[test]
    fn an_empty_run_summarises_to_zero_and_zero_is_recordable() {
        let mut r = LatencyRecorder::new().unwrap();
        assert_eq!(r.summary(), Latency::default());
        r.record(0);
        assert_eq!(r.summary().min_ns, 1);
    }

    #[test]
    fn median_and_ratio() {
        assert_eq!(median(&mut [5, 1, 3]), 3);
        assert_eq!(median(&mut [4, 1, 3, 2]), 2);
        assert_eq!(median(&mut []), 0);
        assert_eq!(ratio(3.0, 2.0), 1.5);
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }
}

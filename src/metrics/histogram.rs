//! A latency histogram whose `observe` is a few relaxed atomic adds: no lock, no allocation
//! (prometheus-client's own `Histogram` takes a mutex per observation). Encoded through
//! prometheus-client's encoder like any of its metrics.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) for the time the core takes to answer (to its response head).
pub const UPSTREAM_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) for one store operation (embedded redb or a Redis round trip).
pub const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A histogram of durations over fixed buckets. Clones share the counts (a handle).
#[derive(Clone, Debug)]
pub struct DurationHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds in nanoseconds, ascending.
    bounds_nanos: Box<[u64]>,
    bounds_secs: Box<[f64]>,
    /// One count per bound, plus the overflow (`+Inf`) bucket last.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

// === impl DurationHistogram ===

impl DurationHistogram {
    pub fn new(bounds_secs: &[f64]) -> Self {
        let bounds_secs: Box<[f64]> = bounds_secs.into();
        Self(Arc::new(Inner {
            bounds_nanos: bounds_secs.iter().map(|s| (s * 1e9) as u64).collect(),
            counts: (0..=bounds_secs.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds_secs,
            sum_nanos: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let inner = &*self.0;
        let bucket = inner
            .bounds_nanos
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(inner.bounds_nanos.len());
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds_secs
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(inner.counts.iter())
            .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
            .collect();
        // `_count` is the sum of the buckets read here, so it always equals the `+Inf` bucket.
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = DurationHistogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        let counts: Vec<u64> = h.0.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, vec![2, 1, 1]);
        assert_eq!(h.count(), 4);
        assert_eq!(h.0.sum_nanos.load(Ordering::Relaxed), 3_006_500_000);
    }
}

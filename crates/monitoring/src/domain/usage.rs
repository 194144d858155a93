//! API usage arithmetic: the fixed latency buckets every usage row stores, merging histograms,
//! reading percentiles from merged bucket counts, and mapping a report whose bounds differ
//! onto ours.
//!
//! Precision: a percentile read from buckets is only known to lie within its bucket. We
//! interpolate linearly inside the bucket (assuming latencies spread evenly there), so the
//! answer can be off by up to the bucket's width — e.g. a p95 reported as 180 ms means
//! "between 100 and 250 ms". Requests slower than the last bound (30 s) report that bound, a
//! lower limit. Merging is exact: per-minute rows over any window add up to the same
//! histogram a single aggregator would have built.

/// Upper bounds of the latency buckets, in milliseconds; one more bucket holds the rest.
pub const BOUNDS_MS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

/// Buckets per histogram: the bounds and the overflow.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// Request counts per latency bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram(pub [u64; BUCKETS]);

impl Histogram {
    /// Reads a gateway's report. Bounds equal to ours are taken as they are; other bounds are
    /// mapped bucket by bucket onto the first of ours that holds the report bucket's upper
    /// bound (so a sample never moves to a faster bucket). No bounds and no counts: a report
    /// without a histogram, read as empty.
    pub fn from_report(bounds: &[f64], counts: &[u64]) -> Result<Histogram, String> {
        if bounds.is_empty() && counts.is_empty() {
            return Ok(Histogram::default());
        }
        if counts.len() != bounds.len() + 1 {
            return Err("latency_counts must have one more entry than latency_bounds_ms".into());
        }
        if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0)
            || bounds.windows(2).any(|w| w[0] >= w[1])
        {
            return Err("latency_bounds_ms must be positive and increasing".into());
        }
        let mut out = Histogram::default();
        for (at, count) in counts.iter().enumerate() {
            let ours = match bounds.get(at) {
                Some(upper) => BOUNDS_MS
                    .iter()
                    .position(|b| b >= upper)
                    .unwrap_or(BUCKETS - 1),
                None => BUCKETS - 1,
            };
            out.0[ours] = out.0[ours].saturating_add(*count);
        }
        Ok(out)
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |sum, c| sum.saturating_add(*c))
    }

    /// The `q` quantile (0 < q ≤ 1) in milliseconds, interpolated within its bucket (see the
    /// module docs); `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 || !(q > 0.0 && q <= 1.0) {
            return None;
        }
        // The rank of the sample wanted, 1-based.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut below = 0u64;
        for (at, count) in self.0.iter().enumerate() {
            if *count == 0 || below + count < rank {
                below += count;
                continue;
            }
            let lower = if at == 0 { 0.0 } else { BOUNDS_MS[at - 1] };
            let Some(upper) = BOUNDS_MS.get(at) else {
                return Some(lower);
            };
            let within = (rank - below) as f64 / *count as f64;
            return Some(lower + (upper - lower) * within);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(bucket: usize, count: u64) -> Histogram {
        let mut h = Histogram::default();
        h.0[bucket] = count;
        h
    }

    #[test]
    fn quantiles_fall_inside_the_right_bucket() {
        // 100 samples in (50, 100] ms.
        let h = with(6, 100);
        assert_eq!(h.quantile(0.5), Some(75.0));
        assert_eq!(h.quantile(1.0), Some(100.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(h.quantile(0.0), None);
        // Overflow reports the last bound, a lower limit.
        assert_eq!(with(BUCKETS - 1, 3).quantile(0.99), Some(30000.0));
    }

    #[test]
    fn merged_minutes_give_the_same_percentiles_as_one_window() {
        // Minute one: 90 fast requests; minute two: 10 slow ones.
        let mut merged = with(2, 90);
        merged.merge(&with(9, 10));
        assert_eq!(merged.total(), 100);
        let p50 = merged.quantile(0.5).expect("valid");
        assert!(p50 > 2.5 && p50 <= 5.0, "{p50}");
        let p95 = merged.quantile(0.95).expect("valid");
        assert!(p95 > 500.0 && p95 <= 1000.0, "{p95}");
        // p90 is the last fast sample: the top of the fast bucket.
        assert_eq!(merged.quantile(0.9), Some(5.0));
    }

    #[test]
    fn reports_with_our_bounds_are_taken_as_they_are() {
        let mut counts = vec![0u64; BUCKETS];
        counts[3] = 7;
        counts[BUCKETS - 1] = 1;
        let h = Histogram::from_report(&BOUNDS_MS, &counts).expect("valid");
        assert_eq!(h.0[3], 7);
        assert_eq!(h.0[BUCKETS - 1], 1);
    }

    #[test]
    fn reports_with_other_bounds_never_get_faster() {
        // (0, 3] → our (2.5, 5]; (3, 40] → our (25, 50]; (40, 60000] → overflow; rest too.
        let h = Histogram::from_report(&[3.0, 40.0, 60000.0], &[1, 2, 3, 4]).expect("valid");
        assert_eq!(h.0[2], 1);
        assert_eq!(h.0[5], 2);
        assert_eq!(h.0[BUCKETS - 1], 7);
        assert_eq!(h.total(), 10);
        assert!(Histogram::from_report(&[], &[]).expect("valid").total() == 0);
        assert!(Histogram::from_report(&[1.0], &[1]).is_err());
        assert!(Histogram::from_report(&[2.0, 1.0], &[1, 1, 1]).is_err());
        assert!(Histogram::from_report(&[f64::NAN], &[1, 1]).is_err());
    }
}

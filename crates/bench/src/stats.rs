//! The statistics the benchmarks print: medians, their spread, and a distribution-free
//! interval for a median (noise on this shared machine follows no known distribution).

/// A distribution-free interval for the median of `values`: the k-th lowest and k-th
/// highest value, which cover the median with the probability that a fair coin tossed once
/// per value shows heads between k and n − k times (the sign test). k is the largest whose
/// interval still has at least 95% confidence; with too few values for that (under six), k
/// is 1 and the interval is the whole range. Returns (low, high, confidence).
pub(crate) fn median_interval(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0.0);
    }
    // below[j]: the chance of fewer than j heads in n tosses.
    let mut below = vec![0.0; n + 1];
    let mut term = 0.5f64.powi(i32::try_from(n).unwrap_or(i32::MAX));
    for j in 0..n {
        below[j + 1] = below[j] + term;
        term *= (n - j) as f64 / (j + 1) as f64;
    }
    // The interval misses the median when fewer than k values lie on one side of it.
    let k = (1..=n.div_ceil(2))
        .rev()
        .find(|&k| below[k] <= 0.025)
        .unwrap_or(1);
    let confidence = (1.0 - 2.0 * below[k]).max(0.0);
    (sorted[k - 1], sorted[n - k], confidence)
}

/// The median of `values` and their spread (lowest, highest).
pub(crate) fn median_and_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

#[cfg(test)]
mod tests {
    use super::median_interval;

    #[test]
    fn median_interval_widens_to_the_range_for_few_values_and_narrows_with_more() {
        // Five values: only the whole range reaches past 90% (1 − 2/32).
        let (low, high, confidence) = median_interval(&[3.0, -1.0, 9.0, 4.0, 5.0]);
        assert_eq!((low, high), (-1.0, 9.0));
        assert!((confidence - 0.9375).abs() < 1e-9);
        // Nine values: the 2nd lowest and 2nd highest (1 − 2 × 10/512).
        let nine: Vec<f64> = (1..=9).map(f64::from).collect();
        let (low, high, confidence) = median_interval(&nine);
        assert_eq!((low, high), (2.0, 8.0));
        assert!((confidence - (1.0 - 20.0 / 512.0)).abs() < 1e-9);
        // One value says nothing about where the median lies.
        assert_eq!(median_interval(&[1.5]), (1.5, 1.5, 0.0));
    }
}

//! Bootstrap intervals: how much a statistic differs between two samples, with a percentile
//! interval from seeded resamples, so the same samples give the same interval (`compare`).

use super::percentile;
use crate::rng::Rng;

/// A statistic of `v` by name: `mean`, `median` or `p99` (linear percentiles); NaN for another
/// name or an empty sample. `v` is reordered.
pub(crate) fn statistic(name: &str, v: &mut [f64]) -> f64 {
    match name {
        "mean" => {
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        }
        "median" => percentile::linear(v, 0.5),
        "p99" => percentile::linear(v, 0.99),
        _ => f64::NAN,
    }
}

/// The difference `b − a` of a [`statistic`], with its percentile interval at `level` from
/// `resamples` resamples of both (seeded by `seed`): `(difference, low, high)`, the interval NaN
/// when a sample has fewer than two values.
pub(crate) fn difference(
    a: &[f64],
    b: &[f64],
    which: &str,
    level: f64,
    resamples: usize,
    seed: u64,
) -> (f64, f64, f64) {
    let point = statistic(which, &mut b.to_vec()) - statistic(which, &mut a.to_vec());
    if a.len() < 2 || b.len() < 2 {
        return (point, f64::NAN, f64::NAN);
    }
    let mut rng = Rng::new(seed);
    let (mut ra, mut rb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    let mut diffs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in ra.iter_mut() {
            *x = a[rng.below(a.len() as u64) as usize];
        }
        for x in rb.iter_mut() {
            *x = b[rng.below(b.len() as u64) as usize];
        }
        diffs.push(statistic(which, &mut rb) - statistic(which, &mut ra));
    }
    let alpha = (1.0 - level) / 2.0;
    let lo = percentile::linear(&mut diffs, alpha);
    let hi = percentile::linear(&mut diffs, 1.0 - alpha);
    (point, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Normal samples from the shared generator.
    fn normal(n: usize, mean: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| mean + sd * r.normal()).collect()
    }

    #[test]
    fn a_known_shift_is_found_and_bracketed() {
        let a = normal(400, 100.0, 10.0, 1);
        let b = normal(400, 120.0, 10.0, 2);
        let (d, lo, hi) = difference(&a, &b, "mean", 0.95, 2000, 7);
        assert!(lo < 20.0 && 20.0 < hi, "the interval [{lo}, {hi}] holds the true shift");
        assert!(lo > 0.0 && (d - 20.0).abs() < 3.0, "{d}");
    }

    #[test]
    fn same_distribution_is_mostly_no_difference_at_the_stated_rate() {
        // 200 pairs of samples from one distribution: about 5% of 95% intervals miss 0.
        let mut misses = 0;
        for k in 0..200u64 {
            let a = normal(100, 50.0, 5.0, 1000 + k);
            let b = normal(100, 50.0, 5.0, 5000 + k);
            let (_, lo, hi) = difference(&a, &b, "mean", 0.95, 500, k);
            if lo > 0.0 || hi < 0.0 {
                misses += 1;
            }
        }
        assert!((2..=22).contains(&misses), "{misses} of 200 (expect ~10)");
    }
}

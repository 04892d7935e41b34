//! Percentiles, by the rules the tools users compare against name (reference `metrics.md`,
//! section E): vllm bench serve interpolates linearly (numpy's default), GuideLLM takes the
//! first value whose cumulative probability reaches the level. Each rule is written here once;
//! the summaries ([`super::stats`]), the bootstrap of `compare` (`bootstrap`) and the
//! search call it.

/// Linear interpolation between the closest ranks (numpy's default `linear`, vllm bench
/// serve's `np.percentile`): the `q` quantile (0–1) lies at position q·(n−1) of the sorted
/// values, between the two values around it. NaN when empty; `v` is reordered.
pub(crate) fn linear(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    linear_at(v, &[pos])[0]
}

/// Several percentiles `ps` (0–100) under [`linear`], with one selection pass over `v` (the
/// summaries ask for a dozen of millions of values). The position is computed as (n−1)·p/100,
/// which can differ in the last bit from [`linear`]'s q·(n−1): each is kept as it was, so
/// that no number written before changes. Zeros when empty; `v` is reordered.
pub(crate) fn linear_percentiles(v: &mut [f64], ps: &[f64]) -> Vec<f64> {
    let n = v.len();
    if n == 0 {
        return vec![0.0; ps.len()];
    }
    let positions: Vec<f64> = ps.iter().map(|p| (n - 1) as f64 * p / 100.0).collect();
    linear_at(v, &positions)
}

/// The values at fractional positions (0 ≤ pos ≤ n−1) of `v` sorted, linearly interpolated
/// between neighbours; a whole position is the order statistic itself. Selects only the
/// order statistics needed, ascending, each selection touching the part to its right.
fn linear_at(v: &mut [f64], positions: &[f64]) -> Vec<f64> {
    let n = v.len();
    let around = |pos: f64| (pos.floor() as usize, (pos.ceil() as usize).min(n - 1));
    let mut wanted: Vec<usize> = positions.iter().flat_map(|p| <[usize; 2]>::from(around(*p))).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut lo = 0;
    for &k in &wanted {
        if k >= lo {
            v[lo..].select_nth_unstable_by(k - lo, f64::total_cmp);
            lo = k + 1;
        }
    }
    positions
        .iter()
        .map(|pos| match around(*pos) {
            (a, b) if a == b => v[a],
            (a, b) => v[a] + (v[b] - v[a]) * (pos - a as f64),
        })
        .collect()
}

/// The higher of the two values around the linear rule's position (numpy's `higher`): the
/// value at ⌈q·(n−1)⌉ of the sorted values, so always one that was measured; at q = 0.5 the
/// upper middle. NaN when empty; `v` is reordered.
pub(crate) fn higher(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let k = ((q * (v.len() - 1) as f64).ceil() as usize).min(v.len() - 1);
    *v.select_nth_unstable_by(k, f64::total_cmp).1
}

/// GuideLLM's weighted inverse CDF: (value, weight) pairs normalised to probabilities, the `q`
/// quantile (0–1) is the first value, in ascending order, whose cumulative probability
/// reaches `q` (no interpolation; 1e-12 of slack for the rounding of the running sum).
/// `sorted` is ascending by value, `total` the sum of its weights (> 0). The last value when
/// none reaches `q`, 0 when empty.
pub(crate) fn weighted_inverse_cdf(sorted: &[(f64, f64)], total: f64, q: f64) -> f64 {
    let mut cum = 0.0;
    for (x, w) in sorted {
        cum += w / total;
        if cum >= q - 1e-12 {
            return *x;
        }
    }
    sorted.last().map_or(0.0, |p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented difference of the two rules on four values: the linear rule interpolates
    /// between measured values, the inverse CDF returns one of them.
    #[test]
    fn the_two_rules_differ_as_documented() {
        let values = [1.0, 2.0, 3.0, 4.0];
        let pairs: Vec<(f64, f64)> = values.iter().map(|x| (*x, 1.0)).collect();
        // Median: position 1.5 → 2.5; the first value with cumulative probability ≥ 0.5 is 2.
        assert_eq!(linear(&mut values.clone(), 0.5), 2.5);
        assert_eq!(weighted_inverse_cdf(&pairs, 4.0, 0.5), 2.0);
        // p90: position 2.7 → 3.7; cumulative 0.75 < 0.9 ≤ 1.0 → 4.
        assert!((linear(&mut values.clone(), 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(weighted_inverse_cdf(&pairs, 4.0, 0.9), 4.0);
        // p25: position 0.75 → 1.75; cumulative 0.25 ≥ 0.25 → 1.
        assert_eq!(linear(&mut values.clone(), 0.25), 1.75);
        assert_eq!(weighted_inverse_cdf(&pairs, 4.0, 0.25), 1.0);
        // Where a position is whole, the rules agree with each other and with numpy's `higher`.
        assert_eq!(linear(&mut values.clone(), 1.0), 4.0);
        assert_eq!(weighted_inverse_cdf(&pairs, 4.0, 1.0), 4.0);
        assert_eq!(higher(&mut values.clone(), 0.5), 3.0);
        assert_eq!(higher(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
    }

    #[test]
    fn one_selection_pass_gives_what_one_quantile_at_a_time_gives() {
        let mut rng = crate::rng::Rng::new(3);
        let v: Vec<f64> = (0..1001).map(|_| rng.exponential(1.0)).collect();
        let many = linear_percentiles(&mut v.clone(), &[0.0, 25.0, 50.0, 100.0]);
        for (p, got) in [0.0, 25.0, 50.0, 100.0].iter().zip(many) {
            assert_eq!(got, linear(&mut v.clone(), p / 100.0), "p{p}");
        }
        assert!(linear(&mut [], 0.5).is_nan() && higher(&mut [], 0.5).is_nan());
        assert_eq!(linear_percentiles(&mut [], &[50.0, 99.0]), [0.0, 0.0]);
    }
}

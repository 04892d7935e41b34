//! Bootstrap intervals: how much a statistic differs between two samples, with a percentile
//! interval from seeded resamples, so the same samples give the same interval (`compare`).
//!
//! Two ways to resample a sample (`compare` uses [`Resampling::Blocks`]):
//! * [`Resampling::Independent`]: value by value, as if every value were independent;
//! * [`Resampling::Blocks`]: the circular block bootstrap (Politis & Romano 1992) of the
//!   sample in time order: contiguous blocks of [`block_length`] values, each starting
//!   anywhere (wrapping round the end), laid end to end. Neighbours that resemble each other
//!   (requests that queued behind the same burst, a stall of the client) stay together, so
//!   the interval holds when the values are autocorrelated; with independent values the rule
//!   gives blocks of one, and it is the plain bootstrap.

use super::percentile;
use crate::rng::Rng;

/// How [`difference`] resamples each sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resampling {
    /// Value by value (the values are taken as independent).
    Independent,
    /// By circular blocks of [`block_length`] values (the values in time order).
    Blocks,
}

/// The difference of a statistic between two samples, with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Interval {
    /// `statistic(b) − statistic(a)`.
    pub difference: f64,
    /// The percentile interval (NaN when a sample has fewer than two values).
    pub low: f64,
    pub high: f64,
    /// The percentile interval of the ratio `statistic(b) / statistic(a)` from the same
    /// resamples (NaN when a sample has fewer than two values, or the baseline's statistic is
    /// never positive). Never negative for non-negative values, so a relative change read from
    /// it (`ratio − 1`) never goes below −100%; a resample has `b − a > 0` exactly when its
    /// ratio is above 1, so it excludes 1 when the difference's interval excludes 0 (up to the
    /// interpolation between two resamples at an end).
    pub ratio_low: f64,
    pub ratio_high: f64,
    /// The block lengths used for `a` and `b` (1 when resampled value by value).
    pub block_a: usize,
    pub block_b: usize,
}

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
/// `resamples` resamples of both (seeded by `seed`), each resampled as `how` says (for
/// [`Resampling::Blocks`], `a` and `b` in time order, each with its own [`block_length`]).
#[cfg(test)]
pub(crate) fn difference(
    a: &[f64],
    b: &[f64],
    which: &str,
    level: f64,
    resamples: usize,
    seed: u64,
    how: Resampling,
) -> Interval {
    difference_in_blocks(a, b, which, level, resamples, seed, blocks(how, a, b))
}

/// The block lengths `how` resamples `a` and `b` by (1 value by value): [`block_length`]'s.
pub(crate) fn blocks(how: Resampling, a: &[f64], b: &[f64]) -> (usize, usize) {
    match how {
        Resampling::Independent => (1, 1),
        Resampling::Blocks => (block_length(a), block_length(b)),
    }
}

/// The most values one resample of a sample holds: a larger sample is resampled `m` out of
/// `n` (Bickel, Götze & van Zwet 1997): each resample draws [`MAX_RESAMPLE`] values (by the
/// same blocks, from anywhere in the whole sample), and its statistic's deviation from the
/// whole sample's is scaled by √(m/n), the ratio of the statistic's spread over n values to
/// that over m for the √n-consistent statistics compared (mean, median, p99). Bounds the cost
/// of `compare` on runs of millions of requests; a sample of at most this many is resampled
/// whole, as it always was.
pub(crate) const MAX_RESAMPLE: usize = 2048;

/// [`difference`] with the block lengths given (`(1, 1)`: value by value), as [`blocks`]
/// gives them.
pub(crate) fn difference_in_blocks(
    a: &[f64],
    b: &[f64],
    which: &str,
    level: f64,
    resamples: usize,
    seed: u64,
    blocks: (usize, usize),
) -> Interval {
    let mut one = differences_in_blocks(a, b, &[which], level, resamples, seed, blocks);
    one.remove(0)
}

/// [`difference_in_blocks`] of several statistics from the same resamples (each resample's
/// statistics all taken): for one statistic, [`difference_in_blocks`] itself. `compare` takes
/// a metric's statistics so when a sample is resampled m out of n (the cost is in drawing the
/// values, scattered over a large sample).
pub(crate) fn differences_in_blocks(
    a: &[f64],
    b: &[f64],
    which: &[&str],
    level: f64,
    resamples: usize,
    seed: u64,
    (block_a, block_b): (usize, usize),
) -> Vec<Interval> {
    let whole: Vec<(f64, f64)> =
        which.iter().map(|w| (statistic(w, &mut a.to_vec()), statistic(w, &mut b.to_vec()))).collect();
    let nan = f64::NAN;
    let mut out: Vec<Interval> = whole
        .iter()
        .map(|(wa, wb)| Interval {
            difference: wb - wa,
            low: nan,
            high: nan,
            ratio_low: nan,
            ratio_high: nan,
            block_a,
            block_b,
        })
        .collect();
    if a.len() < 2 || b.len() < 2 {
        return out;
    }
    let mut rng = Rng::new(seed);
    let (ma, mb) = (a.len().min(MAX_RESAMPLE), b.len().min(MAX_RESAMPLE));
    let (mut ra, mut rb) = (vec![0.0; ma], vec![0.0; mb]);
    // m out of n: a resample's deviation from the whole sample's statistic, scaled to n.
    let scaled = |s: f64, whole: f64, m: usize, n: usize| {
        if m == n { s } else { whole + (s - whole) * (m as f64 / n as f64).sqrt() }
    };
    let mut diffs = vec![Vec::with_capacity(resamples); which.len()];
    let mut ratios = vec![Vec::with_capacity(resamples); which.len()];
    for _ in 0..resamples {
        resample(a, block_a.min(ma), &mut ra, &mut rng);
        resample(b, block_b.min(mb), &mut rb, &mut rng);
        for (k, w) in which.iter().enumerate() {
            let sa = scaled(statistic(w, &mut ra), whole[k].0, ma, a.len());
            let sb = scaled(statistic(w, &mut rb), whole[k].1, mb, b.len());
            diffs[k].push(sb - sa);
            if sa > 0.0 && (sb / sa).is_finite() {
                ratios[k].push(sb / sa);
            }
        }
    }
    let alpha = (1.0 - level) / 2.0;
    for ((out, diffs), ratios) in out.iter_mut().zip(&mut diffs).zip(&mut ratios) {
        out.low = percentile::linear(diffs, alpha);
        out.high = percentile::linear(diffs, 1.0 - alpha);
        // Only when (nearly) every resample gave a ratio: otherwise its interval would describe
        // another set of resamples than the difference's.
        if ratios.len() * 100 >= resamples * 99 && !ratios.is_empty() {
            out.ratio_low = percentile::linear(ratios, alpha);
            out.ratio_high = percentile::linear(ratios, 1.0 - alpha);
        }
    }
    out
}

/// Fills `into` (as long as `x`, or shorter: m out of n) with circular blocks of `block`
/// values of `x`, each starting anywhere; a block of one is the plain bootstrap.
fn resample(x: &[f64], block: usize, into: &mut [f64], rng: &mut Rng) {
    let n = x.len();
    let block = block.clamp(1, n);
    for chunk in into.chunks_mut(block) {
        let start = rng.below(n as u64) as usize;
        for (i, v) in chunk.iter_mut().enumerate() {
            *v = x[(start + i) % n];
        }
    }
}

/// The block length of the circular block bootstrap for a series in time order, by the rule of
/// Politis & White (2004, with the correction of Patton, Politis & White 2009): from the
/// autocovariances up to the lag where the autocorrelation has died out (the first lag `m`
/// after which `K = max(5, ⌈√log10 n⌉)` autocorrelations in a row are all within
/// `2·√(log10 n / n)`), weighted by the flat-top window up to `M = 2m`,
/// `b = (2G² / D)^(1/3) · n^(1/3)` with `G = Σ λ(k/M)·|k|·R(k)`, `D = 4/3·(Σ λ(k/M)·R(k))²`;
/// rounded up, at least 1, at most `min(3√n, n/3)`. Independent values give 1 (or 2, by
/// chance); an AR(1) series with φ = 0.7 and n = 500 about 20.
pub(crate) fn block_length(x: &[f64]) -> usize {
    let n = x.len();
    if n < 8 {
        return 1;
    }
    let nf = n as f64;
    let b_max = (3.0 * nf.sqrt()).min(nf / 3.0).ceil();
    // A long series: the dependence read from its first BLOCK_WINDOW values (autocorrelations
    // as well estimated from them; the rule reads O(n · lags)), the length for the whole
    // series by the rule's n^(1/3).
    let factor = if n > BLOCK_WINDOW { block_factor(&x[..BLOCK_WINDOW]) } else { block_factor(x) };
    let Some(factor) = factor else { return 1 };
    let b = factor * nf.cbrt();
    if b.is_finite() { b.ceil().clamp(1.0, b_max.max(1.0)) as usize } else { 1 }
}

/// The values [`block_length`] reads the dependence from.
const BLOCK_WINDOW: usize = 1 << 16;

/// [`block_length`]'s `(2G² / D)^(1/3)` (none where the rule gives 1 whatever the length).
fn block_factor(x: &[f64]) -> Option<f64> {
    let n = x.len();
    let nf = n as f64;
    let mean = x.iter().sum::<f64>() / nf;
    let acov = |k: usize| -> f64 { (0..n - k).map(|i| (x[i] - mean) * (x[i + k] - mean)).sum::<f64>() / nf };
    let r0 = acov(0);
    if r0 <= 0.0 || !r0.is_finite() {
        return None;
    }
    let k_n = (nf.log10().sqrt().ceil() as usize).max(5);
    // (At most 200 lags: the rule is O(n·lags); dependence beyond that is not a queue's.)
    let m_max = (nf.sqrt().ceil() as usize + k_n).min(200).min(n - 1);
    let threshold = 2.0 * (nf.log10() / nf).sqrt();
    let rho: Vec<f64> = (0..=m_max).map(|k| if k == 0 { 1.0 } else { acov(k) / r0 }).collect();
    // The first lag after which K autocorrelations in a row are insignificant; else the last
    // significant one.
    let m = (0..=m_max.saturating_sub(k_n))
        .find(|&m| (1..=k_n).all(|j| rho[m + j].abs() < threshold))
        .unwrap_or_else(|| (1..=m_max).rev().find(|&k| rho[k].abs() >= threshold).unwrap_or(1));
    let big_m = (2 * m).clamp(1, m_max);
    let flat_top = |t: f64| {
        let t = t.abs();
        if t <= 0.5 {
            1.0
        } else if t <= 1.0 {
            2.0 * (1.0 - t)
        } else {
            0.0
        }
    };
    let (mut g, mut g0) = (0.0, r0);
    for (k, r) in rho.iter().enumerate().take(big_m + 1).skip(1) {
        let (w, r) = (flat_top(k as f64 / big_m as f64), r * r0);
        g += 2.0 * w * k as f64 * r;
        g0 += 2.0 * w * r;
    }
    let d = 4.0 / 3.0 * g0 * g0;
    if d <= 0.0 || !d.is_finite() {
        return None;
    }
    Some((2.0 * g * g / d).cbrt())
}

/// The standard normal quantile at `p` in (0, 1) (Acklam's rational approximation, relative
/// error below 1.2e-9); NaN outside.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Normal samples from the shared generator.
    fn normal(n: usize, mean: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| mean + sd * r.normal()).collect()
    }

    /// An AR(1) series `x[t] = mean + φ·(x[t−1] − mean) + e[t]` (started in its stationary
    /// distribution): neighbours correlated as queueing makes neighbouring requests.
    fn ar1(n: usize, mean: f64, phi: f64, seed: u64) -> Vec<f64> {
        let mut r = Rng::new(seed);
        let mut x = r.normal() / (1.0 - phi * phi).sqrt();
        (0..n)
            .map(|_| {
                let v = mean + x;
                x = phi * x + r.normal();
                v
            })
            .collect()
    }

    #[test]
    fn normal_quantiles() {
        for (p, z) in [(0.975, 1.959_963_985), (0.5, 0.0), (0.95, 1.644_853_627), (0.005, -2.575_829_304)] {
            assert!((normal_quantile(p) - z).abs() < 1e-6, "{p}: {}", normal_quantile(p));
        }
        assert!(normal_quantile(1.0).is_nan() && normal_quantile(0.0).is_nan());
    }

    /// Beyond [`MAX_RESAMPLE`] values the interval (m out of n, rescaled) is as wide as the
    /// statistic's spread over the whole samples: for the mean of independent values,
    /// ±1.96·σ·√(2/n); and a metric's statistics from shared resamples equal each one alone
    /// when there is one.
    #[test]
    fn m_out_of_n_intervals_have_the_whole_sample_s_width() {
        let n = 40_000;
        let (a, b) = (normal(n, 10.0, 1.0, 41), normal(n, 10.1, 1.0, 42));
        let want = 2.0 * 1.96 * (2.0 / n as f64).sqrt();
        for how in [Resampling::Independent, Resampling::Blocks] {
            let i = difference(&a, &b, "mean", 0.95, 400, 5, how);
            let width = i.high - i.low;
            assert!((width / want - 1.0).abs() < 0.25, "{how:?}: width {width}, want {want}");
            assert!(i.low < i.difference && i.difference < i.high && i.low > 0.0, "{i:?}");
            assert!(i.ratio_low > 1.0 && i.ratio_high < 1.03, "{i:?}");
        }
        let shared = differences_in_blocks(&a, &b, &["mean"], 0.95, 50, 9, (1, 1));
        assert_eq!(shared[0], difference_in_blocks(&a, &b, "mean", 0.95, 50, 9, (1, 1)));
    }

    #[test]
    fn a_known_shift_is_found_and_bracketed() {
        let a = normal(400, 100.0, 10.0, 1);
        let b = normal(400, 120.0, 10.0, 2);
        for how in [Resampling::Independent, Resampling::Blocks] {
            let i = difference(&a, &b, "mean", 0.95, 2000, 7, how);
            assert!(i.low < 20.0 && 20.0 < i.high, "{how:?}: the interval {i:?} holds the true shift");
            assert!(i.low > 0.0 && (i.difference - 20.0).abs() < 3.0, "{how:?}: {i:?}");
        }
    }

    #[test]
    fn the_ratio_interval_stays_positive_and_agrees_with_the_difference_on_significance() {
        // A heavy-tailed baseline over few values: its resampled p99 often lands far above its
        // own value, so the difference's low end divided by it reads below −100%.
        let mut a = vec![5.0; 9];
        a.push(400.0);
        let b = vec![4.0, 5.0, 6.0, 5.0, 4.0, 6.0, 5.0, 5.0, 4.0, 6.0];
        let i = difference(&a, &b, "p99", 0.95, 2000, 3, Resampling::Independent);
        let base = statistic("p99", &mut a.clone());
        assert!(i.low < -base, "{i:?} against {base}");
        assert!(i.ratio_low > 0.0 && i.ratio_low <= i.ratio_high, "{i:?}");
        for k in 0..100u64 {
            let a = normal(60, 50.0, 8.0, 100 + k);
            let b = normal(60, 50.0 + (k % 5) as f64, 8.0, 900 + k);
            for how in [Resampling::Independent, Resampling::Blocks] {
                let i = difference(&a, &b, "mean", 0.95, 500, k, how);
                let (by_difference, by_ratio) =
                    (i.low > 0.0 || i.high < 0.0, i.ratio_low > 1.0 || i.ratio_high < 1.0);
                assert_eq!(by_difference, by_ratio, "{k} {how:?}: {i:?}");
                assert!(i.ratio_low > 0.0, "{i:?}");
            }
        }
    }

    #[test]
    fn same_distribution_is_mostly_no_difference_at_the_stated_rate() {
        // 200 pairs of samples from one distribution: about 5% of 95% intervals miss 0, by
        // either resampling (independent values give blocks of about one).
        for how in [Resampling::Independent, Resampling::Blocks] {
            let mut misses = 0;
            for k in 0..200u64 {
                let a = normal(100, 50.0, 5.0, 1000 + k);
                let b = normal(100, 50.0, 5.0, 5000 + k);
                let i = difference(&a, &b, "mean", 0.95, 500, k, how);
                if i.low > 0.0 || i.high < 0.0 {
                    misses += 1;
                }
            }
            assert!((2..=22).contains(&misses), "{how:?}: {misses} of 200 (expect ~10)");
        }
    }

    #[test]
    fn the_block_length_follows_the_dependence() {
        let iid: Vec<usize> = (0..20).map(|k| block_length(&normal(500, 0.0, 1.0, k))).collect();
        assert!(iid.iter().all(|&b| b <= 3), "independent values: blocks of about one, {iid:?}");
        let b5 = block_length(&ar1(500, 0.0, 0.5, 1));
        let b9 = block_length(&ar1(500, 0.0, 0.9, 1));
        assert!(b5 > 3 && b9 > b5, "φ = 0.5: {b5}, φ = 0.9: {b9}");
        assert!(b9 <= 67, "at most 3√n: {b9}");
        assert_eq!(block_length(&[1.0; 50]), 1, "a constant series");
        assert_eq!(block_length(&[1.0, 2.0]), 1);
    }

    /// How often 95% intervals of the difference of two AR(1) series with the same mean miss
    /// 0 (the A/A false-significance rate), of `pairs` pairs.
    fn misses(phi: f64, stat: &str, how: Resampling, pairs: u64) -> u64 {
        (0..pairs)
            .filter(|&k| {
                let a = ar1(400, 50.0, phi, 100 + k);
                let b = ar1(400, 50.0, phi, 900 + k);
                let i = difference(&a, &b, stat, 0.95, 300, k, how);
                i.low > 0.0 || i.high < 0.0
            })
            .count() as u64
    }

    #[test]
    fn under_autocorrelation_the_block_bootstrap_holds_its_level_and_the_plain_one_does_not() {
        // φ = 0.7: the variance of a mean is (1 + φ)/(1 − φ) ≈ 5.7× what independent values
        // would give, so the plain bootstrap's intervals are ~2.4× too narrow: here they miss 0
        // in 58 (mean) and 51 (median) of 150 pairs. The block bootstrap's (blocks of ~16)
        // miss in 10 and 15 of 150 (7% and 10%: slightly narrow for 400 values, the block
        // length being estimated).
        for stat in ["mean", "median"] {
            let plain = misses(0.7, stat, Resampling::Independent, 150);
            let blocks = misses(0.7, stat, Resampling::Blocks, 150);
            assert!(plain >= 35, "{stat}: the plain bootstrap misses 0 in {plain} of 150");
            assert!(blocks <= 18, "{stat}: the block bootstrap misses 0 in {blocks} of 150 (≤ 12%)");
        }
    }
}

//! Distribution summaries under the two conventions (reference `metrics.md`).

use super::percentile;

/// The percentiles reported for every latency metric (the llm-d Benchmark Report's ladder).
pub(crate) const PERCENTILES: [f64; 11] = [0.1, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// mean, median, std, extremes and percentiles of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// (percentile, value), in the order of [`PERCENTILES`].
    pub percentiles: Vec<(f64, f64)>,
}

impl Summary {
    fn empty() -> Self {
        Summary {
            count: 0,
            mean: 0.0,
            median: 0.0,
            std: 0.0,
            min: 0.0,
            max: 0.0,
            percentiles: PERCENTILES.iter().map(|p| (*p, 0.0)).collect(),
        }
    }

    /// Column names of [`Summary::row`].
    pub const COLUMNS: [&'static str; 7] = ["mean", "median", "std", "p90", "p95", "p99", "p99.9"];

    /// The values tables show, in [`Summary::COLUMNS`] order.
    pub fn row(&self) -> [f64; 7] {
        [self.mean, self.median, self.std, self.p(90.0), self.p(95.0), self.p(99.0), self.p(99.9)]
    }

    pub fn p(&self, p: f64) -> f64 {
        self.percentiles.iter().find(|(q, _)| *q == p).map_or(0.0, |(_, v)| *v)
    }
}

/// vllm bench serve: arithmetic mean, population std, median = average of the two middles,
/// percentiles by [`percentile::linear_percentiles`] (numpy's default, position (n−1)·P/100).
/// Empty → zeros. Reorders `values`.
pub(crate) fn vllm(values: &mut [f64]) -> Summary {
    let n = values.len();
    if n == 0 {
        return Summary::empty();
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt();
    // min, max and median first, then the ladder.
    let ps: Vec<f64> = [0.0, 100.0, 50.0].into_iter().chain(PERCENTILES).collect();
    let at = percentile::linear_percentiles(values, &ps);
    Summary {
        count: n,
        mean,
        median: at[2],
        std,
        min: at[0],
        max: at[1],
        percentiles: PERCENTILES.iter().zip(&at[3..]).map(|(p, v)| (*p, *v)).collect(),
    }
}

/// GuideLLM: (value, weight) pairs normalised to probabilities; mean = Σp·x, population
/// variance; percentiles by [`percentile::weighted_inverse_cdf`] (the first sorted value whose
/// cumulative probability ≥ q, no interpolation); median = p50. Zero weights drop out.
pub(crate) fn guidellm(pairs: &mut [(f64, f64)]) -> Summary {
    let total: f64 = pairs.iter().map(|(_, w)| *w).sum();
    if pairs.is_empty() || total <= 0.0 {
        return Summary::empty();
    }
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mean = pairs.iter().map(|(x, w)| x * w).sum::<f64>() / total;
    let var = pairs.iter().map(|(x, w)| w * (x - mean) * (x - mean)).sum::<f64>() / total;
    let quantile = |q: f64| percentile::weighted_inverse_cdf(pairs, total, q);
    Summary {
        count: pairs.iter().filter(|(_, w)| *w > 0.0).count(),
        mean,
        median: quantile(0.5),
        std: var.sqrt(),
        min: pairs.iter().find(|(_, w)| *w > 0.0).map_or(0.0, |p| p.0),
        max: pairs.iter().rev().find(|(_, w)| *w > 0.0).map_or(0.0, |p| p.0),
        percentiles: PERCENTILES.iter().map(|p| (*p, quantile(p / 100.0))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_matches_numpy_by_hand() {
        // numpy: mean 2.5, median 2.5, std 1.118, p25 1.75, p75 3.25, p99 3.97, p99.9 3.997
        let s = vllm(&mut [4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.count, s.mean, s.median), (4, 2.5, 2.5));
        assert!((s.std - 1.118_033_988_749_895).abs() < 1e-12);
        assert!((s.p(25.0) - 1.75).abs() < 1e-12);
        assert!((s.p(75.0) - 3.25).abs() < 1e-12);
        assert!((s.p(99.0) - 3.97).abs() < 1e-12);
        assert!((s.p(99.9) - 3.997).abs() < 1e-12);
        // numpy: p0.1 1.003, p1 1.03, p5 1.15, p10 1.3
        for (p, want) in [(0.1, 1.003), (1.0, 1.03), (5.0, 1.15), (10.0, 1.3)] {
            assert!((s.p(p) - want).abs() < 1e-12, "p{p}");
        }
        assert_eq!((s.min, s.max), (1.0, 4.0));
        let one = vllm(&mut [7.0]);
        assert_eq!((one.mean, one.median, one.std, one.p(99.0)), (7.0, 7.0, 0.0, 7.0));
        assert_eq!(vllm(&mut []), Summary::empty());
    }

    #[test]
    fn vllm_selection_equals_full_sort_on_random_data() {
        let mut rng = crate::rng::Rng::new(9);
        let mut v: Vec<f64> = (0..10_001).map(|_| rng.exponential(3.0)).collect();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let s = vllm(&mut v);
        for (p, got) in &s.percentiles {
            let pos = 10_000.0 * p / 100.0;
            let (a, b) = (pos.floor() as usize, pos.ceil() as usize);
            let want = sorted[a] + (sorted[b] - sorted[a]) * (pos - a as f64);
            assert!((got - want).abs() < 1e-12, "p{p}");
        }
        assert_eq!(s.median, sorted[5000]);
        assert_eq!((s.min, s.max), (sorted[0], sorted[10_000]));
    }

    #[test]
    fn guidellm_weighted_inverse_cdf() {
        // values 1 (w 1), 2 (w 3): probabilities 0.25 / 0.75; mean 1.75; p25 → 1; p50 → 2.
        let s = guidellm(&mut [(2.0, 3.0), (1.0, 1.0)]);
        assert!((s.mean - 1.75).abs() < 1e-12);
        assert_eq!((s.p(25.0), s.median, s.p(99.0)), (1.0, 2.0, 2.0));
        assert!((s.std - (0.1875f64).sqrt()).abs() < 1e-12);
        // Zero-weight values drop out.
        let s = guidellm(&mut [(5.0, 0.0), (1.0, 1.0)]);
        assert_eq!((s.count, s.mean, s.p(99.9)), (1, 1.0, 1.0));
        assert_eq!((s.min, s.max), (1.0, 1.0));
        assert_eq!(guidellm(&mut []), Summary::empty());
    }
}

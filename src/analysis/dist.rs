//! A distribution of whole-numbered values (chunk gaps in microseconds, token counts) kept as a
//! counting histogram, value → count: its memory follows the number of distinct values, not
//! the number counted, so a day of a busy endpoint (hundreds of millions of gaps) fits.
//!
//! Exact: the order statistics are the values themselves, so percentiles, min, max and median
//! (vllm bench serve's linear interpolation between the two order statistics around each
//! position, [`super::percentile::linear_percentiles`]'s positions) equal the sort-based
//! ones bit for bit; the mean is the running sum in the order counted (as a sum over the
//! values in order gives); the std is Σ count·(value − mean)² over the distinct values, equal
//! to the sum value by value up to the rounding of its terms' order (last bits). While a
//! distribution holds at most [`RAW_CAP`] values its values are also kept as counted, and
//! its summary and CDF are computed from them as before (every number the same).

use std::collections::BTreeMap;

use super::{
    Cdf,
    stats::{PERCENTILES, Summary},
};

/// Values kept as counted (also) up to this many: below it every number is computed as it
/// always was; above it, from the histogram alone (8 MB of them at most per distribution).
pub(crate) const RAW_CAP: usize = 1 << 20;

/// Keys below this are counted in pages of a dense array, above in a sorted map.
const DENSE: u64 = 1 << 24;
/// Keys in one page of the dense array.
const PAGE: usize = 4096;

/// A counting histogram of whole-numbered values, each standing for `key / div`.
#[derive(Debug, Clone)]
pub(crate) struct Dist {
    div: f64,
    /// Page `key / PAGE` of the keys below [`DENSE`], allocated when first touched.
    pages: Vec<Option<Box<[u64; PAGE]>>>,
    sparse: BTreeMap<u64, u64>,
    n: u64,
    /// The sum of the values in the order counted.
    sum: f64,
    /// The values as counted, while there are at most [`RAW_CAP`].
    raw: Option<Vec<f64>>,
}

impl Default for Dist {
    fn default() -> Self {
        Dist::new(1.0)
    }
}

impl Dist {
    /// Values standing for `key / div` (microseconds → seconds: `1e6`).
    pub(crate) fn new(div: f64) -> Dist {
        Dist { div, pages: Vec::new(), sparse: BTreeMap::new(), n: 0, sum: 0.0, raw: Some(Vec::new()) }
    }

    /// The value `key` stands for.
    pub(crate) fn value(&self, key: u64) -> f64 {
        key as f64 / self.div
    }

    /// Counts `key` once.
    pub(crate) fn push(&mut self, key: u64) {
        let v = self.value(key);
        self.n += 1;
        self.sum += v;
        if let Some(raw) = &mut self.raw {
            if raw.len() < RAW_CAP {
                raw.push(v);
            } else {
                self.raw = None;
            }
        }
        if key < DENSE {
            let (page, cell) = ((key / PAGE as u64) as usize, (key % PAGE as u64) as usize);
            if self.pages.len() <= page {
                self.pages.resize_with(page + 1, || None);
            }
            self.pages[page].get_or_insert_with(|| Box::new([0; PAGE]))[cell] += 1;
        } else {
            *self.sparse.entry(key).or_default() += 1;
        }
    }

    /// Counts every value of `later` after this one's (the values as counted are kept while
    /// both kept theirs and the two together are at most [`RAW_CAP`]: the same as counting
    /// them all in that order; above it the mean's sum adds the two sums, equal to the running
    /// one up to the rounding of the last bits).
    pub(crate) fn append(&mut self, later: Dist) {
        self.n += later.n;
        self.sum += later.sum;
        self.raw = match (self.raw.take(), later.raw) {
            (Some(mut a), Some(b)) if a.len() + b.len() <= RAW_CAP => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        if self.pages.len() < later.pages.len() {
            self.pages.resize_with(later.pages.len(), || None);
        }
        for (mine, theirs) in self.pages.iter_mut().zip(later.pages) {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(t)) => m.iter_mut().zip(t.iter()).for_each(|(m, t)| *m += t),
                (None, Some(t)) => *mine = Some(t),
                (_, None) => {}
            }
        }
        for (k, c) in later.sparse {
            *self.sparse.entry(k).or_default() += c;
        }
    }

    #[cfg(test)]
    /// Bytes held (the histogram's pages and map, and the values kept as counted).
    pub(crate) fn bytes(&self) -> usize {
        self.pages.len() * std::mem::size_of::<Option<Box<[u64; PAGE]>>>()
            + self.pages.iter().flatten().count() * PAGE * 8
            + self.sparse.len() * 40
            + self.raw.as_ref().map_or(0, |r| r.capacity() * 8)
    }

    /// (key, count) of every key counted, ascending.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let dense =
            self.pages.iter().enumerate().filter_map(|(p, page)| page.as_ref().map(|c| (p, c))).flat_map(
                |(p, cells)| {
                    cells
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| **c > 0)
                        .map(move |(i, c)| ((p * PAGE + i) as u64, *c))
                },
            );
        dense.chain(self.sparse.iter().map(|(k, c)| (*k, *c)))
    }

    /// The values at the (0-based) ranks `wanted` of the values sorted (ascending ranks, each
    /// below [`Dist::len`]), in one walk.
    fn order_statistics(&self, wanted: &[u64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(wanted.len());
        let mut next = wanted.iter().peekable();
        let mut below = 0u64;
        for (key, c) in self.counts() {
            below += c;
            while let Some(&&rank) = next.peek() {
                if rank < below {
                    out.push(self.value(key));
                    next.next();
                } else {
                    break;
                }
            }
            if next.peek().is_none() {
                break;
            }
        }
        out
    }

    /// vllm bench serve's summary ([`super::stats::vllm`]): from the values as counted while
    /// they are kept, else from the histogram (see the module's documentation).
    pub(crate) fn summary(&mut self) -> Summary {
        if let Some(raw) = &mut self.raw {
            return super::stats::vllm(raw);
        }
        self.histogram_summary()
    }

    /// The summary from the histogram alone.
    pub(crate) fn histogram_summary(&self) -> Summary {
        let n = self.n;
        if n == 0 {
            return super::stats::vllm(&mut []);
        }
        let mean = self.sum / n as f64;
        let var = self
            .counts()
            .map(|(k, c)| (self.value(k) - mean) * (self.value(k) - mean) * c as f64)
            .sum::<f64>()
            / n as f64;
        // The positions of linear_percentiles: min, max, median, then the ladder.
        let ps: Vec<f64> = [0.0, 100.0, 50.0].into_iter().chain(PERCENTILES).collect();
        let positions: Vec<f64> = ps.iter().map(|p| (n - 1) as f64 * p / 100.0).collect();
        let around = |pos: f64| (pos.floor() as u64, (pos.ceil() as u64).min(n - 1));
        let mut wanted: Vec<u64> = positions.iter().flat_map(|p| <[u64; 2]>::from(around(*p))).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let values = self.order_statistics(&wanted);
        let at = |rank: u64| values[wanted.partition_point(|r| *r < rank)];
        let at: Vec<f64> = positions
            .iter()
            .map(|pos| match around(*pos) {
                (a, b) if a == b => at(a),
                (a, b) => at(a) + (at(b) - at(a)) * (pos - a as f64),
            })
            .collect();
        Summary {
            count: n as usize,
            mean,
            median: at[2],
            std: var.sqrt(),
            min: at[0],
            max: at[1],
            percentiles: PERCENTILES.iter().zip(&at[3..]).map(|(p, v)| (*p, *v)).collect(),
        }
    }

    /// The CDF of the values in ms ([`super::cdf`]): from the values as counted while they are
    /// kept, else from the histogram: every value (not a sample) in the same 1,000 log-spaced
    /// bins.
    pub(crate) fn cdf(&self) -> Cdf {
        if let Some(raw) = &self.raw {
            return super::cdf(raw);
        }
        let n = self.n;
        let mut counts = self.counts().peekable();
        let Some(&(first, _)) = counts.peek() else { return Vec::new() };
        let last = self.sparse.keys().next_back().copied().unwrap_or_else(|| {
            self.pages
                .iter()
                .enumerate()
                .rev()
                .find_map(|(p, page)| {
                    let cells = page.as_ref()?;
                    cells.iter().rposition(|c| *c > 0).map(|i| (p * PAGE + i) as u64)
                })
                .unwrap_or(first)
        });
        let lo = self.value(first).max(1e-7);
        let hi = self.value(last).max(0.0).max(lo * 1.0001);
        super::log_binned_cdf(lo, hi, n, counts.map(|(k, c)| (self.value(k), c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The histogram's summary against the sort-based one over the same values.
    fn agree(keys: &[u64], div: f64) {
        let mut d = Dist::new(div);
        for k in keys {
            d.push(*k);
        }
        let mut values: Vec<f64> = keys.iter().map(|k| *k as f64 / div).collect();
        let want = super::super::stats::vllm(&mut values);
        let got = d.histogram_summary();
        assert_eq!(got.count, want.count);
        assert_eq!((got.min, got.max, got.median), (want.min, want.max, want.median), "{keys:?}");
        assert_eq!(got.percentiles, want.percentiles, "{} keys", keys.len());
        assert_eq!(got.mean, want.mean, "the running sum is the same sum");
        let tol = 1e-12 * want.std.abs().max(want.mean.abs()).max(1e-300);
        assert!((got.std - want.std).abs() <= tol, "std {} vs {}", got.std, want.std);
        // While the values are kept, the summary is the sort-based one exactly.
        if keys.len() <= RAW_CAP {
            assert_eq!(d.clone().summary(), want);
        }
    }

    #[test]
    fn histogram_percentiles_equal_the_sort_based_ones() {
        let mut rng = crate::rng::Rng::new(30);
        agree(&[], 1e6);
        agree(&[7], 1e6);
        agree(&[0], 1e6);
        agree(&[5; 1000], 1e6);
        agree(&[1, 2], 1.0);
        // Extremes: zero and a week in microseconds (the largest gap a row may hold), beside
        // the dense keys and beyond them.
        agree(&[0, 604_800_000_000, 3, 604_800_000_000, (1 << 24) - 1, 1 << 24, (1 << 24) + 1], 1e6);
        for len in [2, 3, 10, 101, 1000, 4099, 20_001] {
            // Random gaps around 8 ms with a long tail, and some huge ones.
            let keys: Vec<u64> = (0..len)
                .map(|_| {
                    if rng.chance(0.01) {
                        rng.below(604_800_000_000)
                    } else {
                        8_000 + rng.exponential(2_000.0) as u64
                    }
                })
                .collect();
            agree(&keys, 1e6);
            // Heavily duplicated: a handful of distinct values.
            let dup: Vec<u64> = (0..len).map(|_| rng.below(4) * 1000).collect();
            agree(&dup, 1e6);
            // Token counts.
            let tokens: Vec<u64> = (0..len).map(|_| 1 + rng.below(1 << 24)).collect();
            agree(&tokens, 1.0);
        }
    }

    #[test]
    fn beyond_the_cap_the_summary_comes_from_the_histogram_and_memory_stops_growing() {
        let mut rng = crate::rng::Rng::new(31);
        let mut d = Dist::new(1e6);
        let mut keys = Vec::new();
        let draw = |rng: &mut crate::rng::Rng| 5_000 + rng.below(20_000);
        for _ in 0..RAW_CAP + 10 {
            let k = draw(&mut rng);
            keys.push(k);
            d.push(k);
        }
        assert!(d.raw.is_none(), "the values are no longer kept");
        let mut values: Vec<f64> = keys.iter().map(|k| *k as f64 / 1e6).collect();
        let want = super::super::stats::vllm(&mut values);
        let got = d.summary();
        assert_eq!(
            (got.percentiles, got.min, got.max, got.mean),
            (want.percentiles, want.min, want.max, want.mean)
        );
        // N and 10·N more of the same distribution: the same memory.
        let at_n = d.bytes();
        for _ in 0..10 * (RAW_CAP + 10) {
            d.push(draw(&mut rng));
        }
        assert_eq!(d.bytes(), at_n, "memory follows the distinct values, not the count");
        assert!(at_n < 1 << 20, "{at_n} bytes");
    }

    #[test]
    fn the_histogram_cdf_covers_every_value() {
        let mut d = Dist::new(1e6);
        for k in 0..RAW_CAP as u64 + 1 {
            d.push(1_000 + k % 50_000);
        }
        let c = d.cdf();
        assert!(!c.is_empty() && c.len() <= 1000);
        assert_eq!(c.last().map(|p| p.1), Some(1.0));
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        // From 1 ms to 51 ms.
        assert!(c[0].0 >= 1.0 && c.last().unwrap().0 <= 51.0 * 1.0002, "{:?}", (c[0], c.last()));
        assert!(Dist::new(1e6).cdf().is_empty());
    }
}

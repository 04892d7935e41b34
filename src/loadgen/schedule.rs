//! Arrival schedules from the seed (vllm bench semantics), produced one arrival at a time: the
//! dispatcher's memory grows with what is in flight, never with the length of the schedule.

use crate::rng::Rng;

/// Offsets (seconds from the stage start) of `n` arrivals at `rate` with gamma-distributed gaps
/// of shape `burstiness` (1 = Poisson, ∞ = constant), rescaled so the last arrival is at
/// exactly `n / rate` (vllm bench removes the seed-dependent drift the same way). The scale
/// needs the sum of all gaps: a probe pass over a copy of the generator computes it, then the
/// same gaps are drawn again as they are dispatched (same values as a stored schedule).
pub(crate) fn by_count(
    rate: f64,
    burstiness: f64,
    n: u64,
    rng: &mut Rng,
) -> impl Iterator<Item = f64> + use<> {
    let mut probe = rng.clone();
    let (mut first, mut last) = (0.0, 0.0);
    for i in 0..n {
        last += gap(rate, burstiness, &mut probe);
        if i == 0 {
            first = last;
        }
    }
    let scale = if n > 0 && last > 0.0 { (n as f64 / rate) / last } else { 1.0 };
    let mut rng = rng.clone();
    let mut t = 0.0;
    // The first request goes at the start of the stage.
    (0..n).map(move |_| {
        t += gap(rate, burstiness, &mut rng);
        t * scale - first * scale
    })
}

/// Offsets of arrivals until `duration` seconds (no rescaling: the count is what the process
/// gives), capped at `limit` arrivals.
pub(crate) fn by_duration(
    rate: f64,
    burstiness: f64,
    duration: f64,
    limit: Option<u64>,
    rng: &mut Rng,
) -> impl Iterator<Item = f64> + use<> {
    let limit = limit.unwrap_or(u64::MAX);
    let mut rng = rng.clone();
    // Constant arrivals are i / rate, not a running sum: summed gaps drift below the boundary
    // and add an arrival.
    let constant = burstiness.is_infinite();
    let n_constant = ((duration * rate - 1e-9).ceil().max(1.0) as u64).min(limit);
    let (mut i, mut t) = (0u64, 0.0);
    std::iter::from_fn(move || {
        if constant {
            let out = (i < n_constant).then(|| i as f64 / rate);
            i += 1;
            return out;
        }
        if i >= limit {
            return None;
        }
        if i > 0 {
            t += gap(rate, burstiness, &mut rng);
            if t >= duration {
                return None;
            }
        }
        i += 1;
        Some(t)
    })
}

fn gap(rate: f64, burstiness: f64, rng: &mut Rng) -> f64 {
    if burstiness.is_infinite() { 1.0 / rate } else { rng.gamma(burstiness, 1.0 / (rate * burstiness)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schedules as they were computed when stored whole (the reference the streamed ones
    /// must reproduce exactly: same seed, same offsets).
    fn stored_by_count(rate: f64, burstiness: f64, n: u64, rng: &mut Rng) -> Vec<f64> {
        let mut t = 0.0;
        let mut out: Vec<f64> = (0..n)
            .map(|_| {
                t += gap(rate, burstiness, rng);
                t
            })
            .collect();
        if let Some(&last) = out.last()
            && last > 0.0
        {
            let scale = (n as f64 / rate) / last;
            for x in &mut out {
                *x *= scale;
            }
        }
        if let Some(&first) = out.first() {
            for x in &mut out {
                *x -= first;
            }
        }
        out
    }

    fn stored_by_duration(rate: f64, burstiness: f64, duration: f64, rng: &mut Rng) -> Vec<f64> {
        let mut out = vec![0.0];
        let mut t = 0.0;
        loop {
            t += gap(rate, burstiness, rng);
            if t >= duration {
                return out;
            }
            out.push(t);
        }
    }

    #[test]
    fn streamed_schedules_equal_the_stored_ones_bit_for_bit() {
        for (rate, b) in [(100.0, 1.0), (7.5, 0.25), (1000.0, 4.0)] {
            let streamed: Vec<f64> = by_count(rate, b, 5000, &mut Rng::new(9)).collect();
            assert_eq!(streamed, stored_by_count(rate, b, 5000, &mut Rng::new(9)));
            let streamed: Vec<f64> = by_duration(rate, b, 30.0, None, &mut Rng::new(4)).collect();
            assert_eq!(streamed, stored_by_duration(rate, b, 30.0, &mut Rng::new(4)));
        }
    }

    #[test]
    fn counted_schedules_end_exactly_at_n_over_rate() {
        let s: Vec<f64> = by_count(100.0, 1.0, 1000, &mut Rng::new(1)).collect();
        assert_eq!(s.len(), 1000);
        assert_eq!(s[0], 0.0);
        assert!(s.windows(2).all(|w| w[1] >= w[0]));
        let last = *s.last().unwrap();
        assert!((last - 10.0).abs() < 0.02, "{last}");
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced_and_gamma_is_burstier() {
        let s: Vec<f64> = by_duration(10.0, f64::INFINITY, 1.0, None, &mut Rng::new(1)).collect();
        assert_eq!(s.len(), 10);
        assert!(s.windows(2).all(|w| ((w[1] - w[0]) - 0.1).abs() < 1e-9));
        let cv = |b: f64| {
            let s: Vec<f64> = by_duration(100.0, b, 200.0, None, &mut Rng::new(3)).collect();
            let g: Vec<f64> = s.windows(2).map(|w| w[1] - w[0]).collect();
            let m = g.iter().sum::<f64>() / g.len() as f64;
            let v = g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64;
            (m, v.sqrt() / m)
        };
        let (m1, cv1) = cv(1.0);
        let (_, cv_bursty) = cv(0.25);
        let (_, cv_regular) = cv(4.0);
        assert!((m1 - 0.01).abs() < 0.0005 && (cv1 - 1.0).abs() < 0.05, "{m1} {cv1}");
        // Gamma(k) gaps have CV 1/√k.
        assert!(
            (cv_bursty - 2.0).abs() < 0.15 && (cv_regular - 0.5).abs() < 0.05,
            "{cv_bursty} {cv_regular}"
        );
        assert_eq!(by_duration(1000.0, 1.0, 10.0, Some(5), &mut Rng::new(1)).count(), 5);
    }
}

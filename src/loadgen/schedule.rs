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

/// Offsets of arrivals over `duration` seconds while the rate changes linearly from `from` to
/// `to` (requests/s), capped at `limit`. The arrivals are those of the stage's process at rate
/// 1 (gamma gaps of shape `burstiness`; constant: 1 apart) on the ramp's own clock, the expected
/// count so far Λ(t) = from·t + (to − from)·t²/(2·duration), mapped back by Λ⁻¹: the rate at
/// each moment is the ramp's, the gaps keep their shape (time rescaling).
pub(crate) fn ramp(
    from: f64,
    to: f64,
    burstiness: f64,
    duration: f64,
    limit: Option<u64>,
    rng: &mut Rng,
) -> impl Iterator<Item = f64> + use<> {
    let limit = limit.unwrap_or(u64::MAX);
    let mut rng = rng.clone();
    let (a, b) = (from, (to - from) / (2.0 * duration));
    let total = a * duration + b * duration * duration;
    // Λ⁻¹(x): the root of b·t² + a·t = x in [0, duration], in the form that stays exact when b
    // is 0 or negative.
    let at = move |x: f64| {
        let disc = (a * a + 4.0 * b * x).max(0.0);
        let denom = a + disc.sqrt();
        if denom > 0.0 { 2.0 * x / denom } else { 0.0 }
    };
    let (mut i, mut x) = (0u64, 0.0);
    std::iter::from_fn(move || {
        if i >= limit {
            return None;
        }
        if i > 0 {
            x += gap(1.0, burstiness, &mut rng);
        }
        // The last arrival is before the end (a constant ramp's count is ⌈Λ(duration)⌉).
        if x >= total - 1e-9 && i > 0 || total <= 0.0 {
            return None;
        }
        i += 1;
        Some(at(x).min(duration))
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

    /// A ramp's arrivals follow its rate: counts per tenth of the stage match the integral of
    /// the linear rate (within Poisson noise), for rising, falling and flat ramps and each
    /// arrival kind; a flat ramp is the constant-rate schedule; offsets rise within the stage.
    #[test]
    fn a_ramp_sends_at_its_instantaneous_rate() {
        for (from, to) in [(10.0, 400.0), (400.0, 10.0), (200.0, 200.0), (0.0, 300.0), (300.0, 0.0)] {
            for burstiness in [1.0, 4.0, f64::INFINITY] {
                let d = 20.0;
                let offsets: Vec<f64> = ramp(from, to, burstiness, d, None, &mut Rng::new(5)).collect();
                assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{from}→{to}: in order");
                assert!(offsets.iter().all(|&t| (0.0..=d).contains(&t)), "{from}→{to}: within the stage");
                for k in 0..10 {
                    let (t0, t1) = (k as f64 * d / 10.0, (k + 1) as f64 * d / 10.0);
                    let lambda = |t: f64| from * t + (to - from) * t * t / (2.0 * d);
                    let expected = lambda(t1) - lambda(t0);
                    let got = offsets.iter().filter(|&&t| t >= t0 && t < t1).count() as f64;
                    // 5 sigma of a Poisson count (gamma of shape ≥ 1 is less noisy), and 2 for
                    // the rounding of constant arrivals at a tenth's edges.
                    let tolerance = 5.0 * expected.sqrt() + 2.0;
                    assert!(
                        (got - expected).abs() <= tolerance,
                        "{from}→{to} b={burstiness}: tenth {k}: {got} arrivals, expected {expected:.1}"
                    );
                }
            }
        }
        // Flat: the same arrivals as a constant rate's (constant arrivals: exactly i / rate).
        let flat: Vec<f64> = ramp(50.0, 50.0, f64::INFINITY, 4.0, None, &mut Rng::new(1)).collect();
        let constant: Vec<f64> = by_duration(50.0, f64::INFINITY, 4.0, None, &mut Rng::new(1)).collect();
        assert_eq!(flat.len(), constant.len());
        assert!(flat.iter().zip(&constant).all(|(a, b)| (a - b).abs() < 1e-9));
        // The cap, and a ramp from and to nothing.
        assert_eq!(ramp(10.0, 400.0, 1.0, 20.0, Some(7), &mut Rng::new(5)).count(), 7);
        assert_eq!(ramp(0.0, 0.0, 1.0, 20.0, None, &mut Rng::new(5)).count(), 0);
        // Same seed, same schedule.
        let again: Vec<f64> = ramp(10.0, 400.0, 1.0, 20.0, None, &mut Rng::new(5)).collect();
        let first: Vec<f64> = ramp(10.0, 400.0, 1.0, 20.0, None, &mut Rng::new(5)).collect();
        assert_eq!(again, first);
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

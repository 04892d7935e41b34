//! The points of a design: every combination of levels (`full`), random draws, a Latin
//! hypercube, or named treatments. Pure: the same file and seed give the same points.

use serde_json::Value;

use crate::spec::experiment::{Design, Experiment, Factor, Range};

/// One point of the design: its id (`p001`), a name for treatments, and the value of each
/// factor (in the file's order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub id: String,
    pub name: Option<String>,
    pub values: Vec<(String, Value)>,
}

impl Point {
    /// `rate=4 engine.args=[]`: the factor values, each by its last path segment when that is
    /// unambiguous; the value of a secret-looking variable is not shown (it is refused, and the
    /// refusal must not print it).
    pub(crate) fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        self.values
            .iter()
            .map(|(k, v)| {
                let secret = crate::resolve::secret_path(k) || crate::resolve::secret_written(v).is_some();
                let v = if secret { "[not shown]".into() } else { shown(v) };
                format!("{}={v}", short(k, &self.values))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The last segment of `path` (skipping array indices), or the whole path when another factor
/// ends the same way.
pub(crate) fn short<'a>(path: &'a str, all: &[(String, Value)]) -> &'a str {
    let mine = last_segment(path);
    if all.iter().filter(|(k, _)| last_segment(k) == mine).count() > 1 { path } else { mine }
}

fn last_segment(p: &str) -> &str {
    p.rsplit('.').find(|s| s.parse::<usize>().is_err()).unwrap_or(p)
}

/// A value on one line: strings bare, the rest as JSON (for CSV files).
pub(crate) fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A value for people: like [`compact`], a list of plain items as `[a b]`, at most 32 characters.
pub(crate) fn shown(v: &Value) -> String {
    let text = match v {
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
            format!("[{}]", items.iter().map(compact).collect::<Vec<_>>().join(" "))
        }
        v => compact(v),
    };
    if text.chars().count() > 32 { format!("{}…", text.chars().take(31).collect::<String>()) } else { text }
}

/// The most points a design may have, `--yes` or not: more could not be listed in memory,
/// let alone run.
pub(crate) const MOST_POINTS: usize = 1_000_000;

/// How many points the design has, counted without building them (or its levels); `None` when
/// that is beyond [`MOST_POINTS`] (a range with a tiny step, a product that would overflow).
pub(crate) fn size(e: &Experiment) -> Option<usize> {
    let n = match &e.design {
        Design::Full => {
            e.factors.iter().try_fold(1usize, |n, (_, f)| level_count(f).and_then(|l| n.checked_mul(l)))?
        }
        Design::Random(d) | Design::Latin(d) => d.n,
        Design::Treatments(t) => t.len(),
    };
    (n <= MOST_POINTS).then_some(n)
}

/// How many levels [`levels`] gives, without building them; `None` beyond [`MOST_POINTS`].
fn level_count(f: &Factor) -> Option<usize> {
    let n = match f {
        Factor::Levels(l) => l.len(),
        Factor::Range(r) => match r.step {
            Some(step) => {
                let steps = ((r.to - r.from) / step + 1e-9).floor();
                // NaN, infinite or huge: beyond any design.
                if !(steps >= 0.0 && steps < MOST_POINTS as f64) {
                    return None;
                }
                steps as usize + 1
            }
            None => 2,
        },
    };
    (n <= MOST_POINTS).then_some(n)
}

/// The design's points, numbered from 1 in order.
pub(crate) fn points(e: &Experiment) -> Vec<Point> {
    // (treatment name, values)
    type Row = (Option<String>, Vec<(String, Value)>);
    let rows: Vec<Row> = match &e.design {
        Design::Full => {
            let mut rows: Vec<Vec<(String, Value)>> = vec![Vec::new()];
            for (path, f) in e.factors.iter() {
                let ls = levels(f);
                rows = rows
                    .into_iter()
                    .flat_map(|row| {
                        ls.iter().map(move |l| {
                            let mut r = row.clone();
                            r.push((path.clone(), l.clone()));
                            r
                        })
                    })
                    .collect();
            }
            rows.into_iter().map(|r| (None, r)).collect()
        }
        Design::Random(d) => {
            let mut rng = d.rng(0xe5);
            (0..d.n)
                .map(|_| {
                    let row = e.factors.iter().map(|(p, f)| (p.clone(), draw(f, rng.f64()))).collect();
                    (None, row)
                })
                .collect()
        }
        Design::Latin(d) => {
            let mut rng = d.rng(0x1a7);
            let n = d.n;
            // One permutation of the strata per factor.
            let perms: Vec<Vec<usize>> = e
                .factors
                .iter()
                .map(|_| {
                    let mut p: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        p.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    p
                })
                .collect();
            (0..n)
                .map(|i| {
                    let row = e
                        .factors
                        .iter()
                        .zip(&perms)
                        .map(|((p, f), perm)| (p.clone(), draw(f, (perm[i] as f64 + rng.f64()) / n as f64)))
                        .collect();
                    (None, row)
                })
                .collect()
        }
        Design::Treatments(ts) => ts.iter().map(|t| (Some(t.name.clone()), t.set.0.clone())).collect(),
    };
    let width = rows.len().to_string().len().max(3);
    rows.into_iter()
        .enumerate()
        .map(|(i, (name, values))| Point { id: format!("p{:0width$}", i + 1), name, values })
        .collect()
}

/// The levels of a factor (a range by its step; without one, its two ends).
pub(crate) fn levels(f: &Factor) -> Vec<Value> {
    match f {
        Factor::Levels(l) => l.clone(),
        Factor::Range(r) => match r.step {
            Some(step) => {
                let n = ((r.to - r.from) / step + 1e-9).floor() as usize + 1;
                (0..n).map(|i| number(r.from + i as f64 * step, r)).collect()
            }
            None => vec![number(r.from, r), number(r.to, r)],
        },
    }
}

/// The value at quantile `u` ∈ [0, 1) of a factor: a level, or a point of the range (on its
/// step, if it has one).
fn draw(f: &Factor, u: f64) -> Value {
    match f {
        Factor::Levels(l) => l[((u * l.len() as f64) as usize).min(l.len() - 1)].clone(),
        Factor::Range(r) => {
            let x = r.from + u * (r.to - r.from);
            let x = match r.step {
                Some(step) => (r.from + ((x - r.from) / step).round() * step).min(r.to),
                None => x,
            };
            number(x, r)
        }
    }
}

/// A number as JSON: whole numbers as integers (`4`, not `4.0`), others rounded to 6 digits.
fn number(x: f64, r: &Range) -> Value {
    let x = if r.integer { x.round() } else { (x * 1e6).round() / 1e6 };
    if x.fract() == 0.0 && x.abs() < 9e15 { Value::from(x as i64) } else { Value::from(x) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(text: &str) -> Experiment {
        Experiment::from_yaml(text, "e.yaml").unwrap()
    }

    #[test]
    fn full_factorial_varies_the_last_factor_fastest() {
        let e = exp(
            "factors:\n  engine.args: [[], [-x]]\n  workload.stages.0.rate: { from: 2, to: 6, step: 2 }\n",
        );
        let p = points(&e);
        assert_eq!((Some(p.len()), size(&e)), (Some(6), Some(6)));
        assert_eq!(p[0].id, "p001");
        let rates: Vec<&Value> = p.iter().map(|p| &p.values[1].1).collect();
        assert_eq!(
            rates,
            [
                &Value::from(2),
                &Value::from(4),
                &Value::from(6),
                &Value::from(2),
                &Value::from(4),
                &Value::from(6)
            ]
        );
        assert_eq!(p[3].values[0].1, serde_json::json!(["-x"]));
        assert_eq!(p[4].label(), "args=[-x] rate=4");
        assert_eq!(shown(&serde_json::json!(["--set", "max_num_seqs=8"])), "[--set max_num_seqs=8]");
        assert_eq!(shown(&Value::from("x".repeat(40))).chars().count(), 32);
    }

    /// A point's label is in the refusal of its secret: it must not show the secret.
    #[test]
    fn a_label_does_not_show_a_secret_level() {
        let point = |k: &str, v: Value| Point { id: "p001".into(), name: None, values: vec![(k.into(), v)] };
        assert_eq!(point("vars.api_keys.0", Value::from("s3cret")).label(), "api_keys=[not shown]");
        assert_eq!(point("vars.x", serde_json::json!({"token": "s3cret"})).label(), "x=[not shown]");
        assert_eq!(point("engine.url", Value::from("http://u:s3cret@h")).label(), "url=[not shown]");
        assert_eq!(point("vars.api_keys.0", Value::from("env:K")).label(), "api_keys=[not shown]");
        assert_eq!(point("workload.seed", Value::from(7)).label(), "seed=7");
    }

    #[test]
    fn a_design_is_counted_without_being_built_and_never_overflows() {
        let range = |from: &str, to: &str, step: &str| format!("{{ from: {from}, to: {to}, step: {step} }}");
        // Each beyond what can be listed: None, at once (no level is built).
        for factor in [
            range("0", "1e308", "1"),
            range("0", "1", "1e-300"),
            range("1", "10000000000", "1"),
            range("0", "1.7e308", "1e-308"),
        ] {
            let e = exp(&format!("factors:\n  workload.seed: {factor}\n"));
            assert_eq!(size(&e), None, "{factor}");
        }
        // Four factors of 65,536 levels: the product (2^64) does not wrap to 0.
        let wide = range("1", "65536", "1");
        let e = exp(&format!("factors:\n  a.a: {wide}\n  a.b: {wide}\n  a.c: {wide}\n  a.d: {wide}\n"));
        assert_eq!(size(&e), None);
        // At the edge: counted exactly.
        let e = exp(&format!("factors:\n  a.a: {}\n", range("1", "1000000", "1")));
        assert_eq!(size(&e), Some(MOST_POINTS));
        let e = exp(&format!("factors:\n  a.a: {}\n", range("1", "1000001", "1")));
        assert_eq!(size(&e), None);
        let e = exp(&format!("factors:\n  a.a: {}\n  a.b: [1, 2, 3]\n", range("0.5", "2", "0.5")));
        assert_eq!((size(&e), points(&e).len()), (Some(12), 12));
    }

    #[test]
    fn latin_hypercube_uses_every_stratum_once() {
        let e = exp(
            "factors:\n  a.x: { from: 0, to: 10 }\n  b.y: { from: 100, to: 200, integer: true }\ndesign: { latin: { n: 5, seed: 3 } }\n",
        );
        let p = points(&e);
        assert_eq!(p.len(), 5);
        for (k, (lo, hi)) in [(0, (0.0, 10.0)), (1, (100.0, 200.0))] {
            let mut strata: Vec<usize> = p
                .iter()
                .map(|pt| {
                    let x = pt.values[k].1.as_f64().unwrap();
                    (((x - lo) / (hi - lo) * 5.0) as usize).min(4)
                })
                .collect();
            strata.sort();
            assert_eq!(strata, [0, 1, 2, 3, 4], "factor {k}");
        }
        assert!(p.iter().all(|pt| pt.values[1].1.is_i64()));
        assert_eq!(points(&e), p, "seeded");
    }

    #[test]
    fn random_draws_stay_in_range_and_on_the_step() {
        let e = exp(
            "factors:\n  a.x: { from: 1, to: 9, step: 2 }\n  b: [p, q]\ndesign: { random: { n: 50, seed: 1 } }\n",
        );
        let p = points(&e);
        assert_eq!(p.len(), 50);
        assert_eq!(p[9].id, "p010");
        for pt in &p {
            let x = pt.values[0].1.as_i64().unwrap();
            assert!((1..=9).contains(&x) && x % 2 == 1, "{x}");
        }
        let qs = p.iter().filter(|pt| pt.values[1].1 == "q").count();
        assert!((10..=40).contains(&qs), "both levels drawn: {qs}");
    }

    #[test]
    fn treatments_are_named_points() {
        let e = exp(
            "design:\n  treatments:\n    - { name: small, set: { engine.args: [] } }\n    - { name: big, set: { engine.args: [-x], workload.seed: 2 } }\n",
        );
        let p = points(&e);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].label(), "big");
        assert_eq!(p[1].values.len(), 2);
    }
}

//! What an experiment says of its progress: points finished, failed, left, and an ETA from the
//! mean wall time per point so far in this invocation.

use std::time::Instant;

use super::run::Summary;

/// The invocation's counts and summary.
#[derive(Debug)]
pub(super) struct Progress {
    started: Instant,
    /// Points (or a search's trials) this invocation means to run.
    todo: usize,
    /// How many stacks may run at once.
    parallel: u32,
    finished: usize,
    failed: usize,
    pub summary: Summary,
}

/// A point that finished: what the progress line names.
pub(super) struct Finished<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub seconds: f64,
    pub error: Option<&'a str>,
}

impl Progress {
    pub(super) fn new(todo: usize, parallel: u32, summary: Summary) -> Progress {
        Progress { started: Instant::now(), todo, parallel, finished: 0, failed: 0, summary }
    }

    /// Counts a finished point and returns the line that says so; `up`: stacks up now.
    pub(super) fn finished(&mut self, point: &Finished<'_>, up: usize) -> String {
        self.count(self.started.elapsed().as_secs_f64(), point, up)
    }

    /// [`Progress::finished`] with the invocation's elapsed seconds given.
    fn count(&mut self, elapsed: f64, point: &Finished<'_>, up: usize) -> String {
        let Finished { id, label, seconds, error } = *point;
        self.finished += 1;
        match error {
            Some(e) => {
                self.failed += 1;
                self.summary.failed.push((id.to_string(), e.to_string()));
            }
            None => self.summary.done += 1,
        }
        let left = self.todo.saturating_sub(self.finished);
        let eta = if left == 0 {
            String::new()
        } else {
            let per = elapsed / self.finished as f64;
            let parallel = f64::from(self.parallel.max(1));
            format!(", ETA {}", clock(per * left as f64 / parallel.min(left as f64).max(1.0)))
        };
        format!(
            "{id} [{label}] {} in {:.1} s — {} of {}{}, {} up{eta}",
            match error {
                Some(e) => format!("FAILED ({})", e.lines().next().unwrap_or(e)),
                None => "done".into(),
            },
            seconds,
            self.finished,
            super::counted(self.todo, "point"),
            if self.failed > 0 { format!(", {} failed", self.failed) } else { String::new() },
            super::counted(up, "stack"),
        )
    }
}

/// `1:05` or `1:02:03`.
pub(super) fn clock(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_failures_and_the_eta_divides_by_the_stacks_that_can_run() {
        let point = |id, label, seconds, error| Finished { id, label, seconds, error };
        let mut p = Progress::new(5, 2, Summary::default());
        let line = p.count(60.0, &point("p001", "rate=1", 60.0, None), 1);
        // 60 s per point, 4 left, 2 at a time: 2 minutes.
        assert_eq!(line, "p001 [rate=1] done in 60.0 s — 1 of 5 points, 1 stack up, ETA 2:00");
        let line = p.count(120.0, &point("p002", "rate=2", 60.0, Some("boom\nmore")), 1);
        assert_eq!(
            line,
            "p002 [rate=2] FAILED (boom) in 60.0 s — 2 of 5 points, 1 failed, 1 stack up, ETA 1:30"
        );
        assert_eq!((p.summary.done, p.summary.failed.len()), (1, 1));
        // One left: no more parallel than what is left.
        let mut p8 = Progress { parallel: 8, ..p };
        p8.count(180.0, &point("p003", "", 1.0, None), 0);
        let line = p8.count(240.0, &point("p004", "", 1.0, None), 0);
        assert!(line.ends_with("ETA 1:00"), "{line}");
        let line = p8.count(300.0, &point("p005", "", 1.0, None), 0);
        assert!(!line.contains("ETA"), "{line}");
        assert!(line.ends_with("5 of 5 points, 1 failed, 0 stacks up"), "{line}");
        // One point: singular.
        let mut one = Progress::new(1, 1, Summary::default());
        let line = one.count(1.0, &point("p001", "x", 1.0, None), 2);
        assert!(line.ends_with("— 1 of 1 point, 2 stacks up"), "{line}");
    }

    #[test]
    fn clocks() {
        assert_eq!(clock(65.0), "1:05");
        assert_eq!(clock(3723.4), "1:02:03");
        assert_eq!(clock(0.4), "0:00");
    }
}

//! The walk over a plan's indices, with no I/O: which step may start now, which is blocked, which
//! is reused, given what has settled. The executor asks it for decisions, runs what it is told
//! to launch, and tells it when a step settles; a unit test drives it the same way with no
//! process at all.
//!
//! A step's in-degree is the number of its dependencies (among the steps of this walk) that have
//! not settled. At zero the step is decided: **blocked** (a dependency failed → `not run`; was
//! interrupted → `cancelled`), **reused** (done before with the same input hash, its effect
//! still holding, and none of its dependencies ran in this walk), or **launched** (unless the
//! walk is stopping: then only steps that salvage an interrupted step's output, i.e. analysis,
//! still start; the others stay pending and the caller cancels them at the end). At most
//! `limit` steps run at once (teardown walks with a limit of one, in plan order).

use std::collections::VecDeque;

use super::state::Status;

/// What the walk decided for a step whose dependencies have all settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Dependency `by` did not succeed: the step settles as `status` (not run, or cancelled
    /// when `by` was interrupted) without running.
    Blocked { by: usize, status: Status },
    /// Done earlier with the same inputs: settled as done without running.
    Reused,
    /// Start it now; report its end with [`Walk::settle`].
    Launch,
}

/// What the walk knows of each step before it starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// The step's dependencies (indices), among all steps of the plan.
    pub deps: Vec<Vec<usize>>,
    /// Steps of this walk, in plan order.
    pub members: Vec<usize>,
    /// Settled before the walk starts (a false condition: skipped).
    pub settled: Vec<(usize, Status)>,
    /// Done before with the same inputs and still holding.
    pub reusable: Vec<bool>,
    /// It reads what an interrupted dependency kept (analysis): it still starts after a stop.
    pub salvages: Vec<bool>,
    /// At most this many running at once (0: no limit).
    pub limit: usize,
}

/// The walk's bookkeeping, by step index.
#[derive(Debug)]
pub(crate) struct Walk {
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    member: Vec<bool>,
    status: Vec<Status>,
    /// Interrupted steps whose output is kept.
    partial: Vec<bool>,
    /// Launched in this walk (a dependent of one is not reused: its input changed).
    ran: Vec<bool>,
    reusable: Vec<bool>,
    salvages: Vec<bool>,
    waiting: Vec<usize>,
    decidable: VecDeque<usize>,
    running: usize,
    limit: usize,
}

impl Walk {
    pub(crate) fn new(facts: Facts) -> Walk {
        let n = facts.deps.len();
        let mut member = vec![false; n];
        for &i in &facts.members {
            member[i] = true;
        }
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in facts.deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let mut status = vec![Status::Pending; n];
        for &(i, s) in &facts.settled {
            status[i] = s;
        }
        let settled = |s: Status| !matches!(s, Status::Pending | Status::Running);
        let waiting: Vec<usize> = (0..n)
            .map(|i| facts.deps[i].iter().filter(|&&j| member[j] && !settled(status[j])).count())
            .collect();
        let decidable = facts
            .members
            .iter()
            .copied()
            .filter(|&i| status[i] == Status::Pending && waiting[i] == 0)
            .collect();
        let flag = |v: &[bool]| (0..n).map(|i| v.get(i).copied().unwrap_or(false)).collect::<Vec<_>>();
        Walk {
            reusable: flag(&facts.reusable),
            salvages: flag(&facts.salvages),
            deps: facts.deps,
            dependents,
            member,
            status,
            partial: vec![false; n],
            ran: vec![false; n],
            waiting,
            decidable,
            running: 0,
            limit: facts.limit,
        }
    }

    /// The next decision, if one can be taken now. `stopping`: an interrupt came, or what the
    /// run stands on went away.
    pub(crate) fn next(&mut self, stopping: bool) -> Option<(usize, Decision)> {
        while let Some(i) = self.decidable.pop_front() {
            if self.status[i] != Status::Pending {
                continue;
            }
            let salvage = self.salvages[i];
            let usable = |j: usize| {
                matches!(self.status[j], Status::Done | Status::Skipped) || (salvage && self.partial[j])
            };
            if let Some(by) = self.deps[i].iter().copied().find(|&j| self.member[j] && !usable(j)) {
                // Behind an interrupted step: cancelled too; behind a failure: not run.
                let status =
                    if self.status[by] == Status::Cancelled { Status::Cancelled } else { Status::NotRun };
                self.status[i] = status;
                self.release(i);
                return Some((i, Decision::Blocked { by, status }));
            }
            if self.reusable[i] && !self.deps[i].iter().any(|&j| self.ran[j]) {
                self.status[i] = Status::Done;
                self.release(i);
                return Some((i, Decision::Reused));
            }
            let salvaging = salvage && self.deps[i].iter().any(|&j| self.partial[j]);
            if stopping && !salvaging {
                // Ready, but the walk is stopping: it stays pending (cancelled at the end).
                continue;
            }
            if self.limit > 0 && self.running >= self.limit {
                self.decidable.push_front(i);
                return None;
            }
            self.ran[i] = true;
            self.running += 1;
            self.status[i] = Status::Running;
            return Some((i, Decision::Launch));
        }
        None
    }

    /// A launched step ended with `status`; `partial`: interrupted, its output kept.
    pub(crate) fn settle(&mut self, i: usize, status: Status, partial: bool) {
        if self.status[i] == Status::Running {
            self.running = self.running.saturating_sub(1);
        }
        self.status[i] = status;
        self.partial[i] = partial;
        self.release(i);
    }

    /// Steps of this walk still pending (ready but held back by a stop, or never reached).
    pub(crate) fn pending(&self) -> Vec<usize> {
        (0..self.status.len()).filter(|&i| self.member[i] && self.status[i] == Status::Pending).collect()
    }

    /// Steps of this walk running now.
    pub(crate) fn running(&self) -> Vec<usize> {
        (0..self.status.len()).filter(|&i| self.member[i] && self.status[i] == Status::Running).collect()
    }

    /// Step `i` settled: each dependent in this walk has one dependency less to wait for.
    fn release(&mut self, i: usize) {
        for k in 0..self.dependents[i].len() {
            let d = self.dependents[i][k];
            if self.member[d] {
                self.waiting[d] = self.waiting[d].saturating_sub(1);
                if self.waiting[d] == 0 {
                    self.decidable.push_back(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(deps: Vec<Vec<usize>>) -> Facts {
        let n = deps.len();
        Facts {
            members: (0..n).collect(),
            reusable: vec![false; n],
            salvages: vec![false; n],
            deps,
            ..Facts::default()
        }
    }

    /// Launches everything launchable, returning the indices in order.
    fn launch_all(w: &mut Walk, stopping: bool) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some((i, d)) = w.next(stopping) {
            if d == Decision::Launch {
                out.push(i);
            }
        }
        out
    }

    #[test]
    fn ready_steps_launch_together_and_dependents_wait_for_them() {
        // 0 → {1, 2} → 3
        let mut w = Walk::new(facts(vec![vec![], vec![0], vec![0], vec![1, 2]]));
        assert_eq!(launch_all(&mut w, false), [0]);
        w.settle(0, Status::Done, false);
        assert_eq!(launch_all(&mut w, false), [1, 2]);
        w.settle(1, Status::Done, false);
        assert_eq!(launch_all(&mut w, false), Vec::<usize>::new());
        w.settle(2, Status::Done, false);
        assert_eq!(launch_all(&mut w, false), [3]);
    }

    #[test]
    fn a_failure_blocks_only_its_dependents_and_an_interruption_cancels_them() {
        // 0 → 1 → 3; 0 → 2 → 4
        let mut w = Walk::new(facts(vec![vec![], vec![0], vec![0], vec![1], vec![2]]));
        launch_all(&mut w, false);
        w.settle(0, Status::Done, false);
        assert_eq!(launch_all(&mut w, false), [1, 2]);
        w.settle(1, Status::Failed, false);
        assert_eq!(w.next(false), Some((3, Decision::Blocked { by: 1, status: Status::NotRun })));
        w.settle(2, Status::Cancelled, false);
        assert_eq!(w.next(false), Some((4, Decision::Blocked { by: 2, status: Status::Cancelled })));
        assert!(w.pending().is_empty() && w.running().is_empty());
    }

    #[test]
    fn a_stop_holds_ready_steps_except_those_that_salvage_an_interrupted_output() {
        // 0 (load) → 1 (analysis, salvages); 0 → 2 (plain)
        let mut f = facts(vec![vec![], vec![0], vec![0]]);
        f.salvages[1] = true;
        let mut w = Walk::new(f);
        assert_eq!(launch_all(&mut w, false), [0]);
        w.settle(0, Status::Cancelled, true);
        // 2 is blocked by the interrupted load; 1 reads what it kept.
        let decisions: Vec<_> = std::iter::from_fn(|| w.next(true)).collect();
        assert_eq!(
            decisions,
            [(1, Decision::Launch), (2, Decision::Blocked { by: 0, status: Status::Cancelled })]
        );
        // Without salvage, a ready step is held back and left pending.
        let mut w = Walk::new(facts(vec![vec![], vec![]]));
        assert_eq!(launch_all(&mut w, true), Vec::<usize>::new());
        assert_eq!(w.pending(), [0, 1]);
    }

    #[test]
    fn a_reusable_step_is_reused_unless_a_dependency_ran_again() {
        // 0 → 1, both reusable; 2 → 3, only 3 reusable.
        let mut f = facts(vec![vec![], vec![0], vec![], vec![2]]);
        f.reusable = vec![true, true, false, true];
        let mut w = Walk::new(f);
        let first: Vec<_> = std::iter::from_fn(|| w.next(false)).collect();
        assert_eq!(first, [(0, Decision::Reused), (2, Decision::Launch), (1, Decision::Reused)]);
        w.settle(2, Status::Done, false);
        assert_eq!(w.next(false), Some((3, Decision::Launch)));
    }

    #[test]
    fn a_limit_of_one_runs_in_plan_order_and_a_failure_does_not_stop_the_rest() {
        let mut f = facts(vec![vec![], vec![], vec![]]);
        f.limit = 1;
        f.members = vec![2, 0, 1];
        let mut w = Walk::new(f);
        assert_eq!(launch_all(&mut w, false), [2]);
        w.settle(2, Status::Failed, false);
        assert_eq!(launch_all(&mut w, false), [0]);
        w.settle(0, Status::Done, false);
        assert_eq!(launch_all(&mut w, false), [1]);
    }

    #[test]
    fn settled_before_the_walk_releases_dependents_and_non_members_are_not_waited_for() {
        // 0 skipped (false condition) → 1; 2 is not in this walk → 3.
        let mut f = facts(vec![vec![], vec![0], vec![], vec![2]]);
        f.settled = vec![(0, Status::Skipped)];
        f.members = vec![0, 1, 3];
        let mut w = Walk::new(f);
        assert_eq!(launch_all(&mut w, false), [1, 3]);
    }
}

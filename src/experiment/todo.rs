//! What an invocation of an experiment has to do, decided from its record before anything
//! starts: which points were measured already with the same inputs (here, under another id, or
//! in the store) and which are to run, stack by stack; and which stacks an earlier invocation
//! left up that must come down first. No process and no network: unit-tested on records.

use std::path::{Path, PathBuf};

use super::{
    plan::{PlannedPoint, Stack},
    state::{ExpState, PointState, PointStatus, StackStatus},
    store::{self, Store},
};
use crate::workdir::{layout, utc_now};

/// The points to run, by stack, and the points found measured.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Todo {
    /// Per stack (by index), the indices of its points to run, in design order.
    pub per_stack: Vec<Vec<usize>>,
    /// (point index, where it was measured) of the points not run again.
    pub found: Vec<(usize, PathBuf)>,
}

impl Todo {
    pub(super) fn count(&self) -> usize {
        self.per_stack.iter().map(Vec::len).sum()
    }
}

/// Where a point's inputs were measured already: itself (done with the same hash), another
/// point of this experiment, or the store.
pub(super) fn reusable(
    state: &ExpState,
    root: &Path,
    store: Option<&Store>,
    p: &PlannedPoint,
) -> Option<PathBuf> {
    let own = root.join(layout::POINTS).join(&p.point.id);
    // Done with the same inputs, and its directory still holds the measurement (a directory
    // deleted by hand is measured again, not reported done with nothing in it).
    if state.points.get(&p.point.id).is_some_and(|s| s.status == PointStatus::Done && s.hash == p.hash)
        && store::measured(&own)
    {
        return Some(own);
    }
    let twin = state
        .points
        .iter()
        .filter(|(id, s)| **id != p.point.id && s.status == PointStatus::Done && s.hash == p.hash)
        .map(|(id, _)| root.join(layout::POINTS).join(id))
        .find(|d| store::measured(d));
    twin.or_else(|| store::superseded(state, root, &p.hash)).or_else(|| store?.lookup(&p.hash))
}

/// A point's record once it is found measured in `from`.
pub(super) fn found_state(p: &PlannedPoint, stack: &Stack, from: &Path) -> PointState {
    PointState {
        status: PointStatus::Done,
        hash: p.hash.clone(),
        stack: stack.id.clone(),
        label: p.point.label(),
        finished_at: Some(utc_now()),
        error: Some(format!("not measured again: the same inputs were measured in {}", from.display())),
        ..PointState::default()
    }
}

/// A point's record once it is to run (its attempts and last error kept). It measures anew
/// when it failed or when it ran before with other inputs (a changed engine setting changes
/// the point's hash but not its load step's, whose records must not be reused).
pub(super) fn pending_state(p: &PlannedPoint, stack: &Stack, before: &mut PointState) -> PointState {
    let remeasure = before.remeasure
        || before.status == PointStatus::Failed
        || (!before.hash.is_empty() && before.hash != p.hash);
    PointState {
        remeasure,
        status: PointStatus::Pending,
        hash: p.hash.clone(),
        stack: stack.id.clone(),
        label: p.point.label(),
        attempts: before.attempts,
        error: before.error.take(),
        ..PointState::default()
    }
}

/// Decides every point and updates its record; reconciles the stacks' records with their
/// hashes (a stack recorded up for other inputs stays up, to be torn down first).
pub(super) fn decide(
    points: &[PlannedPoint],
    stacks: &[Stack],
    state: &mut ExpState,
    root: &Path,
    store: Option<&Store>,
) -> Todo {
    let mut todo = Todo { per_stack: vec![Vec::new(); stacks.len()], found: Vec::new() };
    for (i, p) in points.iter().enumerate() {
        let stack = &stacks[p.stack];
        if let Some(from) = reusable(state, root, store, p) {
            let entry = state.points.entry(p.point.id.clone()).or_default();
            if entry.status != PointStatus::Done || entry.hash != p.hash {
                *entry = found_state(p, stack, &from);
            }
            todo.found.push((i, from));
            continue;
        }
        let entry = state.points.entry(p.point.id.clone()).or_default();
        // Recorded done, but its records are gone (deleted by hand): its steps' own record
        // would call them done; they measure anew.
        if entry.status == PointStatus::Done {
            entry.remeasure = true;
        }
        *entry = pending_state(p, stack, entry);
        todo.per_stack[p.stack].push(i);
    }
    for s in stacks {
        let e = state.stacks.entry(s.id.clone()).or_default();
        if e.hash != s.hash && matches!(e.status, StackStatus::Up | StackStatus::StandingUp) {
            // Recorded up, but for other inputs: torn down before anything starts.
            e.status = StackStatus::Up;
        } else if e.hash.is_empty() {
            e.hash = s.hash.clone();
        }
    }
    todo
}

/// Stacks an earlier invocation left up (or standing up) that no point needs now, or that
/// were built from other inputs: they come down before anything starts.
pub(super) fn stale(stacks: &[Stack], state: &ExpState, todo: &Todo) -> Vec<String> {
    state
        .stacks
        .iter()
        .filter(|(_, s)| matches!(s.status, StackStatus::Up | StackStatus::StandingUp))
        .filter(|(id, s)| match stacks.iter().position(|p| &p.id == *id) {
            Some(k) => todo.per_stack[k].is_empty() || stacks[k].hash != s.hash,
            None => true,
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{design::Point, state::StackState};

    fn point(id: &str, stack: usize, hash: &str) -> PlannedPoint {
        PlannedPoint {
            point: Point { id: id.into(), name: None, values: Vec::new() },
            request: Default::default(),
            stack,
            hash: hash.into(),
        }
    }

    fn stack(id: &str, hash: &str) -> Stack {
        Stack { id: id.into(), hash: hash.into(), points: Vec::new(), setup: Vec::new() }
    }

    /// A point directory as a measured run leaves it (its statistics and its records).
    fn measured(dir: &Path) {
        for (sub, file) in [("analysis/latest", "stats.json"), ("results/latest", "requests.csv")] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            std::fs::write(dir.join(sub).join(file), "x").unwrap();
        }
    }

    fn done(hash: &str) -> PointState {
        PointState { status: PointStatus::Done, hash: hash.into(), ..PointState::default() }
    }

    #[test]
    fn a_point_done_with_the_same_inputs_is_found_and_one_with_other_inputs_runs_again() {
        let dir = std::env::temp_dir().join(format!("bf-todo-found-{}", std::process::id()));
        measured(&dir.join("points/p001"));
        let root = dir.as_path();
        let points = [point("p001", 0, "a"), point("p002", 0, "b"), point("p003", 1, "c")];
        let stacks = [stack("s1", "x"), stack("s2", "y")];
        let mut state = ExpState::default();
        state.points.insert("p001".into(), done("a"));
        state
            .points
            .insert("p002".into(), PointState { attempts: 2, error: Some("boom".into()), ..done("old") });
        let todo = decide(&points, &stacks, &mut state, root, None);
        assert_eq!(todo.per_stack, [vec![1], vec![2]]);
        assert_eq!(todo.found, [(0, root.join("points/p001"))]);
        assert_eq!(todo.count(), 2);
        let p2 = &state.points["p002"];
        assert_eq!((p2.status, p2.hash.as_str(), p2.attempts), (PointStatus::Pending, "b", 2));
        assert_eq!(p2.error.as_deref(), Some("boom"), "the last error is kept until it runs");
        assert_eq!(state.stacks["s2"].hash, "y");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_twin_counts_only_when_its_directory_holds_a_measurement() {
        let root = std::env::temp_dir().join(format!("bf-todo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let points = [point("p001", 0, "h"), point("p002", 0, "h")];
        let mut state = ExpState::default();
        state.points.insert("p009".into(), done("h"));
        // Recorded done, but its directory holds nothing: measured again.
        assert!(reusable(&state, &root, None, &points[0]).is_none());
        let mut state2 = ExpState::default();
        state2.points.insert("p001".into(), done("h"));
        // Its own record needs its files too: a directory deleted by hand is measured again.
        assert!(reusable(&state2, &root, None, &points[0]).is_none());
        measured(&root.join("points/p001"));
        assert_eq!(reusable(&state2, &root, None, &points[0]), Some(root.join("points/p001")));
        assert_eq!(reusable(&state2, &root, None, &points[1]), Some(root.join("points/p001")));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_point_recorded_done_whose_records_are_gone_measures_anew() {
        let root = std::env::temp_dir().join(format!("bf-todo-gone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let points = [point("p001", 0, "h")];
        let mut state = ExpState::default();
        state.points.insert("p001".into(), done("h"));
        let todo = decide(&points, &[stack("s1", "x")], &mut state, &root, None);
        assert_eq!(todo.per_stack, [vec![0]]);
        let p = &state.points["p001"];
        assert_eq!((p.status, p.remeasure), (PointStatus::Pending, true), "its steps' record is not trusted");
    }

    #[test]
    fn stale_stacks_are_those_up_and_unneeded_or_built_from_other_inputs() {
        let stacks = [stack("s1", "x"), stack("s2", "y"), stack("s3", "z")];
        let mut state = ExpState::default();
        let up =
            |hash: &str| StackState { status: StackStatus::Up, hash: hash.into(), ..StackState::default() };
        state.stacks.insert("s1".into(), up("x")); // needed, same inputs: kept
        state.stacks.insert("s2".into(), up("old")); // needed, other inputs: down first
        state.stacks.insert("s3".into(), up("z")); // not needed now: down
        state.stacks.insert("s9".into(), up("q")); // no longer in the design: down
        let todo = Todo { per_stack: vec![vec![0], vec![1], vec![]], found: Vec::new() };
        assert_eq!(stale(&stacks, &state, &todo), ["s2", "s3", "s9"]);
    }
}

//! Saga soundness (DESIGN §2), checked on every machine: the top level, each Parallel branch
//! and each Map processor, with what the enclosing machines imply carried inwards.
//!
//! Terms. A *pivot* is a Task with `SagaRole: pivot`; a Parallel or Map state *holds* a pivot
//! when one of its nested machines does. A Task is *compensatable* when its role (after the
//! default: `Compensate` present) is compensatable; a Parallel or Map state holds one when a
//! nested machine does. A Task *absorbs failures* when one of its retriers has
//! `MaxAttempts > 0` and lists `States.ALL` or `States.TaskFailed`. The states *after* a pivot
//! P are those reachable from P's success transition (`Next`; a Catch of P is not "after" P,
//! since P did not complete) along any transitions, Catch included; inside a Parallel or Map
//! state that is after P, every state is after P.
//!
//! The rules, exactly as implemented:
//! 1. `multiple-pivots` (error): a pivot Task that is after a pivot (itself included, when it
//!    lies on a loop), and a Parallel state with pivots in two or more branches. A pivot inside
//!    a Map processor is one pivot per item, not several on one path, so it is allowed.
//! 2. `compensatable-after-pivot` (error): a compensatable Task after a pivot. Past the point
//!    of no return the saga only moves forward, so nothing there is ever compensated.
//! 3. `not-retriable-after-pivot` (error): any other Task after a pivot that does not absorb
//!    failures — a `SagaRole: retriable` declaration alone is not enough, the Retry must exist.
//! 4. `catch-skips-compensation` (warning): a Catch on state S routes to C, C can reach a
//!    successful end of the execution, and some compensatable step may have completed before
//!    the failure: a compensatable Task or holder from which S is reachable through a success
//!    transition and then any transitions; a compensatable Task nested in S (completed
//!    branches or iterations); S itself when it is a compensatable Task (almost any error can
//!    come with an unknown outcome, which pushes its compensation); or one
//!    before the enclosing Parallel/Map state. A successful end is a Succeed state or
//!    `End: true` at the top level; inside a branch or processor, such an end counts when the
//!    enclosing state can itself go on to a successful end. The definition says it handles
//!    the failure by ending the route in a Fail state instead (which compensates).
//!
//! `compensatable-without-compensation`, `saga-role-conflict`, `no-saga-role` and
//! `retriable-without-retry` concern one Task alone and are reported in `task`.

use std::collections::VecDeque;

use super::Ctx;
use super::states::{EdgeKind, MachineSk, StateSk};
use crate::model::SagaRole;

pub(crate) fn check(ctx: &mut Ctx<'_>, top: &MachineSk) {
    machine(ctx, top, Outer { after_pivot: None, prior: None, end_succeeds: true });
}

/// What the enclosing machines imply for a nested one.
#[derive(Debug, Clone, Copy)]
struct Outer<'m> {
    /// The pivot this whole machine runs after, if any.
    after_pivot: Option<&'m str>,
    /// A compensatable step that may have completed before this machine started.
    prior: Option<&'m str>,
    /// Whether ending this machine successfully can end the execution successfully.
    end_succeeds: bool,
}

fn role(state: &StateSk) -> Option<SagaRole> {
    state.task.and_then(|task| task.role)
}

/// The first Task with `role` in a state or anything nested in it.
fn holds<'m>(name: &'m str, state: &'m StateSk, role: SagaRole) -> Option<&'m str> {
    if self::role(state) == Some(role) {
        return Some(name);
    }
    state.children.iter().find_map(|child| held_in(child, role))
}

fn held_in(machine: &MachineSk, role: SagaRole) -> Option<&str> {
    machine.states.iter().find_map(|(name, state)| holds(name, state, role))
}

fn machine<'m>(ctx: &mut Ctx<'_>, machine: &'m MachineSk, outer: Outer<'m>) {
    let states: Vec<(&'m str, &'m StateSk)> =
        machine.states.iter().map(|(name, state)| (name.as_str(), state)).collect();
    let n = states.len();
    let index = |target: &str| machine.states.get_index_of(target);
    // Success transitions and all transitions, resolved; missing targets were reported by
    // the graph checks and are simply left out here.
    let mut success: Vec<Vec<usize>> = Vec::with_capacity(n);
    let mut every: Vec<Vec<usize>> = Vec::with_capacity(n);
    let mut reverse: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, (_, state)) in states.iter().enumerate() {
        let mut ok = Vec::new();
        let mut all = Vec::new();
        for edge in &state.edges {
            if let Some(j) = index(&edge.target) {
                all.push(j);
                reverse[j].push(i);
                if edge.kind != EdgeKind::Catch {
                    ok.push(j);
                }
            }
        }
        success.push(ok);
        every.push(all);
    }
    let pivot: Vec<Option<&str>> = states.iter().map(|(name, state)| holds(name, state, SagaRole::Pivot)).collect();
    let compensatable: Vec<Option<&str>> =
        states.iter().map(|(name, state)| holds(name, state, SagaRole::Compensatable)).collect();

    for (name, state) in &states {
        let branches_with_pivots: Vec<(usize, &str)> = state
            .children
            .iter()
            .enumerate()
            .filter_map(|(b, child)| held_in(child, SagaRole::Pivot).map(|p| (b, p)))
            .collect();
        if let [(b1, p1), (b2, p2), ..] = branches_with_pivots.as_slice() {
            ctx.error_key(
                "multiple-pivots",
                &state.loc,
                format!(
                    "\"{name}\" runs pivot \"{p1}\" (branch {b1}) and pivot \"{p2}\" (branch {b2}) \
                     in one execution; a saga has at most one pivot on any path"
                ),
            );
        }
    }

    // Rules 1-3: who runs after which pivot.
    let mut after: Vec<Option<&str>> = vec![outer.after_pivot; n];
    for p in 0..n {
        let Some(pivot_name) = pivot[p] else { continue };
        for q in spread(&every, success[p].iter().copied()) {
            after[q] = after[q].or(Some(pivot_name));
        }
    }
    for (q, (name, state)) in states.iter().enumerate() {
        let (Some(earlier), Some(task)) = (after[q], state.task) else {
            continue;
        };
        match task.role {
            Some(SagaRole::Pivot) if earlier == *name => ctx.error_key(
                "multiple-pivots",
                &state.loc,
                format!(
                    "pivot \"{name}\" lies on a loop, so it can run more than once; a saga has \
                     at most one pivot on any path"
                ),
            ),
            Some(SagaRole::Pivot) => ctx.error_key(
                "multiple-pivots",
                &state.loc,
                format!(
                    "\"{name}\" is a pivot that can run after pivot \"{earlier}\"; a saga has at \
                     most one pivot on any path"
                ),
            ),
            Some(SagaRole::Compensatable) => ctx.error_key(
                "compensatable-after-pivot",
                &state.loc,
                format!(
                    "task \"{name}\" is compensatable but runs after pivot \"{earlier}\", past \
                     which nothing is compensated; make it retriable (SagaRole \"retriable\" with \
                     a Retry) or move it before the pivot"
                ),
            ),
            _ if task.absorbs_failures => {}
            Some(SagaRole::Retriable) => ctx.error_key(
                "not-retriable-after-pivot",
                &state.loc,
                format!(
                    "task \"{name}\" is declared retriable and runs after pivot \"{earlier}\", but no \
                     Retry handles States.ALL or States.TaskFailed with MaxAttempts > 0, so it can \
                     still fail where the saga can no longer roll back; add such a Retry"
                ),
            ),
            _ => ctx.error_key(
                "not-retriable-after-pivot",
                &state.loc,
                format!(
                    "task \"{name}\" runs after pivot \"{earlier}\", where the saga can no longer \
                     roll back, so it must not fail: give it a Retry on States.ALL or \
                     States.TaskFailed, or SagaRole \"retriable\""
                ),
            ),
        }
    }

    // Rule 4: Catch routes that end the execution successfully past completed steps.
    let mut prior: Vec<Option<&str>> = vec![None; n];
    {
        let mut queue = VecDeque::new();
        for i in 0..n {
            let Some(origin) = compensatable[i] else {
                continue;
            };
            for &j in &success[i] {
                if prior[j].is_none() {
                    prior[j] = Some(origin);
                    queue.push_back(j);
                }
            }
        }
        while let Some(i) = queue.pop_front() {
            for &j in &every[i] {
                if prior[j].is_none() {
                    prior[j] = prior[i];
                    queue.push_back(j);
                }
            }
        }
    }
    let ends_ok: Vec<usize> = (0..n).filter(|&i| outer.end_succeeds && states[i].1.ends_ok).collect();
    let mut can_succeed = vec![false; n];
    for i in spread(&reverse, ends_ok.iter().copied()) {
        can_succeed[i] = true;
    }
    for (s, (name, state)) in states.iter().enumerate() {
        for edge in state.edges.iter().filter(|e| e.kind == EdgeKind::Catch) {
            let Some(c) = index(&edge.target) else {
                continue;
            };
            if !can_succeed[c] {
                continue;
            }
            // Nearly any error (a timeout, Grpc.Unavailable after sending, Grpc.Internal...)
            // may come with an unknown outcome, which owes the task's own compensation; only a
            // catch of nothing but business names could be sure it did not apply.
            let unknown_outcome = !edge.errors.is_empty();
            let own = (role(state) == Some(SagaRole::Compensatable) && unknown_outcome).then_some(*name);
            let nested = state.children.iter().find_map(|c| held_in(c, SagaRole::Compensatable));
            let Some(step) = prior[s].or(nested).or(own).or(outer.prior) else {
                continue;
            };
            ctx.warn(
                "catch-skips-compensation",
                &edge.loc,
                format!(
                    "this Catch of \"{name}\" routes to \"{}\", from where the execution can \
                     succeed, so compensatable step \"{step}\" (which may have completed) is \
                     never compensated; end that route in a Fail state to compensate, or undo \
                     the step on that route",
                    edge.target
                ),
            );
        }
    }

    for (i, (_, state)) in states.iter().enumerate() {
        if state.children.is_empty() {
            continue;
        }
        let end_succeeds = (outer.end_succeeds && state.ends_ok) || success[i].iter().any(|&j| can_succeed[j]);
        let inner = Outer { after_pivot: after[i], prior: prior[i].or(outer.prior), end_succeeds };
        for child in &state.children {
            self::machine(ctx, child, inner);
        }
    }
}

/// Every state reachable from `seeds` (the seeds included) along `adjacency`.
fn spread(adjacency: &[Vec<usize>], seeds: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut seen = vec![false; adjacency.len()];
    let mut queue: VecDeque<usize> = VecDeque::new();
    for seed in seeds {
        if !seen[seed] {
            seen[seed] = true;
            queue.push_back(seed);
        }
    }
    let mut out = Vec::new();
    while let Some(i) = queue.pop_front() {
        out.push(i);
        for &j in &adjacency[i] {
            if !seen[j] {
                seen[j] = true;
                queue.push_back(j);
            }
        }
    }
    out
}

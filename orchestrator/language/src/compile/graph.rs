//! Transitions as a graph, per machine: `StartAt` and every `Next`, `Default` and Catch
//! target name a state of the same machine (with "did you mean"), and every state is
//! reachable from `StartAt` (one breadth-first search per machine, linear in its size).

use std::collections::{HashSet, VecDeque};

use super::states::MachineSk;
use super::{Ctx, suggest};

pub(crate) fn check(ctx: &mut Ctx<'_>, top: &MachineSk) {
    let mut everywhere = HashSet::new();
    collect_names(top, &mut everywhere);
    machine(ctx, top, &everywhere);
}

fn collect_names<'m>(machine: &'m MachineSk, names: &mut HashSet<&'m str>) {
    for (name, state) in &machine.states {
        names.insert(name);
        for child in &state.children {
            collect_names(child, names);
        }
    }
}

fn machine(ctx: &mut Ctx<'_>, machine: &MachineSk, everywhere: &HashSet<&str>) {
    let states = &machine.states;
    let names = || states.keys().map(String::as_str);
    // Where a target is misspelled, its likely meaning still counts as an edge, so the one
    // typo is reported once instead of again as an "unreachable" state.
    let resolve = |target: &str| {
        states
            .get_index_of(target)
            .or_else(|| suggest::closest(target, names()).and_then(|name| states.get_index_of(name)))
    };
    let mut start = None;
    if let Some((name, loc)) = &machine.start_at {
        start = resolve(name);
        if !states.is_empty() && !states.contains_key(name) {
            let hint = suggest::hint(name, names());
            ctx.error("unknown-state", loc, format!("StartAt names state \"{name}\", which does not exist{hint}"));
        }
    }
    let mut adjacency: Vec<Vec<usize>> = Vec::with_capacity(states.len());
    for state in states.values() {
        let mut targets = Vec::with_capacity(state.edges.len());
        for edge in &state.edges {
            if !states.contains_key(&edge.target) {
                let message = if everywhere.contains(edge.target.as_str()) {
                    format!(
                        "state \"{}\" is not in this machine: a transition can only name a \
                         state of its own top level, Parallel branch or Map processor",
                        edge.target
                    )
                } else {
                    let hint = suggest::hint(&edge.target, names());
                    format!("state \"{}\" does not exist{hint}", edge.target)
                };
                ctx.error("unknown-state", &edge.loc, message);
            }
            targets.extend(resolve(&edge.target));
        }
        if state.missing_next && adjacency.len() + 1 < states.len() {
            targets.push(adjacency.len() + 1);
        }
        adjacency.push(targets);
    }
    if let Some(start) = start {
        let reached = reachable(&adjacency, start);
        let start_name = states.get_index(start).map_or("", |(name, _)| name.as_str());
        for (i, (name, state)) in states.iter().enumerate() {
            if !reached[i] {
                ctx.error_key(
                    "unreachable-state",
                    &state.loc,
                    format!(
                        "state \"{name}\" can never run: no transition leads to it from StartAt \
                         \"{start_name}\"; remove it or add a Next to it"
                    ),
                );
            }
        }
    }
    for state in states.values() {
        for child in &state.children {
            self::machine(ctx, child, everywhere);
        }
    }
}

/// States reachable from `start`, by breadth-first search.
pub(crate) fn reachable(adjacency: &[Vec<usize>], start: usize) -> Vec<bool> {
    let mut seen = vec![false; adjacency.len()];
    let mut queue = VecDeque::from([start]);
    seen[start] = true;
    while let Some(i) = queue.pop_front() {
        for &j in &adjacency[i] {
            if !seen[j] {
                seen[j] = true;
                queue.push_back(j);
            }
        }
    }
    seen
}

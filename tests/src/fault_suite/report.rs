//! The tables a fault run prints: faults injected by kind, sagas by final status (and by
//! what kind of order they were), and every check with its violations.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};

use super::checks::Checks;
use super::faults::{FaultKind, Group, Injected};
use super::orders::{Kind, Outcome};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header.to_vec());
    t
}

fn right(t: &mut Table, columns: &[usize]) {
    for c in columns {
        if let Some(col) = t.column_mut(*c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Faults by kind, with their targets and a total per group.
pub fn faults_table(log: &[Injected]) -> String {
    let mut by_kind: BTreeMap<FaultKind, BTreeMap<String, usize>> = BTreeMap::new();
    for f in log {
        *by_kind.entry(f.kind).or_default().entry(f.target.clone()).or_default() += 1;
    }
    let mut t = table(&["fault injected", "count", "targets"]);
    for (kind, targets) in &by_kind {
        let count: usize = targets.values().sum();
        let spread: Vec<String> = targets.iter().map(|(name, n)| format!("{name} ×{n}")).collect();
        t.add_row(vec![kind.label().to_owned(), count.to_string(), spread.join(", ")]);
    }
    let group = |g: Group| log.iter().filter(|f| f.kind.group() == g).count();
    t.add_row(vec![
        "total".to_owned(),
        log.len().to_string(),
        format!(
            "orchestrator {}, PostgreSQL {}, participant {}, network {}",
            group(Group::Orchestrator),
            group(Group::Database),
            group(Group::Participant),
            group(Group::Network)
        ),
    ]);
    right(&mut t, &[1]);
    t.to_string()
}

/// Sagas by final status, one column per kind of order.
pub fn statuses_table(outcomes: &[Outcome]) -> String {
    let kinds: Vec<Kind> = {
        let mut k: Vec<Kind> = outcomes.iter().map(|o| o.kind).collect();
        k.sort();
        k.dedup();
        k
    };
    let mut counts: BTreeMap<String, BTreeMap<Kind, usize>> = BTreeMap::new();
    for o in outcomes {
        let status = if o.status.is_empty() { "(never acknowledged)".to_owned() } else { o.status.clone() };
        *counts.entry(status).or_default().entry(o.kind).or_default() += 1;
    }
    let mut header = vec!["final status", "sagas"];
    header.extend(kinds.iter().map(|k| k.label()));
    let mut t = table(&header);
    for (status, per_kind) in &counts {
        let mut row = vec![status.clone(), per_kind.values().sum::<usize>().to_string()];
        row.extend(kinds.iter().map(|k| per_kind.get(k).map(ToString::to_string).unwrap_or_default()));
        t.add_row(row);
    }
    let mut total = vec!["total".to_owned(), outcomes.len().to_string()];
    total.extend(kinds.iter().map(|k| outcomes.iter().filter(|o| o.kind == *k).count().to_string()));
    t.add_row(total);
    right(&mut t, &(1..header.len()).collect::<Vec<_>>());
    t.to_string()
}

/// Every check and its violations (the first few spelled out below the table).
pub fn checks_table(checks: &Checks) -> String {
    let mut t = table(&["check", "violations"]);
    for c in &checks.checks {
        t.add_row(vec![c.name.to_owned(), c.violations.len().to_string()]);
    }
    t.add_row(vec!["invariant violations (must be 0)".to_owned(), checks.violations().to_string()]);
    right(&mut t, &[1]);
    let mut out = t.to_string();
    for c in &checks.checks {
        for v in c.violations.iter().take(10) {
            let _ = write!(out, "\n  {}: {v}", c.name);
        }
        if c.violations.len() > 10 {
            let _ = write!(out, "\n  {}: ... and {} more", c.name, c.violations.len() - 10);
        }
    }
    out
}

/// p50, p99 and max of the settled orders' latencies.
pub fn latency_line(outcomes: &[Outcome]) -> String {
    let mut l: Vec<Duration> = outcomes.iter().filter_map(|o| o.latency).collect();
    if l.is_empty() {
        return "no saga settled".into();
    }
    l.sort();
    let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
    format!(
        "order latency (first StartOrder to settled status, incl. faults): p50 {:.2}s, p99 {:.2}s, max {:.2}s",
        at(0.5).as_secs_f64(),
        at(0.99).as_secs_f64(),
        at(1.0).as_secs_f64()
    )
}

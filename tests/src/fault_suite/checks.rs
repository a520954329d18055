//! What must hold at the end of a fault run, each check counted on its own: no replica or
//! participant exited unless a fault killed it; every acknowledged start has its execution and no order has two; every execution settled
//! (terminal, or parked in COMPENSATION_STUCK); only good orders succeed; DESIGN §6's money,
//! shipment and stock invariants through the participants' read RPCs; at most one fraud
//! decision per order; no lease left held, no orphan timer, no unconsumed inbox request (SQL
//! on the orchestrator's tables); histories contiguous, one start and one end each, and
//! compensations in exact reverse order of the completed steps with no forward call after
//! the compensation began.

use std::collections::BTreeMap;

use sagaflow_proto::fraud::v1::GetDecisionsRequest;
use sagaflow_proto::fraud::v1::fraud_client::FraudClient;
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};
use tonic::transport::Channel;

use super::orders::{Outcome, settled};
use crate::cluster::Cluster;
use crate::invariants::{self, PlacedOrder};

/// The steps of the order saga that have a compensation.
const COMPENSATABLE: [&str; 3] = ["ReserveInventory", "ChargePayment", "CreateShipment"];

/// One named check and what it found.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub violations: Vec<String>,
}

/// Every check of a run, and the statuses as the database holds them.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub checks: Vec<Check>,
    /// status → executions, from the orchestrator's table.
    pub statuses: BTreeMap<String, i64>,
}

impl Checks {
    pub fn violations(&self) -> usize {
        self.checks.iter().map(|c| c.violations.len()).sum()
    }

    fn add(&mut self, name: &'static str, violations: Vec<String>) {
        self.checks.push(Check { name, violations });
    }
}

/// One history event, as stored.
#[derive(Debug, Clone)]
struct Event {
    kind: String,
    state: Option<String>,
    details: Value,
}

/// Run every check. `stock_before` is the stock of the SKUs orders use, read before the run.
pub async fn run(
    cluster: &Cluster,
    outcomes: &[Outcome],
    stock_before: &BTreeMap<String, (i64, i64, i64)>,
    client_problems: Vec<String>,
    crashes: Vec<String>,
) -> anyhow::Result<Checks> {
    let mut checks = Checks::default();
    checks.add("no process exited on its own (no crash, no crash loop)", crashes);
    let mut db = PgConnection::connect(&cluster.orchestrator_db).await?;

    // Executions by order id (the idempotency key), as stored.
    let rows = sqlx::query(
        "SELECT id::text AS id, idempotency_key, status, owner, lease_expires_at IS NOT NULL AS leased, last_event_id \
         FROM sagaflow.executions",
    )
    .fetch_all(&mut db)
    .await?;
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut status_of: BTreeMap<String, String> = BTreeMap::new();
    let mut last_event: BTreeMap<String, i64> = BTreeMap::new();
    let mut leases = Vec::new();
    for row in &rows {
        let id: String = row.try_get("id")?;
        let key: Option<String> = row.try_get("idempotency_key")?;
        let status: String = row.try_get("status")?;
        let owner: Option<String> = row.try_get("owner")?;
        let leased: bool = row.try_get("leased")?;
        if owner.is_some() || leased {
            leases.push(format!("execution {id} ({status}) still leased to {}", owner.unwrap_or_default()));
        }
        *checks.statuses.entry(status.clone()).or_default() += 1;
        by_key.entry(key.unwrap_or_default()).or_default().push(id.clone());
        last_event.insert(id.clone(), row.try_get("last_event_id")?);
        status_of.insert(id, status);
    }

    let mut acknowledged = client_problems;
    let mut one_per_order = Vec::new();
    for o in outcomes {
        let key = &o.request.order_id;
        let stored = by_key.get(key).cloned().unwrap_or_default();
        if stored.len() > 1 {
            one_per_order.push(format!("order {key} has {} executions: {stored:?}", stored.len()));
        }
        if let Some(id) = &o.execution_id
            && !stored.contains(id)
        {
            acknowledged.push(format!("order {key}: acknowledged execution {id} is not in the database"));
        }
    }
    let placed = outcomes.len();
    if rows.len() != placed {
        one_per_order.push(format!("{} executions in the database for {placed} orders", rows.len()));
    }
    checks.add("every acknowledged start has its execution", acknowledged);
    checks.add("one execution per order (idempotent start)", one_per_order);

    let unsettled: Vec<String> =
        status_of.iter().filter(|(_, s)| !settled(s)).map(|(id, s)| format!("execution {id} is still {s}")).collect();
    checks.add("every execution terminal or COMPENSATION_STUCK", unsettled);

    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status == "SUCCEEDED" && !o.kind.may_succeed())
        .map(|o| format!("order {} ({}) SUCCEEDED", o.request.order_id, o.kind.label()))
        .collect();
    checks.add("only good orders succeed", wrong);

    // The database's status is the truth for every order, acknowledged or not (a start may
    // land though its answer was lost); an order with no execution must have no effect.
    let mut disagree = Vec::new();
    let placed_orders: Vec<_> = outcomes
        .iter()
        .map(|o| {
            let stored = by_key
                .get(&o.request.order_id)
                .and_then(|ids| ids.first())
                .and_then(|id| status_of.get(id))
                .cloned()
                .unwrap_or_else(|| "NOT STARTED".to_owned());
            if settled(&o.status) && o.status != stored {
                disagree.push(format!(
                    "order {}: the API said {}, the database holds {stored}",
                    o.request.order_id, o.status
                ));
            }
            PlacedOrder { status: stored, ..o.placed() }
        })
        .collect();
    checks.add("the API reported the stored final status", disagree);
    let design = invariants::check(cluster, &placed_orders, stock_before).await?;
    checks.add("DESIGN §6: money, shipments, stock", design);

    let mut fraud = FraudClient::new(Channel::from_shared(cluster.participants["fraud"].url())?.connect().await?);
    let mut decisions = Vec::new();
    for o in outcomes {
        let d = fraud
            .get_decisions(GetDecisionsRequest { order_id: o.request.order_id.clone() })
            .await?
            .into_inner()
            .decisions;
        if d.len() > 1 {
            decisions.push(format!("order {}: {} fraud decisions stored", o.request.order_id, d.len()));
        }
    }
    checks.add("one fraud decision per order at most", decisions);

    checks.add("no lease left held", leases);

    let orphans: Vec<String> = sqlx::query(
        "SELECT t.execution_id::text AS id, e.status, t.work_id FROM sagaflow.timers t \
         JOIN sagaflow.executions e ON e.id = t.execution_id \
         WHERE e.status NOT IN ('RUNNING', 'COMPENSATING')",
    )
    .fetch_all(&mut db)
    .await?
    .iter()
    .map(|r| {
        let id: String = r.get("id");
        let status: String = r.get("status");
        let work: i64 = r.get("work_id");
        format!("timer {work} of execution {id} ({status}) will never fire for anyone")
    })
    .collect();
    checks.add("no orphan timer", orphans);

    let inbox: Vec<String> = sqlx::query("SELECT id, execution_id::text AS execution FROM sagaflow.inbox")
        .fetch_all(&mut db)
        .await?
        .iter()
        .map(|r| {
            let id: i64 = r.get("id");
            let execution: String = r.get("execution");
            format!("inbox request {id} of execution {execution} never consumed")
        })
        .collect();
    checks.add("no unconsumed inbox request", inbox);

    let histories = histories(&mut db).await?;
    let mut shape = Vec::new();
    let mut order = Vec::new();
    for (id, status) in &status_of {
        let events = histories.get(id).map(Vec::as_slice).unwrap_or_default();
        shape.extend(history_shape(id, status, events, last_event.get(id).copied().unwrap_or(0)));
        order.extend(compensation_order(id, status, events));
    }
    checks.add("history contiguous, one start and one end", shape);
    checks.add("compensations in reverse order, no forward call after", order);
    db.close().await?;
    Ok(checks)
}

/// Every execution's events in order, with their ids checked for gaps on the way.
async fn histories(db: &mut PgConnection) -> anyhow::Result<BTreeMap<String, Vec<(i64, Event)>>> {
    let rows = sqlx::query(
        "SELECT execution_id::text AS execution, id, type, state, details::text AS details \
         FROM sagaflow.history ORDER BY execution_id, id",
    )
    .fetch_all(db)
    .await?;
    let mut out: BTreeMap<String, Vec<(i64, Event)>> = BTreeMap::new();
    for r in rows {
        let details: Option<String> = r.try_get("details")?;
        out.entry(r.try_get("execution")?).or_default().push((
            r.try_get("id")?,
            Event {
                kind: r.try_get("type")?,
                state: r.try_get("state")?,
                details: details.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null),
            },
        ));
    }
    Ok(out)
}

/// The event that ends an execution with each terminal status.
fn end_event(status: &str) -> Option<&'static str> {
    Some(match status {
        "SUCCEEDED" => "ExecutionSucceeded",
        "FAILED" => "ExecutionFailed",
        "COMPENSATED" => "ExecutionCompensated",
        "CANCELLED" => "ExecutionCancelled",
        "TERMINATED" => "ExecutionTerminated",
        _ => return None,
    })
}

const END_EVENTS: [&str; 6] = [
    "ExecutionSucceeded",
    "ExecutionFailed",
    "ExecutionCompensated",
    "ExecutionCancelled",
    "ExecutionTerminated",
    "ExecutionTimedOut",
];

fn history_shape(id: &str, status: &str, events: &[(i64, Event)], last_event_id: i64) -> Vec<String> {
    let mut out = Vec::new();
    if events.iter().enumerate().any(|(i, (eid, _))| *eid != i as i64 + 1) {
        out.push(format!("execution {id}: history ids are not 1..n without gaps"));
    }
    if events.len() as i64 != last_event_id {
        out.push(format!("execution {id}: {} events stored, the row says {last_event_id}", events.len()));
    }
    let starts = events.iter().filter(|(_, e)| e.kind == "ExecutionStarted").count();
    if starts != 1 || events.first().is_none_or(|(_, e)| e.kind != "ExecutionStarted") {
        out.push(format!("execution {id}: {starts} ExecutionStarted events, or not first"));
    }
    let ends: Vec<&str> =
        events.iter().filter(|(_, e)| END_EVENTS.contains(&e.kind.as_str())).map(|(_, e)| e.kind.as_str()).collect();
    match end_event(status) {
        Some(expected) if ends != [expected] => {
            out.push(format!("execution {id} is {status} but its end events are {ends:?}"));
        }
        None if status == "COMPENSATION_STUCK"
            && (!ends.is_empty() || !events.iter().any(|(_, e)| e.kind == "CompensationStuck")) =>
        {
            out.push(format!("execution {id} is parked but its history has {ends:?} and no CompensationStuck"));
        }
        _ => {}
    }
    out
}

/// Compensations must run in exactly the reverse order of the compensatable steps that
/// completed or may have (outcome unknown); a parked execution has run a prefix of them.
fn compensation_order(id: &str, status: &str, events: &[(i64, Event)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut forward: Vec<String> = Vec::new();
    let mut compensations: Vec<String> = Vec::new();
    let mut compensating = false;
    for (eid, e) in events {
        let state = e.state.clone().unwrap_or_default();
        match e.kind.as_str() {
            "TaskSucceeded" if !forward.contains(&state) => forward.push(state),
            "TaskFailed" | "TaskTimedOut"
                if e.details["outcomeUnknown"] == Value::Bool(true) && !forward.contains(&state) =>
            {
                forward.push(state)
            }
            "CompensationStarted" => compensating = true,
            "TaskScheduled" if compensating => out
                .push(format!("execution {id}: forward call {state} scheduled (event {eid}) after compensation began")),
            "CompensationScheduled" if e.details["attempt"] == 1 => compensations.push(state),
            _ => {}
        }
    }
    let mut expected: Vec<String> = forward.into_iter().filter(|s| COMPENSATABLE.contains(&s.as_str())).collect();
    expected.reverse();
    let ok = match status {
        "COMPENSATED" | "CANCELLED" => compensations == expected,
        "COMPENSATION_STUCK" => expected.starts_with(&compensations),
        _ => compensations.is_empty(),
    };
    if !ok {
        out.push(format!(
            "execution {id} ({status}): compensations {compensations:?}, the completed steps in reverse are {expected:?}"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ev(kind: &str, state: &str, details: Value) -> Event {
        Event { kind: kind.into(), state: Some(state.into()), details }
    }

    fn numbered(events: Vec<Event>) -> Vec<(i64, Event)> {
        events.into_iter().enumerate().map(|(i, e)| (i as i64 + 1, e)).collect()
    }

    #[test]
    fn compensations_must_reverse_the_completed_steps() {
        let run = |comps: &[&str]| {
            let mut events = vec![
                ev("ExecutionStarted", "", Value::Null),
                ev("TaskSucceeded", "ReserveInventory", Value::Null),
                ev("TaskSucceeded", "CheckFraud", Value::Null),
                ev("TaskFailed", "ChargePayment", json!({"outcomeUnknown": true})),
                ev("TaskFailed", "ChargePayment", json!({"outcomeUnknown": false})),
                ev("CompensationStarted", "", Value::Null),
            ];
            for c in comps {
                events.push(ev("CompensationScheduled", c, json!({"attempt": 1})));
            }
            compensation_order("x", "COMPENSATED", &numbered(events))
        };
        assert!(run(&["ChargePayment", "ReserveInventory"]).is_empty());
        assert_eq!(run(&["ReserveInventory", "ChargePayment"]).len(), 1);
        assert_eq!(run(&["ReserveInventory"]).len(), 1);
    }

    #[test]
    fn a_history_needs_one_start_one_matching_end_and_no_gaps() {
        let good = numbered(vec![
            ev("ExecutionStarted", "", Value::Null),
            ev("TaskSucceeded", "ReserveInventory", Value::Null),
            ev("ExecutionSucceeded", "", Value::Null),
        ]);
        assert!(history_shape("x", "SUCCEEDED", &good, 3).is_empty());
        assert_eq!(history_shape("x", "COMPENSATED", &good, 3).len(), 1);
        assert_eq!(history_shape("x", "SUCCEEDED", &good, 4).len(), 1);
        let mut gap = good.clone();
        gap[2].0 = 5;
        assert_eq!(history_shape("x", "SUCCEEDED", &gap, 3).len(), 1);
    }
}

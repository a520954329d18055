//! The reference model: what must hold once an execution has ended, read from the
//! participants' books (as a test reads them through the real read RPCs), from every call
//! that went over the network and from the committed history.
//!
//! - money: charged − refunded is the order's amount if the saga SUCCEEDED, zero otherwise;
//! - stock: conserved per SKU, never negative, held (committed) iff the saga succeeded;
//! - shipments: one live shipment iff the saga succeeded;
//! - nothing applied twice: at most one payment, reservation and shipment per order;
//! - idempotency keys: one per Task scope across attempts, crashes and redrives, one per
//!   compensated key, never shared between a forward call and a compensation;
//! - no forward call goes out, or is applied, after its compensation;
//! - compensations in exact reverse order of completion: an older step's compensation
//!   starts only after every newer one in its lane (or an enclosing one) is settled.
//!
//! A step an operator skipped is exempt from the money and stock rules (the operator chose
//! to leave it), and so is everything in a TERMINATED execution (terminate does not
//! compensate, DESIGN §3); nothing-applied-twice and the key rules hold for every status.

use std::collections::{BTreeMap, BTreeSet};

use sagaflow_language::interpreter::{EventKind, Status};
use serde_json::Value;

use super::harness::{EXECUTION_ID, World};
use super::model::Order;
use super::participants::{Logged, ReservationStatus};

type Checked = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

pub(crate) fn ended_well(world: &World, order: &Order) -> Checked {
    let status = world.execution.status;
    ensure!(status.is_terminal(), "the execution ended {status}, not in a final status");
    ensure!(
        world.execution.outstanding().is_empty() && world.in_flight_ids().is_empty(),
        "a {status} execution still has calls or timers outstanding: {:?}",
        world.execution.outstanding()
    );
    ensure!(world.participants.violations.is_empty(), "participants saw: {:?}", world.participants.violations);
    keys_are_stable(world)?;
    no_forward_after_compensation(world)?;
    compensations_in_reverse_order(world)?;
    accounting(world, order)
}

/// Forward keys by Task scope, from the calls sent.
fn forward_keys(world: &World) -> BTreeMap<String, BTreeSet<String>> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for call in world.sent.iter().filter(|c| c.compensates.is_none()) {
        keys.entry(call.scope.clone()).or_default().insert(call.idempotency_key.clone());
    }
    keys
}

fn keys_are_stable(world: &World) -> Checked {
    let forward = forward_keys(world);
    let mut all_forward = BTreeSet::new();
    for (scope, keys) in &forward {
        ensure!(keys.len() == 1, "Task {scope} was called under several keys: {keys:?}");
        for key in keys {
            ensure!(key.starts_with(&format!("{EXECUTION_ID}:")), "key {key} does not name its execution");
            ensure!(all_forward.insert(key.clone()), "two Task scopes share key {key}");
        }
    }
    let mut compensation_keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (i, call) in world.sent.iter().enumerate() {
        let Some(forward_key) = call.compensates.as_deref() else { continue };
        ensure!(
            world.sent[..i].iter().any(|c| c.compensates.is_none() && c.idempotency_key == forward_key),
            "a compensation names forward key {forward_key}, which was never called before it"
        );
        ensure!(
            !all_forward.contains(&call.idempotency_key),
            "compensation key {} is also a forward key",
            call.idempotency_key
        );
        compensation_keys.entry(forward_key).or_default().insert(&call.idempotency_key);
    }
    for (forward_key, keys) in compensation_keys {
        ensure!(keys.len() == 1, "the compensation of {forward_key} went out under several keys: {keys:?}");
    }
    Ok(())
}

fn no_forward_after_compensation(world: &World) -> Checked {
    let mut compensated = BTreeSet::new();
    for call in &world.sent {
        match &call.compensates {
            Some(forward) => {
                compensated.insert(forward.clone());
            }
            None => ensure!(
                !compensated.contains(&call.idempotency_key),
                "forward call {} went out after its compensation",
                call.idempotency_key
            ),
        }
    }
    let mut undone = BTreeSet::new();
    for entry in &world.participants.log {
        match entry {
            Logged::Compensated { forward, .. } => {
                undone.insert(forward.clone());
            }
            Logged::ForwardDecided { key, applied: true } => {
                ensure!(!undone.contains(key), "forward call {key} was applied after its compensation")
            }
            _ => {}
        }
    }
    Ok(())
}

/// The lane a scope runs in: `Hold#1[0].ReserveInventory` → `Hold#1[0].`; top level → ``.
fn lane(scope: &str) -> &str {
    match scope.rfind("].") {
        Some(i) => &scope[..i + 2],
        None => "",
    }
}

fn compensations_in_reverse_order(world: &World) -> Checked {
    let history = &world.history;
    let Some(rollback_at) = history.iter().position(|e| e.kind == EventKind::CompensationStarted) else {
        ensure!(
            !history.iter().any(|e| e.kind == EventKind::CompensationScheduled),
            "a compensation was scheduled without a rollback"
        );
        return Ok(());
    };
    // Forward keys by call id, and their scopes.
    let mut key_of_call: BTreeMap<u64, String> = BTreeMap::new();
    let mut scope_of_key: BTreeMap<String, String> = BTreeMap::new();
    for e in history.iter().filter(|e| e.kind == EventKind::TaskScheduled) {
        if let (Some(id), Some(key)) = (e.details["callId"].as_u64(), e.details["idempotencyKey"].as_str()) {
            key_of_call.insert(id, key.to_owned());
            scope_of_key.insert(key.to_owned(), e.state.clone().unwrap_or_default());
        }
    }
    // When each forward step completed, as far as the orchestrator knew: the last event
    // about one of its calls before the rollback began.
    let mut completed: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in history[..rollback_at].iter().enumerate() {
        let about_a_call = matches!(
            e.kind,
            EventKind::TaskScheduled | EventKind::TaskSucceeded | EventKind::TaskFailed | EventKind::TaskTimedOut
        );
        if let Some(key) = e.details["callId"].as_u64().and_then(|id| key_of_call.get(&id)).filter(|_| about_a_call) {
            completed.insert(key, i);
        }
    }
    let mut started: BTreeMap<&str, usize> = BTreeMap::new();
    let mut settled: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in history.iter().enumerate().skip(rollback_at) {
        let scope = e.state.as_deref().unwrap_or_default();
        match e.kind {
            EventKind::CompensationScheduled => {
                if let Some(forward) = e.details["compensates"].as_str() {
                    ensure!(
                        !settled.contains_key(forward),
                        "the compensation of {forward} was scheduled again after it was settled"
                    );
                    started.entry(forward).or_insert(i);
                }
            }
            EventKind::CompensationSucceeded => {
                for (key, s) in &scope_of_key {
                    if s == scope {
                        settled.entry(key.as_str()).or_insert(i);
                    }
                }
            }
            EventKind::CompensationSkipped | EventKind::CompensationResolved => {
                for step in e.details["steps"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    for (key, s) in &scope_of_key {
                        if s == step {
                            settled.entry(key.as_str()).or_insert(i);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let lane_of = |key: &str| {
        scope_of_key.get(key).map(|s| lane(s)).ok_or_else(|| format!("{key} was compensated but never scheduled"))
    };
    for (&older, &older_start) in &started {
        let older_lane = lane_of(older)?;
        let Some(&older_done) = completed.get(older) else {
            return Err(format!("{older} was compensated but never completed before the rollback"));
        };
        for (&newer, _) in started.iter().filter(|(k, _)| **k != older) {
            let newer_lane = lane_of(newer)?;
            let same_line = older_lane.starts_with(newer_lane) || newer_lane.starts_with(older_lane);
            let newer_done = completed.get(newer).copied().unwrap_or(usize::MAX);
            if !same_line || newer_done < older_done {
                continue;
            }
            match settled.get(newer) {
                Some(&done) if done < older_start => {}
                _ => {
                    return Err(format!(
                        "the compensation of {older} (completed at event {}) started at event {} before the \
                         compensation of the newer {newer} (completed at event {}) was settled",
                        older_done + 1,
                        older_start + 1,
                        newer_done.saturating_add(1)
                    ));
                }
            }
        }
    }
    Ok(())
}

fn accounting(world: &World, order: &Order) -> Checked {
    let status = world.execution.status;
    let p = &world.participants;
    let succeeded = status == Status::Succeeded;
    let exempt_all = status == Status::Terminated;
    // Forward keys the operator chose not to compensate.
    let scopes = forward_keys(world);
    let mut skipped = BTreeSet::new();
    for e in world.history.iter().filter(|e| e.kind == EventKind::CompensationSkipped) {
        for step in e.details["steps"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            skipped.extend(scopes.get(step).into_iter().flatten().cloned());
        }
    }
    let exempt = |key: &str| exempt_all || skipped.contains(key);

    // Nothing applied twice: one key per step, so at most one effect per order.
    let payments: Vec<_> = p.payments.iter().filter(|x| x.order == order.id).collect();
    let reservations: Vec<_> = p.reservations.iter().filter(|x| x.order == order.id).collect();
    let shipments: Vec<_> = p.shipments.iter().filter(|x| x.order == order.id).collect();
    ensure!(payments.len() <= 1, "the order was charged {} times", payments.len());
    ensure!(reservations.len() <= 1, "the order reserved stock {} times", reservations.len());
    ensure!(shipments.len() <= 1, "the order was shipped {} times", shipments.len());

    // Money.
    let net: i64 = payments.iter().map(|x| x.amount - x.refunded).sum();
    for x in &payments {
        ensure!(x.amount == order.amount && (0..=x.amount).contains(&x.refunded), "payment books broken: {x:?}");
    }
    if succeeded {
        ensure!(net == order.amount, "SUCCEEDED but charged − refunded = {net}, not {}", order.amount);
    } else {
        for x in payments.iter().filter(|x| !exempt(&x.key)) {
            ensure!(
                x.amount == x.refunded,
                "{status} but {} of {} cents stay charged",
                x.amount - x.refunded,
                x.amount
            );
        }
    }

    // Stock: conserved, never negative, held iff succeeded.
    for (sku, stock) in &p.stock {
        let initial = order.stock.get(sku).copied().unwrap_or(0);
        ensure!(
            stock.available >= 0 && stock.reserved >= 0 && stock.committed >= 0,
            "stock of {sku} went negative: {stock:?}"
        );
        ensure!(
            stock.available + stock.reserved + stock.committed == initial,
            "stock of {sku} is not conserved: {stock:?} from {initial}"
        );
        let held: i64 =
            reservations.iter().filter(|r| r.status == ReservationStatus::Held).filter_map(|r| r.items.get(sku)).sum();
        let committed: i64 = reservations
            .iter()
            .filter(|r| r.status == ReservationStatus::Committed)
            .filter_map(|r| r.items.get(sku))
            .sum();
        ensure!(
            held == stock.reserved && committed == stock.committed,
            "stock of {sku} disagrees with its reservations: {stock:?}"
        );
    }
    if succeeded {
        ensure!(
            reservations.len() == 1 && reservations[0].status == ReservationStatus::Committed,
            "SUCCEEDED but the stock is not committed: {reservations:?}"
        );
    } else {
        for r in reservations.iter().filter(|r| !exempt(&r.key)) {
            ensure!(
                matches!(r.status, ReservationStatus::Released | ReservationStatus::Expired),
                "{status} but reservation {} is still {:?}",
                r.id,
                r.status
            );
        }
    }

    // Shipments.
    let live = shipments.iter().filter(|s| !s.cancelled).count();
    if succeeded {
        ensure!(live == 1, "SUCCEEDED with {live} live shipments");
    } else {
        for s in shipments.iter().filter(|s| !exempt(&s.key)) {
            ensure!(s.cancelled, "{status} but shipment {} was not cancelled", s.key);
        }
    }
    Ok(())
}

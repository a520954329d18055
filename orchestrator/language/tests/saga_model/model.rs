//! Scenarios: an order (its items, the stock on hand, the card, the customer, the address),
//! a definition, and a sequence of ops; the strategies that generate them; and `run`, which
//! plays a scenario, lets the world settle once faults stop, and checks the reference model.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sagaflow_language::interpreter::Status;
use serde_json::{Value, json};

use super::checks;
use super::definitions::{Shape, Variant};
use super::harness::{Fate, Op, World};
use super::participants::{Logged, Participants};

/// One order and the stock the inventory holds before it.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) id: String,
    pub(crate) customer: String,
    /// (SKU, quantity, unit price in cents).
    pub(crate) items: Vec<(String, i64, i64)>,
    pub(crate) amount: i64,
    pub(crate) token: &'static str,
    pub(crate) postal_code: bool,
    pub(crate) stock: BTreeMap<String, i64>,
}

impl Order {
    /// The StartOrder input, as `OrderService` hands it to the order saga.
    pub(crate) fn input(&self) -> Value {
        json!({
            "orderId": self.id,
            "customerId": self.customer,
            "items": self.items.iter().map(|(sku, quantity, unit)| json!({
                "sku": sku, "quantity": quantity, "unitPriceCents": unit
            })).collect::<Vec<_>>(),
            "currency": "USD",
            "amountCents": self.amount,
            "paymentToken": self.token,
            "shippingAddress": {
                "line1": "1 Main St",
                "city": "Springfield",
                "postalCode": if self.postal_code { "12345" } else { "" },
                "country": "US"
            }
        })
    }
}

const SKUS: [&str; 2] = ["SKU-RED-MUG", "SKU-TEE-M"];

pub(crate) fn arb_order() -> impl Strategy<Value = Order> {
    let item = (0..SKUS.len(), 1..=3i64, 100..=5_000i64, prop_oneof![15 => Just(true), 1 => Just(false)], 0..=3i64);
    (
        prop::collection::vec(item, 1..=2),
        prop_oneof![30 => Just("tok_ok"), 1 => Just("tok_decline"), 1 => Just("tok_insufficient")],
        prop_oneof![30 => Just("cust-7"), 1 => Just("fraud-3")],
        prop_oneof![30 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(items, token, customer, postal_code)| {
            let mut stock: BTreeMap<String, i64> = SKUS.iter().map(|s| ((*s).to_owned(), 0)).collect();
            let mut lines = Vec::new();
            for (sku, quantity, unit, enough, extra) in items {
                let sku = SKUS[sku].to_owned();
                // Usually enough stock for every line; sometimes not (Inventory.OutOfStock).
                *stock.entry(sku.clone()).or_default() +=
                    if enough { quantity + extra } else { extra.min(quantity - 1) };
                lines.push((sku, quantity, unit));
            }
            let amount = lines.iter().map(|(_, q, u)| q * u).sum();
            Order { id: "order-1".into(), customer: customer.into(), items: lines, amount, token, postal_code, stock }
        })
}

fn arb_fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        14 => Just(Fate::Answer),
        2 => Just(Fate::Duplicate),
        1 => Just(Fate::Refuse),
        4 => Just(Fate::Unavailable),
        4 => any::<bool>().prop_map(|arrives_late| Fate::TimeoutBeforeApply { arrives_late }),
        3 => any::<bool>().prop_map(|answer_arrives_late| Fate::TimeoutAfterApply { answer_arrives_late }),
        1 => Just(Fate::AppliedThenFailed),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        80 => (0..8usize, arb_fate()).prop_map(|(pick, fate)| Op::Deliver { pick, fate }),
        24 => Just(Op::FireTimer),
        4 => prop_oneof![Just(30u32), Just(700), Just(2_000)].prop_map(|seconds| Op::Jump { seconds }),
        8 => (0..8usize).prop_map(|pick| Op::LateRequest { pick }),
        4 => (0..8usize).prop_map(|pick| Op::LateAnswer { pick }),
        8 => (any::<bool>(), any::<u8>()).prop_map(|(lose_last_step, reached)| Op::Crash { lose_last_step, reached }),
        4 => Just(Op::Cancel),
        1 => Just(Op::Terminate),
        6 => Just(Op::Redrive),
        6 => Just(Op::RetryCompensation),
        2 => Just(Op::SkipCompensation),
        4 => Just(Op::ResolveCompensation),
    ]
}

pub(crate) fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(arb_op(), 0..48)
}

pub(crate) fn arb_variant() -> impl Strategy<Value = Variant> {
    (
        prop_oneof![
            Just(Shape::AsShipped),
            Just(Shape::FraudFirst),
            Just(Shape::ParallelHold { retried: false }),
            Just(Shape::ParallelHold { retried: true }),
        ],
        prop_oneof![Just(0u8), Just(1), Just(4)],
        prop_oneof![Just(0u8), Just(1), Just(6)],
        any::<bool>(),
    )
        .prop_map(|(shape, forward_retries, compensation_retries, catch_shipment)| Variant::Generated {
            shape,
            forward_retries,
            compensation_retries,
            catch_shipment,
        })
}

/// What a run went through: enough to check that the generators reach every situation.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) status: Status,
    pub(crate) crashes: usize,
    /// Every kind of event the committed history holds.
    pub(crate) kinds: BTreeSet<&'static str>,
    /// Late forward requests refused because their key was compensated first.
    pub(crate) tombstone_refusals: usize,
}

/// Play `ops` on `order` under `variant`, let the world settle, flush the network, check.
pub(crate) fn run(variant: Variant, order: &Order, seed: u64, ops: &[Op]) -> Result<Summary, String> {
    play(variant, order, seed, ops, true)
}

/// `run`, choosing whether the modelled engine reports every failure of a call it sent again
/// after a takeover as an unknown outcome (it does; `false` shows what breaks without it).
pub(crate) fn play(
    variant: Variant,
    order: &Order,
    seed: u64,
    ops: &[Op],
    resent_failures_unknown: bool,
) -> Result<Summary, String> {
    let mut world = World::start(variant.definition(), order.input(), Participants::new(&order.stock), seed)?;
    world.resent_failures_unknown = resent_failures_unknown;
    for (i, op) in ops.iter().enumerate() {
        world.keep_previous = matches!(ops.get(i + 1), Some(Op::Crash { lose_last_step: true, .. }));
        world.run(op).map_err(|e| format!("op {i} ({op:?}): {e}"))?;
    }
    world.settle()?;
    world.flush_network();
    checks::ended_well(&world, order).map_err(|e| format!("{e}\nstatus {}", world.execution.status))?;
    Ok(Summary {
        status: world.execution.status,
        crashes: world.crashes,
        kinds: world.history.iter().map(|e| e.kind.as_str()).collect(),
        tombstone_refusals: world
            .participants
            .log
            .iter()
            .filter(|l| matches!(l, Logged::RefusedByTombstone { .. }))
            .count(),
    })
}

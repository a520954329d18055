//! In-memory participants that keep DESIGN §3 and §6 to the letter, as decision 0012 says
//! the real ones do: each service applies an idempotency key at most once and answers every
//! repeat with the first answer (a business refusal included); a compensation names its
//! forward key and undoes exactly the effect made under it; compensating a key never seen is
//! a no-op that leaves a tombstone, so a late forward call with that key is refused with
//! `Saga.AlreadyCompensated`. Money, stock and shipments are kept as the demo services keep
//! them, so the checks read the same figures a test reads through the real read RPCs.

use std::collections::BTreeMap;

use sagaflow_language::interpreter::Call;
use serde_json::{Value, json};

/// A participant's answer: the response message, or a business refusal (error name, cause).
pub(crate) type Answer = Result<Value, (String, String)>;

/// The demo reservation TTL (DESIGN §6: 30 minutes).
pub(crate) const RESERVATION_TTL_MS: i64 = 30 * 60 * 1000;

#[derive(Debug, Clone)]
enum KeyRecord {
    /// The first answer under a key, and the request it answered (method + message).
    Answered { method: String, request: Value, answer: Answer },
    /// A compensation arrived before its forward call: the forward key is dead.
    Tombstone,
}

/// What a participant did with one call, in arrival order (for the checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Logged {
    /// A forward call applied its effect (or refused on business grounds) for the first time.
    ForwardDecided { key: String, applied: bool },
    /// A repeat answered with the stored first answer.
    Replayed { key: String },
    /// A forward call refused because its key was compensated first.
    RefusedByTombstone { key: String },
    /// A compensation processed for the first time: undone, or a no-op (tombstone left or
    /// nothing had been applied).
    Compensated { forward: String, undid: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReservationStatus {
    Held,
    Committed,
    Released,
    Expired,
}

#[derive(Debug, Clone)]
pub(crate) struct Reservation {
    pub(crate) id: String,
    pub(crate) order: String,
    /// The Reserve key that created it.
    pub(crate) key: String,
    pub(crate) items: BTreeMap<String, i64>,
    pub(crate) status: ReservationStatus,
    pub(crate) expires_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Payment {
    pub(crate) order: String,
    pub(crate) key: String,
    pub(crate) amount: i64,
    pub(crate) refunded: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Shipment {
    pub(crate) order: String,
    pub(crate) key: String,
    pub(crate) cancelled: bool,
}

/// Stock of one SKU: available, reserved, committed (never negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Stock {
    pub(crate) available: i64,
    pub(crate) reserved: i64,
    pub(crate) committed: i64,
}

/// The four demo services behind one call entry point, each with its own key table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Participants {
    keys: BTreeMap<String, BTreeMap<String, KeyRecord>>,
    pub(crate) stock: BTreeMap<String, Stock>,
    pub(crate) reservations: Vec<Reservation>,
    pub(crate) payments: Vec<Payment>,
    pub(crate) shipments: Vec<Shipment>,
    pub(crate) fraud_decisions: Vec<(String, bool)>,
    pub(crate) log: Vec<Logged>,
    /// Contract breaches seen from the participants' side (a key reused for another request).
    pub(crate) violations: Vec<String>,
    next_id: u64,
}

/// `grpc://inventory/inventory.v1.Inventory/Reserve` → (`inventory`, `Reserve`).
fn route(resource: &str) -> (&str, &str) {
    let rest = resource.strip_prefix("grpc://").unwrap_or(resource);
    let service = rest.split('/').next().unwrap_or_default();
    let method = rest.rsplit('/').next().unwrap_or_default();
    (service, method)
}

fn refusal(name: &str, cause: &str) -> Answer {
    Err((name.to_owned(), cause.to_owned()))
}

impl Participants {
    pub(crate) fn new(stock: &BTreeMap<String, i64>) -> Self {
        let mut p = Participants::default();
        for (sku, available) in stock {
            p.stock.insert(sku.clone(), Stock { available: *available, ..Stock::default() });
        }
        p
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// Serve one call that reached its participant at `now`. `refuse` makes a first-time
    /// forward call end in its method's business refusal (the card issuer declines, the
    /// carrier rejects the address...): stored like any first answer.
    pub(crate) fn handle(&mut self, call: &Call, now: i64, refuse: bool) -> Answer {
        let (service, method) = route(&call.resource);
        let (service, method) = (service.to_owned(), method.to_owned());
        if service == "inventory" {
            self.expire_due(now);
        }
        let key = call.idempotency_key.clone();
        match self.keys.entry(service.clone()).or_default().get(&key) {
            Some(KeyRecord::Tombstone) => {
                self.log.push(Logged::RefusedByTombstone { key });
                return refusal("Saga.AlreadyCompensated", "this key was compensated before it was applied");
            }
            Some(KeyRecord::Answered { method: m, request, answer }) => {
                if *m != method || *request != call.input {
                    self.violations.push(format!(
                        "key {key} reused for another request: first {m} {request}, now {method} {}",
                        call.input
                    ));
                }
                let answer = answer.clone();
                self.log.push(Logged::Replayed { key });
                return answer;
            }
            None => {}
        }
        let answer = match &call.compensates {
            Some(forward) => self.compensate(&service, &method, forward),
            None if refuse => {
                let answer = business_refusal(&method);
                self.log.push(Logged::ForwardDecided { key: key.clone(), applied: false });
                answer
            }
            None => {
                let answer = self.apply(&method, &key, &call.input, now);
                self.log.push(Logged::ForwardDecided { key: key.clone(), applied: answer.is_ok() });
                answer
            }
        };
        self.keys
            .entry(service)
            .or_default()
            .insert(key, KeyRecord::Answered { method, request: call.input.clone(), answer: answer.clone() });
        answer
    }

    /// An operator compensating a stuck step "by other means" before marking it resolved:
    /// the same undo, called by hand under a key of its own.
    pub(crate) fn operator_undo(&mut self, service: &str, method: &str, forward: &str) {
        let key = format!("{forward}:by-operator");
        if self.keys.get(service).is_some_and(|t| t.contains_key(&key)) {
            return;
        }
        let answer = self.compensate(service, method, forward);
        self.keys
            .entry(service.to_owned())
            .or_default()
            .insert(key, KeyRecord::Answered { method: method.to_owned(), request: Value::Null, answer });
    }

    fn compensate(&mut self, service: &str, method: &str, forward: &str) -> Answer {
        let table = self.keys.entry(service.to_owned()).or_default();
        let applied = match table.get(forward) {
            Some(KeyRecord::Answered { answer: Ok(_), .. }) => true,
            Some(KeyRecord::Answered { answer: Err(_), .. }) | Some(KeyRecord::Tombstone) => false,
            None => {
                table.insert(forward.to_owned(), KeyRecord::Tombstone);
                false
            }
        };
        let mut undid = false;
        if applied {
            match method {
                "Release" => {
                    if let Some(r) = self.reservations.iter_mut().find(|r| r.key == forward) {
                        let from_reserved = match r.status {
                            ReservationStatus::Held => Some(true),
                            ReservationStatus::Committed => Some(false),
                            ReservationStatus::Released | ReservationStatus::Expired => None,
                        };
                        if let Some(from_reserved) = from_reserved {
                            for (sku, q) in &r.items {
                                let s = self.stock.entry(sku.clone()).or_default();
                                s.available += q;
                                if from_reserved {
                                    s.reserved -= q;
                                } else {
                                    s.committed -= q;
                                }
                            }
                            r.status = ReservationStatus::Released;
                            undid = true;
                        }
                    }
                }
                "Refund" => {
                    if let Some(p) = self.payments.iter_mut().find(|p| p.key == forward) {
                        // Refunds are capped at what is left, never refused (decision 0012).
                        let left = p.amount - p.refunded;
                        p.refunded += left;
                        undid = left > 0;
                    }
                }
                "CancelShipment" => {
                    if let Some(s) = self.shipments.iter_mut().find(|s| s.key == forward) {
                        undid = !s.cancelled;
                        s.cancelled = true;
                    }
                }
                other => self.violations.push(format!("no compensation method {other}")),
            }
        }
        self.log.push(Logged::Compensated { forward: forward.to_owned(), undid });
        Ok(json!({ "noOp": !undid }))
    }

    fn apply(&mut self, method: &str, key: &str, input: &Value, now: i64) -> Answer {
        let order = input["orderId"].as_str().unwrap_or_default().to_owned();
        match method {
            "Reserve" => {
                let mut items: BTreeMap<String, i64> = BTreeMap::new();
                for item in input["items"].as_array().into_iter().flatten() {
                    let sku = item["sku"].as_str().unwrap_or_default().to_owned();
                    *items.entry(sku).or_default() += item["quantity"].as_i64().unwrap_or(0);
                }
                // All or nothing, and stock never goes negative.
                if items.iter().any(|(sku, q)| self.stock.get(sku).is_none_or(|s| s.available < *q)) {
                    return refusal("Inventory.OutOfStock", "out of stock; nothing was reserved");
                }
                for (sku, q) in &items {
                    let s = self.stock.entry(sku.clone()).or_default();
                    s.available -= q;
                    s.reserved += q;
                }
                let id = self.new_id("res");
                self.reservations.push(Reservation {
                    id: id.clone(),
                    order,
                    key: key.to_owned(),
                    items,
                    status: ReservationStatus::Held,
                    expires_at: now + RESERVATION_TTL_MS,
                });
                Ok(json!({ "reservationId": id, "expiresAt": now + RESERVATION_TTL_MS }))
            }
            "Commit" => {
                // The order's newest held reservation; failing that its committed one
                // (committing again is success).
                let held =
                    self.reservations.iter().rposition(|r| r.order == order && r.status == ReservationStatus::Held);
                let committed = self
                    .reservations
                    .iter()
                    .rposition(|r| r.order == order && r.status == ReservationStatus::Committed);
                match (held, committed) {
                    (Some(i), _) => {
                        let r = &mut self.reservations[i];
                        for (sku, q) in &r.items {
                            let s = self.stock.entry(sku.clone()).or_default();
                            s.reserved -= q;
                            s.committed += q;
                        }
                        r.status = ReservationStatus::Committed;
                        Ok(json!({ "reservationId": r.id }))
                    }
                    (None, Some(i)) => Ok(json!({ "reservationId": self.reservations[i].id })),
                    (None, None) => refusal("Inventory.ReservationNotFound", "no reservation to commit"),
                }
            }
            "Check" => {
                let rejected = input["customerId"].as_str().unwrap_or_default().starts_with("fraud-")
                    || input["amountCents"].as_i64().unwrap_or(0) > 1_000_000;
                self.fraud_decisions.push((key.to_owned(), !rejected));
                if rejected {
                    return refusal("Fraud.Rejected", "the order looks fraudulent");
                }
                Ok(json!({ "decision": "APPROVE", "score": 10, "reasons": [] }))
            }
            "Charge" => match input["paymentToken"].as_str().unwrap_or_default() {
                "tok_decline" => refusal("Payment.CardDeclined", "the card was declined"),
                "tok_insufficient" => refusal("Payment.InsufficientFunds", "insufficient funds"),
                _ => {
                    let amount = input["amountCents"].as_i64().unwrap_or(0);
                    let id = self.new_id("pay");
                    self.payments.push(Payment { order, key: key.to_owned(), amount, refunded: 0 });
                    Ok(json!({ "paymentId": id, "amountCents": amount }))
                }
            },
            "CreateShipment" => {
                if input["address"]["postalCode"].as_str().unwrap_or_default().is_empty() {
                    return refusal("Fulfillment.AddressRejected", "the address has no postal code");
                }
                let id = self.new_id("shp");
                self.shipments.push(Shipment { order, key: key.to_owned(), cancelled: false });
                Ok(json!({ "shipmentId": id }))
            }
            other => {
                self.violations.push(format!("no forward method {other}"));
                refusal("Grpc.Unimplemented", "unknown method")
            }
        }
    }

    /// Held reservations past their TTL give their stock back (the demo service sweeps lazily).
    fn expire_due(&mut self, now: i64) {
        for r in &mut self.reservations {
            if r.status == ReservationStatus::Held && r.expires_at <= now {
                for (sku, q) in &r.items {
                    let s = self.stock.entry(sku.clone()).or_default();
                    s.reserved -= q;
                    s.available += q;
                }
                r.status = ReservationStatus::Expired;
            }
        }
    }
}

/// The business refusal each forward method can answer with.
fn business_refusal(method: &str) -> Answer {
    match method {
        "Reserve" => refusal("Inventory.OutOfStock", "sold out meanwhile"),
        "Commit" => refusal("Inventory.ReservationExpired", "the reservation expired"),
        "Check" => refusal("Fraud.Rejected", "rejected by a rule"),
        "Charge" => refusal("Payment.CardDeclined", "declined by the issuer"),
        "CreateShipment" => refusal("Fulfillment.AddressRejected", "the carrier rejected the address"),
        _ => refusal("Grpc.Unimplemented", "unknown method"),
    }
}

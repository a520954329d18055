//! The definitions the model drives: the real order saga (`saga-definitions/order.asl.json`,
//! byte for byte) and variants built from it by rewiring its own states: fewer or no
//! retries, compensations that give up fast (so COMPENSATION_STUCK and the operator acts
//! come up), the fraud screen first (a failure with nothing owed, so redrive comes up), a
//! Catch that routes a shipment failure to a Fail state, and a Parallel that reserves and
//! charges at once (concurrent lanes, optionally retried as a whole with the same keys).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sagaflow_language::{Definition, compile};
use serde_json::{Value, json};

/// The real definition, as shipped.
pub(crate) const ORDER_SOURCE: &str = include_str!("../../../../saga-definitions/order.asl.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shape {
    /// Reserve → Fraud → Charge → Ship → Commit (pivot), as shipped.
    AsShipped,
    /// Fraud → Reserve → Charge → Ship → Commit.
    FraudFirst,
    /// Parallel[Reserve | Charge] → Fraud → Ship → Commit; `retried`: the Parallel retries
    /// once on any error (its branches run again under the same keys).
    ParallelHold { retried: bool },
}

/// A definition to drive: the real one, or a variant of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Variant {
    Real,
    Generated {
        shape: Shape,
        /// `MaxAttempts` of every forward Retry (the real one has 4).
        forward_retries: u8,
        /// `MaxAttempts` of every compensation Retry (the real one has 6).
        compensation_retries: u8,
        /// CreateShipment catches every error and routes it to a Fail state.
        catch_shipment: bool,
    },
}

thread_local! {
    static COMPILED: RefCell<HashMap<Variant, Rc<Definition>>> = RefCell::new(HashMap::new());
}

impl Variant {
    /// The compiled definition (compiled once per thread and variant).
    pub(crate) fn definition(self) -> Rc<Definition> {
        COMPILED.with(|cache| {
            Rc::clone(cache.borrow_mut().entry(self).or_insert_with(|| {
                let source = match self {
                    Variant::Real => ORDER_SOURCE.to_owned(),
                    _ => serde_json::to_string_pretty(&self.source()).expect("a JSON value serializes"),
                };
                let compiled = compile(&source).unwrap_or_else(|d| panic!("{self:?} does not compile: {d:?}"));
                Rc::new(compiled.definition)
            }))
        })
    }

    /// The variant as definition JSON, rewired from the real definition's own states.
    fn source(self) -> Value {
        let Variant::Generated { shape, forward_retries, compensation_retries, catch_shipment } = self else {
            return serde_json::from_str(ORDER_SOURCE).expect("the order definition is JSON");
        };
        let real: Value = serde_json::from_str(ORDER_SOURCE).expect("the order definition is JSON");
        let mut states = real["States"].as_object().cloned().expect("States is an object");
        for state in states.values_mut() {
            if let Some(retry) = state.get_mut("Retry").and_then(|r| r.get_mut(0)) {
                retry["MaxAttempts"] = json!(forward_retries);
            }
            if let Some(retry) = state.pointer_mut("/Compensate/Retry/0") {
                retry["MaxAttempts"] = json!(compensation_retries);
                retry["MaxDelaySeconds"] = json!(4);
            }
        }
        if catch_shipment {
            states["CreateShipment"]["Catch"] =
                json!([{ "ErrorEquals": ["States.ALL"], "Next": "ShipmentFailed", "ResultPath": "$.error" }]);
            states.insert(
                "ShipmentFailed".into(),
                json!({ "Type": "Fail", "Error": "Order.ShipmentFailed", "Cause": "the shipment could not be created" }),
            );
        }
        let start_at = match shape {
            Shape::AsShipped => "ReserveInventory",
            Shape::FraudFirst => {
                states["CheckFraud"]["Next"] = json!("ReserveInventory");
                states["ReserveInventory"]["Next"] = json!("ChargePayment");
                "CheckFraud"
            }
            Shape::ParallelHold { retried } => {
                let mut reserve = states.shift_remove("ReserveInventory").expect("ReserveInventory exists");
                let mut charge = states.shift_remove("ChargePayment").expect("ChargePayment exists");
                for branch_state in [&mut reserve, &mut charge] {
                    let object = branch_state.as_object_mut().expect("a state is an object");
                    object.remove("Next");
                    object.insert("End".into(), json!(true));
                }
                let mut hold = json!({
                    "Type": "Parallel",
                    "Branches": [
                        { "StartAt": "ReserveInventory", "States": { "ReserveInventory": reserve } },
                        { "StartAt": "ChargePayment", "States": { "ChargePayment": charge } }
                    ],
                    "ResultSelector": {
                        "reservation.$": "$[0].reservation",
                        "payment.$": "$[1].payment"
                    },
                    "ResultPath": "$.hold",
                    "Next": "CheckFraud"
                });
                if retried {
                    hold["Retry"] = json!([{ "ErrorEquals": ["States.ALL"], "MaxAttempts": 1, "IntervalSeconds": 2 }]);
                }
                states.insert("Hold".into(), hold);
                states["CheckFraud"]["Next"] = json!("CreateShipment");
                states["OrderPlaced"]["Parameters"]["reservationId.$"] = json!("$.hold.reservation.reservationId");
                states["OrderPlaced"]["Parameters"]["paymentId.$"] = json!("$.hold.payment.paymentId");
                "Hold"
            }
        };
        json!({
            "Comment": format!("generated variant of the order saga: {self:?}"),
            "StartAt": start_at,
            "TimeoutSeconds": real["TimeoutSeconds"],
            "States": states,
        })
    }
}

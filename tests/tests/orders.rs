//! The order saga end to end: real orchestrator and participant processes on a real
//! PostgreSQL. A good order succeeds; a failure at each step compensates in reverse order;
//! an unknown payment outcome is refunded; a repeated StartOrder charges once.

mod common;

use common::*;
use sagaflow_e2e::cluster::{Cluster, Options};
use sagaflow_e2e::invariants::{self, stock_before};
use sagaflow_e2e::serial;
use sagaflow_proto::participants::v1::{ClearFaultsRequest, Fault, SetFaultRequest};
use sagaflow_proto::payment::v1::GetPaymentsRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_order_succeeds_and_a_repeated_start_charges_once() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let before = stock_before(&cluster, &["SKU-RED-MUG"]).await.expect("stock");
    let request = order("e2e-good-1", "SKU-RED-MUG", 2, "tok_ok");
    let first = place_and_wait(&cluster, 0, request.clone()).await;
    assert_eq!(first.status, "SUCCEEDED", "{first:?}\n{}", cluster.logs());
    assert!(first.created);
    let output: serde_json::Value = serde_json::from_str(&first.output_json).expect("output JSON");
    assert_eq!(output["status"], "PLACED");

    // The same order again: the same execution, nothing applied twice.
    let again = place_and_wait(&cluster, 0, request.clone()).await;
    assert_eq!(again.execution_id, first.execution_id);
    assert!(!again.created);
    let payments = cluster
        .payment()
        .await
        .expect("client")
        .get_payments(GetPaymentsRequest { order_id: "e2e-good-1".into() })
        .await
        .expect("payments")
        .into_inner()
        .payments;
    assert_eq!(payments.len(), 1, "charged once");
    assert_eq!(payments[0].amount_cents, 2500);

    // The same order id with different contents is refused.
    let mut different = request.clone();
    different.items[0].quantity = 3;
    different.wait_for_completion = false;
    let refused = cluster.orders(0).await.expect("client").start_order(different).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);

    let violations = invariants::check(&cluster, &[placed(&request, &first.status)], &before).await.expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_step_compensates_in_reverse_order() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let skus = ["SKU-RED-MUG", "SKU-SOLD-OUT"];
    let before = stock_before(&cluster, &skus).await.expect("stock");
    let mut placed_orders = Vec::new();

    // 1. Reserve: out of stock, nothing completed, nothing to undo.
    let out_of_stock = order("e2e-fail-reserve", "SKU-SOLD-OUT", 1, "tok_ok");
    let r = place_and_wait(&cluster, 0, out_of_stock.clone()).await;
    assert_eq!((r.status.as_str(), r.error.as_str()), ("FAILED", "Inventory.OutOfStock"), "{r:?}");
    assert!(assert_reverse_order(&history(&cluster, 0, &r.execution_id).await).is_empty());
    placed_orders.push(placed(&out_of_stock, &r.status));

    // 2. Fraud check rejects: the reservation is released.
    let mut fraud = order("e2e-fail-fraud", "SKU-RED-MUG", 1, "tok_ok");
    fraud.customer_id = "fraud-ring-7".into();
    let r = place_and_wait(&cluster, 0, fraud.clone()).await;
    assert_eq!((r.status.as_str(), r.error.as_str()), ("COMPENSATED", "Fraud.Rejected"), "{r:?}");
    assert_eq!(assert_reverse_order(&history(&cluster, 0, &r.execution_id).await), ["ReserveInventory"]);
    placed_orders.push(placed(&fraud, &r.status));

    // 3. The card is declined: a definite refusal, so nothing to refund.
    let declined = order("e2e-fail-charge", "SKU-RED-MUG", 1, "tok_decline");
    let r = place_and_wait(&cluster, 0, declined.clone()).await;
    assert_eq!((r.status.as_str(), r.error.as_str()), ("COMPENSATED", "Payment.CardDeclined"), "{r:?}");
    assert_eq!(assert_reverse_order(&history(&cluster, 0, &r.execution_id).await), ["ReserveInventory"]);
    placed_orders.push(placed(&declined, &r.status));

    // 4. The shipment is refused: refund, then release.
    let mut no_postcode = order("e2e-fail-ship", "SKU-RED-MUG", 1, "tok_ok");
    if let Some(a) = no_postcode.shipping_address.as_mut() {
        a.postal_code.clear();
    }
    let r = place_and_wait(&cluster, 0, no_postcode.clone()).await;
    assert_eq!((r.status.as_str(), r.error.as_str()), ("COMPENSATED", "Fulfillment.AddressRejected"), "{r:?}");
    assert_eq!(
        assert_reverse_order(&history(&cluster, 0, &r.execution_id).await),
        ["ChargePayment", "ReserveInventory"]
    );
    placed_orders.push(placed(&no_postcode, &r.status));

    // 5. The pivot fails: cancel the shipment, refund, release.
    let mut chaos = cluster.chaos("inventory").await.expect("chaos client");
    chaos
        .set_fault(SetFaultRequest {
            fault: Some(Fault {
                method: "inventory.v1.Inventory/Commit".into(),
                error_rate: 1.0,
                error_code: "Inventory.ReservationExpired".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("fault set");
    let pivot = order("e2e-fail-pivot", "SKU-RED-MUG", 1, "tok_ok");
    let r = place_and_wait(&cluster, 0, pivot.clone()).await;
    chaos.clear_faults(ClearFaultsRequest { method: String::new() }).await.expect("faults cleared");
    assert_eq!((r.status.as_str(), r.error.as_str()), ("COMPENSATED", "Inventory.ReservationExpired"), "{r:?}");
    assert_eq!(
        assert_reverse_order(&history(&cluster, 0, &r.execution_id).await),
        ["CreateShipment", "ChargePayment", "ReserveInventory"]
    );
    placed_orders.push(placed(&pivot, &r.status));

    let violations = invariants::check(&cluster, &placed_orders, &before).await.expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_payment_outcome_is_refunded_and_a_retried_one_charges_once() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let before = stock_before(&cluster, &["SKU-BLUE-MUG"]).await.expect("stock");
    let mut chaos = cluster.chaos("payment").await.expect("chaos client");
    let apply_then_fail = |remaining| SetFaultRequest {
        fault: Some(Fault {
            method: "payment.v1.Payment/Charge".into(),
            error_rate: 1.0,
            apply_then_fail: true,
            remaining,
            ..Default::default()
        }),
    };

    // Every attempt is applied and then fails: the outcome stays unknown, the saga fails at
    // the charge, and the charge is refunded anyway.
    chaos.set_fault(apply_then_fail(0)).await.expect("fault set");
    let unknown = order("e2e-unknown-1", "SKU-BLUE-MUG", 1, "tok_ok");
    let r = place_and_wait(&cluster, 0, unknown.clone()).await;
    chaos.clear_faults(ClearFaultsRequest { method: String::new() }).await.expect("cleared");
    assert_eq!(r.status, "COMPENSATED", "{r:?}");
    assert_eq!(
        assert_reverse_order(&history(&cluster, 0, &r.execution_id).await),
        ["ChargePayment", "ReserveInventory"]
    );

    // Only the first attempt applies-then-fails: the retry (same key) gets the first answer.
    chaos.set_fault(apply_then_fail(1)).await.expect("fault set");
    let retried = order("e2e-unknown-2", "SKU-BLUE-MUG", 1, "tok_ok");
    let r2 = place_and_wait(&cluster, 0, retried.clone()).await;
    chaos.clear_faults(ClearFaultsRequest { method: String::new() }).await.expect("cleared");
    assert_eq!(r2.status, "SUCCEEDED", "{r2:?}");

    let orders = [placed(&unknown, &r.status), placed(&retried, &r2.status)];
    let violations = invariants::check(&cluster, &orders, &before).await.expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    cluster.shutdown().await.expect("shutdown");
}

//! payment.v1.Payment: replay, business errors, key reuse, tombstones, exact refunds.

use sagaflow_proto::payment::v1::{ChargeRequest, GetPaymentsRequest, RefundRequest};
use tonic::{Code, Request};

use crate::common::{Db, Harness, assert_refused, compensating, keyed, metadata};

fn charge(order: &str, amount: i64, token: &str) -> ChargeRequest {
    ChargeRequest {
        order_id: order.into(),
        customer_id: "cust-1".into(),
        amount_cents: amount,
        currency: "USD".into(),
        payment_token: token.into(),
    }
}

fn refund(order: &str) -> RefundRequest {
    RefundRequest { order_id: order.into(), ..Default::default() }
}

async fn payments(h: &Harness, order: &str) -> Vec<(String, i64, i64)> {
    h.payment()
        .await
        .get_payments(GetPaymentsRequest { order_id: order.into() })
        .await
        .expect("get payments")
        .into_inner()
        .payments
        .into_iter()
        .map(|p| (p.payment_id, p.amount_cents, p.refunded_cents))
        .collect()
}

async fn replayed_charge_returns_the_first_answer_and_applies_once(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.payment().await;
    let first = client.charge(keyed(charge("o-1", 2500, "tok_ok"), "k-charge")).await.expect("charge").into_inner();
    assert_eq!(first.amount_cents, 2500);
    assert!(first.payment_id.starts_with("pay_"));
    let again =
        client.charge(keyed(charge("o-1", 2500, "tok_ok"), "k-charge")).await.expect("replayed charge").into_inner();
    assert_eq!(again, first);
    assert_eq!(payments(&h, "o-1").await, vec![(first.payment_id, 2500, 0)]);
    h.stop().await;
}

async fn concurrent_calls_with_one_key_apply_once(db: Db) {
    let h = Harness::start(db).await;
    let client = h.payment().await;
    let calls = (0..10).map(|_| {
        let mut client = client.clone();
        async move {
            client.charge(keyed(charge("o-2", 700, "tok_ok"), "k-same")).await.expect("charge").into_inner().payment_id
        }
    });
    let ids = futures::future::join_all(calls).await;
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(payments(&h, "o-2").await.len(), 1);
    h.stop().await;
}

async fn declines_carry_error_info_and_are_replayed(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.payment().await;
    let declined = client.charge(keyed(charge("o-3", 100, "tok_decline"), "k-decline")).await.expect_err("declined");
    assert_refused(&declined, "Payment.CardDeclined");
    assert!(!declined.message().is_empty());
    let replayed =
        client.charge(keyed(charge("o-3", 100, "tok_decline"), "k-decline")).await.expect_err("still declined");
    assert_refused(&replayed, "Payment.CardDeclined");
    assert_eq!(replayed.message(), declined.message());

    let poor = client.charge(keyed(charge("o-3", 100, "tok_insufficient"), "k-poor")).await.expect_err("insufficient");
    assert_refused(&poor, "Payment.InsufficientFunds");
    assert_eq!(metadata(&poor, "amount_cents"), "100");
    assert!(payments(&h, "o-3").await.is_empty());
    h.stop().await;
}

async fn bad_requests_are_invalid_arguments_and_not_stored(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.payment().await;
    let no_key = client.charge(Request::new(charge("o-4", 100, "tok_ok"))).await.expect_err("no key");
    assert_eq!(no_key.code(), Code::InvalidArgument);
    assert!(no_key.message().contains("idempotency-key"));
    let bad_token = client.charge(keyed(charge("o-4", 100, "tok_bogus"), "k-4")).await.expect_err("unknown token");
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    let zero = client.charge(keyed(charge("o-4", 0, "tok_ok"), "k-4")).await.expect_err("zero amount");
    assert_eq!(zero.code(), Code::InvalidArgument);
    // Nothing was stored under k-4, so a correct request may still use it.
    client.charge(keyed(charge("o-4", 100, "tok_ok"), "k-4")).await.expect("valid charge");
    h.stop().await;
}

async fn a_key_reused_for_another_request_is_refused(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.payment().await;
    client.charge(keyed(charge("o-5", 100, "tok_ok"), "k-5")).await.expect("charge");
    let reused = client.charge(keyed(charge("o-5", 999, "tok_ok"), "k-5")).await.expect_err("different request");
    assert_refused(&reused, "Saga.IdempotencyKeyReused");
    let other_method = client.refund(keyed(refund("o-5"), "k-5")).await.expect_err("different method");
    assert_refused(&other_method, "Saga.IdempotencyKeyReused");
    assert_eq!(payments(&h, "o-5").await.len(), 1);
    h.stop().await;
}

async fn compensating_a_charge_never_made_leaves_a_tombstone(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.payment().await;
    let comp = client
        .refund(compensating(refund("o-6"), "k-refund", "k-late-charge"))
        .await
        .expect("compensation succeeds")
        .into_inner();
    assert!(comp.no_op);
    assert_eq!(comp.refunded_cents, 0);
    assert!(comp.payment_id.is_empty());

    let late = client
        .charge(keyed(charge("o-6", 500, "tok_ok"), "k-late-charge"))
        .await
        .expect_err("late forward call refused");
    assert_refused(&late, "Saga.AlreadyCompensated");
    assert!(payments(&h, "o-6").await.is_empty());

    // The compensation is idempotent under its own key.
    let again = client
        .refund(compensating(refund("o-6"), "k-refund", "k-late-charge"))
        .await
        .expect("replayed compensation")
        .into_inner();
    assert_eq!(again, comp);
    h.stop().await;
}

async fn refund_undoes_exactly_the_keyed_charge(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.payment().await;
    let a = client.charge(keyed(charge("o-7", 1000, "tok_ok"), "k-a")).await.expect("charge a").into_inner();
    let b = client.charge(keyed(charge("o-7", 300, "tok_ok"), "k-b")).await.expect("charge b").into_inner();
    let undone = client.refund(compensating(refund("o-7"), "k-undo-a", "k-a")).await.expect("refund a").into_inner();
    assert_eq!(undone.payment_id, a.payment_id);
    assert_eq!(undone.refunded_cents, 1000);
    assert!(!undone.no_op);
    let state = payments(&h, "o-7").await;
    assert!(state.contains(&(a.payment_id.clone(), 1000, 1000)));
    assert!(state.contains(&(b.payment_id.clone(), 300, 0)));

    // Another compensation of the same charge finds nothing left to refund.
    let twice = client
        .refund(compensating(refund("o-7"), "k-undo-a-2", "k-a"))
        .await
        .expect("second compensation")
        .into_inner();
    assert!(twice.no_op);
    assert_eq!(twice.refunded_cents, 0);

    // Compensating a declined charge has nothing to undo and leaves no tombstone behind it.
    client.charge(keyed(charge("o-7", 50, "tok_decline"), "k-c")).await.expect_err("declined");
    let declined =
        client.refund(compensating(refund("o-7"), "k-undo-c", "k-c")).await.expect("compensate declined").into_inner();
    assert!(declined.no_op);
    assert_refused(
        &client.charge(keyed(charge("o-7", 50, "tok_decline"), "k-c")).await.expect_err("replayed decline"),
        "Payment.CardDeclined",
    );
    h.stop().await;
}

async fn order_refunds_never_refund_more_than_charged(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.payment().await;
    client.charge(keyed(charge("o-8", 400, "tok_ok"), "k-8a")).await.expect("charge");
    client.charge(keyed(charge("o-8", 600, "tok_ok"), "k-8b")).await.expect("charge");
    let partial = client
        .refund(keyed(RefundRequest { order_id: "o-8".into(), amount_cents: 500, ..Default::default() }, "k-8r1"))
        .await
        .expect("partial refund")
        .into_inner();
    assert_eq!(partial.refunded_cents, 500);
    let rest = client
        .refund(keyed(RefundRequest { order_id: "o-8".into(), amount_cents: 5_000, ..Default::default() }, "k-8r2"))
        .await
        .expect("capped refund")
        .into_inner();
    assert_eq!(rest.refunded_cents, 500);
    let state = payments(&h, "o-8").await;
    assert!(state.iter().all(|(_, amount, refunded)| amount == refunded));
    let nothing = client.refund(keyed(refund("o-8"), "k-8r3")).await.expect("nothing left").into_inner();
    assert!(nothing.no_op);
    h.stop().await;
}

on_both_backends!(
    replayed_charge_returns_the_first_answer_and_applies_once,
    concurrent_calls_with_one_key_apply_once,
    declines_carry_error_info_and_are_replayed,
    bad_requests_are_invalid_arguments_and_not_stored,
    a_key_reused_for_another_request_is_refused,
    compensating_a_charge_never_made_leaves_a_tombstone,
    refund_undoes_exactly_the_keyed_charge,
    order_refunds_never_refund_more_than_charged,
);

//! participants.v1.Chaos: injected failures before and after applying, business error
//! names, `remaining`, and the wildcard sparing reads.

use sagaflow_proto::participants::v1::{ClearFaultsRequest, Fault, ListFaultsRequest, SetFaultRequest};
use sagaflow_proto::payment::v1::{ChargeRequest, GetPaymentsRequest};
use tonic::Code;

use crate::common::{Db, Harness, assert_refused, keyed};

const CHARGE: &str = "payment.v1.Payment/Charge";

fn charge(order: &str) -> ChargeRequest {
    ChargeRequest {
        order_id: order.into(),
        customer_id: "cust-1".into(),
        amount_cents: 100,
        currency: "USD".into(),
        payment_token: "tok_ok".into(),
    }
}

async fn set(h: &Harness, fault: Fault) {
    h.chaos().await.set_fault(SetFaultRequest { fault: Some(fault) }).await.expect("set fault");
}

async fn payment_count(h: &Harness, order: &str) -> usize {
    h.payment()
        .await
        .get_payments(GetPaymentsRequest { order_id: order.into() })
        .await
        .expect("get payments")
        .into_inner()
        .payments
        .len()
}

async fn error_rate_one_fails_every_call_without_applying_it(db: Db) {
    let h = Harness::start(db).await;
    set(
        &h,
        Fault { method: CHARGE.into(), error_rate: 1.0, error_code: "RESOURCE_EXHAUSTED".into(), ..Default::default() },
    )
    .await;
    let mut client = h.payment().await;
    for _ in 0..3 {
        let err = client.charge(keyed(charge("o-1"), "k-1")).await.expect_err("injected");
        assert_eq!(err.code(), Code::ResourceExhausted);
    }
    assert_eq!(payment_count(&h, "o-1").await, 0);

    h.chaos().await.clear_faults(ClearFaultsRequest::default()).await.expect("clear");
    client.charge(keyed(charge("o-1"), "k-1")).await.expect("no more faults");
    assert_eq!(payment_count(&h, "o-1").await, 1);
    h.stop().await;
}

async fn apply_then_fail_applies_the_call_and_answers_unavailable(db: Db) {
    let h = Harness::start(db).await;
    set(
        &h,
        Fault { method: CHARGE.into(), error_rate: 1.0, apply_then_fail: true, remaining: 1, ..Default::default() },
    )
    .await;
    let mut client = h.payment().await;
    let err = client.charge(keyed(charge("o-2"), "k-2")).await.expect_err("unknown outcome");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(payment_count(&h, "o-2").await, 1);
    // The caller's retry with the same key gets the stored answer; nothing is charged twice.
    let retried = client.charge(keyed(charge("o-2"), "k-2")).await.expect("retry").into_inner();
    assert_eq!(retried.amount_cents, 100);
    assert_eq!(payment_count(&h, "o-2").await, 1);
    h.stop().await;
}

async fn remaining_limits_the_fault_to_the_next_calls(db: Db) {
    let h = Harness::start(db).await;
    set(
        &h,
        Fault {
            method: "*".into(),
            error_rate: 1.0,
            error_code: "Payment.CardDeclined".into(),
            remaining: 2,
            ..Default::default()
        },
    )
    .await;
    let listed = h.chaos().await.list_faults(ListFaultsRequest {}).await.expect("list").into_inner().faults;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].remaining, 2);

    let mut client = h.payment().await;
    // Reads are spared by "*".
    assert_eq!(payment_count(&h, "o-3").await, 0);
    for i in 0..2 {
        let err = client.charge(keyed(charge("o-3"), &format!("k-{i}"))).await.expect_err("injected business error");
        assert_refused(&err, "Payment.CardDeclined");
    }
    client.charge(keyed(charge("o-3"), "k-2")).await.expect("fault used up");
    assert!(h.chaos().await.list_faults(ListFaultsRequest {}).await.expect("list").into_inner().faults.is_empty());
    h.stop().await;
}

async fn invalid_faults_are_refused(db: Db) {
    let h = Harness::start(db).await;
    let err = h
        .chaos()
        .await
        .set_fault(SetFaultRequest {
            fault: Some(Fault { method: CHARGE.into(), error_rate: 2.0, ..Default::default() }),
        })
        .await
        .expect_err("bad rate");
    assert_eq!(err.code(), Code::InvalidArgument);
    h.stop().await;
}

on_both_backends!(
    error_rate_one_fails_every_call_without_applying_it,
    apply_then_fail_applies_the_call_and_answers_unavailable,
    remaining_limits_the_fault_to_the_next_calls,
    invalid_faults_are_refused,
);

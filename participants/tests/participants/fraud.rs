//! fraud.v1.Fraud: approvals, rejections, and every decision stored once.

use sagaflow_proto::fraud::v1::{CheckRequest, GetDecisionsRequest};

use crate::common::{Db, Harness, assert_refused, keyed};

fn check(order: &str, customer: &str, amount: i64) -> CheckRequest {
    CheckRequest { order_id: order.into(), customer_id: customer.into(), amount_cents: amount, currency: "USD".into() }
}

async fn decisions_are_stored_once_and_rejections_are_business_errors(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.fraud().await;
    let approved = client.check(keyed(check("o-1", "cust-1", 12_000), "k-ok")).await.expect("approve").into_inner();
    assert_eq!(approved.decision, "APPROVE");
    assert!(approved.score < 50);
    assert!(!approved.reasons.is_empty());

    let listed = client.check(keyed(check("o-1", "fraud-42", 100), "k-listed")).await.expect_err("listed customer");
    assert_refused(&listed, "Fraud.Rejected");
    let big = client.check(keyed(check("o-1", "cust-1", 1_000_001), "k-big")).await.expect_err("over the limit");
    assert_refused(&big, "Fraud.Rejected");
    // Replays neither decide again nor store again.
    let replay = client.check(keyed(check("o-1", "fraud-42", 100), "k-listed")).await.expect_err("replayed rejection");
    assert_eq!(replay.message(), listed.message());
    client.check(keyed(check("o-1", "cust-1", 12_000), "k-ok")).await.expect("replayed approval");

    let decisions = client
        .get_decisions(GetDecisionsRequest { order_id: "o-1".into() })
        .await
        .expect("decisions")
        .into_inner()
        .decisions;
    let kinds: Vec<&str> = decisions.iter().map(|d| d.decision.as_str()).collect();
    assert_eq!(kinds, ["APPROVE", "REJECT", "REJECT"]);
    assert!(decisions[1].score > decisions[0].score);
    h.stop().await;
}

on_both_backends!(decisions_are_stored_once_and_rejections_are_business_errors,);

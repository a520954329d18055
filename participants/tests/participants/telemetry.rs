//! The participants' metrics: calls by method and code, errors by business name, injected
//! faults by kind, read back from the registry the request layer records into.

use prometheus_client::registry::Registry;
use sagaflow_participants::kit::telemetry::metrics_http;
use sagaflow_participants::kit::telemetry::rpc::ParticipantMetrics;
use sagaflow_proto::participants::v1::{Fault, SetFaultRequest};
use sagaflow_proto::payment::v1::ChargeRequest;

use crate::common::{Db, Harness, keyed};

fn charge(order: &str, token: &str) -> ChargeRequest {
    ChargeRequest {
        order_id: order.into(),
        customer_id: "cust-1".into(),
        amount_cents: 100,
        currency: "USD".into(),
        payment_token: token.into(),
    }
}

/// The value of one sample line, `0` when absent.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn calls_errors_and_injected_faults_are_counted(db: Db) {
    let mut registry = Registry::default();
    let metrics = ParticipantMetrics::register(&mut registry);
    let h = Harness::start_with(db, |options| options.metrics = Some(metrics)).await;
    let mut payment = h.payment().await;
    payment.charge(keyed(charge("o-1", "tok_ok"), "k-1")).await.expect("charged");
    payment.charge(keyed(charge("o-2", "tok_decline"), "k-2")).await.expect_err("declined");
    h.chaos()
        .await
        .set_fault(SetFaultRequest {
            fault: Some(Fault {
                method: "payment.v1.Payment/Charge".into(),
                error_rate: 1.0,
                error_code: "UNAVAILABLE".into(),
                remaining: 1,
                ..Default::default()
            }),
        })
        .await
        .expect("fault set");
    payment.charge(keyed(charge("o-3", "tok_ok"), "k-3")).await.expect_err("injected");

    let text = metrics_http::encode(&registry);
    let method = r#"method="payment.v1.Payment/Charge""#;
    assert_eq!(sample(&text, &format!(r#"sagaflow_participant_calls_total{{{method},code="Ok"}}"#)), 1, "{text}");
    assert_eq!(
        sample(&text, &format!(r#"sagaflow_participant_calls_total{{{method},code="FailedPrecondition"}}"#))
            + sample(&text, &format!(r#"sagaflow_participant_calls_total{{{method},code="Unavailable"}}"#)),
        2,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!(r#"sagaflow_participant_errors_total{{{method},error="Payment.CardDeclined"}}"#)),
        1,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!(r#"sagaflow_participant_injected_faults_total{{{method},kind="error"}}"#)),
        1,
        "{text}"
    );
    assert_eq!(sample(&text, &format!(r#"sagaflow_participant_call_duration_seconds_count{{{method}}}"#)), 3, "{text}");
    // The Chaos call itself is counted too, under its own method; health checks are not.
    assert_eq!(
        sample(&text, r#"sagaflow_participant_calls_total{method="participants.v1.Chaos/SetFault",code="Ok"}"#),
        1
    );
    assert!(!text.contains("grpc.health"), "{text}");
    h.stop().await;
}

on_both_backends!(calls_errors_and_injected_faults_are_counted);

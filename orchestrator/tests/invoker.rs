//! The gRPC invoker against real tonic servers on loopback (port 0): a hand-written
//! `payment.v1.Payment` (and, for the upgrade test, `fraud.v1.Fraud`) with tonic-reflection
//! serving the descriptors, exercising the JSON mapping, the metadata, every error class and
//! the schema cache. The only wall-clock wait is the 1 s deadline of the timeout test.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use prost::Message as _;
use sagaflow::invoker::{
    CallOutcome, Invoker,
    grpc::{GrpcInvoker, GrpcInvokerOptions, GrpcResource, JsonOptions, parse_resource},
};
use sagaflow_language::interpreter::Call;
use sagaflow_proto::{
    fraud::v1::{
        CheckRequest, CheckResponse, GetDecisionsRequest, GetDecisionsResponse,
        fraud_server::{Fraud, FraudServer},
    },
    payment::v1::{
        ChargeRequest, ChargeResponse, GetPaymentsRequest, GetPaymentsResponse, RefundRequest, RefundResponse,
        payment_client::PaymentClient,
        payment_server::{Payment, PaymentServer},
    },
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status, service::interceptor::InterceptedService, transport::Server};
use tonic_types::{ErrorDetails, StatusExt};

/// Metadata one request carried, as the server saw it.
#[derive(Debug, Clone, Default, PartialEq)]
struct SeenMetadata {
    idempotency_key: Option<String>,
    saga_compensates: Option<String>,
    attempt: Option<String>,
    grpc_timeout: bool,
}

#[derive(Debug, Default)]
struct TestPayment {
    seen: Mutex<Vec<SeenMetadata>>,
}

fn header(request: &Request<impl Sized>, key: &str) -> Option<String> {
    request.metadata().get(key).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tonic::async_trait]
impl Payment for TestPayment {
    async fn charge(&self, request: Request<ChargeRequest>) -> Result<Response<ChargeResponse>, Status> {
        self.seen.lock().expect("lock").push(SeenMetadata {
            idempotency_key: header(&request, "idempotency-key"),
            saga_compensates: header(&request, "saga-compensates"),
            attempt: header(&request, "sagaflow-attempt"),
            grpc_timeout: request.metadata().get("grpc-timeout").is_some(),
        });
        let charge = request.into_inner();
        match charge.payment_token.as_str() {
            "tok_decline" => Err(Status::with_error_details(
                Code::FailedPrecondition,
                "the card was declined",
                ErrorDetails::with_error_info("Payment.CardDeclined", "payment.sagaflow", []),
            )),
            "tok_internal" => Err(Status::internal("ledger write failed")),
            "tok_invalid" => Err(Status::invalid_argument("currency must be ISO 4217")),
            "tok_slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(Status::internal("unreachable: the client gave up first"))
            }
            _ => Ok(Response::new(ChargeResponse {
                payment_id: format!("pay-{}", charge.order_id),
                amount_cents: charge.amount_cents,
                currency: charge.currency,
            })),
        }
    }

    async fn refund(&self, request: Request<RefundRequest>) -> Result<Response<RefundResponse>, Status> {
        self.seen.lock().expect("lock").push(SeenMetadata {
            idempotency_key: header(&request, "idempotency-key"),
            saga_compensates: header(&request, "saga-compensates"),
            attempt: header(&request, "sagaflow-attempt"),
            grpc_timeout: request.metadata().get("grpc-timeout").is_some(),
        });
        // Nothing was charged: every field keeps its default value.
        Ok(Response::new(RefundResponse { payment_id: String::new(), refunded_cents: 0, no_op: true }))
    }

    async fn get_payments(
        &self,
        _request: Request<GetPaymentsRequest>,
    ) -> Result<Response<GetPaymentsResponse>, Status> {
        Ok(Response::new(GetPaymentsResponse::default()))
    }
}

#[derive(Debug, Default)]
struct TestFraud;

#[tonic::async_trait]
impl Fraud for TestFraud {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let check = request.into_inner();
        Ok(Response::new(CheckResponse {
            decision: "APPROVE".into(),
            score: 0,
            reasons: vec![format!("customer {} looks fine", check.customer_id)],
        }))
    }

    async fn get_decisions(
        &self,
        _request: Request<GetDecisionsRequest>,
    ) -> Result<Response<GetDecisionsResponse>, Status> {
        Ok(Response::new(GetDecisionsResponse::default()))
    }
}

/// A running test server; dropping it does not stop it, `stop` does.
struct TestServer {
    addr: SocketAddr,
    payment: Arc<TestPayment>,
    reflection_calls: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// Only the files that define `services` (plus what they import), so a test can serve an
/// older "version" of a participant.
fn descriptor_set(files: &[&str]) -> prost_types::FileDescriptorSet {
    let all = prost_types::FileDescriptorSet::decode(sagaflow_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    prost_types::FileDescriptorSet { file: all.file.into_iter().filter(|f| files.contains(&f.name())).collect() }
}

/// Which reflection protocol a test server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reflection {
    V1,
    V1Alpha,
    Off,
}

/// Starts Payment (and Fraud when `with_fraud`) on `addr` (port 0 for any), with v1
/// reflection.
async fn start_server(addr: SocketAddr, with_fraud: bool) -> TestServer {
    start_server_with(addr, with_fraud, Reflection::V1).await
}

async fn start_server_with(addr: SocketAddr, with_fraud: bool, reflection: Reflection) -> TestServer {
    let listener = TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let payment = Arc::new(TestPayment::default());
    let reflection_calls = Arc::new(AtomicUsize::new(0));
    let files: &[&str] =
        if with_fraud { &["payment/v1/payment.proto", "fraud/v1/fraud.proto"] } else { &["payment/v1/payment.proto"] };
    let builder = tonic_reflection::server::Builder::configure().register_file_descriptor_set(descriptor_set(files));
    let counter = reflection_calls.clone();
    let count_reflection = move |request: Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(request)
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let mut router = Server::builder().add_service(PaymentServer::from_arc(payment.clone()));
    router = match reflection {
        Reflection::V1 => {
            router.add_service(InterceptedService::new(builder.build_v1().expect("reflection"), count_reflection))
        }
        Reflection::V1Alpha => {
            router.add_service(InterceptedService::new(builder.build_v1alpha().expect("reflection"), count_reflection))
        }
        Reflection::Off => router,
    };
    if with_fraud {
        router = router.add_service(FraudServer::new(TestFraud));
    }
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    TestServer { addr, payment, reflection_calls, stop: Some(stop), task }
}

fn invoker(participants: &[(&str, &str)]) -> GrpcInvoker {
    GrpcInvoker::new(
        participants.iter().map(|(alias, url)| ((*alias).to_owned(), (*url).to_owned())).collect::<BTreeMap<_, _>>(),
        GrpcInvokerOptions::default(),
    )
}

fn call(resource: &str, input: Value) -> Call {
    Call {
        id: 1,
        state: "Charge".into(),
        scope: "Charge".into(),
        resource: resource.into(),
        input,
        idempotency_key: "exec-1/Charge/forward".into(),
        compensates: None,
        timeout_seconds: 10,
        heartbeat_seconds: None,
        attempt: 1,
    }
}

const CHARGE: &str = "grpc://payment/payment.v1.Payment/Charge";
const REFUND: &str = "grpc://payment/payment.v1.Payment/Refund";

fn failed(outcome: CallOutcome) -> (String, String, bool) {
    match outcome {
        CallOutcome::Failed { error, cause, outcome_unknown } => (error, cause.unwrap_or_default(), outcome_unknown),
        CallOutcome::Succeeded(value) => panic!("expected a failure, got {value}"),
    }
}

fn charge_input(token: &str) -> Value {
    json!({"orderId": "o-1", "customerId": "c-1", "amountCents": 1500, "currency": "USD",
           "paymentToken": token})
}

#[tokio::test]
async fn json_round_trip_keeps_defaults_and_camel_case() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);

    let outcome = invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await;
    assert_eq!(
        outcome,
        CallOutcome::Succeeded(json!({"paymentId": "pay-o-1", "amountCents": 1500,
                                      "currency": "USD"}))
    );

    // Snake-case input is accepted too (proto3 JSON mapping); the answer has only defaults.
    let outcome = invoker.invoke(&call(REFUND, json!({"order_id": "o-1", "amountCents": "0"}))).await;
    assert_eq!(outcome, CallOutcome::Succeeded(json!({"paymentId": "", "refundedCents": 0, "noOp": true})));
    server.stop().await;
}

#[tokio::test]
async fn int64_as_numbers_is_an_option() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = GrpcInvoker::new(
        BTreeMap::from([("payment".to_owned(), server.url())]),
        GrpcInvokerOptions { json: JsonOptions { int64_as_strings: false }, ..Default::default() },
    );
    let outcome = invoker.invoke(&call(REFUND, json!({"orderId": "o-1"}))).await;
    assert_eq!(outcome, CallOutcome::Succeeded(json!({"paymentId": "", "refundedCents": 0, "noOp": true})));
    server.stop().await;
}

#[tokio::test]
async fn metadata_reaches_the_participant() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);

    let mut forward = call(CHARGE, charge_input("tok_ok"));
    forward.attempt = 3;
    assert!(matches!(invoker.invoke(&forward).await, CallOutcome::Succeeded(_)));

    let mut compensation = call(REFUND, json!({"orderId": "o-1"}));
    compensation.idempotency_key = "exec-1/Charge/compensate €".into();
    compensation.compensates = Some("exec-1/Charge/forward".into());
    assert!(matches!(invoker.invoke(&compensation).await, CallOutcome::Succeeded(_)));

    let seen = server.payment.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            SeenMetadata {
                idempotency_key: Some("exec-1/Charge/forward".into()),
                saga_compensates: None,
                attempt: Some("3".into()),
                grpc_timeout: true,
            },
            SeenMetadata {
                // Non-ASCII is percent-encoded: metadata values are visible ASCII.
                idempotency_key: Some("exec-1/Charge/compensate%20%E2%82%AC".into()),
                saga_compensates: Some("exec-1/Charge/forward".into()),
                attempt: Some("1".into()),
                grpc_timeout: true,
            },
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn error_info_is_a_business_error_with_known_outcome() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);
    let (error, cause, unknown) = failed(invoker.invoke(&call(CHARGE, charge_input("tok_decline"))).await);
    assert_eq!(error, "Payment.CardDeclined");
    assert_eq!(cause, "the card was declined");
    assert!(!unknown);
    server.stop().await;
}

#[tokio::test]
async fn plain_statuses_become_grpc_codes() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);

    let (error, cause, unknown) = failed(invoker.invoke(&call(CHARGE, charge_input("tok_internal"))).await);
    assert_eq!((error.as_str(), cause.as_str(), unknown), ("Grpc.Internal", "ledger write failed", true));

    let (error, cause, unknown) = failed(invoker.invoke(&call(CHARGE, charge_input("tok_invalid"))).await);
    assert_eq!((error.as_str(), cause.as_str(), unknown), ("Grpc.InvalidArgument", "currency must be ISO 4217", false));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_participant_times_out_with_unknown_outcome() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);
    // Fetch the schema first, so the 1 s budget is spent on the call alone.
    invoker.descriptor_pool("payment").await.expect("schema");

    let mut slow = call(CHARGE, charge_input("tok_slow"));
    slow.timeout_seconds = 1;
    let started = Instant::now();
    let (error, cause, unknown) = failed(invoker.invoke(&slow).await);
    let took = started.elapsed();
    assert_eq!(error, "States.Timeout");
    assert!(unknown, "a timed-out call may have been applied");
    assert!(cause.contains("did not answer within 1s"), "{cause}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "{took:?}");
    server.stop().await;
}

#[tokio::test]
async fn connection_refused_is_unavailable_and_not_applied() {
    // Bind then drop: the port is free and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let url = format!("http://127.0.0.1:{port}");
    let invoker = invoker(&[("payment", &url)]);
    let (error, cause, unknown) = failed(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await);
    assert_eq!(error, "Grpc.Unavailable");
    assert!(!unknown, "nothing was sent");
    assert_eq!(cause, format!("participant 'payment' at {url} is unreachable (connection refused); is it running?"));
}

#[tokio::test]
async fn connection_refused_after_the_schema_is_cached_is_still_not_applied() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let url = server.url();
    let invoker = invoker(&[("payment", &url)]);
    invoker.descriptor_pool("payment").await.expect("schema");
    server.stop().await;

    // The schema is cached, so this reaches the task call itself, on a channel whose
    // connection just went away.
    let (error, cause, unknown) = failed(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await);
    assert_eq!(error, "Grpc.Unavailable");
    assert!(!unknown, "{cause}");
    assert!(cause.contains("unreachable (connection refused)"), "{cause}");
}

#[tokio::test]
async fn unknown_participant_names_the_configured_ones() {
    let invoker = invoker(&[("payment", "http://127.0.0.1:1"), ("fraud", "http://127.0.0.1:2")]);
    let (error, cause, unknown) =
        failed(invoker.invoke(&call("grpc://paymnet/payment.v1.Payment/Charge", json!({}))).await);
    assert_eq!(error, "Sagaflow.UnknownParticipant");
    assert!(!unknown);
    assert!(cause.contains("'paymnet'") && cause.contains("'fraud', 'payment'"), "{cause}");
}

#[tokio::test]
async fn unknown_method_and_service_after_one_refresh() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);

    let (error, cause, unknown) =
        failed(invoker.invoke(&call("grpc://payment/payment.v1.Payment/Chrage", json!({}))).await);
    assert_eq!(error, "Sagaflow.UnknownMethod");
    assert!(!unknown);
    assert!(cause.contains("no method 'Chrage' (did you mean 'Charge'?)"), "{cause}");
    // First fetch plus exactly one refresh.
    assert_eq!(server.reflection_calls.load(Ordering::SeqCst), 2);

    let (error, cause, _) = failed(invoker.invoke(&call("grpc://payment/payment.v1.Paymant/Charge", json!({}))).await);
    assert_eq!(error, "Sagaflow.UnknownMethod");
    assert!(cause.contains("does not serve payment.v1.Paymant (did you mean 'payment.v1.Payment'?)"), "{cause}");
    assert_eq!(server.reflection_calls.load(Ordering::SeqCst), 3);

    // A known method needs no further reflection.
    assert!(matches!(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await, CallOutcome::Succeeded(_)));
    assert_eq!(server.reflection_calls.load(Ordering::SeqCst), 3);
    server.stop().await;
}

#[tokio::test]
async fn an_upgraded_participant_is_picked_up_by_the_refresh() {
    let old = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let addr = old.addr;
    let url = old.url();
    let invoker = invoker(&[("payment", &url)]);
    assert!(matches!(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await, CallOutcome::Succeeded(_)));
    old.stop().await;

    // The new version also serves fraud.v1.Fraud, on the same address.
    let new = start_server(addr, true).await;
    let check =
        call("grpc://payment/fraud.v1.Fraud/Check", json!({"orderId": "o-1", "customerId": "c-9", "amountCents": 10}));
    let mut outcome = invoker.invoke(&check).await;
    // The old connection's closing may race the first call; the channel reconnects.
    if matches!(&outcome, CallOutcome::Failed { error, .. } if error == "Grpc.Unavailable") {
        outcome = invoker.invoke(&check).await;
    }
    assert_eq!(
        outcome,
        CallOutcome::Succeeded(json!({"decision": "APPROVE", "score": 0,
                                      "reasons": ["customer c-9 looks fine"]}))
    );
    new.stop().await;
}

#[tokio::test]
async fn a_misspelt_field_is_an_invalid_request() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);
    let (error, cause, unknown) =
        failed(invoker.invoke(&call(CHARGE, json!({"orderId": "o-1", "amountCent": 1500}))).await);
    assert_eq!(error, "Sagaflow.InvalidRequest");
    assert!(!unknown);
    assert!(
        cause.contains("unknown field \"amountCent\" at $.amountCent")
            && cause.contains("did you mean \"amountCents\"?"),
        "{cause}"
    );
    // Nothing reached the participant.
    assert!(server.payment.seen.lock().expect("lock").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn descriptor_pool_serves_the_validator() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);
    let pool = invoker.descriptor_pool("payment").await.expect("pool");
    let request = pool.get_message_by_name("payment.v1.ChargeRequest").expect("ChargeRequest");
    assert!(request.get_field_by_json_name("amountCents").is_some());

    let resource: GrpcResource = parse_resource(CHARGE).expect("resource");
    let method = invoker.method(&resource).await.expect("method");
    assert_eq!(method.output().full_name(), "payment.v1.ChargeResponse");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_first_calls_share_one_reflection_fetch() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = Arc::new(invoker(&[("payment", &server.url())]));
    let calls = (0..16).map(|i| {
        let invoker = invoker.clone();
        tokio::spawn(async move {
            let mut c = call(CHARGE, charge_input("tok_ok"));
            c.idempotency_key = format!("exec-{i}/Charge/forward");
            invoker.invoke(&c).await
        })
    });
    for outcome in futures::future::join_all(calls).await {
        assert!(matches!(outcome.expect("task"), CallOutcome::Succeeded(_)));
    }
    assert_eq!(server.reflection_calls.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn falls_back_to_reflection_v1alpha() {
    let server = start_server_with("127.0.0.1:0".parse().expect("addr"), false, Reflection::V1Alpha).await;
    let invoker = invoker(&[("payment", &server.url())]);
    assert!(matches!(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await, CallOutcome::Succeeded(_)));
    assert_eq!(server.reflection_calls.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_participant_without_reflection_is_named() {
    let server = start_server_with("127.0.0.1:0".parse().expect("addr"), false, Reflection::Off).await;
    let invoker = invoker(&[("payment", &server.url())]);
    let (error, cause, unknown) = failed(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await);
    assert_eq!(error, "Sagaflow.ReflectionFailed");
    assert!(!unknown);
    assert!(cause.contains("does not serve gRPC server reflection"), "{cause}");

    // A pinned descriptor pool needs no reflection at all.
    let pool = prost_reflect::DescriptorPool::decode(sagaflow_proto::FILE_DESCRIPTOR_SET).expect("pool");
    let invoker = invoker_with_pool(&server.url(), pool);
    assert!(matches!(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await, CallOutcome::Succeeded(_)));
    server.stop().await;
}

fn invoker_with_pool(url: &str, pool: prost_reflect::DescriptorPool) -> GrpcInvoker {
    invoker(&[("payment", url)]).with_descriptor_pool("payment", pool).expect("configured")
}

#[tokio::test]
async fn a_connection_lost_after_sending_leaves_the_outcome_unknown() {
    // Accepts the connection, reads what the client sends, then hangs up without a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let hang_up = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0_u8; 64 * 1024];
        let mut received = 0;
        // The HTTP/2 preface alone is 24 bytes; wait for the request's frames too.
        while received < 100 {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
        received
    });
    let pool = prost_reflect::DescriptorPool::decode(sagaflow_proto::FILE_DESCRIPTOR_SET).expect("pool");
    let invoker = invoker_with_pool(&url, pool);
    let (error, cause, unknown) = failed(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await);
    assert!(hang_up.await.expect("server") >= 100);
    assert_eq!(error, "Grpc.Unavailable", "{cause}");
    assert!(unknown, "the request was sent: {cause}");
    assert!(cause.contains("failed after the request was sent"), "{cause}");
}

#[tokio::test]
async fn an_oversized_answer_is_a_data_limit_error_with_unknown_outcome() {
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = GrpcInvoker::new(
        BTreeMap::from([("payment".to_owned(), server.url())]),
        GrpcInvokerOptions { max_response_bytes: 8, ..Default::default() },
    );
    let (error, cause, unknown) = failed(invoker.invoke(&call(CHARGE, charge_input("tok_ok"))).await);
    assert_eq!(error, "States.DataLimitExceeded", "{cause}");
    assert!(unknown, "the charge was applied: {cause}");
    assert!(cause.contains("too large to accept"), "{cause}");
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_deadline_spent_reading_the_schema_is_a_timeout_with_nothing_sent() {
    // Accepts connections (the kernel does, unaccepted) and never says a word, so reflection
    // hangs. The clock is paused: the 1 s deadline passes without waiting for it.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let invoker = invoker(&[("payment", &url)]);
    let mut c = call(CHARGE, charge_input("tok_ok"));
    c.timeout_seconds = 1;
    let (error, cause, unknown) = failed(invoker.invoke(&c).await);
    assert_eq!(error, "States.Timeout");
    assert!(!unknown, "nothing was sent: {cause}");
    assert!(cause.contains("could not be sent within 1s"), "{cause}");
    drop(listener);
}

/// Overhead of the invoker over a generated client, loopback, sequential calls. Run with
/// `cargo test -p sagaflow --release --test invoker -- --ignored --nocapture overhead`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn overhead() {
    const CALLS: usize = 2_000;
    let server = start_server("127.0.0.1:0".parse().expect("addr"), false).await;
    let invoker = invoker(&[("payment", &server.url())]);
    let mut client = PaymentClient::connect(server.url()).await.expect("connect");
    let input = charge_input("tok_ok");
    let request = ChargeRequest {
        order_id: "o-1".into(),
        customer_id: "c-1".into(),
        amount_cents: 1500,
        currency: "USD".into(),
        payment_token: "tok_ok".into(),
    };
    let c = call(CHARGE, input);
    // Warm up both paths (connections, schema).
    for _ in 0..200 {
        client.charge(request.clone()).await.expect("charge");
        assert!(matches!(invoker.invoke(&c).await, CallOutcome::Succeeded(_)));
    }
    let mut plain = Duration::ZERO;
    let mut dynamic = Duration::ZERO;
    // Interleaved rounds, so drift (CPU frequency, other load) hits both alike.
    for _ in 0..10 {
        let started = Instant::now();
        for _ in 0..CALLS / 10 {
            client.charge(request.clone()).await.expect("charge");
        }
        plain += started.elapsed();
        let started = Instant::now();
        for _ in 0..CALLS / 10 {
            assert!(matches!(invoker.invoke(&c).await, CallOutcome::Succeeded(_)));
        }
        dynamic += started.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / CALLS as f64;
    println!(
        "{CALLS} calls: generated client {:.1} µs/call, invoker {:.1} µs/call, overhead {:.1} µs/call",
        per(plain),
        per(dynamic),
        per(dynamic) - per(plain)
    );
    server.stop().await;
}

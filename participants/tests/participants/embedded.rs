//! Participants inside this process on SQLite files: `EmbeddedParticipants` (a file and a
//! port per service) and `serve_embedded`, and the data surviving a restart.

use std::net::SocketAddr;

use sagaflow_participants::{EmbeddedParticipants, ServeOptions, ServiceKind, serve_embedded};
use sagaflow_proto::fraud::v1::CheckRequest;
use sagaflow_proto::fraud::v1::fraud_client::FraudClient;
use sagaflow_proto::fulfillment::v1::GetShipmentsRequest;
use sagaflow_proto::fulfillment::v1::fulfillment_client::FulfillmentClient;
use sagaflow_proto::inventory::v1::inventory_client::InventoryClient;
use sagaflow_proto::inventory::v1::{GetStockRequest, Item, ReserveRequest};
use sagaflow_proto::payment::v1::payment_client::PaymentClient;
use sagaflow_proto::payment::v1::{ChargeRequest, GetPaymentsRequest};
use tonic::transport::Channel;

use crate::common::keyed;

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("endpoint").connect().await.expect("connect")
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sagaflow-embedded-test-{}", uuid::Uuid::new_v4().simple()))
}

fn charge() -> ChargeRequest {
    ChargeRequest {
        order_id: "o-1".into(),
        customer_id: "cust-1".into(),
        amount_cents: 1200,
        currency: "USD".into(),
        payment_token: "tok_ok".into(),
    }
}

async fn red_mugs_available(inventory: &mut InventoryClient<Channel>) -> i64 {
    inventory.get_stock(GetStockRequest { sku: "SKU-RED-MUG".into() }).await.expect("stock").into_inner().available
}

#[tokio::test]
async fn every_service_on_its_own_file_and_port_and_the_data_survives_a_restart() {
    let dir = temp_dir().join("data");
    let running = EmbeddedParticipants::start(&dir, &ServiceKind::ALL, true).await.expect("start");
    let addr = |service| running.addr(service).expect("started");
    let ports: std::collections::BTreeSet<u16> = running.addrs().values().map(|a| a.port()).collect();
    assert_eq!(ports.len(), 4);
    for service in ServiceKind::ALL {
        assert!(EmbeddedParticipants::database_file(&dir, service).exists(), "{service:?}");
    }

    let mut inventory = InventoryClient::new(channel(addr(ServiceKind::Inventory)).await);
    let before = red_mugs_available(&mut inventory).await;
    assert!(before > 0, "the demo catalog is seeded");
    let reserve = ReserveRequest {
        order_id: "o-1".into(),
        items: vec![Item { sku: "SKU-RED-MUG".into(), quantity: 2, unit_price_cents: 600 }],
        ttl_seconds: 0,
    };
    inventory.reserve(keyed(reserve, "k-reserve")).await.expect("reserve");
    let mut payment = PaymentClient::new(channel(addr(ServiceKind::Payment)).await);
    let charged = payment.charge(keyed(charge(), "k-charge")).await.expect("charge").into_inner();
    let mut fraud = FraudClient::new(channel(addr(ServiceKind::Fraud)).await);
    let check = CheckRequest {
        order_id: "o-1".into(),
        customer_id: "cust-1".into(),
        amount_cents: 1200,
        currency: "USD".into(),
    };
    fraud.check(keyed(check, "k-check")).await.expect("approve");
    let mut fulfillment = FulfillmentClient::new(channel(addr(ServiceKind::Fulfillment)).await);
    fulfillment.get_shipments(GetShipmentsRequest { order_id: "o-1".into() }).await.expect("shipments");
    // Each port serves only its own service.
    let mut wrong = PaymentClient::new(channel(addr(ServiceKind::Inventory)).await);
    let err = wrong.get_payments(GetPaymentsRequest { order_id: "o-1".into() }).await.expect_err("not served");
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    drop((inventory, payment, fraud, fulfillment, wrong));
    running.shutdown().await.expect("clean shutdown");

    // Same files, new ports: the stock, the charge and its stored answer are still there.
    let again = EmbeddedParticipants::start(&dir, &ServiceKind::ALL, true).await.expect("restart");
    let mut inventory = InventoryClient::new(channel(again.addr(ServiceKind::Inventory).expect("started")).await);
    assert_eq!(red_mugs_available(&mut inventory).await, before - 2, "seeding again leaves stock alone");
    let mut payment = PaymentClient::new(channel(again.addr(ServiceKind::Payment).expect("started")).await);
    let replayed = payment.charge(keyed(charge(), "k-charge")).await.expect("replayed").into_inner();
    assert_eq!(replayed, charged);
    let payments =
        payment.get_payments(GetPaymentsRequest { order_id: "o-1".into() }).await.expect("payments").into_inner();
    assert_eq!(payments.payments.len(), 1);
    drop((inventory, payment));
    again.shutdown().await.expect("clean shutdown");
    std::fs::remove_dir_all(dir.parent().expect("parent")).expect("clean up");
}

#[tokio::test]
async fn serve_embedded_serves_until_the_shutdown_future_completes() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("payment.db").display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve_embedded(ServeOptions::new(vec![ServiceKind::Payment]), &url, listener, false, stopped).await
    });
    let mut payment = PaymentClient::new(channel(addr).await);
    payment.charge(keyed(charge(), "k-1")).await.expect("charge");
    drop(payment);
    stop.send(()).expect("server still running");
    server.await.expect("server task").expect("clean shutdown");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[tokio::test]
async fn a_bad_database_url_is_refused_before_serving() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let options = ServeOptions::new(vec![ServiceKind::Payment]);
    let err = serve_embedded(options, "mysql://localhost/db", listener, false, std::future::pending::<()>())
        .await
        .expect_err("unsupported scheme");
    assert!(err.to_string().contains("mysql"), "{err}");
}

//! fulfillment.v1.Fulfillment: shipments, address refusals, cancellations and tombstones.

use sagaflow_proto::fulfillment::v1::{
    Address, CancelShipmentRequest, CreateShipmentRequest, GetShipmentsRequest, Item,
};

use crate::common::{Db, Harness, assert_refused, compensating, keyed};

fn create(order: &str, postal_code: &str, country: &str) -> CreateShipmentRequest {
    CreateShipmentRequest {
        order_id: order.into(),
        items: vec![Item { sku: "SKU-RED-MUG".into(), quantity: 1, unit_price_cents: 1200 }],
        address: Some(Address {
            line1: "1 Main St".into(),
            city: "Springfield".into(),
            postal_code: postal_code.into(),
            country: country.into(),
        }),
    }
}

fn cancel(order: &str) -> CancelShipmentRequest {
    CancelShipmentRequest { order_id: order.into(), ..Default::default() }
}

async fn shipments_are_created_once_and_cancelled_by_key(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.fulfillment().await;
    let first =
        client.create_shipment(keyed(create("o-1", "12345", "US"), "k-ship")).await.expect("create").into_inner();
    let again =
        client.create_shipment(keyed(create("o-1", "12345", "US"), "k-ship")).await.expect("replay").into_inner();
    assert_eq!(again, first);

    let rejected = client.create_shipment(keyed(create("o-1", "", "US"), "k-bad")).await.expect_err("no postal code");
    assert_refused(&rejected, "Fulfillment.AddressRejected");
    assert!(rejected.message().contains("postal_code"));
    let no_country =
        client.create_shipment(keyed(create("o-1", "12345", ""), "k-bad-2")).await.expect_err("no country");
    assert_refused(&no_country, "Fulfillment.AddressRejected");

    let cancelled =
        client.cancel_shipment(compensating(cancel("o-1"), "k-cancel", "k-ship")).await.expect("cancel").into_inner();
    assert_eq!(cancelled.shipment_id, first.shipment_id);
    assert!(!cancelled.no_op);
    let shipments = client
        .get_shipments(GetShipmentsRequest { order_id: "o-1".into() })
        .await
        .expect("shipments")
        .into_inner()
        .shipments;
    assert_eq!(shipments.len(), 1);
    assert!(shipments[0].cancelled);
    h.stop().await;
}

async fn cancelling_a_shipment_never_created_leaves_a_tombstone(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.fulfillment().await;
    let cancelled = client
        .cancel_shipment(compensating(cancel("o-2"), "k-cancel", "k-ship"))
        .await
        .expect("no-op cancel")
        .into_inner();
    assert!(cancelled.no_op);
    let late =
        client.create_shipment(keyed(create("o-2", "12345", "US"), "k-ship")).await.expect_err("late create refused");
    assert_refused(&late, "Saga.AlreadyCompensated");
    let shipments = client
        .get_shipments(GetShipmentsRequest { order_id: "o-2".into() })
        .await
        .expect("shipments")
        .into_inner()
        .shipments;
    assert!(shipments.is_empty());
    h.stop().await;
}

on_both_backends!(
    shipments_are_created_once_and_cancelled_by_key,
    cancelling_a_shipment_never_created_leaves_a_tombstone,
);

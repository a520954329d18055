//! DESIGN §6's invariants, checked through the participants' read RPCs: for every order,
//! money charged minus refunded equals the amount if the saga SUCCEEDED and zero otherwise,
//! nothing charged twice, one live shipment for exactly the SUCCEEDED orders, and stock
//! reserved or committed matching the orders that hold it.

use std::collections::BTreeMap;

use sagaflow_proto::fulfillment::v1::GetShipmentsRequest;
use sagaflow_proto::fulfillment::v1::fulfillment_client::FulfillmentClient;
use sagaflow_proto::inventory::v1::GetStockRequest;
use sagaflow_proto::inventory::v1::inventory_client::InventoryClient;
use sagaflow_proto::payment::v1::GetPaymentsRequest;
use sagaflow_proto::payment::v1::payment_client::PaymentClient;
use tonic::transport::Channel;

/// One order as placed, and how its saga ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub order_id: String,
    pub amount_cents: i64,
    pub items: Vec<(String, u32)>,
    pub status: String,
}

/// Stock of one SKU: available, reserved, committed.
pub type Stock = (i64, i64, i64);

pub async fn stock(inventory: &mut InventoryClient<Channel>, skus: &[&str]) -> anyhow::Result<BTreeMap<String, Stock>> {
    let mut out = BTreeMap::new();
    for sku in skus {
        let s = inventory.get_stock(GetStockRequest { sku: (*sku).to_owned() }).await?.into_inner();
        out.insert((*sku).to_owned(), (s.available, s.reserved, s.committed));
    }
    Ok(out)
}

/// Money moved for the orders: (charged, refunded) in cents.
#[derive(Debug, Clone, Copy, Default)]
pub struct Money {
    pub charged: i64,
    pub refunded: i64,
}

/// Check every invariant; returns the money moved and every violation as a sentence.
pub async fn check(
    payment: &mut PaymentClient<Channel>,
    fulfillment: &mut FulfillmentClient<Channel>,
    inventory: &mut InventoryClient<Channel>,
    orders: &[Outcome],
    before: &BTreeMap<String, Stock>,
) -> anyhow::Result<(Money, Vec<String>)> {
    let mut money = Money::default();
    let mut violations = Vec::new();
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for order in orders {
        let succeeded = order.status == "SUCCEEDED";
        let payments =
            payment.get_payments(GetPaymentsRequest { order_id: order.order_id.clone() }).await?.into_inner().payments;
        let charged: i64 = payments.iter().map(|p| p.amount_cents).sum();
        let refunded: i64 = payments.iter().map(|p| p.refunded_cents).sum();
        money.charged += charged;
        money.refunded += refunded;
        let expected = if succeeded { order.amount_cents } else { 0 };
        if charged - refunded != expected {
            violations.push(format!(
                "{} ({}): charged {charged} − refunded {refunded} ≠ {expected}",
                order.order_id, order.status
            ));
        }
        if payments.len() > 1 {
            violations.push(format!("{} was charged {} times", order.order_id, payments.len()));
        }
        let shipments = fulfillment
            .get_shipments(GetShipmentsRequest { order_id: order.order_id.clone() })
            .await?
            .into_inner()
            .shipments;
        let live = shipments.iter().filter(|s| !s.cancelled).count();
        if live != usize::from(succeeded) || shipments.len() > 1 {
            violations.push(format!(
                "{} ({}): {live} live of {} shipment(s)",
                order.order_id,
                order.status,
                shipments.len()
            ));
        }
        if succeeded {
            for (sku, quantity) in &order.items {
                *held.entry(sku.clone()).or_default() += i64::from(*quantity);
            }
        }
    }
    for (sku, (available, reserved, committed)) in before {
        let now = inventory.get_stock(GetStockRequest { sku: sku.clone() }).await?.into_inner();
        let expected = held.get(sku).copied().unwrap_or(0);
        if now.committed - committed != expected {
            violations.push(format!(
                "{sku}: {} newly committed, succeeded orders hold {expected}",
                now.committed - committed
            ));
        }
        if now.reserved != *reserved {
            violations.push(format!("{sku}: {} reserved after the run, {reserved} before", now.reserved));
        }
        if now.available + now.reserved + now.committed != available + reserved + committed {
            violations.push(format!("{sku}: stock total changed"));
        }
        if now.available < 0 {
            violations.push(format!("{sku}: negative stock"));
        }
    }
    Ok((money, violations))
}

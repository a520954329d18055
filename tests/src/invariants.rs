//! The invariants of DESIGN §6, checked through the participants' read RPCs after a run:
//! money charged minus refunded equals the amount for a SUCCEEDED order and zero otherwise,
//! nothing charged twice, one live shipment exactly for SUCCEEDED orders, and stock reserved
//! or committed matching the orders that hold it.

use std::collections::BTreeMap;

use sagaflow_proto::fulfillment::v1::GetShipmentsRequest;
use sagaflow_proto::inventory::v1::GetStockRequest;
use sagaflow_proto::payment::v1::GetPaymentsRequest;

use crate::cluster::Cluster;

/// What a test placed, and how its saga ended.
#[derive(Debug, Clone)]
pub struct PlacedOrder {
    pub order_id: String,
    pub amount_cents: i64,
    /// (sku, quantity)
    pub items: Vec<(String, u32)>,
    pub status: String,
}

/// Stock of the SKUs a test touches, before it starts: sku → available.
pub async fn stock_before(cluster: &Cluster, skus: &[&str]) -> anyhow::Result<BTreeMap<String, (i64, i64, i64)>> {
    let mut inventory = cluster.inventory().await?;
    let mut out = BTreeMap::new();
    for sku in skus {
        let s = inventory.get_stock(GetStockRequest { sku: (*sku).to_owned() }).await?.into_inner();
        out.insert((*sku).to_owned(), (s.available, s.reserved, s.committed));
    }
    Ok(out)
}

/// Every violation found, as a sentence; empty when all hold.
pub async fn check(
    cluster: &Cluster,
    orders: &[PlacedOrder],
    stock_before: &BTreeMap<String, (i64, i64, i64)>,
) -> anyhow::Result<Vec<String>> {
    let mut violations = Vec::new();
    let mut payment = cluster.payment().await?;
    let mut fulfillment = cluster.fulfillment().await?;
    let mut inventory = cluster.inventory().await?;
    let mut committed_by_orders: BTreeMap<String, i64> = BTreeMap::new();
    for order in orders {
        let succeeded = order.status == "SUCCEEDED";
        let payments =
            payment.get_payments(GetPaymentsRequest { order_id: order.order_id.clone() }).await?.into_inner().payments;
        let net: i64 = payments.iter().map(|p| p.amount_cents - p.refunded_cents).sum();
        let expected = if succeeded { order.amount_cents } else { 0 };
        if net != expected {
            violations.push(format!(
                "order {} ({}): charged minus refunded is {net}, expected {expected} (payments {payments:?})",
                order.order_id, order.status
            ));
        }
        if payments.len() > 1 {
            violations.push(format!("order {} was charged {} times", order.order_id, payments.len()));
        }
        for p in &payments {
            if p.refunded_cents > p.amount_cents || p.refunded_cents < 0 {
                violations.push(format!(
                    "order {}: payment {} refunded {} of {}",
                    order.order_id, p.payment_id, p.refunded_cents, p.amount_cents
                ));
            }
        }
        let shipments = fulfillment
            .get_shipments(GetShipmentsRequest { order_id: order.order_id.clone() })
            .await?
            .into_inner()
            .shipments;
        let live = shipments.iter().filter(|s| !s.cancelled).count();
        if live != usize::from(succeeded) {
            violations.push(format!("order {} ({}): {live} live shipment(s)", order.order_id, order.status));
        }
        if shipments.len() > 1 {
            violations.push(format!("order {}: {} shipments created", order.order_id, shipments.len()));
        }
        if succeeded {
            for (sku, quantity) in &order.items {
                *committed_by_orders.entry(sku.clone()).or_default() += i64::from(*quantity);
            }
        }
    }
    for (sku, (available, reserved, committed)) in stock_before {
        let now = inventory.get_stock(GetStockRequest { sku: sku.clone() }).await?.into_inner();
        let newly_committed = now.committed - committed;
        let expected_committed = committed_by_orders.get(sku).copied().unwrap_or(0);
        if newly_committed != expected_committed {
            violations.push(format!(
                "{sku}: {newly_committed} committed by this run, succeeded orders hold {expected_committed}"
            ));
        }
        if now.reserved != *reserved {
            violations
                .push(format!("{sku}: {} reserved at the end, {reserved} before (a reservation leaked)", now.reserved));
        }
        let before_total = available + reserved + committed;
        let now_total = now.available + now.reserved + now.committed;
        if before_total != now_total {
            violations.push(format!("{sku}: stock total changed from {before_total} to {now_total}"));
        }
        if now.available < 0 || now.reserved < 0 {
            violations.push(format!("{sku}: negative stock {now:?}"));
        }
    }
    Ok(violations)
}

//! The demo's batch of orders: mostly good ones, and on purpose some declined cards,
//! insufficient funds, fraud rejections, sold-out items and undeliverable addresses, so every
//! path of the saga shows up. Deterministic for a given seed.

use rand::{Rng, SeedableRng};
use sagaflow_proto::sagaflow::v1 as pb;

/// The SKUs orders draw from (all seeded by the demo catalog, the last one with no stock).
pub const IN_STOCK: [&str; 4] = ["SKU-RED-MUG", "SKU-BLUE-MUG", "SKU-TEE-M", "SKU-POSTER"];
pub const SOLD_OUT: &str = "SKU-SOLD-OUT";

/// Why an order is expected to end as it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Good,
    CardDeclined,
    InsufficientFunds,
    FraudRejected,
    OutOfStock,
    BadAddress,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Good => "good order",
            Kind::CardDeclined => "declined card",
            Kind::InsufficientFunds => "insufficient funds",
            Kind::FraudRejected => "fraud rejection",
            Kind::OutOfStock => "out of stock",
            Kind::BadAddress => "undeliverable address",
        }
    }
}

/// `count` orders; run ids keep order ids unique across runs on the same data.
pub fn batch(count: usize, seed: u64, run: &str) -> Vec<(Kind, pb::StartOrderRequest)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let kind = match i % 10 {
                3 => Kind::CardDeclined,
                5 => Kind::FraudRejected,
                7 => Kind::OutOfStock,
                8 if i % 20 == 18 => Kind::BadAddress,
                9 if i % 30 == 29 => Kind::InsufficientFunds,
                _ => Kind::Good,
            };
            let lines = rng.gen_range(1..=2);
            let mut items: Vec<pb::OrderItem> = (0..lines)
                .map(|_| pb::OrderItem {
                    sku: IN_STOCK[rng.gen_range(0..IN_STOCK.len())].to_owned(),
                    quantity: rng.gen_range(1..=2),
                    unit_price_cents: [499, 1250, 1999, 2500][rng.gen_range(0..4)],
                })
                .collect();
            items.dedup_by(|a, b| a.sku == b.sku);
            if kind == Kind::OutOfStock {
                items.push(pb::OrderItem { sku: SOLD_OUT.into(), quantity: 1, unit_price_cents: 999 });
            }
            let request = pb::StartOrderRequest {
                order_id: format!("demo-{run}-{i:03}"),
                customer_id: if kind == Kind::FraudRejected {
                    format!("fraud-{i}")
                } else {
                    format!("cust-{}", i % 17)
                },
                items,
                currency: "USD".into(),
                payment_token: match kind {
                    Kind::CardDeclined => "tok_decline",
                    Kind::InsufficientFunds => "tok_insufficient",
                    _ => "tok_ok",
                }
                .into(),
                shipping_address: Some(pb::Address {
                    line1: format!("{} Main St", 10 + i),
                    city: "Springfield".into(),
                    postal_code: if kind == Kind::BadAddress { String::new() } else { format!("{:05}", 10000 + i) },
                    country: "US".into(),
                }),
                wait_for_completion: true,
            };
            (kind, request)
        })
        .collect()
}

/// The amount the saga charges for an order.
pub fn amount(order: &pb::StartOrderRequest) -> i64 {
    order.items.iter().map(|i| i64::from(i.quantity) * i.unit_price_cents).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_mixes_every_kind_and_is_deterministic() {
        let a = batch(60, 7, "x");
        let b = batch(60, 7, "x");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        for kind in [
            Kind::Good,
            Kind::CardDeclined,
            Kind::InsufficientFunds,
            Kind::FraudRejected,
            Kind::OutOfStock,
            Kind::BadAddress,
        ] {
            assert!(a.iter().any(|(k, _)| *k == kind), "{kind:?} missing");
        }
    }
}

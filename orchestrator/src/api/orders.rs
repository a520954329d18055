//! `sagaflow.v1.OrderService`: an order becomes the input of the order saga, started at most
//! once per order id.

use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::order_service_server::OrderService;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use super::sagas::wait_limit;
use super::status::{self, invalid};
use crate::engine::{Engine, StartRequest};

/// The definition StartOrder runs.
pub const ORDER_DEFINITION: &str = "order";

/// ISO 4217 codes the demo accepts.
const CURRENCIES: &[&str] = &[
    "USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "CNY", "HKD",
    "SGD", "INR", "BRL", "MXN", "ZAR", "KRW",
];

const MAX_ITEMS: usize = 100;

#[derive(Debug, Clone)]
pub struct Orders {
    engine: Engine,
}

impl Orders {
    pub fn new(engine: Engine) -> Self {
        Orders { engine }
    }
}

/// Check an order; every problem is reported as a field violation at once.
pub fn validate(order: &pb::StartOrderRequest) -> Result<i64, Status> {
    let mut violations: Vec<(String, String)> = Vec::new();
    let mut bad = |field: &str, description: String| violations.push((field.to_owned(), description));
    if order.order_id.is_empty() {
        bad("order_id", "required: the order id is the saga's idempotency key".into());
    } else if order.order_id.len() > 128
        || !order.order_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        bad("order_id", "use 1-128 letters, digits, '-', '_', '.' or ':'".into());
    }
    if order.customer_id.trim().is_empty() {
        bad("customer_id", "required".into());
    }
    if order.items.is_empty() {
        bad("items", "an order needs at least one item".into());
    }
    if order.items.len() > MAX_ITEMS {
        bad("items", format!("at most {MAX_ITEMS} items, got {}", order.items.len()));
    }
    let mut total: i64 = 0;
    for (i, item) in order.items.iter().enumerate() {
        if item.sku.trim().is_empty() {
            bad(&format!("items[{i}].sku"), "required".into());
        }
        if item.quantity == 0 {
            bad(&format!("items[{i}].quantity"), "must be at least 1".into());
        }
        if item.unit_price_cents < 0 {
            bad(
                &format!("items[{i}].unit_price_cents"),
                format!("must not be negative, got {}", item.unit_price_cents),
            );
        }
        match item.unit_price_cents.checked_mul(i64::from(item.quantity)).and_then(|line| total.checked_add(line)) {
            Some(t) => total = t,
            None => bad(&format!("items[{i}]"), "the order total overflows".into()),
        }
    }
    if !order.items.is_empty() && total <= 0 {
        bad("items", "the order total must be more than 0 cents".into());
    }
    if !CURRENCIES.contains(&order.currency.as_str()) {
        bad(
            "currency",
            format!("{:?} is not a supported ISO 4217 code; use one of {}", order.currency, CURRENCIES.join(", ")),
        );
    }
    if order.payment_token.trim().is_empty() {
        bad("payment_token", "required (demo tokens: tok_ok, tok_decline, tok_insufficient)".into());
    }
    match &order.shipping_address {
        None => bad("shipping_address", "required".into()),
        Some(a) => {
            if a.line1.trim().is_empty() {
                bad("shipping_address.line1", "required".into());
            }
            if a.city.trim().is_empty() {
                bad("shipping_address.city", "required".into());
            }
        }
    }
    if violations.is_empty() {
        Ok(total)
    } else {
        let summary = violations.iter().map(|(f, d)| format!("{f}: {d}")).collect::<Vec<_>>().join("; ");
        Err(invalid(format!("the order is invalid: {summary}"), &violations))
    }
}

/// The saga input for an order (proto3 JSON names, amount computed).
pub fn saga_input(order: &pb::StartOrderRequest, amount_cents: i64) -> Value {
    let address = order.shipping_address.clone().unwrap_or_default();
    json!({
        "orderId": order.order_id,
        "customerId": order.customer_id,
        "items": order.items.iter().map(|i| json!({
            "sku": i.sku, "quantity": i.quantity, "unitPriceCents": i.unit_price_cents,
        })).collect::<Vec<_>>(),
        "currency": order.currency,
        "amountCents": amount_cents,
        "paymentToken": order.payment_token,
        "shippingAddress": {
            "line1": address.line1, "city": address.city, "postalCode": address.postal_code, "country": address.country,
        },
    })
}

#[tonic::async_trait]
impl OrderService for Orders {
    async fn start_order(
        &self,
        request: Request<pb::StartOrderRequest>,
    ) -> Result<Response<pb::StartOrderResponse>, Status> {
        let limit = wait_limit(&request);
        let order = request.into_inner();
        let amount = validate(&order)?;
        let started = self
            .engine
            .start(StartRequest {
                definition: ORDER_DEFINITION.to_owned(),
                version: None,
                input: saga_input(&order, amount),
                execution_id: None,
                idempotency_key: Some(order.order_id.clone()),
            })
            .await
            .map_err(|e| match e {
                crate::engine::EngineError::Conflict(id) => Status::already_exists(format!(
                    "order {} already started execution {id} with different contents; use a new order id",
                    order.order_id
                )),
                other => status::engine(other),
            })?;
        if order.wait_for_completion {
            self.engine.wait(started.id, limit).await.map_err(status::engine)?;
        }
        let record = self
            .engine
            .store()
            .get_execution(started.id)
            .await
            .map_err(status::store)?
            .ok_or_else(|| Status::internal("the execution vanished right after it started"))?;
        Ok(Response::new(pb::StartOrderResponse {
            execution_id: record.id.to_string(),
            status: record.status.as_str().to_owned(),
            error: record.error.unwrap_or_default(),
            cause: record.cause.unwrap_or_default(),
            output_json: record.output.map(|o| o.to_string()).unwrap_or_default(),
            created: started.created,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> pb::StartOrderRequest {
        pb::StartOrderRequest {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: vec![pb::OrderItem { sku: "SKU-RED-MUG".into(), quantity: 2, unit_price_cents: 1250 }],
            currency: "USD".into(),
            payment_token: "tok_ok".into(),
            shipping_address: Some(pb::Address {
                line1: "1 Main St".into(),
                city: "Springfield".into(),
                postal_code: "12345".into(),
                country: "US".into(),
            }),
            wait_for_completion: false,
        }
    }

    #[test]
    fn a_good_order_totals_its_lines() {
        assert_eq!(validate(&good()).expect("valid"), 2500);
    }

    #[test]
    fn every_problem_is_a_field_violation() {
        let mut order = good();
        order.items = vec![pb::OrderItem { sku: String::new(), quantity: 0, unit_price_cents: -5 }];
        order.currency = "XYZ".into();
        order.shipping_address = None;
        let status = validate(&order).expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let details = tonic_types::StatusExt::get_error_details(&status);
        let fields: Vec<String> =
            details.bad_request().expect("violations").field_violations.iter().map(|v| v.field.clone()).collect();
        assert_eq!(
            fields,
            vec![
                "items[0].sku",
                "items[0].quantity",
                "items[0].unit_price_cents",
                "items",
                "currency",
                "shipping_address"
            ]
        );
    }
}

//! `payment.v1.Payment`: charges by demo token, refunds that undo exactly the keyed charge
//! (or, without `saga-compensates`, the order's charges), and a read of an order's payments.

pub mod store;

use std::sync::Arc;

use prost::Message;
use sagaflow_proto::payment::v1::payment_server::Payment;
use sagaflow_proto::payment::v1::{
    ChargeRequest, ChargeResponse, GetPaymentsRequest, GetPaymentsResponse, PaymentRecord, RefundRequest,
    RefundResponse,
};
use tonic::{Request, Response, Status};

use crate::kit::clock::Clock;
use crate::kit::error::{Refusal, ServiceError};
use crate::kit::idempotency::{self, CallKey, Forward};
use crate::kit::{new_id, require};
use store::{PaymentRow, PaymentStore, PaymentTx};

/// The gRPC service name.
pub const SERVICE_NAME: &str = "payment.v1.Payment";
const CHARGE: &str = "payment.v1.Payment/Charge";
const REFUND: &str = "payment.v1.Payment/Refund";

/// `Payment.CardDeclined`
pub const CARD_DECLINED: &str = "Payment.CardDeclined";
/// `Payment.InsufficientFunds`
pub const INSUFFICIENT_FUNDS: &str = "Payment.InsufficientFunds";

/// The demo payment tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Ok,
    Decline,
    Insufficient,
}

impl Token {
    fn parse(token: &str) -> Result<Self, ServiceError> {
        match token {
            "tok_ok" => Ok(Token::Ok),
            "tok_decline" => Ok(Token::Decline),
            "tok_insufficient" => Ok(Token::Insufficient),
            _ => Err(ServiceError::invalid(
                "payment_token",
                "unknown token; the demo accepts \"tok_ok\", \"tok_decline\" and \"tok_insufficient\"",
            )),
        }
    }
}

/// The payment service.
#[derive(Debug, Clone)]
pub struct PaymentService {
    store: Arc<dyn PaymentStore>,
    clock: Arc<dyn Clock>,
}

impl PaymentService {
    pub fn new(store: Arc<dyn PaymentStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The charges a refund call undoes, locked. Leaves a tombstone when it compensates a
    /// Charge key that was never seen.
    async fn refund_targets(
        &self,
        tx: &mut dyn PaymentTx,
        call: &CallKey,
        req: &RefundRequest,
    ) -> Result<Vec<PaymentRow>, ServiceError> {
        if let Some(forward) = &call.compensates {
            return Ok(match idempotency::forward_state(tx, forward).await? {
                Forward::Applied => tx.payment_by_key_for_update(forward).await?.into_iter().collect(),
                Forward::NothingApplied => Vec::new(),
                Forward::NeverSeen => {
                    idempotency::leave_tombstone(tx, forward, CHARGE, call, self.clock.now()).await?;
                    Vec::new()
                }
            });
        }
        if !req.payment_id.is_empty() {
            let payment = tx.payment_for_update(&req.payment_id).await?;
            if let Some(p) = &payment
                && !req.order_id.is_empty()
                && p.order_id != req.order_id
            {
                return Err(ServiceError::invalid(
                    "payment_id",
                    format!("payment {} belongs to another order", p.payment_id),
                ));
            }
            return Ok(payment.into_iter().collect());
        }
        Ok(tx.order_payments_for_update(&req.order_id).await?)
    }
}

#[tonic::async_trait]
impl Payment for PaymentService {
    async fn charge(&self, request: Request<ChargeRequest>) -> Result<Response<ChargeResponse>, Status> {
        let call = CallKey::from_request(CHARGE, &request)?;
        let req = request.into_inner();
        require("order_id", &req.order_id)?;
        if req.amount_cents <= 0 {
            return Err(ServiceError::invalid("amount_cents", "must be greater than 0").into());
        }
        let token = Token::parse(&req.payment_token)?;
        // The demo is forgiving about a missing currency; everything else is checked.
        let currency = if req.currency.is_empty() { "USD".to_owned() } else { req.currency.clone() };

        let refusal = match token {
            Token::Ok => None,
            Token::Decline => Some(
                Refusal::new(CARD_DECLINED, "the card issuer declined the charge (demo token tok_decline)")
                    .with("order_id", &req.order_id),
            ),
            Token::Insufficient => Some(
                Refusal::new(
                    INSUFFICIENT_FUNDS,
                    format!(
                        "the card has insufficient funds for {} cents (demo token tok_insufficient)",
                        req.amount_cents
                    ),
                )
                .with("order_id", &req.order_id)
                .with("amount_cents", req.amount_cents),
            ),
        };
        // The charge a good token makes, and its answer, are known before anything is stored.
        let payment = PaymentRow {
            payment_id: new_id("pay"),
            order_id: req.order_id.clone(),
            customer_id: req.customer_id.clone(),
            amount_cents: req.amount_cents,
            refunded_cents: 0,
            currency: currency.clone(),
            idempotency_key: call.key.clone(),
        };
        let response =
            ChargeResponse { payment_id: payment.payment_id.clone(), amount_cents: payment.amount_cents, currency };
        if refusal.is_none()
            && self.store.charge_once(&call, &payment, &response.encode_to_vec(), self.clock.now()).await?
        {
            idempotency::log_applied(&call);
            return Ok(Response::new(response));
        }

        // A refusal, or a key already seen (replayed or refused here).
        let mut tx = self.store.begin(&call.lock_keys()).await?;
        if let Some(answer) = idempotency::open(&mut *tx, &call).await? {
            return Ok(Response::new(idempotency::replay(answer)?));
        }
        let now = self.clock.now();
        let outcome = match refusal {
            Some(refusal) => Err(refusal),
            None => {
                tx.insert_payment(&payment, now).await.map_err(ServiceError::from)?;
                Ok(response)
            }
        };
        Ok(Response::new(idempotency::close(tx, &call, outcome, now).await?))
    }

    async fn refund(&self, request: Request<RefundRequest>) -> Result<Response<RefundResponse>, Status> {
        let call = CallKey::from_request(REFUND, &request)?;
        let req = request.into_inner();
        if call.compensates.is_none() && req.payment_id.is_empty() {
            require("order_id", &req.order_id)?;
        }
        if req.amount_cents < 0 {
            return Err(ServiceError::invalid(
                "amount_cents",
                "must not be negative (0 refunds everything that is left)",
            )
            .into());
        }

        let mut tx = self.store.begin(&call.lock_keys()).await?;
        if let Some(answer) = idempotency::open(&mut *tx, &call).await? {
            return Ok(Response::new(idempotency::replay(answer)?));
        }
        let now = self.clock.now();
        let targets = self.refund_targets(&mut *tx, &call, &req).await?;
        // 0 = refund everything left; otherwise spread the amount over the targets in order.
        // Never more than a charge has left: the refund is capped, not refused, because a
        // compensation must be able to finish.
        let mut budget = if req.amount_cents == 0 { i64::MAX } else { req.amount_cents };
        let mut response = RefundResponse::default();
        for payment in targets {
            let take = (payment.amount_cents - payment.refunded_cents).min(budget);
            if take <= 0 {
                continue;
            }
            tx.record_refund(&new_id("ref"), &payment.payment_id, take, &call.key, now)
                .await
                .map_err(ServiceError::from)?;
            budget -= take;
            response.refunded_cents += take;
            if response.payment_id.is_empty() {
                response.payment_id = payment.payment_id;
            }
        }
        response.no_op = response.refunded_cents == 0;
        Ok(Response::new(idempotency::close(tx, &call, Ok(response), now).await?))
    }

    async fn get_payments(
        &self,
        request: Request<GetPaymentsRequest>,
    ) -> Result<Response<GetPaymentsResponse>, Status> {
        let req = request.into_inner();
        require("order_id", &req.order_id)?;
        let payments = self
            .store
            .payments_for_order(&req.order_id)
            .await?
            .into_iter()
            .map(|p| PaymentRecord {
                payment_id: p.payment_id,
                order_id: p.order_id,
                amount_cents: p.amount_cents,
                refunded_cents: p.refunded_cents,
                currency: p.currency,
            })
            .collect();
        Ok(Response::new(GetPaymentsResponse { payments }))
    }
}

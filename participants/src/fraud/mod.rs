//! `fraud.v1.Fraud`: a rule-based screening whose every decision, approval or rejection, is
//! stored. The demo rules reject orders over 1,000,000 cents and customers whose id begins
//! with `fraud-`.

pub mod store;

use std::sync::Arc;

use sagaflow_proto::fraud::v1::fraud_server::Fraud;
use sagaflow_proto::fraud::v1::{CheckRequest, CheckResponse, Decision, GetDecisionsRequest, GetDecisionsResponse};
use tonic::{Request, Response, Status};

use crate::kit::clock::Clock;
use crate::kit::error::{Refusal, ServiceError};
use crate::kit::idempotency::{self, CallKey};
use crate::kit::{new_id, require};
use store::{DecisionRow, FraudStore};

/// The gRPC service name.
pub const SERVICE_NAME: &str = "fraud.v1.Fraud";
const CHECK: &str = "fraud.v1.Fraud/Check";

/// `Fraud.Rejected`
pub const REJECTED: &str = "Fraud.Rejected";
/// Orders above this amount are rejected.
pub const MAX_AMOUNT_CENTS: i64 = 1_000_000;
/// Customers whose id starts with this are rejected.
pub const FRAUD_CUSTOMER_PREFIX: &str = "fraud-";

/// The outcome of the demo rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub approve: bool,
    pub score: i32,
    pub reasons: Vec<String>,
}

/// Applies the demo rules. The score grows with the amount (up to 50 at the limit) and is
/// at least 80 for a rejection, so rejections always score above approvals.
pub fn judge(customer_id: &str, amount_cents: i64) -> Verdict {
    let mut reasons = Vec::new();
    let over_limit = amount_cents > MAX_AMOUNT_CENTS;
    let listed = customer_id.starts_with(FRAUD_CUSTOMER_PREFIX);
    if over_limit {
        reasons.push(format!("amount {amount_cents} cents is over the {MAX_AMOUNT_CENTS} cent limit"));
    }
    if listed {
        reasons.push(format!(
            "customer {customer_id:?} is on the demo fraud list (ids beginning with \"{FRAUD_CUSTOMER_PREFIX}\")"
        ));
    }
    let amount_score = i32::try_from(amount_cents.clamp(0, MAX_AMOUNT_CENTS) * 50 / MAX_AMOUNT_CENTS).unwrap_or(50);
    if reasons.is_empty() {
        reasons.push("amount within limits".to_owned());
        reasons.push("customer not on the fraud list".to_owned());
        Verdict { approve: true, score: amount_score, reasons }
    } else {
        let score = match (over_limit, listed) {
            (true, true) => 99,
            (false, true) => 95,
            _ => 80,
        };
        Verdict { approve: false, score, reasons }
    }
}

/// The fraud service.
#[derive(Debug, Clone)]
pub struct FraudService {
    store: Arc<dyn FraudStore>,
    clock: Arc<dyn Clock>,
}

impl FraudService {
    pub fn new(store: Arc<dyn FraudStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

#[tonic::async_trait]
impl Fraud for FraudService {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let call = CallKey::from_request(CHECK, &request)?;
        let req = request.into_inner();
        require("order_id", &req.order_id)?;
        if req.amount_cents < 0 {
            return Err(ServiceError::invalid("amount_cents", "must not be negative").into());
        }

        let mut tx = self.store.begin(&call.lock_keys()).await?;
        if let Some(answer) = idempotency::open(&mut *tx, &call).await? {
            return Ok(Response::new(idempotency::replay(answer)?));
        }
        let now = self.clock.now();
        let verdict = judge(&req.customer_id, req.amount_cents);
        let row = DecisionRow {
            decision_id: new_id("dec"),
            order_id: req.order_id.clone(),
            customer_id: req.customer_id.clone(),
            amount_cents: req.amount_cents,
            currency: req.currency.clone(),
            decision: if verdict.approve { "APPROVE" } else { "REJECT" }.to_owned(),
            score: verdict.score,
            reasons: verdict.reasons.clone(),
            idempotency_key: call.key.clone(),
        };
        // A rejection is stored as a decision too, in the same transaction as the refusal.
        tx.insert_decision(&row, now).await.map_err(ServiceError::from)?;
        let outcome = if verdict.approve {
            Ok(CheckResponse { decision: row.decision, score: verdict.score, reasons: verdict.reasons })
        } else {
            Err(Refusal::new(REJECTED, format!("order rejected: {}", verdict.reasons.join("; ")))
                .with("order_id", &req.order_id)
                .with("score", verdict.score)
                .with("decision_id", &row.decision_id))
        };
        Ok(Response::new(idempotency::close(tx, &call, outcome, now).await?))
    }

    async fn get_decisions(
        &self,
        request: Request<GetDecisionsRequest>,
    ) -> Result<Response<GetDecisionsResponse>, Status> {
        let req = request.into_inner();
        require("order_id", &req.order_id)?;
        let decisions = self
            .store
            .decisions_for_order(&req.order_id)
            .await?
            .into_iter()
            .map(|d| Decision { order_id: d.order_id, decision: d.decision, score: d.score, reasons: d.reasons })
            .collect();
        Ok(Response::new(GetDecisionsResponse { decisions }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_rules() {
        let ok = judge("cust-1", 5_000);
        assert!(ok.approve);
        assert!(ok.score < 50);
        assert!(judge("cust-1", MAX_AMOUNT_CENTS).approve);
        let big = judge("cust-1", MAX_AMOUNT_CENTS + 1);
        assert!(!big.approve);
        assert_eq!(big.score, 80);
        let listed = judge("fraud-7", 100);
        assert!(!listed.approve);
        assert_eq!(listed.reasons.len(), 1);
        assert_eq!(judge("fraud-7", MAX_AMOUNT_CENTS * 2).reasons.len(), 2);
    }
}

//! `sagaflow.v1.OrderService`: an order becomes the input of the order saga, started at most
//! once per order id.

use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::order_service_server::OrderService;
use tonic::{Request, Response, Status};

use super::input;
use super::sagas::wait_limit;
use super::status;
use crate::engine::{Engine, StartRequest};
use crate::telemetry::TraceParent;

/// The definition StartOrder runs.
pub const ORDER_DEFINITION: &str = "order";

#[derive(Debug, Clone)]
pub struct Orders {
    engine: Engine,
}

impl Orders {
    pub fn new(engine: Engine) -> Self {
        Orders { engine }
    }
}

#[tonic::async_trait]
impl OrderService for Orders {
    async fn start_order(
        &self,
        request: Request<pb::StartOrderRequest>,
    ) -> Result<Response<pb::StartOrderResponse>, Status> {
        let limit = wait_limit(&request);
        // The caller's W3C trace context becomes the parent of the saga's trace.
        let trace_parent = TraceParent::from_metadata(request.metadata());
        let order = request.into_inner();
        let amount = input::order(&order).map_err(status::input)?;
        let started = self
            .engine
            .start_traced(
                StartRequest {
                    definition: ORDER_DEFINITION.to_owned(),
                    version: None,
                    input: input::saga_input(&order, amount),
                    execution_id: None,
                    idempotency_key: Some(order.order_id.clone()),
                },
                trace_parent,
            )
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

//! `fulfillment.v1.Fulfillment`: shipments created at most once per key, cancellations that
//! undo exactly the keyed shipment (or the order's open ones), and a read of an order's
//! shipments. An address without a postal code or country is refused.

pub mod store;

use std::sync::Arc;

use prost::Message;
use sagaflow_proto::fulfillment::v1::fulfillment_server::Fulfillment;
use sagaflow_proto::fulfillment::v1::{
    CancelShipmentRequest, CancelShipmentResponse, CreateShipmentRequest, CreateShipmentResponse, GetShipmentsRequest,
    GetShipmentsResponse, Shipment,
};
use tonic::{Request, Response, Status};

use crate::kit::clock::Clock;
use crate::kit::error::{Refusal, ServiceError};
use crate::kit::idempotency::{self, CallKey, Forward};
use crate::kit::{new_id, require};
use store::{FulfillmentStore, FulfillmentTx, NewShipment, ShipmentRow};

/// The gRPC service name.
pub const SERVICE_NAME: &str = "fulfillment.v1.Fulfillment";
const CREATE_SHIPMENT: &str = "fulfillment.v1.Fulfillment/CreateShipment";
const CANCEL_SHIPMENT: &str = "fulfillment.v1.Fulfillment/CancelShipment";

/// `Fulfillment.AddressRejected`
pub const ADDRESS_REJECTED: &str = "Fulfillment.AddressRejected";

/// The fulfillment service.
#[derive(Debug, Clone)]
pub struct FulfillmentService {
    store: Arc<dyn FulfillmentStore>,
    clock: Arc<dyn Clock>,
}

impl FulfillmentService {
    pub fn new(store: Arc<dyn FulfillmentStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The shipments a CancelShipment call undoes, locked. Leaves a tombstone when it
    /// compensates a CreateShipment key that was never seen.
    async fn cancel_targets(
        &self,
        tx: &mut dyn FulfillmentTx,
        call: &CallKey,
        req: &CancelShipmentRequest,
    ) -> Result<Vec<ShipmentRow>, ServiceError> {
        if let Some(forward) = &call.compensates {
            return Ok(match idempotency::forward_state(tx, forward).await? {
                Forward::Applied => tx.shipment_by_key_for_update(forward).await?.into_iter().collect(),
                Forward::NothingApplied => Vec::new(),
                Forward::NeverSeen => {
                    idempotency::leave_tombstone(tx, forward, CREATE_SHIPMENT, call, self.clock.now()).await?;
                    Vec::new()
                }
            });
        }
        if !req.shipment_id.is_empty() {
            let shipment = tx.shipment_for_update(&req.shipment_id).await?;
            if let Some(s) = &shipment
                && !req.order_id.is_empty()
                && s.order_id != req.order_id
            {
                return Err(ServiceError::invalid(
                    "shipment_id",
                    format!("shipment {} belongs to another order", s.shipment_id),
                ));
            }
            return Ok(shipment.into_iter().collect());
        }
        Ok(tx.open_shipments_for_update(&req.order_id).await?)
    }
}

#[tonic::async_trait]
impl Fulfillment for FulfillmentService {
    async fn create_shipment(
        &self,
        request: Request<CreateShipmentRequest>,
    ) -> Result<Response<CreateShipmentResponse>, Status> {
        let call = CallKey::from_request(CREATE_SHIPMENT, &request)?;
        let req = request.into_inner();
        require("order_id", &req.order_id)?;

        let address = req.address.clone().unwrap_or_default();
        let mut missing = Vec::new();
        if address.postal_code.trim().is_empty() {
            missing.push("postal_code");
        }
        if address.country.trim().is_empty() {
            missing.push("country");
        }
        // The shipment a complete address makes, and its answer, are known before anything
        // is stored.
        let items: Vec<serde_json::Value> =
            req.items.iter().map(|i| serde_json::json!({ "sku": i.sku, "quantity": i.quantity })).collect();
        let shipment = NewShipment {
            shipment_id: new_id("shp"),
            order_id: req.order_id.clone(),
            idempotency_key: call.key.clone(),
            line1: address.line1,
            city: address.city,
            postal_code: address.postal_code,
            country: address.country,
            items_json: serde_json::Value::from(items).to_string(),
        };
        let response = CreateShipmentResponse { shipment_id: shipment.shipment_id.clone() };
        if missing.is_empty()
            && self.store.create_shipment_once(&call, &shipment, &response.encode_to_vec(), self.clock.now()).await?
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
        let outcome = if missing.is_empty() {
            tx.insert_shipment(&shipment, now).await.map_err(ServiceError::from)?;
            Ok(response)
        } else {
            Err(Refusal::new(
                ADDRESS_REJECTED,
                format!(
                    "the shipping address has no {}; correct the address and place the order again",
                    missing.join(" and no ")
                ),
            )
            .with("order_id", &req.order_id)
            .with("missing", missing.join(",")))
        };
        Ok(Response::new(idempotency::close(tx, &call, outcome, now).await?))
    }

    async fn cancel_shipment(
        &self,
        request: Request<CancelShipmentRequest>,
    ) -> Result<Response<CancelShipmentResponse>, Status> {
        let call = CallKey::from_request(CANCEL_SHIPMENT, &request)?;
        let req = request.into_inner();
        if call.compensates.is_none() && req.shipment_id.is_empty() {
            require("order_id", &req.order_id)?;
        }

        let mut tx = self.store.begin(&call.lock_keys()).await?;
        if let Some(answer) = idempotency::open(&mut *tx, &call).await? {
            return Ok(Response::new(idempotency::replay(answer)?));
        }
        let now = self.clock.now();
        let targets = self.cancel_targets(&mut *tx, &call, &req).await?;
        let mut response = CancelShipmentResponse::default();
        for shipment in targets.iter().filter(|s| !s.cancelled) {
            tx.cancel_shipment(&shipment.shipment_id, &call.key, now).await.map_err(ServiceError::from)?;
            if response.shipment_id.is_empty() {
                response.shipment_id = shipment.shipment_id.clone();
            }
        }
        response.no_op = response.shipment_id.is_empty();
        Ok(Response::new(idempotency::close(tx, &call, Ok(response), now).await?))
    }

    async fn get_shipments(
        &self,
        request: Request<GetShipmentsRequest>,
    ) -> Result<Response<GetShipmentsResponse>, Status> {
        let req = request.into_inner();
        require("order_id", &req.order_id)?;
        let shipments = self
            .store
            .shipments_for_order(&req.order_id)
            .await?
            .into_iter()
            .map(|s| Shipment { shipment_id: s.shipment_id, order_id: s.order_id, cancelled: s.cancelled })
            .collect();
        Ok(Response::new(GetShipmentsResponse { shipments }))
    }
}

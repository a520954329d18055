//! Echo participants: `payment.v1.Payment`, `inventory.v1.Inventory` and
//! `fulfillment.v1.Fulfillment` on one in-process tonic server (`127.0.0.1:0`), answering at
//! once with plausible ids and writing nothing, so the benchmark measures the orchestrator
//! alone. They serve gRPC reflection (the invoker types calls through it) and health, like
//! the real participants, and mirror the one business rule the benchmark relies on: a
//! shipment to an address without a postal code or country is refused with
//! `Fulfillment.AddressRejected` (a definite refusal, so nothing is pushed to compensate).

use std::net::SocketAddr;

use sagaflow_participants::kit::error::Refusal;
use sagaflow_proto::FILE_DESCRIPTOR_SET;
use sagaflow_proto::fulfillment::v1::fulfillment_server::{Fulfillment, FulfillmentServer};
use sagaflow_proto::fulfillment::v1::*;
use sagaflow_proto::inventory::v1::inventory_server::{Inventory, InventoryServer};
use sagaflow_proto::inventory::v1::*;
use sagaflow_proto::payment::v1::payment_server::{Payment, PaymentServer};
use sagaflow_proto::payment::v1::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The gRPC service names served.
const SERVICES: [&str; 3] = ["payment.v1.Payment", "inventory.v1.Inventory", "fulfillment.v1.Fulfillment"];

/// Start the echo server; it stops when `stop` is cancelled. Returns its address.
pub async fn start(stop: CancellationToken, tasks: &mut tokio::task::JoinSet<()>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICES {
        health.set_service_status(name, tonic_health::ServingStatus::Serving).await;
    }
    let mut reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    for name in SERVICES {
        reflection = reflection.with_service_name(name);
    }
    let reflection = reflection.build_v1()?;
    let server = tonic::transport::Server::builder()
        .add_service(PaymentServer::new(Echo))
        .add_service(InventoryServer::new(Echo))
        .add_service(FulfillmentServer::new(Echo))
        .add_service(health_service)
        .add_service(reflection);
    tasks.spawn(async move {
        // As in the API server: accepted sockets get TCP_NODELAY only when asked for here.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(e) = server.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await {
            tracing::error!(error = %e, "the echo participants stopped");
        }
    });
    Ok(addr)
}

/// Answers every call at once; keeps nothing.
#[derive(Debug, Clone, Copy)]
struct Echo;

fn id(prefix: &str, order_id: &str) -> String {
    format!("{prefix}-{order_id}")
}

#[tonic::async_trait]
impl Payment for Echo {
    async fn charge(&self, request: Request<ChargeRequest>) -> Result<Response<ChargeResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(ChargeResponse {
            payment_id: id("pay", &r.order_id),
            amount_cents: r.amount_cents,
            currency: r.currency,
        }))
    }

    async fn refund(&self, request: Request<RefundRequest>) -> Result<Response<RefundResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(RefundResponse {
            payment_id: id("pay", &r.order_id),
            refunded_cents: r.amount_cents,
            no_op: false,
        }))
    }

    async fn get_payments(&self, _: Request<GetPaymentsRequest>) -> Result<Response<GetPaymentsResponse>, Status> {
        Ok(Response::new(GetPaymentsResponse::default()))
    }
}

#[tonic::async_trait]
impl Inventory for Echo {
    async fn reserve(&self, request: Request<ReserveRequest>) -> Result<Response<ReserveResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(ReserveResponse { reservation_id: id("res", &r.order_id), expires_at: None }))
    }

    async fn release(&self, request: Request<ReleaseRequest>) -> Result<Response<ReleaseResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(ReleaseResponse { reservation_id: id("res", &r.order_id), no_op: false }))
    }

    async fn commit(&self, request: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(CommitResponse { reservation_id: id("res", &r.order_id) }))
    }

    async fn restock(&self, request: Request<RestockRequest>) -> Result<Response<RestockResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(RestockResponse {
            stock: Some(StockLevel { sku: r.sku, available: i64::from(r.quantity), reserved: 0, committed: 0 }),
        }))
    }

    async fn get_stock(&self, request: Request<GetStockRequest>) -> Result<Response<GetStockResponse>, Status> {
        Ok(Response::new(GetStockResponse { sku: request.into_inner().sku, ..Default::default() }))
    }
}

#[tonic::async_trait]
impl Fulfillment for Echo {
    async fn create_shipment(
        &self,
        request: Request<CreateShipmentRequest>,
    ) -> Result<Response<CreateShipmentResponse>, Status> {
        let r = request.into_inner();
        // The real participant's rule (participants/src/fulfillment): no postal code or no
        // country is a definite refusal.
        let address = r.address.unwrap_or_default();
        if address.postal_code.trim().is_empty() || address.country.trim().is_empty() {
            return Err(Refusal::new(
                sagaflow_participants::fulfillment::ADDRESS_REJECTED,
                "the shipping address has no postal code or country",
            )
            .to_status());
        }
        Ok(Response::new(CreateShipmentResponse { shipment_id: id("shp", &r.order_id) }))
    }

    async fn cancel_shipment(
        &self,
        request: Request<CancelShipmentRequest>,
    ) -> Result<Response<CancelShipmentResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(CancelShipmentResponse { shipment_id: id("shp", &r.order_id), no_op: false }))
    }

    async fn get_shipments(&self, _: Request<GetShipmentsRequest>) -> Result<Response<GetShipmentsResponse>, Status> {
        Ok(Response::new(GetShipmentsResponse::default()))
    }
}

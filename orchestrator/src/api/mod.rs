//! The gRPC API: OrderService, SagaService, health checking and server reflection.
//!
//! - [`orders`]: StartOrder, the order saga's front door.
//! - [`sagas`]: definitions, executions, histories, operator actions.
//! - [`convert`]: stored records to API messages.
//! - [`input`]: checks of every request's fields, payloads and limits before anything acts.
//! - [`status`]: every error becomes a `tonic::Status` here and nowhere else.

pub mod convert;
pub mod input;
pub mod orders;
pub mod sagas;
pub mod status;

use std::net::SocketAddr;

use sagaflow_proto::sagaflow::v1::order_service_server::OrderServiceServer;
use sagaflow_proto::sagaflow::v1::saga_service_server::SagaServiceServer;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::engine::Engine;
use crate::security::ApiSecurity;
use crate::security::redacted_api::{Masking, RedactedOrders, RedactedSagas};

/// Serve the API on `listener` until `shutdown` resolves: plaintext, no token, nothing masked.
pub async fn serve(
    engine: Engine,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with(engine, listener, shutdown, ApiSecurity::default()).await
}

/// Serve the API with the TLS, bearer-token authentication and redaction `security` sets.
pub async fn serve_with(
    engine: Engine,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
    security: ApiSecurity,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<OrderServiceServer<orders::Orders>>().await;
    health.set_serving::<SagaServiceServer<sagas::Sagas>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sagaflow_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled-in descriptor sets are valid");
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sagaflow_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the compiled-in descriptor sets are valid");
    let masking = Masking::new(security.redactor, engine.clone());
    let mut server = Server::builder();
    if let Some(tls) = security.tls {
        server = server.tls_config(tls)?;
    }
    server
        .layer(security.auth)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(OrderServiceServer::new(RedactedOrders::new(orders::Orders::new(engine.clone()), masking.clone())))
        .add_service(SagaServiceServer::new(RedactedSagas::new(sagas::Sagas::new(engine), masking)))
        // tonic applies its TCP_NODELAY default only to sockets it binds itself; without it a
        // reply's last frames can wait for the client's delayed ACK (40 ms on Linux).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await
}

/// Bind the API address, with a message that says what to do when it is taken.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e} (is another server running there?)"))
    })
}

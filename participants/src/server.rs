//! Assembles a participant process: migrations, the selected business services behind fault
//! injection, the Chaos service, gRPC health and reflection, the reservation expiry sweep,
//! and graceful shutdown. The storage is a [`Backend`]: PostgreSQL or SQLite.

use std::sync::Arc;
use std::time::Duration;

use sagaflow_proto::FILE_DESCRIPTOR_SET;
use sagaflow_proto::fraud::v1::fraud_server::FraudServer;
use sagaflow_proto::fulfillment::v1::fulfillment_server::FulfillmentServer;
use sagaflow_proto::inventory::v1::inventory_server::InventoryServer;
use sagaflow_proto::participants::v1::chaos_server::ChaosServer;
use sagaflow_proto::payment::v1::payment_server::PaymentServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tower::Layer;

use crate::backend::{Backend, OpenError};
use crate::fraud::FraudService;
use crate::fulfillment::FulfillmentService;
use crate::inventory::{DEFAULT_RESERVATION_TTL, InventoryService};
use crate::kit::chaos::{ChaosApi, FaultLayer, Faults};
use crate::kit::clock::{Clock, SystemClock};
use crate::kit::error::chain;
use crate::kit::store::StoreError;
use crate::kit::telemetry::metrics_http;
use crate::kit::telemetry::rpc::{ParticipantMetrics, RpcLayer};
use crate::payment::PaymentService;
use crate::{fraud, fulfillment, inventory, payment};

/// The gRPC name of the fault-injection service every participant serves.
pub const CHAOS_SERVICE_NAME: &str = "participants.v1.Chaos";

/// One demo participant service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    Payment,
    Inventory,
    Fraud,
    Fulfillment,
}

impl ServiceKind {
    /// Every service, as `all` serves them.
    pub const ALL: [ServiceKind; 4] =
        [ServiceKind::Payment, ServiceKind::Inventory, ServiceKind::Fraud, ServiceKind::Fulfillment];

    /// The gRPC service name, e.g. `payment.v1.Payment`.
    pub fn grpc_name(self) -> &'static str {
        match self {
            ServiceKind::Payment => payment::SERVICE_NAME,
            ServiceKind::Inventory => inventory::SERVICE_NAME,
            ServiceKind::Fraud => fraud::SERVICE_NAME,
            ServiceKind::Fulfillment => fulfillment::SERVICE_NAME,
        }
    }

    /// The short name, as on the command line: `payment`, `inventory`, ...
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Payment => "payment",
            ServiceKind::Inventory => "inventory",
            ServiceKind::Fraud => "fraud",
            ServiceKind::Fulfillment => "fulfillment",
        }
    }

    /// Applies this service's schema migrations.
    pub async fn migrate(self, backend: &Backend) -> Result<(), StoreError> {
        backend.migrate(&[self]).await
    }
}

/// Why a participant could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not listen on {addr}; choose another --listen address")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
    #[error("could not create the data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {service} server task failed: {detail}")]
    Crashed { service: &'static str, detail: String },
    #[error("TLS cannot be set up: {0}")]
    Tls(String),
    #[error(transparent)]
    MetricsBind(#[from] metrics_http::BindError),
}

/// How to run the services of one process.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The services to serve, all on one port.
    pub services: Vec<ServiceKind>,
    pub clock: Arc<dyn Clock>,
    /// Reservation TTL when a Reserve call asks for none (default 30 minutes).
    pub reservation_ttl: Duration,
    /// How often expired reservations are swept (besides the lazy sweep on access).
    pub expiry_sweep_interval: Duration,
    /// The process's faults (shared with the Chaos service).
    pub faults: Faults,
    /// TLS, with client certificates required when it names a client CA; `None`: plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Where calls, errors and injected faults are counted; `None`: not counted.
    pub metrics: Option<ParticipantMetrics>,
}

impl ServeOptions {
    /// Defaults: wall clock, 30-minute reservations, a sweep every 10 seconds, no faults.
    pub fn new(services: Vec<ServiceKind>) -> Self {
        Self {
            services,
            clock: Arc::new(SystemClock),
            reservation_ttl: DEFAULT_RESERVATION_TTL,
            expiry_sweep_interval: Duration::from_secs(10),
            faults: Faults::default(),
            tls: None,
            metrics: None,
        }
    }
}

/// Applies the migrations of the given services, in order.
pub async fn migrate(backend: &Backend, services: &[ServiceKind]) -> Result<(), StoreError> {
    backend.migrate(services).await
}

/// Creates the demo catalog's SKUs (idempotent; existing stock is left alone).
pub async fn seed_demo_catalog(backend: &Backend, clock: Arc<dyn Clock>) -> Result<(), StoreError> {
    InventoryService::new(backend.inventory_store(), clock, DEFAULT_RESERVATION_TTL).seed_demo_catalog().await
}

/// Serves the selected services on `listener` until `shutdown` is cancelled, then drains
/// in-flight calls and stops the background sweep. Migrations must have been applied.
/// `backend` is a [`Backend`] or a bare `PgPool`/`SqlitePool`.
pub async fn serve(
    backend: impl Into<Backend>,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let backend = backend.into();
    let faults_layer = FaultLayer::new(options.faults.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    let mut reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(CHAOS_SERVICE_NAME)
        .with_service_name("grpc.health.v1.Health");
    let mut reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(CHAOS_SERVICE_NAME)
        .with_service_name("grpc.health.v1.Health");

    let tracker = TaskTracker::new();
    let mut routes = RoutesBuilder::default();
    let mut services = options.services.clone();
    services.sort();
    services.dedup();
    for kind in &services {
        match kind {
            ServiceKind::Payment => {
                let service = PaymentService::new(backend.payment_store(), options.clock.clone());
                routes.add_service(faults_layer.layer(PaymentServer::new(service)));
            }
            ServiceKind::Inventory => {
                let service =
                    InventoryService::new(backend.inventory_store(), options.clock.clone(), options.reservation_ttl);
                tracker.spawn(sweep_expired_reservations(
                    service.clone(),
                    options.expiry_sweep_interval,
                    shutdown.clone(),
                ));
                routes.add_service(faults_layer.layer(InventoryServer::new(service)));
            }
            ServiceKind::Fraud => {
                let service = FraudService::new(backend.fraud_store(), options.clock.clone());
                routes.add_service(faults_layer.layer(FraudServer::new(service)));
            }
            ServiceKind::Fulfillment => {
                let service = FulfillmentService::new(backend.fulfillment_store(), options.clock.clone());
                routes.add_service(faults_layer.layer(FulfillmentServer::new(service)));
            }
        }
        health.set_service_status(kind.grpc_name(), ServingStatus::Serving).await;
        reflection = reflection.with_service_name(kind.grpc_name());
        reflection_alpha = reflection_alpha.with_service_name(kind.grpc_name());
    }
    health.set_service_status(CHAOS_SERVICE_NAME, ServingStatus::Serving).await;
    routes
        .add_service(ChaosServer::new(ChaosApi::new(options.faults.clone())))
        .add_service(health_service)
        .add_service(reflection.build_v1()?)
        .add_service(reflection_alpha.build_v1alpha()?);

    let names: Vec<&str> = services.iter().map(|s| s.grpc_name()).collect();
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, services = ?names, tls = options.tls.is_some(), "participant serving"),
        Err(_) => tracing::info!(services = ?names, tls = options.tls.is_some(), "participant serving"),
    }
    let signal = {
        let shutdown = shutdown.clone();
        let health = health.clone();
        async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: finishing in-flight calls");
            // Tell health watchers first, so balancers stop sending new calls.
            for name in names {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = options.tls.clone() {
        builder = builder.tls_config(tls).map_err(|e| ServeError::Tls(chain(&e)))?;
    }
    let result = builder
        .layer(RpcLayer::new(options.metrics.clone()))
        .add_routes(routes.routes())
        // tonic applies its TCP_NODELAY default only to sockets it binds itself; without it a
        // reply's last frames can wait for the caller's delayed ACK (40 ms on Linux).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal)
        .await;
    // The server may also end by itself (an error): stop the background work either way.
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    result?;
    tracing::info!("participant stopped");
    Ok(())
}

/// Periodically returns the stock of expired reservations, so GetStock and the invariants
/// hold even when no call touches the inventory.
async fn sweep_expired_reservations(service: InventoryService, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(err) = service.expire_due_reservations().await {
                    tracing::warn!(error = %chain(&err), "reservation expiry sweep failed; retrying on the next tick");
                }
            }
        }
    }
}

/// Runs one participant process to completion: opens the database its URL names
/// (PostgreSQL or SQLite), migrates, seeds if asked, binds and serves until `shutdown`.
pub async fn run(config: crate::config::Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    // Unreadable TLS files stop the process before it touches the database.
    let tls = config.tls.as_ref().map(|files| files.load()).transpose().map_err(|e| ServeError::Tls(e.to_string()))?;
    let backend = Backend::open_with(&config.database_url, config.max_connections).await?;
    tracing::info!(backend = ?backend.kind(), "database opened");
    let mut options = ServeOptions {
        reservation_ttl: config.reservation_ttl,
        expiry_sweep_interval: config.expiry_sweep_interval,
        tls,
        ..ServeOptions::new(config.services.clone())
    };
    let result = async {
        prepare(&backend, &config.services, config.seed_demo_catalog, options.clock.clone()).await?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|source| ServeError::Bind { addr: config.listen.clone(), source })?;
        if let Some(addr) = config.metrics_listen {
            let metrics_listener = metrics_http::bind(addr).await?;
            let mut registry = prometheus_client::registry::Registry::default();
            options.metrics = Some(ParticipantMetrics::register(&mut registry));
            tracing::info!(addr = %metrics_listener.local_addr().unwrap_or(addr), "metrics at /metrics");
            let stop = shutdown.clone();
            metrics_http::spawn(
                metrics_listener,
                metrics_http::render_registry(std::sync::Arc::new(registry)),
                async move { stop.cancelled().await },
            );
        }
        serve(backend.clone(), options, listener, shutdown).await
    }
    .await;
    backend.close().await;
    result
}

/// Migrates the services' storage and, if asked and the inventory is among them, seeds the
/// demo catalog.
pub(crate) async fn prepare(
    backend: &Backend,
    services: &[ServiceKind],
    seed_catalog: bool,
    clock: Arc<dyn Clock>,
) -> Result<(), ServeError> {
    backend.migrate(services).await?;
    if seed_catalog {
        if services.contains(&ServiceKind::Inventory) {
            seed_demo_catalog(backend, clock).await?;
        } else {
            tracing::warn!("seeding the demo catalog only seeds the inventory; it is not served here");
        }
    }
    Ok(())
}

//! Test harness: a fresh database per test (a PostgreSQL database on DATABASE_URL's server,
//! or a SQLite file in a fresh temporary directory), the participant server on an ephemeral
//! port, clients, and helpers for keyed requests and error details.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use sagaflow_participants::kit::clock::ManualClock;
use sagaflow_participants::{Backend, ServeOptions, ServiceKind};
use sagaflow_proto::fraud::v1::fraud_client::FraudClient;
use sagaflow_proto::fulfillment::v1::fulfillment_client::FulfillmentClient;
use sagaflow_proto::inventory::v1::inventory_client::InventoryClient;
use sagaflow_proto::participants::v1::chaos_client::ChaosClient;
use sagaflow_proto::payment::v1::payment_client::PaymentClient;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// The backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Db {
    /// A fresh database on DATABASE_URL's server.
    Postgres,
    /// A fresh SQLite file in a fresh temporary directory (needs no DATABASE_URL).
    Sqlite,
}

/// A fresh, empty database of either kind, removed by [`Scratch::remove`].
pub(crate) enum Scratch {
    Postgres(Box<TestDb>),
    Sqlite { dir: PathBuf, url: String },
}

impl Scratch {
    pub(crate) async fn create(db: Db) -> Self {
        match db {
            Db::Postgres => Scratch::Postgres(Box::new(TestDb::create().await)),
            Db::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("sagaflow-participants-test-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).expect("create a temporary directory");
                let url = format!("sqlite://{}", dir.join("participants.db").display());
                Scratch::Sqlite { dir, url }
            }
        }
    }

    /// The database URL, as the binary takes it.
    pub(crate) fn url(&self) -> &str {
        match self {
            Scratch::Postgres(db) => &db.url,
            Scratch::Sqlite { url, .. } => url,
        }
    }

    pub(crate) async fn open(&self) -> Backend {
        match self {
            Scratch::Postgres(db) => Backend::Postgres(db.pool(30).await),
            Scratch::Sqlite { url, .. } => Backend::open_with(url, 8).await.expect("open the SQLite file"),
        }
    }

    pub(crate) async fn remove(self) {
        match self {
            Scratch::Postgres(db) => (*db).drop_db().await,
            Scratch::Sqlite { dir, .. } => std::fs::remove_dir_all(&dir).expect("remove the temporary directory"),
        }
    }
}

/// The server named by DATABASE_URL, or a panic that says how to get one.
pub(crate) fn admin_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: run the tests with ./scripts/test.sh, which starts a \
             throwaway PostgreSQL and sets it (or point DATABASE_URL at a server where this \
             user may create databases)"
        ),
    }
}

/// A database created for one test and dropped by [`TestDb::drop_db`].
pub(crate) struct TestDb {
    pub(crate) name: String,
    pub(crate) url: String,
    admin: PgConnectOptions,
}

impl TestDb {
    pub(crate) async fn create() -> Self {
        let admin = PgConnectOptions::from_str(&admin_url()).expect("DATABASE_URL parses");
        let name = format!("sagaflow_participants_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin.connect().await.expect("connect to DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create a test database");
        let url = admin.clone().database(&name).to_url_lossy().to_string();
        Self { name, url, admin }
    }

    pub(crate) async fn pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.admin.clone().database(&self.name))
            .await
            .expect("connect to the test database")
    }

    pub(crate) async fn drop_db(self) {
        let mut conn = self.admin.connect().await.expect("connect to DATABASE_URL");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .expect("drop the test database");
    }
}

/// A participant server serving every service, with a manual clock.
pub(crate) struct Harness {
    pub(crate) addr: SocketAddr,
    pub(crate) backend: Backend,
    pub(crate) clock: ManualClock,
    db: Scratch,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), sagaflow_participants::ServeError>>,
}

impl Harness {
    pub(crate) async fn start(db: Db) -> Self {
        Self::start_with(db, |_| {}).await
    }

    pub(crate) async fn start_with(db: Db, configure: impl FnOnce(&mut ServeOptions)) -> Self {
        let db = Scratch::create(db).await;
        let backend = db.open().await;
        sagaflow_participants::migrate(&backend, &ServiceKind::ALL).await.expect("migrations apply");
        let clock = ManualClock::starting_now();
        let mut options = ServeOptions::new(ServiceKind::ALL.to_vec());
        options.clock = Arc::new(clock.clone());
        configure(&mut options);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(sagaflow_participants::serve(backend.clone(), options, listener, shutdown.clone()));
        Self { addr, backend, clock, db, shutdown, server }
    }

    /// Stops the server gracefully and drops the database.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("server task").expect("server ends cleanly");
        self.backend.close().await;
        self.db.remove().await;
    }

    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the participant")
    }

    pub(crate) async fn payment(&self) -> PaymentClient<Channel> {
        PaymentClient::new(self.channel().await)
    }

    pub(crate) async fn inventory(&self) -> InventoryClient<Channel> {
        InventoryClient::new(self.channel().await)
    }

    pub(crate) async fn fraud(&self) -> FraudClient<Channel> {
        FraudClient::new(self.channel().await)
    }

    pub(crate) async fn fulfillment(&self) -> FulfillmentClient<Channel> {
        FulfillmentClient::new(self.channel().await)
    }

    pub(crate) async fn chaos(&self) -> ChaosClient<Channel> {
        ChaosClient::new(self.channel().await)
    }
}

/// A request carrying `idempotency-key`.
pub(crate) fn keyed<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("idempotency-key", key.parse().expect("ascii key"));
    request
}

/// A compensation request: its own key plus `saga-compensates: <forward key>`.
pub(crate) fn compensating<T>(message: T, key: &str, forward: &str) -> Request<T> {
    let mut request = keyed(message, key);
    request.metadata_mut().insert("saga-compensates", forward.parse().expect("ascii key"));
    request
}

/// The `ErrorInfo` reason of a status (panics if there is none), checking the domain.
pub(crate) fn reason(status: &Status) -> String {
    let details = status.get_error_details();
    let info = details.error_info().unwrap_or_else(|| panic!("status has no ErrorInfo: {status:?}"));
    assert_eq!(info.domain, "sagaflow.demo");
    info.reason.clone()
}

/// Asserts a business refusal: FailedPrecondition with this ErrorInfo reason.
pub(crate) fn assert_refused(status: &Status, expected_reason: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(status), expected_reason, "{status:?}");
}

/// The `ErrorInfo` metadata entry `key`.
pub(crate) fn metadata(status: &Status, key: &str) -> String {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_else(|| panic!("no ErrorInfo metadata {key:?} in {status:?}"))
}

//! The storage backend of a participant process, chosen by the database URL: `postgres://`
//! (or `postgresql://`) is PostgreSQL, one schema per service; `sqlite:` or a plain file path
//! is SQLite, one file (created if missing) whose tables carry the service's name as a
//! prefix. [`Backend`] opens either, runs the services' migrations, and hands out the
//! services' stores.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, SqlitePool};

use crate::fraud::store::{FraudStore, PgFraudStore, SqliteFraudStore};
use crate::fulfillment::store::{FulfillmentStore, PgFulfillmentStore, SqliteFulfillmentStore};
use crate::inventory::store::{InventoryStore, PgInventoryStore, SqliteInventoryStore};
use crate::kit::sqlite;
use crate::kit::store::StoreError;
use crate::payment::store::{PaymentStore, PgPaymentStore, SqlitePaymentStore};
use crate::server::ServiceKind;
use crate::{fraud, fulfillment, inventory, payment};

/// Pool size when the caller does not choose one.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Postgres,
    Sqlite,
}

impl BackendKind {
    /// Classifies a database URL by its scheme: `postgres://`/`postgresql://` → PostgreSQL;
    /// `sqlite:` (`sqlite:///abs/path.db`, `sqlite:rel.db`, `sqlite::memory:`) or anything
    /// without a scheme (a file path) → SQLite.
    pub fn of_url(url: &str) -> Result<Self, OpenError> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        if url.is_empty() {
            Err(OpenError::Url("the database URL is empty".to_owned()))
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Ok(BackendKind::Postgres)
        } else if lower.starts_with("sqlite:") {
            Ok(BackendKind::Sqlite)
        } else if let Some((scheme, _)) = url.split_once("://") {
            Err(OpenError::Url(format!(
                "unsupported database URL scheme {scheme:?}; use postgres://..., sqlite:///path/to/file.db or a file path"
            )))
        } else {
            Ok(BackendKind::Sqlite)
        }
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("could not connect to the database (check the database URL)")]
    Connect(#[source] sqlx::Error),
}

/// A participant's database: PostgreSQL or SQLite. Cheap to clone (pools are shared).
#[derive(Debug, Clone)]
pub enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl From<PgPool> for Backend {
    fn from(pool: PgPool) -> Self {
        Backend::Postgres(pool)
    }
}

impl From<SqlitePool> for Backend {
    fn from(pool: SqlitePool) -> Self {
        Backend::Sqlite(pool)
    }
}

impl Backend {
    /// Opens the database `url` names (see [`BackendKind::of_url`]) with
    /// [`DEFAULT_MAX_CONNECTIONS`]. A SQLite file is created if missing and runs in WAL mode
    /// with foreign keys and a busy timeout ([`crate::kit::sqlite`]).
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        Self::open_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`Backend::open`] with a pool size.
    pub async fn open_with(url: &str, max_connections: u32) -> Result<Self, OpenError> {
        match BackendKind::of_url(url)? {
            BackendKind::Postgres => sqlx::postgres::PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                // sqlx pings every connection it hands out by default: one more round trip
                // per business call, which is a transaction of several statements anyway. A
                // connection that died idle fails the call's first statement instead, which
                // the caller sees as unavailable and retries.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(10))
                // Every statement here reads by key. A generic plan made while a table was
                // small (a fresh stock table has a page or two) would scan it whole for good,
                // through every dead version its updates leave, as the orchestrator's store
                // found (decision 0019). With sequential scans priced out, plans stay on the
                // indexes (decision 0023).
                .connect_with(
                    sqlx::postgres::PgConnectOptions::from_str(url.trim())
                        .map_err(OpenError::Connect)?
                        .options([("enable_seqscan", "off")]),
                )
                .await
                .map(Backend::Postgres)
                .map_err(OpenError::Connect),
            BackendKind::Sqlite => {
                let options = sqlite::connect_options(url.trim()).map_err(OpenError::Connect)?;
                sqlite::connect(options, max_connections).await.map(Backend::Sqlite).map_err(OpenError::Connect)
            }
        }
    }

    /// Opens (creating if missing) the SQLite database file at `path`. Its directory must exist.
    pub async fn open_sqlite_file(path: &Path, max_connections: u32) -> Result<Self, OpenError> {
        sqlite::connect(sqlite::file_options(path), max_connections)
            .await
            .map(Backend::Sqlite)
            .map_err(OpenError::Connect)
    }

    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    /// Applies the migrations of the given services, in order.
    pub async fn migrate(&self, services: &[ServiceKind]) -> Result<(), StoreError> {
        for service in services {
            self.migrate_service(*service).await?;
        }
        Ok(())
    }

    async fn migrate_service(&self, service: ServiceKind) -> Result<(), StoreError> {
        match (self, service) {
            (Backend::Postgres(pool), ServiceKind::Payment) => payment::store::migrate(pool).await,
            (Backend::Postgres(pool), ServiceKind::Inventory) => inventory::store::migrate(pool).await,
            (Backend::Postgres(pool), ServiceKind::Fraud) => fraud::store::migrate(pool).await,
            (Backend::Postgres(pool), ServiceKind::Fulfillment) => fulfillment::store::migrate(pool).await,
            (Backend::Sqlite(pool), ServiceKind::Payment) => payment::store::sqlite::migrate(pool).await,
            (Backend::Sqlite(pool), ServiceKind::Inventory) => inventory::store::sqlite::migrate(pool).await,
            (Backend::Sqlite(pool), ServiceKind::Fraud) => fraud::store::sqlite::migrate(pool).await,
            (Backend::Sqlite(pool), ServiceKind::Fulfillment) => fulfillment::store::sqlite::migrate(pool).await,
        }
    }

    pub fn payment_store(&self) -> Arc<dyn PaymentStore> {
        match self {
            Backend::Postgres(pool) => Arc::new(PgPaymentStore::new(pool.clone())),
            Backend::Sqlite(pool) => Arc::new(SqlitePaymentStore::new(pool.clone())),
        }
    }

    pub fn inventory_store(&self) -> Arc<dyn InventoryStore> {
        match self {
            Backend::Postgres(pool) => Arc::new(PgInventoryStore::new(pool.clone())),
            Backend::Sqlite(pool) => Arc::new(SqliteInventoryStore::new(pool.clone())),
        }
    }

    pub fn fraud_store(&self) -> Arc<dyn FraudStore> {
        match self {
            Backend::Postgres(pool) => Arc::new(PgFraudStore::new(pool.clone())),
            Backend::Sqlite(pool) => Arc::new(SqliteFraudStore::new(pool.clone())),
        }
    }

    pub fn fulfillment_store(&self) -> Arc<dyn FulfillmentStore> {
        match self {
            Backend::Postgres(pool) => Arc::new(PgFulfillmentStore::new(pool.clone())),
            Backend::Sqlite(pool) => Arc::new(SqliteFulfillmentStore::new(pool.clone())),
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Backend::Postgres(pool) => pool.close().await,
            Backend::Sqlite(pool) => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        let kind = |url: &str| BackendKind::of_url(url).ok();
        assert_eq!(kind("postgres://u@h/db"), Some(BackendKind::Postgres));
        assert_eq!(kind("postgresql://u@h/db"), Some(BackendKind::Postgres));
        assert_eq!(kind("sqlite:///tmp/x.db"), Some(BackendKind::Sqlite));
        assert_eq!(kind("sqlite:data.db"), Some(BackendKind::Sqlite));
        assert_eq!(kind("sqlite::memory:"), Some(BackendKind::Sqlite));
        assert_eq!(kind("/var/lib/sagaflow/payment.db"), Some(BackendKind::Sqlite));
        assert_eq!(kind("payment.db"), Some(BackendKind::Sqlite));
        assert_eq!(kind("mysql://h/db"), None);
        assert_eq!(kind(" "), None);
    }

    #[tokio::test]
    async fn a_sqlite_file_is_created_in_wal_mode_with_foreign_keys() {
        let dir = std::env::temp_dir().join(format!("sagaflow-backend-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("x.db");
        let backend = Backend::open(&format!("sqlite://{}", path.display())).await.expect("opens");
        assert!(path.exists());
        let Backend::Sqlite(pool) = &backend else { panic!("sqlite expected") };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.expect("pragma");
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(pool).await.expect("pragma");
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(pool).await.expect("pragma");
        assert_eq!(busy, sqlite::BUSY_TIMEOUT.as_millis() as i64);
        backend.migrate(&ServiceKind::ALL).await.expect("migrates");
        backend.migrate(&ServiceKind::ALL).await.expect("migrating again changes nothing");
        backend.close().await;
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}

//! Storage failures shared by every participant's store, and the migrations of each schema.
//!
//! Each service keeps its SQL in its own `store.rs` (PostgreSQL) and `store/sqlite.rs`
//! (SQLite); what they share lives here and in [`super::sqlite`].

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// A failure of a participant's storage. None of these is a business answer: the call is
/// rolled back, nothing is stored under its idempotency key, and the caller may retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("could not apply the {schema} migrations")]
    Migrate {
        schema: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A stored row that the code cannot read back (written by a newer version, or edited by hand).
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: String, detail: String },
}

impl StoreError {
    /// Whether retrying the same call later may succeed (connection trouble, deadlock,
    /// serialization failure) as opposed to a bug or corrupt data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(err) => match err {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_) => true,
                sqlx::Error::Database(db) => {
                    // PostgreSQL: 40001 serialization_failure, 40P01 deadlock_detected,
                    // 57P01 admin_shutdown. SQLite: busy or locked past the busy timeout.
                    matches!(db.code().as_deref(), Some("40001" | "40P01" | "57P01"))
                        || super::sqlite::is_transient(db.as_ref())
                }
                _ => false,
            },
            StoreError::Migrate { .. } | StoreError::Corrupt { .. } => false,
        }
    }
}

/// Runs one schema's PostgreSQL migrator. Several components share the database and sqlx keeps one
/// `_sqlx_migrations` table, so every migrator must ignore the versions the others applied.
pub(crate) async fn run_migrator(
    pool: &PgPool,
    schema: &'static str,
    mut migrator: Migrator,
) -> Result<(), StoreError> {
    migrator.set_ignore_missing(true);
    migrator.run(pool).await.map_err(|source| StoreError::Migrate { schema, source })
}

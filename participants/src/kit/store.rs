//! Storage failures shared by every participant's store, and the migrations of each schema.
//!
//! Each service keeps its SQL in its own `store.rs` (PostgreSQL) and `store/sqlite.rs`
//! (SQLite); what they share lives here and in [`super::sqlite`].

use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::{PgPool, Postgres, Transaction};

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

/// Begins one business call's transaction holding transaction-scoped advisory locks on
/// `keys` (sorted and deduplicated by the caller, so two calls never wait in a cycle).
///
/// The locks travel with `BEGIN` in one simple-query message: one round trip instead of one
/// for `BEGIN` and one per key. Simple queries take no parameters, so each key is reduced here
/// to its 64-bit lock id (an integer literal, never text spliced into SQL). `seed` keeps each
/// service's locks apart from the others' in a shared database.
pub(crate) async fn begin_locked(
    pool: &PgPool,
    seed: i64,
    keys: &[&str],
) -> Result<Transaction<'static, Postgres>, StoreError> {
    if keys.is_empty() {
        return Ok(pool.begin().await?);
    }
    let mut sql = String::from("BEGIN");
    for key in keys {
        sql.push_str(&format!("; SELECT pg_advisory_xact_lock({})", advisory_lock_id(seed, key)));
    }
    Ok(pool.begin_with(sql).await?)
}

/// The advisory lock id of an idempotency key: the first 8 bytes of SHA-256 over the seed and
/// the key. A collision only makes two unrelated calls wait for each other.
pub(crate) fn advisory_lock_id(seed: i64, key: &str) -> i64 {
    let digest = Sha256::new().chain_update(seed.to_le_bytes()).chain_update(key.as_bytes()).finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(id)
}

#[cfg(test)]
mod tests {
    use super::advisory_lock_id;

    #[test]
    fn lock_ids_are_stable_and_separate_services_and_keys() {
        assert_eq!(advisory_lock_id(1, "k-1"), advisory_lock_id(1, "k-1"));
        assert_ne!(advisory_lock_id(1, "k-1"), advisory_lock_id(2, "k-1"));
        assert_ne!(advisory_lock_id(1, "k-1"), advisory_lock_id(1, "k-2"));
    }
}

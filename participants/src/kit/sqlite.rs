//! What the participants' SQLite backend shares: connection settings, the one way a call's
//! transaction starts, timestamps as text, migrations, and the idempotency records
//! ([`sqlite_idempotency_tx`]).
//!
//! SQLite has neither schemas nor advisory locks, so each service prefixes its tables with
//! its name (`payment_idempotency_keys`, ...) and every call's transaction starts with
//! `BEGIN IMMEDIATE`, which takes the database file's single write lock up front. That
//! serializes all writing calls on one file — calls with the same key included — which is
//! what the single-process demo needs; concurrent readers still proceed (WAL mode). A writer
//! that finds the lock taken waits up to [`BUSY_TIMEOUT`] before failing with a transient
//! error (UNAVAILABLE, retryable).
//!
//! Queries are plain runtime `sqlx::query` calls: sqlx's checked macros keep offline data
//! for one database kind per crate, and that is PostgreSQL's. The behaviour tests run
//! against both backends instead.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::idempotency::{Answer, AnswerColumns, KeyRecord, KeyRow};
use super::store::StoreError;

/// How long a call waits for another call's write transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection options for a `sqlite:` URL (`sqlite:///abs/path.db`, `sqlite:rel.db`,
/// `sqlite::memory:`) or a plain file path: the file is created if missing, WAL journal,
/// foreign keys enforced, [`BUSY_TIMEOUT`], and `synchronous = FULL` so that an answer the
/// caller received survives a power cut.
pub fn connect_options(url_or_path: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    let options = if url_or_path.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url_or_path)?
    } else {
        SqliteConnectOptions::new().filename(Path::new(url_or_path))
    };
    Ok(tune(options))
}

/// [`connect_options`] for a database file.
pub fn file_options(path: &Path) -> SqliteConnectOptions {
    tune(SqliteConnectOptions::new().filename(path))
}

fn tune(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
}

/// Opens a pool on `options`.
pub async fn connect(options: SqliteConnectOptions, max_connections: u32) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(BUSY_TIMEOUT + Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Starts one call's transaction holding the file's write lock (see the module docs).
pub async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, StoreError> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// A timestamp as stored: RFC 3339 in UTC with exactly six fractional digits, so that text
/// order is time order (`expires_at <= ?`, `ORDER BY created_at`) and a value read back
/// equals the clock's (which keeps microseconds).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Reads a timestamp written by [`timestamp`].
pub fn parse_timestamp(text: &str, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc)).map_err(|err| StoreError::Corrupt {
        what: what.to_owned(),
        detail: format!("timestamp {text:?} does not parse: {err}"),
    })
}

/// Runs one service's SQLite migrator. Like on PostgreSQL, several services may share one
/// file (and its `_sqlx_migrations` table), so each ignores the versions of the others.
pub(crate) async fn run_migrator(
    pool: &SqlitePool,
    schema: &'static str,
    mut migrator: Migrator,
) -> Result<(), StoreError> {
    migrator.set_ignore_missing(true);
    migrator.run(pool).await.map_err(|source| StoreError::Migrate { schema, source })
}

/// Whether a SQLite error is worth retrying: the file was busy or locked past the timeout.
pub(crate) fn is_transient(err: &(dyn DatabaseError + 'static)) -> bool {
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
    err.try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .and_then(|err| err.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// The idempotency record of `key` in `table`.
pub async fn key_record(conn: &mut SqliteConnection, table: &str, key: &str) -> Result<Option<KeyRecord>, StoreError> {
    let row: Option<SqliteRow> = sqlx::query(&format!(
        "SELECT method, request_hash, outcome, response, error_code, error_reason, error_message, \
         error_metadata, compensated_by FROM {table} WHERE idempotency_key = ?1"
    ))
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let row = KeyRow {
        method: row.try_get("method")?,
        request_hash: row.try_get("request_hash")?,
        outcome: row.try_get("outcome")?,
        response: row.try_get("response")?,
        error_code: row.try_get("error_code")?,
        error_reason: row.try_get("error_reason")?,
        error_message: row.try_get("error_message")?,
        error_metadata: row.try_get("error_metadata")?,
        compensated_by: row.try_get("compensated_by")?,
    };
    row.into_record(key).map(Some)
}

/// Stores the first answer of `key` in `table`.
pub async fn save_answer(
    conn: &mut SqliteConnection,
    table: &str,
    key: &str,
    method: &str,
    request_hash: &str,
    answer: &Answer,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let c = AnswerColumns::from_answer(answer);
    sqlx::query(&format!(
        "INSERT INTO {table} (idempotency_key, method, request_hash, outcome, response, error_code, \
         error_reason, error_message, error_metadata, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .bind(key)
    .bind(method)
    .bind(request_hash)
    .bind(c.outcome)
    .bind(c.response)
    .bind(c.error_code)
    .bind(c.error_reason)
    .bind(c.error_message)
    .bind(c.error_metadata)
    .bind(timestamp(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks the never-seen forward key dead in `table`.
pub async fn save_tombstone(
    conn: &mut SqliteConnection,
    table: &str,
    forward_key: &str,
    forward_method: &str,
    compensated_by: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO {table} (idempotency_key, method, outcome, compensated_by, created_at) \
         VALUES (?1, ?2, 'tombstone', ?3, ?4)"
    ))
    .bind(forward_key)
    .bind(forward_method)
    .bind(compensated_by)
    .bind(timestamp(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Implements [`IdempotencyTx`](crate::kit::idempotency::IdempotencyTx) for a service's
/// SQLite transaction type (a struct with a field `tx: sqlx::Transaction<'static,
/// sqlx::Sqlite>` begun by [`begin`]) over the table `$table`.
///
/// The key locks a call asks for at `begin` need nothing here: `BEGIN IMMEDIATE` already holds
/// the file's write lock, so no other call can read or write any key until this transaction
/// ends.
macro_rules! sqlite_idempotency_tx {
    ($ty:ty, $table:expr) => {
        #[async_trait::async_trait]
        impl $crate::kit::idempotency::IdempotencyTx for $ty {
            async fn key_record(
                &mut self,
                key: &str,
            ) -> Result<Option<$crate::kit::idempotency::KeyRecord>, $crate::kit::store::StoreError> {
                $crate::kit::sqlite::key_record(&mut self.tx, $table, key).await
            }

            async fn save_answer(
                &mut self,
                key: &str,
                method: &str,
                request_hash: &str,
                answer: &$crate::kit::idempotency::Answer,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::kit::store::StoreError> {
                $crate::kit::sqlite::save_answer(&mut self.tx, $table, key, method, request_hash, answer, now).await
            }

            async fn save_tombstone(
                &mut self,
                forward_key: &str,
                forward_method: &str,
                compensated_by: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::kit::store::StoreError> {
                $crate::kit::sqlite::save_tombstone(
                    &mut self.tx,
                    $table,
                    forward_key,
                    forward_method,
                    compensated_by,
                    now,
                )
                .await
            }

            async fn commit(self: Box<Self>) -> Result<(), $crate::kit::store::StoreError> {
                self.tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use sqlite_idempotency_tx;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn timestamps_sort_as_text_and_round_trip() {
        let early = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 5).single().expect("valid");
        let later = early + chrono::Duration::microseconds(500_000);
        let latest = early + chrono::Duration::microseconds(500_001);
        let (a, b, c) = (timestamp(early), timestamp(later), timestamp(latest));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), c.len());
        assert_eq!(parse_timestamp(&c, "t").expect("parses"), latest);
    }
}

//! SQLite implementation of [`Store`]: the embedded default of `sagaflow dev` and
//! `sagaflow demo`, one replica, durable in one file. Its semantics are those of
//! [`super::postgres`], the reference: fencing by owner and epoch (expiry alone does not
//! fence; a claim bumps the epoch), a commit as a compare-and-set on the history position (a
//! retried commit whose events are in already is acknowledged, a gap is a `Database` error),
//! a batch that lands whole or not at all.
//!
//! # Unchecked queries
//! The queries here are plain `sqlx::query`/`query_as` strings, not the checked macros: sqlx
//! keeps one crate's offline query data (`orchestrator/.sqlx/`), and `cargo sqlx prepare`
//! fills it from one `DATABASE_URL`, so one crate cannot check PostgreSQL and SQLite queries
//! both. The check is the shared store suite (`orchestrator/tests/store.rs`), which runs
//! every test against both backends; change nothing here without running it.
//!
//! # Transactions and time
//! Every write is one `BEGIN IMMEDIATE` transaction on a pool of a single connection: writers
//! of this process queue on the pool instead of spinning on `SQLITE_BUSY`, and the write lock
//! is taken at `BEGIN`, so no transaction fails upgrading a read lock. That serialization is
//! what `FOR UPDATE SKIP LOCKED` gives PostgreSQL: a claim sees every earlier commit and no
//! two claims take one execution. Reads go through their own pool and, in WAL mode, never
//! wait for the writer.
//!
//! Times come from the process clock, read once per write after its transaction began (so
//! times follow the commit order) and kept in microseconds, PostgreSQL's precision. Leases
//! are set and compared on that same clock; with one process it is also the database's.
//!
//! # Durability
//! WAL journal with `synchronous=FULL`: a commit returns only once its WAL frames are
//! fsynced. `NORMAL` would skip that fsync and survive a crash of the process but not of the
//! machine (power loss, kernel panic), losing the last commits after the engine had acted on
//! them, e.g. charged a payment whose `TaskScheduled` then vanished. The store promises that
//! a committed event is durable, so it pays the fsync (see the commit cost in the report of
//! `tests/store.rs`, `sqlite_only::commit_cost`).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaflow_language::interpreter::{EventKind, HistoryEvent, Status};
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use uuid::Uuid;

use super::batch::CommitColumns;
use super::{
    Claimed, Created, DefinitionRecord, ExecutionFilter, ExecutionRecord, InboxItem, NewExecution, PoolStats, Store,
    StoreError, Timer, TraceParent, Transition, prefix_range,
};

/// The orchestrator's SQLite migrations (`migrations/sqlite/orchestrator`). Versions this
/// migrator does not know are ignored, as in PostgreSQL, should other components keep their
/// tables in the same file.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("../migrations/sqlite/orchestrator");
    migrator.set_ignore_missing(true);
    migrator
});

/// How long a statement waits for a lock held by another connection (another process on the
/// same file, or a checkpoint) before failing with `SQLITE_BUSY` (mapped to `Unavailable`).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// History rows a single INSERT statement carries.
const HISTORY_ROWS_PER_INSERT: usize = 500;

/// Reading connections of [`SqliteStore::open`]: reads run beside the writer in WAL mode.
pub const DEFAULT_READERS: u32 = 4;

/// The columns of an [`ExecutionRow`], in its order.
macro_rules! execution_columns {
    () => {
        "id, definition_id, definition_name, definition_version, status, input, output, error, cause, \
         idempotency_key, snapshot, started_at, stopped_at, last_event_id, redrive_count, owner, lease_epoch, \
         lease_expires_at, traceparent, tracestate"
    };
}

/// The executions a claim takes (`id`, and `lease`: when its lease ran out), from the bindings
/// ?3 (now) and ?4 (limit). `claim` reads them, then updates the same set under the same write
/// lock, so both statements see one state.
macro_rules! claim_candidates {
    () => {
        "SELECT id, lease FROM (
             SELECT a.id, a.lease_expires_at AS lease
             FROM sagaflow_executions a
             WHERE a.status IN ('RUNNING', 'COMPENSATING')
               AND coalesce(a.lease_expires_at, 0) < ?3
             ORDER BY coalesce(a.lease_expires_at, 0)
             LIMIT ?4
         )
         UNION
         SELECT id, lease FROM (
             SELECT b.id, b.lease_expires_at AS lease
             FROM sagaflow_executions b
             WHERE b.id IN (SELECT i.execution_id FROM sagaflow_inbox i)
               AND coalesce(b.lease_expires_at, 0) < ?3
             LIMIT ?4
         )
         LIMIT ?4"
    };
}

/// Handles to the pools; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Every write goes through this pool, of one connection when made by [`open`](Self::open).
    writer: SqlitePool,
    /// Reads; the same pool as `writer` when made by [`from_pool`](Self::from_pool).
    reader: SqlitePool,
}

impl SqliteStore {
    /// Open (creating it and its folder if missing) the database at `path_or_url`: a file
    /// path, or a `sqlite:` URL (`sqlite:data/sagaflow.db`, `sqlite:///var/lib/sagaflow.db`).
    /// Does not migrate; call [`Store::migrate`].
    pub async fn open(path_or_url: &str) -> Result<Self, StoreError> {
        Self::open_with(path_or_url, DEFAULT_READERS).await
    }

    /// [`open`](Self::open) with at most `max_readers` reading connections (at least one).
    pub async fn open_with(path_or_url: &str, max_readers: u32) -> Result<Self, StoreError> {
        let options = connect_options(path_or_url)?;
        if let Some(folder) = options.get_filename().parent()
            && !folder.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(folder).await.map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the folder {} of the SQLite database: {e}; create it or choose another path",
                    folder.display()
                ))
            })?;
        }
        // The writer connects first: it creates the file and switches it to WAL before any
        // reader opens it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // A ping per acquire would be another round trip to the connection's thread.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error(path_or_url, e))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(max_readers.max(1))
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| open_error(path_or_url, e))?;
        Ok(Self { writer, reader })
    }

    /// Use one pool built elsewhere for reads and writes alike. Its connections should have
    /// foreign keys on, WAL and a busy timeout, as [`open`](Self::open) sets them. With more
    /// than one connection, concurrent writes wait on each other through the busy timeout
    /// (polling) rather than in the pool's queue: give it one connection for the best write
    /// latency.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { writer: pool.clone(), reader: pool }
    }

    /// The pool that writes.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Close both pools, waiting for their connections to finish.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Begin a write: the transaction, holding the database's write lock, and the time now.
    async fn write(&self) -> Result<(Transaction<'static, Sqlite>, i64), StoreError> {
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
        Ok((tx, Utc::now().timestamp_micros()))
    }
}

/// The connection settings every connection of the store gets.
fn connect_options(path_or_url: &str) -> Result<SqliteConnectOptions, StoreError> {
    if path_or_url.contains(":memory:") || path_or_url.contains("mode=memory") {
        return Err(StoreError::Database(format!(
            "{path_or_url}: the store must be durable; give a file path such as sagaflow.db"
        )));
    }
    let options = if path_or_url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(path_or_url).map_err(|e| {
            StoreError::Database(format!("{path_or_url} is not a SQLite URL ({e}); use sqlite:PATH or a plain path"))
        })?
    } else {
        SqliteConnectOptions::new().filename(path_or_url)
    };
    if options.get_filename().as_os_str().is_empty() {
        return Err(StoreError::Database(format!("{path_or_url:?} names no file; give a path such as sagaflow.db")));
    }
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // See "Durability" in the module documentation.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true))
}

fn open_error(path_or_url: &str, e: sqlx::Error) -> StoreError {
    match db_error(e) {
        StoreError::Unavailable(m) => {
            StoreError::Unavailable(format!("opening the SQLite database {path_or_url}: {m}"))
        }
        StoreError::Database(m) => StoreError::Database(format!("opening the SQLite database {path_or_url}: {m}")),
        other => other,
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_error(e),
            other => StoreError::Database(format!("migrating the orchestrator schema: {other}")),
        })
    }

    async fn put_definition(
        &self,
        name: &str,
        content: &str,
        hash: &str,
    ) -> Result<(DefinitionRecord, bool), StoreError> {
        let (mut tx, now) = self.write().await?;
        let latest: Option<DefinitionRow> = sqlx::query_as(
            "SELECT id, name, version, content, hash, created_at
             FROM sagaflow_definitions
             WHERE name = ?1
             ORDER BY version DESC
             LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(latest) = &latest
            && latest.content == content
        {
            return Ok((latest.clone().into_record()?, false));
        }
        let version = latest.map_or(1, |l| l.version + 1);
        let row: DefinitionRow = sqlx::query_as(
            "INSERT INTO sagaflow_definitions (name, version, content, hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             RETURNING id, name, version, content, hash, created_at",
        )
        .bind(name)
        .bind(version)
        .bind(content)
        .bind(hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok((row.into_record()?, true))
    }

    async fn get_definition(&self, name: &str, version: Option<u32>) -> Result<Option<DefinitionRecord>, StoreError> {
        let row: Option<DefinitionRow> = sqlx::query_as(
            "SELECT id, name, version, content, hash, created_at
             FROM sagaflow_definitions
             WHERE name = ?1 AND (?2 IS NULL OR version = ?2)
             ORDER BY version DESC
             LIMIT 1",
        )
        .bind(name)
        .bind(version.map(i64::from))
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error)?;
        row.map(DefinitionRow::into_record).transpose()
    }

    async fn get_definition_by_id(&self, id: i64) -> Result<Option<DefinitionRecord>, StoreError> {
        let row: Option<DefinitionRow> = sqlx::query_as(
            "SELECT id, name, version, content, hash, created_at
             FROM sagaflow_definitions
             WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error)?;
        row.map(DefinitionRow::into_record).transpose()
    }

    async fn list_definitions(&self, name: Option<&str>) -> Result<Vec<DefinitionRecord>, StoreError> {
        let rows: Vec<DefinitionRow> = sqlx::query_as(
            "SELECT id, name, version, content, hash, created_at
             FROM sagaflow_definitions
             WHERE ?1 IS NULL OR name = ?1
             ORDER BY name, version",
        )
        .bind(name)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(DefinitionRow::into_record).collect()
    }

    async fn create_execution(&self, new: NewExecution, first: Transition) -> Result<Created, StoreError> {
        let (c, first, last_event_id, redrives) = CommitColumns::for_creation(&new, first)?;

        let (mut tx, now) = self.write().await?;
        let lease_expires_at = lease_end(now, new.lease)?;
        let definition: Option<(String, i64)> =
            sqlx::query_as("SELECT name, version FROM sagaflow_definitions WHERE id = ?1")
                .bind(new.definition_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let Some((definition_name, definition_version)) = definition else {
            return Err(StoreError::DefinitionNotFound(format!("id {}", new.definition_id)));
        };

        // ON CONFLICT without a target covers the primary key and the partial unique index
        // on (definition name, idempotency key) alike.
        let inserted = sqlx::query(
            "INSERT INTO sagaflow_executions (
                 id, definition_id, definition_name, definition_version, status, input, output, error, cause,
                 idempotency_key, request_hash, snapshot, started_at, stopped_at, last_event_id, redrive_count,
                 owner, lease_epoch, lease_expires_at, traceparent, tracestate
             )
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, 1, ?18, ?19, ?20)
             ON CONFLICT DO NOTHING",
        )
        .bind(new.id)
        .bind(new.definition_id)
        .bind(&definition_name)
        .bind(definition_version)
        .bind(first.status.as_str())
        .bind(new.input.to_string())
        .bind(first.output.as_ref().map(Value::to_string))
        .bind(&first.error)
        .bind(&first.cause)
        .bind(&new.idempotency_key)
        .bind(&new.request_hash)
        .bind(first.snapshot.get())
        .bind(now)
        .bind(first.status.is_terminal().then_some(now))
        .bind(last_event_id)
        .bind(redrives)
        .bind((!first.release).then_some(&new.owner))
        .bind((!first.release).then_some(lease_expires_at))
        .bind(new.trace_parent.as_ref().map(|t| t.traceparent.as_str()))
        .bind(new.trace_parent.as_ref().and_then(|t| t.tracestate.as_deref()))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;

        if inserted.rows_affected() == 0 {
            // The id match wins over the key match.
            let existing: Option<(Uuid, String)> = sqlx::query_as(
                "SELECT id, request_hash
                 FROM sagaflow_executions
                 WHERE id = ?1 OR (definition_name = ?2 AND idempotency_key = ?3)
                 ORDER BY id = ?1 DESC
                 LIMIT 1",
            )
            .bind(new.id)
            .bind(&definition_name)
            .bind(&new.idempotency_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            let Some((id, request_hash)) = existing else {
                return Err(StoreError::Database(format!(
                    "execution {} was refused as a duplicate, but no execution has its id or key",
                    new.id
                )));
            };
            return Ok(Created::Existing { id, same_request: request_hash == new.request_hash });
        }

        let applied = HashSet::from([new.id]);
        write_history_and_timers(&mut tx, &c, &applied).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Created::New { epoch: 1 })
    }

    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let c = CommitColumns::build(transitions)?;
        let (mut tx, now) = self.write().await?;

        // The fenced compare-and-set of every execution row first; dropping `tx` on an error
        // rolls back whatever the batch did so far.
        let mut applied = HashSet::new();
        let mut gap = None;
        for i in 0..c.ids.len() {
            let id = c.ids[i];
            let updated = sqlx::query(
                "UPDATE sagaflow_executions SET
                     status = ?1,
                     snapshot = ?2,
                     output = ?3,
                     error = ?4,
                     cause = ?5,
                     last_event_id = coalesce(?6, last_event_id),
                     stopped_at = CASE WHEN ?7 THEN coalesce(stopped_at, ?8) END,
                     redrive_count = redrive_count + ?9,
                     owner = CASE WHEN ?10 THEN NULL ELSE owner END,
                     lease_expires_at = CASE WHEN ?10 THEN NULL ELSE lease_expires_at END
                 WHERE id = ?11
                   AND owner = ?12
                   AND lease_epoch = ?13
                   AND (?14 IS NULL OR last_event_id = ?14 - 1)",
            )
            .bind(&c.statuses[i])
            .bind(&c.snapshots[i])
            .bind(&c.outputs[i])
            .bind(&c.errors[i])
            .bind(&c.causes[i])
            .bind(c.last_event_ids[i])
            .bind(c.terminal[i])
            .bind(now)
            .bind(c.redrives[i])
            .bind(c.release[i])
            .bind(id)
            .bind(&c.owners[i])
            .bind(c.epochs[i])
            .bind(c.first_event_ids[i])
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            if updated.rows_affected() == 1 {
                applied.insert(id);
                continue;
            }

            // Not applied: why, judged on the row as it is (nothing of this batch touched it).
            let row: Option<(Option<String>, i64, i64)> =
                sqlx::query_as("SELECT owner, lease_epoch, last_event_id FROM sagaflow_executions WHERE id = ?1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            let Some((owner, epoch, last_event_id)) = row else {
                return Err(StoreError::LeaseLost(id));
            };
            if owner.as_deref() != Some(c.owners[i].as_str()) || epoch != c.epochs[i] {
                // A lost lease wins over any gap elsewhere in the batch, as in PostgreSQL.
                return Err(StoreError::LeaseLost(id));
            }
            match (c.first_event_ids[i], c.last_event_ids[i]) {
                // Its events are in the history already: a retry of a commit that landed.
                (_, Some(last)) if last_event_id >= last => {}
                (Some(first), _) if last_event_id != first - 1 => {
                    gap.get_or_insert(id);
                }
                _ => return Err(StoreError::LeaseLost(id)),
            }
        }
        if let Some(id) = gap {
            return Err(StoreError::Database(format!(
                "history of execution {id} does not continue where the transition starts"
            )));
        }

        write_history_and_timers(&mut tx, &c, &applied).await?;
        for (execution_id, inbox_id) in c.inbox_execution_ids.iter().zip(&c.inbox_ids) {
            if !applied.contains(execution_id) {
                continue;
            }
            sqlx::query("DELETE FROM sagaflow_inbox WHERE id = ?1 AND execution_id = ?2")
                .bind(inbox_id)
                .bind(execution_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn claim(&self, owner: &str, lease: Duration, limit: u32) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (mut tx, now) = self.write().await?;
        let lease_expires_at = lease_end(now, lease)?;
        // Two candidate sets, as in PostgreSQL: active executions (through the status index,
        // whose active ranges hold only the work in flight), and executions with waiting
        // inbox requests through the (small) inbox. The write lock makes the lease test
        // final: no other claim or commit runs until this transaction ends.
        let previous: Vec<(Uuid, Option<i64>)> = sqlx::query_as(concat!(claim_candidates!()))
            .bind(owner)
            .bind(lease_expires_at)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        let previous: std::collections::HashMap<Uuid, Option<i64>> = previous.into_iter().collect();
        let rows: Vec<ExecutionRow> = sqlx::query_as(concat!(
            "UPDATE sagaflow_executions SET
                 owner = ?1,
                 lease_epoch = lease_epoch + 1,
                 lease_expires_at = ?2
             WHERE id IN (SELECT id FROM (",
            claim_candidates!(),
            "))
             RETURNING ",
            execution_columns!()
        ))
        .bind(owner)
        .bind(lease_expires_at)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;

        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let epoch = row.lease_epoch;
            let record = row.into_record()?;
            let timers: Vec<(i64, i64)> =
                sqlx::query_as("SELECT work_id, due_at FROM sagaflow_timers WHERE execution_id = ?1 ORDER BY work_id")
                    .bind(record.id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?;
            let timers = timers
                .into_iter()
                .map(|(work_id, due)| Ok(Timer { work_id: to_u64(work_id, "timer work id")?, due: time(due)? }))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let inbox: Vec<InboxRow> = sqlx::query_as(
                "SELECT id, execution_id, request, created_at FROM sagaflow_inbox WHERE execution_id = ?1 ORDER BY id",
            )
            .bind(record.id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            let inbox = inbox.into_iter().map(InboxRow::into_item).collect::<Result<Vec<_>, _>>()?;
            let previous_lease_expiry = previous.get(&record.id).copied().flatten().map(time).transpose()?;
            claimed.push(Claimed { record, epoch, timers, inbox, previous_lease_expiry });
        }
        tx.commit().await.map_err(db_error)?;
        claimed.sort_by_key(|c| c.record.id);
        Ok(claimed)
    }

    async fn renew(&self, owner: &str, held: &[(Uuid, i64)], lease: Duration) -> Result<Vec<Uuid>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let (mut tx, now) = self.write().await?;
        let lease_expires_at = lease_end(now, lease)?;
        let mut lost = Vec::new();
        // Same rule as a commit: the lease is ours while owner and epoch match, expired or not.
        for (id, epoch) in held {
            let renewed = sqlx::query(
                "UPDATE sagaflow_executions SET lease_expires_at = ?1
                 WHERE id = ?2 AND owner = ?3 AND lease_epoch = ?4",
            )
            .bind(lease_expires_at)
            .bind(id)
            .bind(owner)
            .bind(epoch)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            if renewed.rows_affected() == 0 {
                lost.push(*id);
            }
        }
        tx.commit().await.map_err(db_error)?;
        Ok(lost)
    }

    async fn release(&self, owner: &str, held: &[(Uuid, i64)]) -> Result<(), StoreError> {
        if held.is_empty() {
            return Ok(());
        }
        let (mut tx, _) = self.write().await?;
        // The epoch stays: the next claim bumps it, which is what fences this owner.
        for (id, epoch) in held {
            sqlx::query(
                "UPDATE sagaflow_executions SET owner = NULL, lease_expires_at = NULL
                 WHERE id = ?1 AND owner = ?2 AND lease_epoch = ?3",
            )
            .bind(id)
            .bind(owner)
            .bind(epoch)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn post_request(&self, execution_id: Uuid, request: Value) -> Result<i64, StoreError> {
        // No NOTIFY: the one replica polls its inbox (`take_inbox`).
        let (mut tx, now) = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sagaflow_inbox (execution_id, request, created_at)
             VALUES (?1, ?2, ?3)
             RETURNING id",
        )
        .bind(execution_id)
        .bind(request.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::ExecutionNotFound(execution_id),
            _ => db_error(e),
        })?;
        tx.commit().await.map_err(db_error)?;
        Ok(id)
    }

    async fn take_inbox(&self, owner: &str) -> Result<Vec<InboxItem>, StoreError> {
        // Driven by the inbox, which holds only unconsumed requests. Requests stay until a
        // commit consumes them, so the caller sees them again on the next call.
        let rows: Vec<InboxRow> = sqlx::query_as(
            "SELECT i.id, i.execution_id, i.request, i.created_at
             FROM sagaflow_inbox i
             JOIN sagaflow_executions e ON e.id = i.execution_id
             WHERE e.owner = ?1
             ORDER BY i.id",
        )
        .bind(owner)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(InboxRow::into_item).collect()
    }

    async fn get_execution(&self, id: Uuid) -> Result<Option<ExecutionRecord>, StoreError> {
        let row: Option<ExecutionRow> =
            sqlx::query_as(concat!("SELECT ", execution_columns!(), " FROM sagaflow_executions WHERE id = ?1"))
                .bind(id)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_error)?;
        row.map(ExecutionRow::into_record).transpose()
    }

    async fn find_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        let Some((low, high)) = prefix_range(prefix) else {
            return Ok(Vec::new());
        };
        sqlx::query_scalar("SELECT id FROM sagaflow_executions WHERE id BETWEEN ?1 AND ?2 ORDER BY id LIMIT ?3")
            .bind(low)
            .bind(high)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        // Only the filters given become terms, so SQLite plans for exactly them (status,
        // definition or time index) instead of a generic `? IS NULL OR ...` statement.
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM sagaflow_executions WHERE true"
        ));
        if !filter.statuses.is_empty() {
            query.push(" AND status IN (");
            let mut statuses = query.separated(", ");
            for status in &filter.statuses {
                statuses.push_bind(status.as_str());
            }
            query.push(")");
        }
        if let Some(name) = &filter.definition_name {
            query.push(" AND definition_name = ").push_bind(name.clone());
        }
        if let Some(after) = filter.started_after {
            query.push(" AND started_at >= ").push_bind(after.timestamp_micros());
        }
        if let Some(before) = filter.started_before {
            query.push(" AND started_at < ").push_bind(before.timestamp_micros());
        }
        if let Some(prefix) = &filter.id_prefix {
            let Some((low, high)) = prefix_range(prefix) else {
                return Ok(Vec::new());
            };
            query.push(" AND id BETWEEN ").push_bind(low).push(" AND ").push_bind(high);
        }
        if let Some((started_at, id)) = filter.after {
            query.push(" AND (started_at, id) < (").push_bind(started_at.timestamp_micros());
            query.push(", ").push_bind(id).push(")");
        }
        query.push(" ORDER BY started_at DESC, id DESC LIMIT ").push_bind(i64::from(filter.limit));
        let rows: Vec<ExecutionRow> = query.build_query_as().fetch_all(&self.reader).await.map_err(db_error)?;
        rows.into_iter().map(ExecutionRow::into_record).collect()
    }

    async fn count_with_status(&self, status: Status) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT count(*) FROM sagaflow_executions WHERE status = ?1")
            .bind(status.as_str())
            .fetch_one(&self.reader)
            .await
            .map_err(db_error)
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        // The readers' pool: the writer is a single connection, busy or not.
        Some(PoolStats {
            size: self.reader.size(),
            idle: u32::try_from(self.reader.num_idle()).unwrap_or(u32::MAX),
            max: self.reader.options().get_max_connections(),
        })
    }

    async fn history(&self, id: Uuid, after: u64, limit: u32) -> Result<Vec<HistoryEvent>, StoreError> {
        // Past the largest INTEGER there is nothing left to read.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let rows: Vec<HistoryRow> = sqlx::query_as(
            r#"SELECT id, "timestamp", type AS kind, state, details, cause
               FROM sagaflow_history
               WHERE execution_id = ?1 AND id > ?2
               ORDER BY id
               LIMIT ?3"#,
        )
        .bind(id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|r| {
                let kind: EventKind = serde_json::from_value(Value::String(r.kind.clone())).map_err(|_| {
                    StoreError::Corrupt(format!("execution {id}: unknown history event type {}", r.kind))
                })?;
                let details = r.details.as_deref().map(|d| json(d, "event details")).transpose()?;
                let cause = r
                    .cause
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("execution {id}: cause of event {}: {e}", r.id)))?;
                Ok(HistoryEvent {
                    id: to_u64(r.id, "history event id")?,
                    timestamp_ms: r.timestamp.div_euclid(1000),
                    kind,
                    state: r.state,
                    details: details.unwrap_or(Value::Null),
                    cause,
                })
            })
            .collect()
    }
}

/// Insert the history events and apply the timer changes of the executions in `applied`.
async fn write_history_and_timers(
    tx: &mut Transaction<'static, Sqlite>,
    c: &CommitColumns,
    applied: &HashSet<Uuid>,
) -> Result<(), StoreError> {
    // One multi-row INSERT per chunk of events: a statement is a round trip to the
    // connection's thread. 7 parameters a row stay far below SQLite's 32766.
    let e = &c.events;
    let rows: Vec<usize> = (0..e.ids.len()).filter(|i| applied.contains(&e.execution_ids[*i])).collect();
    for chunk in rows.chunks(HISTORY_ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            r#"INSERT INTO sagaflow_history (execution_id, id, "timestamp", type, state, details, cause) "#,
        );
        insert.push_values(chunk, |mut row, &i| {
            row.push_bind(e.execution_ids[i])
                .push_bind(e.ids[i])
                .push_bind(e.timestamps[i].timestamp_micros())
                .push_bind(e.types[i].clone())
                .push_bind(e.states[i].clone())
                .push_bind(e.details[i].as_deref())
                .push_bind(e.causes[i].as_deref());
        });
        insert.build().execute(&mut **tx).await.map_err(db_error)?;
    }
    for i in 0..c.timer_add_work_ids.len() {
        if !applied.contains(&c.timer_add_execution_ids[i]) {
            continue;
        }
        sqlx::query(
            "INSERT INTO sagaflow_timers (execution_id, work_id, due_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (execution_id, work_id) DO UPDATE SET due_at = excluded.due_at",
        )
        .bind(c.timer_add_execution_ids[i])
        .bind(c.timer_add_work_ids[i])
        .bind(c.timer_add_due[i].timestamp_micros())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    for i in 0..c.timer_remove_work_ids.len() {
        if !applied.contains(&c.timer_remove_execution_ids[i]) {
            continue;
        }
        sqlx::query("DELETE FROM sagaflow_timers WHERE execution_id = ?1 AND work_id = ?2")
            .bind(c.timer_remove_execution_ids[i])
            .bind(c.timer_remove_work_ids[i])
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// A row of `sagaflow_definitions` as stored.
#[derive(Clone, sqlx::FromRow)]
struct DefinitionRow {
    id: i64,
    name: String,
    version: i64,
    content: String,
    hash: String,
    created_at: i64,
}

impl DefinitionRow {
    fn into_record(self) -> Result<DefinitionRecord, StoreError> {
        Ok(DefinitionRecord {
            id: self.id,
            version: u32::try_from(self.version)
                .map_err(|_| StoreError::Corrupt(format!("definition {}: version {}", self.name, self.version)))?,
            name: self.name,
            content: self.content,
            hash: self.hash,
            created_at: time(self.created_at)?,
        })
    }
}

/// A row of `sagaflow_executions` as stored, in the order of `execution_columns!`.
#[derive(sqlx::FromRow)]
struct ExecutionRow {
    id: Uuid,
    definition_id: i64,
    definition_name: String,
    definition_version: i64,
    status: String,
    input: String,
    output: Option<String>,
    error: Option<String>,
    cause: Option<String>,
    idempotency_key: Option<String>,
    snapshot: String,
    started_at: i64,
    stopped_at: Option<i64>,
    last_event_id: i64,
    redrive_count: i64,
    owner: Option<String>,
    lease_epoch: i64,
    lease_expires_at: Option<i64>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl ExecutionRow {
    fn into_record(self) -> Result<ExecutionRecord, StoreError> {
        let id = self.id;
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("execution {id}: {what}: {e}"));
        let status = Status::parse(&self.status).ok_or_else(|| corrupt("unknown status", &self.status))?;
        Ok(ExecutionRecord {
            id,
            definition_id: self.definition_id,
            definition_name: self.definition_name,
            definition_version: u32::try_from(self.definition_version)
                .map_err(|e| corrupt("definition version", &e))?,
            status,
            input: json(&self.input, "input")?,
            output: self.output.as_deref().map(|o| json(o, "output")).transpose()?,
            error: self.error,
            cause: self.cause,
            idempotency_key: self.idempotency_key,
            snapshot: json(&self.snapshot, "snapshot")?,
            started_at: time(self.started_at)?,
            stopped_at: self.stopped_at.map(time).transpose()?,
            last_event_id: to_u64(self.last_event_id, "last event id")?,
            redrive_count: u32::try_from(self.redrive_count).map_err(|e| corrupt("redrive count", &e))?,
            owner: self.owner,
            lease_expires_at: self.lease_expires_at.map(time).transpose()?,
            trace_parent: self.traceparent.map(|traceparent| TraceParent { traceparent, tracestate: self.tracestate }),
        })
    }
}

/// A row of `sagaflow_history` as stored.
#[derive(sqlx::FromRow)]
struct HistoryRow {
    id: i64,
    timestamp: i64,
    kind: String,
    state: Option<String>,
    details: Option<String>,
    cause: Option<String>,
}

/// A row of `sagaflow_inbox` as stored.
#[derive(sqlx::FromRow)]
struct InboxRow {
    id: i64,
    execution_id: Uuid,
    request: String,
    created_at: i64,
}

impl InboxRow {
    fn into_item(self) -> Result<InboxItem, StoreError> {
        Ok(InboxItem {
            id: self.id,
            execution_id: self.execution_id,
            request: json(&self.request, "inbox request")?,
            created_at: time(self.created_at)?,
        })
    }
}

/// When a lease taken at `now` (microseconds) for `lease` ends.
fn lease_end(now: i64, lease: Duration) -> Result<i64, StoreError> {
    i64::try_from(lease.as_micros())
        .ok()
        .and_then(|lease| now.checked_add(lease))
        .filter(|end| DateTime::from_timestamp_micros(*end).is_some())
        .ok_or_else(|| StoreError::Database(format!("a lease of {lease:?} ends past the representable time")))
}

/// A stored time (microseconds since the Unix epoch, UTC).
fn time(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("time {micros} µs out of range")))
}

fn json(text: &str, what: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored {what} is not JSON: {e}")))
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

/// Map a sqlx error: what a retry can cure (the pool exhausted or closed, the file locked by
/// another process past the busy timeout, an I/O failure or a full disk) is `Unavailable`;
/// the rest `Database`.
fn db_error(e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            db.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(|code| transient_result_code(code & 0xff))
        }
        _ => false,
    };
    if transient { StoreError::Unavailable(e.to_string()) } else { StoreError::Database(e.to_string()) }
}

/// Primary SQLite result codes after which the same request can succeed: SQLITE_BUSY (5),
/// SQLITE_LOCKED (6), SQLITE_IOERR (10), SQLITE_FULL (13), SQLITE_CANTOPEN (14) and
/// SQLITE_PROTOCOL (15, a WAL lock race).
fn transient_result_code(primary: i32) -> bool {
    matches!(primary, 5 | 6 | 10 | 13 | 14 | 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls_name_files_and_memory_is_refused() {
        let file = |s: &str| connect_options(s).expect("valid").get_filename().to_path_buf();
        assert_eq!(file("data/sagaflow.db"), std::path::Path::new("data/sagaflow.db"));
        assert_eq!(file("sqlite:data/sagaflow.db"), std::path::Path::new("data/sagaflow.db"));
        assert_eq!(file("sqlite:///var/lib/sagaflow.db"), std::path::Path::new("/var/lib/sagaflow.db"));
        assert!(connect_options("sqlite::memory:").is_err());
        assert!(connect_options("").is_err());
    }

    #[test]
    fn busy_and_io_errors_are_transient() {
        assert!(transient_result_code(5));
        assert!(transient_result_code(517 & 0xff), "SQLITE_BUSY_SNAPSHOT");
        assert!(!transient_result_code(2067 & 0xff), "SQLITE_CONSTRAINT_UNIQUE");
        assert!(matches!(db_error(sqlx::Error::PoolTimedOut), StoreError::Unavailable(_)));
        assert!(matches!(db_error(sqlx::Error::RowNotFound), StoreError::Database(_)));
    }

    #[test]
    fn leases_end_in_range() {
        assert_eq!(lease_end(1_000, Duration::from_millis(2)).expect("in range"), 3_000);
        assert!(lease_end(0, Duration::MAX).is_err());
    }
}

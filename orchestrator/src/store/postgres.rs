//! PostgreSQL implementation of [`Store`]: the production backend, shared by every replica.
//! Every write is one SQL statement, so one round trip and its own transaction (a start that
//! finds an existing execution, or a lone commit that was refused, reads it with a second);
//! leases run on the database clock.
//!
//! # Fencing
//! A commit applies to an execution only if the row still names the writer's `owner` and
//! `lease_epoch`. Expiry alone does not fence: an expired lease that nobody has taken yet
//! still commits, because only a claim (which bumps the epoch) hands the execution to
//! someone else. A released execution has no owner, so nothing commits until it is claimed
//! again. If any transition of a batch is fenced, the statement raises and nothing of the
//! batch lands. A commit is also a compare-and-set on the history position (its first
//! event must follow `last_event_id`), which makes retrying a commit whose outcome was lost
//! with the connection safe: a transition already in the history is acknowledged, not
//! written twice.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaflow_language::interpreter::{EventKind, HistoryEvent, Status};
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgListener, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::batch::{CommitColumns, CreationColumns};
use super::lane::Lane;
use super::{
    Claimed, Created, DefinitionRecord, ExecutionFilter, ExecutionRecord, InboxAnnouncements, InboxItem, NewExecution,
    PoolStats, Store, StoreError, Timer, TraceParent, Transition, prefix_range,
};

/// The `LISTEN` channel on which every new inbox request is announced; the payload is the
/// execution id. A trigger on `sagaflow.inbox` sends it, so the name is also in the migration.
pub const INBOX_CHANNEL: &str = "sagaflow_inbox";

/// The orchestrator's migrations (`migrations/orchestrator`). Other components (the demo
/// participants) keep their migrations in the same `_sqlx_migrations` table, so versions
/// this migrator does not know are ignored rather than reported as missing.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("../migrations/orchestrator");
    migrator.set_ignore_missing(true);
    migrator
});

/// SQLSTATE raised by `sagaflow.commit_verdict` for a fenced transition.
const SQLSTATE_LEASE_LOST: &str = "SF001";
/// SQLSTATE raised by `sagaflow.commit_verdict` for events that do not continue the history.
const SQLSTATE_HISTORY_GAP: &str = "SF002";
/// How often a write that lost a race with a concurrent insert of the same key is retried.
/// Each lost round means another writer won, so this bounds the writers racing at once.
const INSERT_RACE_RETRIES: usize = 16;

/// A handle to the pool; cheap to clone. Clones share the pool and the two lanes that the
/// group commits of transitions and of new executions write through.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    commit_lane: Arc<Lane>,
    create_lane: Arc<Lane>,
}

impl PostgresStore {
    /// Connect a pool of at most `max_connections` to `url` (`postgres://...`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        // Every statement of the store finds its rows by key (an execution's id, its history
        // range, the claimable index). PostgreSQL plans a prepared statement once per
        // connection and keeps a generic plan; planned while `executions` was small (a fresh
        // database), the commit joined its transitions to a sequential scan of the table and
        // kept doing so as the table grew: at one saga in flight the p50 went from 5 ms to
        // 19 ms with 5,000 executions (`sagaflow bench`). With sequential scans priced out
        // for our own sessions the plan uses the primary key whatever the table's size
        // (decision 0019).
        let options = PgConnectOptions::from_str(url.trim()).map_err(db_error)?.options([("enable_seqscan", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // sqlx pings every connection it hands out by default: a second round trip per
            // commit. A connection that died idle fails its statement instead, which maps to
            // `Unavailable`, and the caller's retry gets a fresh one.
            .test_before_acquire(false)
            // During an outage a caller should hear "unavailable" in seconds, not after
            // sqlx's default 30 s; the engine retries its commits on its own.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Ok(Self::from_pool(pool))
    }

    /// Use a pool built elsewhere. For commit latency, build it as [`connect`](Self::connect)
    /// does, with `test_before_acquire(false)` and `enable_seqscan=off`.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool, commit_lane: Arc::default(), create_lane: Arc::default() }
    }

    /// The pool, e.g. to `LISTEN` on [`INBOX_CHANNEL`].
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// `LISTEN` on [`INBOX_CHANNEL`].
struct InboxListener(PgListener);

#[async_trait]
impl InboxAnnouncements for InboxListener {
    async fn next(&mut self) -> Result<bool, StoreError> {
        // `None`: the connection was lost, and sqlx has connected and listened again.
        Ok(self.0.try_recv().await.map_err(db_error)?.is_some())
    }
}

impl PostgresStore {
    /// The commit of a lone transition without inbox requests: what one execution in flight
    /// commits at every step. The batch statement would do the same, but it pays for its
    /// generality (thirteen arrays joined back to the rows, empty timer and inbox parts, the
    /// verdict): 0.03-0.08 ms more per commit at one client, and 0.1 ms more for a step that
    /// arms or clears a timer (every end of a definition with `TimeoutSeconds`). Nothing of
    /// the transition is written unless the fenced update applies, so a refusal has nothing
    /// to roll back, and its reason is read afterwards, on the row as it is then.
    async fn commit_one(&self, c: &CommitColumns) -> Result<(), StoreError> {
        let id = c.ids[0];
        let first_event_id = c.first_event_ids[0];
        let last_event_id = c.last_event_ids[0];
        let mut lane = self.commit_lane.get(&self.pool).await.map_err(db_error)?;
        // The timer parts cost next to nothing when empty (PostgreSQL's log at one saga in
        // flight: 0.134 ms of execution for a transition without timers in a statement
        // without them, about 0.138 ms with them), so one text serves every lone transition.
        // `build` nets each work id to one addition or one removal, so the two timer parts
        // never touch the same row.
        let result = sqlx::query_scalar!(
            r#"
            WITH applied AS (
                UPDATE sagaflow.executions e SET
                    status = $4,
                    snapshot = $5,
                    output = $6,
                    error = $7,
                    cause = $8,
                    last_event_id = coalesce($10, e.last_event_id),
                    stopped_at = CASE WHEN $11 THEN coalesce(e.stopped_at, now()) END,
                    redrive_count = e.redrive_count + $13,
                    owner = CASE WHEN $12 THEN NULL ELSE e.owner END,
                    lease_expires_at = CASE WHEN $12 THEN NULL ELSE e.lease_expires_at END
                WHERE e.id = $1
                  AND e.owner = $2
                  AND e.lease_epoch = $3
                  AND ($9::int8 IS NULL OR e.last_event_id = $9 - 1)
                RETURNING e.id
            ),
            history AS (
                INSERT INTO sagaflow.history (execution_id, id, "timestamp", type, state, details, cause)
                SELECT $1, h.id, h.at, h.type, h.state, h.details, h.cause
                FROM UNNEST($14::int8[], $15::timestamptz[], $16::text[], $17::text[], $18::text[],
                            $19::text[])
                    AS h(id, at, type, state, details, cause)
                WHERE EXISTS (SELECT 1 FROM applied)
            ),
            timers_added AS (
                INSERT INTO sagaflow.timers (execution_id, work_id, due_at)
                SELECT $1, a.work_id, a.due_at
                FROM UNNEST($20::int8[], $21::timestamptz[]) AS a(work_id, due_at)
                WHERE EXISTS (SELECT 1 FROM applied)
                ON CONFLICT (execution_id, work_id) DO UPDATE SET due_at = EXCLUDED.due_at
            ),
            timers_removed AS (
                DELETE FROM sagaflow.timers x
                WHERE x.execution_id = $1
                  AND x.work_id = ANY($22::int8[])
                  AND EXISTS (SELECT 1 FROM applied)
            )
            SELECT count(*) AS "applied!" FROM applied
            "#,
            id,
            c.owners[0],
            c.epochs[0],
            c.statuses[0],
            c.snapshots[0],
            c.outputs[0],
            c.errors[0],
            c.causes[0],
            first_event_id,
            last_event_id,
            c.terminal[0],
            c.release[0],
            c.redrives[0],
            &c.events.ids,
            &c.events.timestamps,
            &c.events.types,
            &c.events.states as _,
            &c.events.details as _,
            &c.events.causes as _,
            &c.timer_add_work_ids,
            &c.timer_add_due,
            &c.timer_remove_work_ids,
        )
        .fetch_one(lane.conn())
        .await;
        lane.settle(&result);
        if result.map_err(db_error)? == 1 {
            return Ok(());
        }
        // Not applied: judged as the batch statement's verdict judges it.
        let row =
            sqlx::query!(r#"SELECT owner, lease_epoch, last_event_id FROM sagaflow.executions WHERE id = $1"#, id,)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        let Some(row) = row else { return Err(StoreError::LeaseLost(id)) };
        if row.owner.as_deref() != Some(c.owners[0].as_str()) || row.lease_epoch != c.epochs[0] {
            return Err(StoreError::LeaseLost(id));
        }
        // Its events are in the history already: a retry of a commit that landed.
        if last_event_id.is_some_and(|last| row.last_event_id >= last) {
            return Ok(());
        }
        if let Some(first) = first_event_id
            && row.last_event_id != first - 1
        {
            return Err(StoreError::Database(format!(
                "history of execution {id} does not continue where the transition starts"
            )));
        }
        // The lease was ours, and is again, but the row changed under us: a claim won.
        Err(StoreError::LeaseLost(id))
    }

    /// [`Self::insert_new`] for one start, with scalar parameters: what a start costs when
    /// nothing else is starting (PostgreSQL executes it in 0.24 ms at one client, the batch
    /// form in 0.31 ms). Returns whether the row went in.
    async fn insert_one(&self, c: &CreationColumns) -> Result<bool, StoreError> {
        let query = sqlx::query_scalar!(
            r#"
            WITH created AS (
                INSERT INTO sagaflow.executions (
                    id, definition_id, definition_name, definition_version, status, input,
                    output, error, cause, idempotency_key, request_hash, snapshot, stopped_at,
                    last_event_id, redrive_count, owner, lease_epoch, lease_expires_at,
                    traceparent, tracestate
                )
                SELECT $1::uuid, d.id, d.name, d.version, $3::text, $4::text,
                    $5::text, $6::text, $7::text, $8::text, $9::text, $10::text,
                    CASE WHEN $11::bool THEN now() END,
                    $12::int8, $13::int4,
                    CASE WHEN $14::bool THEN NULL ELSE $15::text END,
                    1,
                    CASE WHEN $14::bool THEN NULL ELSE now() + make_interval(secs => $16::float8) END,
                    $17::text, $18::text
                FROM sagaflow.definitions d
                WHERE d.id = $2::int8
                ON CONFLICT DO NOTHING
                RETURNING id
            ),
            history AS (
                INSERT INTO sagaflow.history (execution_id, id, "timestamp", type, state, details, cause)
                SELECT $1::uuid, h.id, h.at, h.type, h.state, h.details, h.cause
                FROM UNNEST($19::int8[], $20::timestamptz[], $21::text[], $22::text[], $23::text[],
                            $24::text[])
                    AS h(id, at, type, state, details, cause)
                WHERE EXISTS (SELECT 1 FROM created)
            ),
            timers AS (
                INSERT INTO sagaflow.timers (execution_id, work_id, due_at)
                SELECT $1::uuid, a.work_id, a.due_at
                FROM UNNEST($25::int8[], $26::timestamptz[]) AS a(work_id, due_at)
                WHERE EXISTS (SELECT 1 FROM created)
            )
            SELECT count(*) AS "created!" FROM created
            "#,
            c.ids[0],
            c.definition_ids[0],
            c.statuses[0],
            c.inputs[0],
            c.outputs[0],
            c.errors[0],
            c.causes[0],
            c.idempotency_keys[0],
            c.request_hashes[0],
            c.snapshots[0],
            c.terminal[0],
            c.last_event_ids[0],
            c.redrives[0],
            c.release[0],
            c.owners[0],
            c.lease_seconds[0],
            c.traceparents[0],
            c.tracestates[0],
            &c.events.ids,
            &c.events.timestamps,
            &c.events.types,
            &c.events.states as _,
            &c.events.details as _,
            &c.events.causes as _,
            &c.timer_work_ids,
            &c.timer_due,
        );
        let mut lane = self.create_lane.get(&self.pool).await.map_err(db_error)?;
        let result = query.fetch_one(lane.conn()).await;
        lane.settle(&result);
        Ok(result.map_err(db_error)? == 1)
    }

    /// Insert new executions with their first transitions in one statement, skipping any
    /// whose id or (definition name, idempotency key) exists or whose definition does not;
    /// returns the ids inserted. Runs on the creation lane.
    async fn insert_new(&self, c: &CreationColumns) -> Result<HashSet<Uuid>, StoreError> {
        let query = sqlx::query_scalar!(
            r#"
            WITH n AS (
                SELECT *
                FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
                            $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[], $12::int8[],
                            $13::int4[], $14::bool[], $15::text[], $16::float8[], $17::text[], $18::text[])
                    AS n(id, definition_id, status, input, output, error, cause, idempotency_key,
                         request_hash, snapshot, terminal, last_event_id, redrives, release, owner,
                         lease_seconds, traceparent, tracestate)
            ),
            created AS (
                INSERT INTO sagaflow.executions (
                    id, definition_id, definition_name, definition_version, status, input,
                    output, error, cause, idempotency_key, request_hash, snapshot, stopped_at,
                    last_event_id, redrive_count, owner, lease_epoch, lease_expires_at,
                    traceparent, tracestate
                )
                SELECT n.id, d.id, d.name, d.version, n.status, n.input,
                    n.output, n.error, n.cause, n.idempotency_key, n.request_hash, n.snapshot,
                    CASE WHEN n.terminal THEN now() END,
                    n.last_event_id, n.redrives,
                    CASE WHEN n.release THEN NULL ELSE n.owner END,
                    1,
                    CASE WHEN n.release THEN NULL ELSE now() + make_interval(secs => n.lease_seconds) END,
                    n.traceparent, n.tracestate
                FROM n JOIN sagaflow.definitions d ON d.id = n.definition_id
                ON CONFLICT DO NOTHING
                RETURNING id
            ),
            history AS (
                INSERT INTO sagaflow.history (execution_id, id, "timestamp", type, state, details, cause)
                SELECT h.execution_id, h.id, h.at, h.type, h.state, h.details, h.cause
                FROM UNNEST($19::uuid[], $20::int8[], $21::timestamptz[], $22::text[], $23::text[],
                            $24::text[], $25::text[])
                    AS h(execution_id, id, at, type, state, details, cause)
                WHERE h.execution_id IN (SELECT id FROM created)
            ),
            timers AS (
                INSERT INTO sagaflow.timers (execution_id, work_id, due_at)
                SELECT a.execution_id, a.work_id, a.due_at
                FROM UNNEST($26::uuid[], $27::int8[], $28::timestamptz[]) AS a(execution_id, work_id, due_at)
                WHERE a.execution_id IN (SELECT id FROM created)
            )
            SELECT id AS "id!" FROM created
            "#,
            &c.ids,
            &c.definition_ids,
            &c.statuses,
            &c.inputs,
            &c.outputs as _,
            &c.errors as _,
            &c.causes as _,
            &c.idempotency_keys as _,
            &c.request_hashes,
            &c.snapshots,
            &c.terminal,
            &c.last_event_ids,
            &c.redrives,
            &c.release,
            &c.owners,
            &c.lease_seconds,
            &c.traceparents as _,
            &c.tracestates as _,
            &c.events.execution_ids,
            &c.events.ids,
            &c.events.timestamps,
            &c.events.types,
            &c.events.states as _,
            &c.events.details as _,
            &c.events.causes as _,
            &c.timer_execution_ids,
            &c.timer_work_ids,
            &c.timer_due,
        );
        let mut lane = self.create_lane.get(&self.pool).await.map_err(db_error)?;
        let result = query.fetch_all(lane.conn()).await;
        lane.settle(&result);
        Ok(result.map_err(db_error)?.into_iter().collect())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
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
        // Two replicas registering the same name at once both compute version N+1; the loser
        // inserts nothing (ON CONFLICT) and simply tries again against the new latest version.
        for _ in 0..INSERT_RACE_RETRIES {
            let row = sqlx::query!(
                r#"
                WITH latest AS (
                    SELECT id, name, version, content, hash, created_at
                    FROM sagaflow.definitions
                    WHERE name = $1
                    ORDER BY version DESC
                    LIMIT 1
                ),
                inserted AS (
                    INSERT INTO sagaflow.definitions (name, version, content, hash)
                    SELECT $1, coalesce((SELECT version FROM latest), 0) + 1, $2, $3
                    WHERE NOT EXISTS (SELECT 1 FROM latest WHERE content = $2)
                    ON CONFLICT (name, version) DO NOTHING
                    RETURNING id, name, version, content, hash, created_at
                )
                SELECT id AS "id!", name AS "name!", version AS "version!", content AS "content!",
                       hash AS "hash!", created_at AS "created_at!", true AS "created!"
                FROM inserted
                UNION ALL
                SELECT id, name, version, content, hash, created_at, false
                FROM latest
                WHERE content = $2
                "#,
                name,
                content,
                hash,
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
            if let Some(row) = row {
                let record = definition_record(row.id, row.name, row.version, row.content, row.hash, row.created_at)?;
                return Ok((record, row.created));
            }
        }
        Err(StoreError::Unavailable(format!("definition {name} is being registered concurrently; try again")))
    }

    async fn get_definition(&self, name: &str, version: Option<u32>) -> Result<Option<DefinitionRecord>, StoreError> {
        let version = version.map(|v| to_i32(v, "definition version")).transpose()?;
        let row = sqlx::query!(
            r#"
            SELECT id, name, version, content, hash, created_at
            FROM sagaflow.definitions
            WHERE name = $1 AND ($2::int4 IS NULL OR version = $2)
            ORDER BY version DESC
            LIMIT 1
            "#,
            name,
            version,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| definition_record(r.id, r.name, r.version, r.content, r.hash, r.created_at)).transpose()
    }

    async fn get_definition_by_id(&self, id: i64) -> Result<Option<DefinitionRecord>, StoreError> {
        let row = sqlx::query!(
            r#"
            SELECT id, name, version, content, hash, created_at
            FROM sagaflow.definitions
            WHERE id = $1
            "#,
            id,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| definition_record(r.id, r.name, r.version, r.content, r.hash, r.created_at)).transpose()
    }

    async fn list_definitions(&self, name: Option<&str>) -> Result<Vec<DefinitionRecord>, StoreError> {
        let rows = sqlx::query!(
            r#"
            SELECT id, name, version, content, hash, created_at
            FROM sagaflow.definitions
            WHERE $1::text IS NULL OR name = $1
            ORDER BY name, version
            "#,
            name,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(|r| definition_record(r.id, r.name, r.version, r.content, r.hash, r.created_at)).collect()
    }

    async fn create_execution(&self, new: NewExecution, first: Transition) -> Result<Created, StoreError> {
        let mut first = first;
        for _ in 0..INSERT_RACE_RETRIES {
            // One statement: the row and the first transition's history and timers, or nothing when the id or (definition name, idempotency key) exists
            // or the definition does not.
            let mut columns = CreationColumns::default();
            first = columns.push(&new, first)?;
            if self.insert_one(&columns).await? {
                return Ok(Created::New { epoch: 1 });
            }
            // A separate statement: ON CONFLICT waited for the other writer, whose row the
            // first statement's snapshot cannot see. The id match wins over the key match.
            let existing = sqlx::query!(
                r#"
                SELECT id, request_hash
                FROM sagaflow.executions
                WHERE id = $1
                   OR (definition_name = (SELECT name FROM sagaflow.definitions WHERE id = $2)
                       AND idempotency_key = $3)
                ORDER BY id = $1 DESC
                LIMIT 1
                "#,
                new.id,
                new.definition_id,
                new.idempotency_key,
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
            if let Some(existing) = existing {
                return Ok(Created::Existing {
                    id: existing.id,
                    same_request: existing.request_hash == new.request_hash,
                });
            }
            if self.get_definition_by_id(new.definition_id).await?.is_none() {
                return Err(StoreError::DefinitionNotFound(format!("id {}", new.definition_id)));
            }
            // The conflicting row vanished in between (deleted): insert again.
        }
        Err(StoreError::Unavailable(format!("execution {} conflicts with concurrent writes; try again", new.id)))
    }

    async fn create_executions(&self, batch: Vec<(NewExecution, Transition)>) -> Vec<Result<Created, StoreError>> {
        if batch.len() < 2 {
            let mut answers = Vec::with_capacity(batch.len());
            for (new, first) in batch {
                answers.push(self.create_execution(new, first).await);
            }
            return answers;
        }
        let mut answers: Vec<Option<Result<Created, StoreError>>> = (0..batch.len()).map(|_| None).collect();
        // Entries that go into the one statement: the first of each id and of each key in the
        // batch (a repeat would conflict with its twin inside the statement), with a valid
        // first transition. The others take the single path afterwards, which tells them apart.
        let mut columns = CreationColumns::default();
        let mut in_statement = Vec::new();
        let mut single = Vec::new();
        let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
        for (i, (new, first)) in batch.into_iter().enumerate() {
            let repeat = !ids.insert(new.id) || new.idempotency_key.as_ref().is_some_and(|k| !keys.insert(k.clone()));
            if repeat {
                single.push((i, new, first));
                continue;
            }
            match columns.push(&new, first) {
                Ok(first) => in_statement.push((i, new, first)),
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        let outcome = self.insert_new(&columns).await;
        match outcome {
            Ok(created) => {
                for (i, new, first) in in_statement {
                    if created.contains(&new.id) {
                        answers[i] = Some(Ok(Created::New { epoch: 1 }));
                    } else {
                        // An existing id or key, or an unknown definition: the single path
                        // finds out which.
                        single.push((i, new, first));
                    }
                }
            }
            // The database is away: every start hears it, and retries.
            Err(e @ StoreError::Unavailable(_)) => {
                for (i, _, _) in in_statement {
                    answers[i] = Some(Err(e.clone()));
                }
            }
            // Something in one entry was refused: each on its own, so only that one fails.
            Err(_) => single.extend(in_statement),
        }
        single.sort_by_key(|(i, _, _)| *i);
        for (i, new, first) in single {
            answers[i] = Some(self.create_execution(new, first).await);
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(StoreError::Database("a start of the batch was not answered".into()))))
            .collect()
    }

    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let c = CommitColumns::build(transitions)?;
        if c.ids.len() == 1 && c.inbox_ids.is_empty() {
            return self.commit_one(&c).await;
        }
        // One statement, so one round trip and one implicit transaction: the fenced update of
        // every execution row, then history, timers and inbox of the rows actually updated,
        // then a verdict that raises (rolling everything back) if any transition was not applied.
        let query = sqlx::query_scalar!(
            r#"
            WITH t AS (
                SELECT *
                FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                            $7::text[], $8::text[], $9::int8[], $10::int8[], $11::bool[], $12::bool[],
                            $13::int4[])
                    AS t(id, owner, epoch, status, snapshot, output, error, cause, first_event_id,
                         last_event_id, terminal, release, redrives)
            ),
            applied AS (
                UPDATE sagaflow.executions e SET
                    status = t.status,
                    snapshot = t.snapshot,
                    output = t.output,
                    error = t.error,
                    cause = t.cause,
                    last_event_id = coalesce(t.last_event_id, e.last_event_id),
                    stopped_at = CASE WHEN t.terminal THEN coalesce(e.stopped_at, now()) END,
                    redrive_count = e.redrive_count + t.redrives,
                    owner = CASE WHEN t.release THEN NULL ELSE e.owner END,
                    lease_expires_at = CASE WHEN t.release THEN NULL ELSE e.lease_expires_at END
                FROM t
                WHERE e.id = t.id
                  AND e.owner = t.owner
                  AND e.lease_epoch = t.epoch
                  AND (t.first_event_id IS NULL OR e.last_event_id = t.first_event_id - 1)
                RETURNING e.id
            ),
            history AS (
                INSERT INTO sagaflow.history (execution_id, id, "timestamp", type, state, details, cause)
                SELECT h.execution_id, h.id, h.at, h.type, h.state, h.details, h.cause
                FROM UNNEST($14::uuid[], $15::int8[], $16::timestamptz[], $17::text[], $18::text[],
                            $19::text[], $20::text[])
                    AS h(execution_id, id, at, type, state, details, cause)
                WHERE h.execution_id IN (SELECT id FROM applied)
            ),
            timers_added AS (
                INSERT INTO sagaflow.timers (execution_id, work_id, due_at)
                SELECT a.execution_id, a.work_id, a.due_at
                FROM UNNEST($21::uuid[], $22::int8[], $23::timestamptz[]) AS a(execution_id, work_id, due_at)
                WHERE a.execution_id IN (SELECT id FROM applied)
                ON CONFLICT (execution_id, work_id) DO UPDATE SET due_at = EXCLUDED.due_at
            ),
            timers_removed AS (
                DELETE FROM sagaflow.timers x
                USING UNNEST($24::uuid[], $25::int8[]) AS r(execution_id, work_id)
                WHERE x.execution_id = r.execution_id
                  AND x.work_id = r.work_id
                  AND r.execution_id IN (SELECT id FROM applied)
            ),
            inbox_consumed AS (
                DELETE FROM sagaflow.inbox i
                USING UNNEST($26::uuid[], $27::int8[]) AS c(execution_id, id)
                WHERE i.id = c.id
                  AND i.execution_id = c.execution_id
                  AND c.execution_id IN (SELECT id FROM applied)
            ),
            -- Why a transition was not applied, judged on the row as it was before this
            -- statement. "done": its events are in the history already (a retry of a commit
            -- that landed); acknowledged. With the lease still ours in that view and the
            -- history continuing where expected, the row changed under us: a claim won.
            verdict AS (
                SELECT t.id,
                    CASE
                        WHEN e.id IS NULL OR e.owner IS DISTINCT FROM t.owner OR e.lease_epoch <> t.epoch
                            THEN 'lost'
                        WHEN t.last_event_id IS NOT NULL AND e.last_event_id >= t.last_event_id
                            THEN 'done'
                        WHEN t.first_event_id IS NOT NULL AND e.last_event_id <> t.first_event_id - 1
                            THEN 'gap'
                        ELSE 'lost'
                    END AS verdict
                FROM t
                LEFT JOIN sagaflow.executions e ON e.id = t.id
                WHERE t.id NOT IN (SELECT id FROM applied)
            )
            SELECT sagaflow.commit_verdict(
                ARRAY(SELECT id FROM verdict WHERE verdict = 'lost'),
                ARRAY(SELECT id FROM verdict WHERE verdict = 'gap')
            ) AS "ok!"
            "#,
            &c.ids,
            &c.owners,
            &c.epochs,
            &c.statuses,
            &c.snapshots,
            &c.outputs as _,
            &c.errors as _,
            &c.causes as _,
            &c.first_event_ids as _,
            &c.last_event_ids as _,
            &c.terminal,
            &c.release,
            &c.redrives,
            &c.events.execution_ids,
            &c.events.ids,
            &c.events.timestamps,
            &c.events.types,
            &c.events.states as _,
            &c.events.details as _,
            &c.events.causes as _,
            &c.timer_add_execution_ids,
            &c.timer_add_work_ids,
            &c.timer_add_due,
            &c.timer_remove_execution_ids,
            &c.timer_remove_work_ids,
            &c.inbox_execution_ids,
            &c.inbox_ids,
        );
        let mut lane = self.commit_lane.get(&self.pool).await.map_err(db_error)?;
        let result = query.fetch_one(lane.conn()).await;
        lane.settle(&result);
        result.map_err(commit_error)?;
        Ok(())
    }

    async fn claim(&self, owner: &str, lease: Duration, limit: u32) -> Result<Vec<Claimed>, StoreError> {
        // Two candidate sets, each locked with SKIP LOCKED so concurrent claimers split the
        // work instead of queueing on each other: active executions through the small partial
        // index, and executions with waiting inbox requests through the (small) inbox. The
        // lease test is repeated by PostgreSQL on the newest row version after locking, so a
        // row claimed and committed by someone else in the meantime drops out.
        let rows = sqlx::query!(
            r#"
            WITH active AS (
                SELECT a.id, a.lease_expires_at AS was_due
                FROM sagaflow.executions a
                WHERE a.status IN ('RUNNING', 'COMPENSATING')
                  AND coalesce(a.lease_expires_at, '-infinity'::timestamptz) < now()
                ORDER BY coalesce(a.lease_expires_at, '-infinity'::timestamptz)
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ),
            requested AS (
                SELECT b.id, b.lease_expires_at AS was_due
                FROM sagaflow.executions b
                WHERE b.id IN (SELECT i.execution_id FROM sagaflow.inbox i)
                  AND coalesce(b.lease_expires_at, '-infinity'::timestamptz) < now()
                LIMIT $3
                FOR UPDATE OF b SKIP LOCKED
            ),
            chosen AS (
                SELECT id, was_due FROM active
                UNION
                SELECT id, was_due FROM requested
                LIMIT $3
            )
            UPDATE sagaflow.executions e SET
                owner = $1,
                lease_epoch = e.lease_epoch + 1,
                lease_expires_at = now() + make_interval(secs => $2)
            FROM chosen
            WHERE e.id = chosen.id
            RETURNING
                e.id, e.definition_id, e.definition_name, e.definition_version, e.status, e.input::json AS "input!",
                e.output::json AS output, e.error, e.cause, e.idempotency_key, e.snapshot::json AS "snapshot!", e.started_at,
                e.stopped_at, e.last_event_id, e.redrive_count, e.owner, e.lease_expires_at,
                e.traceparent, e.tracestate, e.lease_epoch, chosen.was_due AS "was_due?",
                ARRAY(SELECT t.work_id FROM sagaflow.timers t WHERE t.execution_id = e.id
                      ORDER BY t.work_id) AS "timer_work_ids!",
                ARRAY(SELECT t.due_at FROM sagaflow.timers t WHERE t.execution_id = e.id
                      ORDER BY t.work_id) AS "timer_due!",
                ARRAY(SELECT i.id FROM sagaflow.inbox i WHERE i.execution_id = e.id
                      ORDER BY i.id) AS "inbox_ids!",
                ARRAY(SELECT i.request FROM sagaflow.inbox i WHERE i.execution_id = e.id
                      ORDER BY i.id) AS "inbox_requests!",
                ARRAY(SELECT i.created_at FROM sagaflow.inbox i WHERE i.execution_id = e.id
                      ORDER BY i.id) AS "inbox_created!"
            "#,
            owner,
            lease.as_secs_f64(),
            i64::from(limit),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;

        rows.into_iter()
            .map(|r| {
                let record = ExecutionRow {
                    id: r.id,
                    definition_id: r.definition_id,
                    definition_name: r.definition_name,
                    definition_version: r.definition_version,
                    status: r.status,
                    input: r.input,
                    output: r.output,
                    error: r.error,
                    cause: r.cause,
                    idempotency_key: r.idempotency_key,
                    snapshot: r.snapshot,
                    started_at: r.started_at,
                    stopped_at: r.stopped_at,
                    last_event_id: r.last_event_id,
                    redrive_count: r.redrive_count,
                    owner: r.owner,
                    lease_expires_at: r.lease_expires_at,
                    traceparent: r.traceparent,
                    tracestate: r.tracestate,
                }
                .into_record()?;
                let timers = zip_exact(r.timer_work_ids, r.timer_due, "timers")?
                    .into_iter()
                    .map(|(work_id, due)| Ok(Timer { work_id: to_u64(work_id, "timer work id")?, due }))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let inbox = zip_exact(r.inbox_ids, zip_exact(r.inbox_requests, r.inbox_created, "inbox")?, "inbox")?
                    .into_iter()
                    .map(|(id, (request, created_at))| InboxItem { id, execution_id: record.id, request, created_at })
                    .collect();
                Ok(Claimed { record, epoch: r.lease_epoch, timers, inbox, previous_lease_expiry: r.was_due })
            })
            .collect()
    }

    async fn renew(&self, owner: &str, held: &[(Uuid, i64)], lease: Duration) -> Result<Vec<Uuid>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, epochs): (Vec<Uuid>, Vec<i64>) = held.iter().copied().unzip();
        // Same rule as a commit: the lease is ours while owner and epoch match, expired or not.
        // Rows a commit has locked right now are skipped, not waited for: renewing them in
        // whatever order the join takes while commits lock theirs in id order deadlocked
        // (PostgreSQL breaks that after deadlock_timeout, 1 s, which stalled every saga in
        // flight; found by `sagaflow bench`). A skipped lease is renewed at the next round,
        // a third of a lease later. A lease counts as lost only when the row, as this
        // statement sees it, no longer names this owner and epoch.
        sqlx::query_scalar!(
            r#"
            WITH held AS (
                SELECT * FROM UNNEST($2::uuid[], $3::int8[]) AS h(id, epoch)
            ),
            locked AS (
                SELECT e.id
                FROM sagaflow.executions e
                JOIN held ON held.id = e.id
                WHERE e.owner = $1 AND e.lease_epoch = held.epoch
                FOR UPDATE OF e SKIP LOCKED
            ),
            renewed AS (
                UPDATE sagaflow.executions e
                SET lease_expires_at = now() + make_interval(secs => $4)
                FROM locked
                WHERE e.id = locked.id
            )
            SELECT held.id AS "id!"
            FROM held
            LEFT JOIN sagaflow.executions e ON e.id = held.id
            WHERE e.id IS NULL OR e.owner IS DISTINCT FROM $1 OR e.lease_epoch <> held.epoch
            "#,
            owner,
            &ids,
            &epochs,
            lease.as_secs_f64(),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn release(&self, owner: &str, held: &[(Uuid, i64)]) -> Result<(), StoreError> {
        if held.is_empty() {
            return Ok(());
        }
        let (ids, epochs): (Vec<Uuid>, Vec<i64>) = held.iter().copied().unzip();
        // The epoch stays: the next claim bumps it, which is what fences this owner.
        sqlx::query!(
            r#"
            UPDATE sagaflow.executions e
            SET owner = NULL, lease_expires_at = NULL
            FROM UNNEST($2::uuid[], $3::int8[]) AS h(id, epoch)
            WHERE e.id = h.id AND e.owner = $1 AND e.lease_epoch = h.epoch
            "#,
            owner,
            &ids,
            &epochs,
        )
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn post_request(&self, execution_id: Uuid, request: Value) -> Result<i64, StoreError> {
        // The insert trigger sends NOTIFY on INBOX_CHANNEL when this commits.
        sqlx::query_scalar!(
            r#"
            INSERT INTO sagaflow.inbox (execution_id, request)
            VALUES ($1, $2::text::json)
            RETURNING id
            "#,
            execution_id,
            request.to_string(),
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::ExecutionNotFound(execution_id),
            _ => db_error(e),
        })
    }

    async fn take_inbox(&self, owner: &str) -> Result<Vec<InboxItem>, StoreError> {
        // Driven by the inbox, which holds only unconsumed requests; never by owner over the
        // whole executions table. Requests stay until a commit consumes them, so the caller
        // sees them again on the next call and must skip ids it is already handling.
        let rows = sqlx::query_as!(
            InboxItem,
            r#"
            SELECT i.id, i.execution_id, i.request, i.created_at
            FROM sagaflow.inbox i
            JOIN sagaflow.executions e ON e.id = i.execution_id
            WHERE e.owner = $1
            ORDER BY i.id
            "#,
            owner,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows)
    }

    async fn inbox_announcements(&self) -> Result<Option<Box<dyn InboxAnnouncements>>, StoreError> {
        // A listener holds its connection for good: on a pool of its own, so the commits keep
        // every connection of theirs.
        let options = (*self.pool.connect_options()).clone();
        let pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await.map_err(db_error)?;
        listener.listen(INBOX_CHANNEL).await.map_err(db_error)?;
        Ok(Some(Box::new(InboxListener(listener))))
    }

    async fn get_execution(&self, id: Uuid) -> Result<Option<ExecutionRecord>, StoreError> {
        let row = sqlx::query_as!(
            ExecutionRow,
            r#"
            SELECT id, definition_id, definition_name, definition_version, status, input::json AS "input!",
                   output::json AS output, error, cause, idempotency_key, snapshot::json AS "snapshot!", started_at, stopped_at, last_event_id,
                   redrive_count, owner, lease_expires_at, traceparent, tracestate
            FROM sagaflow.executions
            WHERE id = $1
            "#,
            id,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(ExecutionRow::into_record).transpose()
    }

    async fn find_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        let Some((low, high)) = prefix_range(prefix) else {
            return Ok(Vec::new());
        };
        sqlx::query_scalar!(
            r#"
            SELECT id
            FROM sagaflow.executions
            WHERE id BETWEEN $1 AND $2
            ORDER BY id
            LIMIT $3
            "#,
            low,
            high,
            i64::from(limit),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        let (low, high) = match filter.id_prefix.as_deref() {
            None => (None, None),
            Some(prefix) => match prefix_range(prefix) {
                Some((low, high)) => (Some(low), Some(high)),
                None => return Ok(Vec::new()),
            },
        };
        let statuses: Vec<String> = filter.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        let (after_started, after_id) = filter.after.map_or((None, None), |(t, id)| (Some(t), Some(id)));

        // The optional filters are `$n IS NULL OR ...`; only a plan made for the actual values
        // drops the unused ones and picks the index that fits (status, definition or time),
        // so this statement must not run on a cached generic plan.
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query_scalar!(r#"SELECT set_config('plan_cache_mode', 'force_custom_plan', true) AS "setting!""#)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let rows = sqlx::query_as!(
            ExecutionRow,
            r#"
            SELECT id, definition_id, definition_name, definition_version, status, input::json AS "input!",
                   output::json AS output, error, cause, idempotency_key, snapshot::json AS "snapshot!", started_at, stopped_at, last_event_id,
                   redrive_count, owner, lease_expires_at, traceparent, tracestate
            FROM sagaflow.executions
            WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
              AND ($2::text IS NULL OR definition_name = $2)
              AND ($3::timestamptz IS NULL OR started_at >= $3)
              AND ($4::timestamptz IS NULL OR started_at < $4)
              AND ($5::uuid IS NULL OR id BETWEEN $5 AND $6::uuid)
              AND ($7::timestamptz IS NULL OR (started_at, id) < ($7, $8::uuid))
            ORDER BY started_at DESC, id DESC
            LIMIT $9
            "#,
            &statuses,
            filter.definition_name,
            filter.started_after,
            filter.started_before,
            low,
            high,
            after_started,
            after_id,
            i64::from(filter.limit),
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        rows.into_iter().map(ExecutionRow::into_record).collect()
    }

    async fn count_with_status(&self, status: Status) -> Result<i64, StoreError> {
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM sagaflow.executions WHERE status = $1"#,
            status.as_str(),
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        })
    }

    async fn history(&self, id: Uuid, after: u64, limit: u32) -> Result<Vec<HistoryEvent>, StoreError> {
        // Past the largest BIGINT there is nothing left to read.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query!(
            r#"
            SELECT id, "timestamp", type, state, details::json AS details, cause::json AS cause
            FROM sagaflow.history
            WHERE execution_id = $1 AND id > $2
            ORDER BY id
            LIMIT $3
            "#,
            id,
            after,
            i64::from(limit),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|r| {
                let kind: EventKind = serde_json::from_value(Value::String(r.r#type.clone())).map_err(|_| {
                    StoreError::Corrupt(format!("execution {id}: unknown history event type {}", r.r#type))
                })?;
                let cause = r
                    .cause
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("execution {id}: cause of event {}: {e}", r.id)))?;
                Ok(HistoryEvent {
                    id: to_u64(r.id, "history event id")?,
                    timestamp_ms: r.timestamp.timestamp_millis(),
                    kind,
                    state: r.state,
                    details: r.details.unwrap_or(Value::Null),
                    cause,
                })
            })
            .collect()
    }
}

/// A row of `sagaflow.executions` as stored.
struct ExecutionRow {
    id: Uuid,
    definition_id: i64,
    definition_name: String,
    definition_version: i32,
    status: String,
    input: Value,
    output: Option<Value>,
    error: Option<String>,
    cause: Option<String>,
    idempotency_key: Option<String>,
    snapshot: Value,
    started_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
    last_event_id: i64,
    redrive_count: i32,
    owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl ExecutionRow {
    fn into_record(self) -> Result<ExecutionRecord, StoreError> {
        let status = Status::parse(&self.status)
            .ok_or_else(|| StoreError::Corrupt(format!("execution {}: unknown status {}", self.id, self.status)))?;
        Ok(ExecutionRecord {
            id: self.id,
            definition_id: self.definition_id,
            definition_name: self.definition_name,
            definition_version: to_u32(self.definition_version, "definition version")?,
            status,
            input: self.input,
            output: self.output,
            error: self.error,
            cause: self.cause,
            idempotency_key: self.idempotency_key,
            snapshot: self.snapshot,
            started_at: self.started_at,
            stopped_at: self.stopped_at,
            last_event_id: to_u64(self.last_event_id, "last event id")?,
            redrive_count: to_u32(self.redrive_count, "redrive count")?,
            owner: self.owner,
            lease_expires_at: self.lease_expires_at,
            trace_parent: self.traceparent.map(|traceparent| TraceParent { traceparent, tracestate: self.tracestate }),
        })
    }
}

fn definition_record(
    id: i64,
    name: String,
    version: i32,
    content: String,
    hash: String,
    created_at: DateTime<Utc>,
) -> Result<DefinitionRecord, StoreError> {
    Ok(DefinitionRecord { id, name, version: to_u32(version, "definition version")?, content, hash, created_at })
}

fn zip_exact<A, B>(a: Vec<A>, b: Vec<B>, what: &str) -> Result<Vec<(A, B)>, StoreError> {
    if a.len() != b.len() {
        return Err(StoreError::Corrupt(format!("claimed {what} arrays differ in length")));
    }
    Ok(a.into_iter().zip(b).collect())
}

fn to_u32(value: i32, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

fn to_i32(value: u32, what: &str) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::Database(format!("{what} {value} does not fit in an INTEGER")))
}

/// Errors of the commit statement: its verdict raises SF001 (lease lost) or SF002 (history
/// gap) with the execution id as DETAIL.
fn commit_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && let Some(pg) = db.try_downcast_ref::<PgDatabaseError>()
    {
        let id = pg.detail().and_then(|d| Uuid::parse_str(d).ok());
        match (pg.code(), id) {
            (SQLSTATE_LEASE_LOST, Some(id)) => return StoreError::LeaseLost(id),
            (SQLSTATE_HISTORY_GAP, Some(_)) => {
                return StoreError::Database(pg.message().to_owned());
            }
            _ => {}
        }
    }
    db_error(e)
}

/// Map a sqlx error: what a retry can cure (no connection, pool exhausted or closed, server
/// restarting, a lost serialization race or deadlock) is `Unavailable`; the rest `Database`.
fn db_error(e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    };
    if transient { StoreError::Unavailable(e.to_string()) } else { StoreError::Database(e.to_string()) }
}

/// SQLSTATEs after which the same request can succeed: connection exceptions (class 08),
/// insufficient resources (class 53, e.g. too many connections), operator intervention
/// (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now), serialization
/// failure and deadlock (40001, 40P01), a read-only server mid-failover (25006), and a
/// database not accepting connections while it starts or stops (55000).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25006" | "55000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_unavailable() {
        assert!(transient_sqlstate("08006"));
        assert!(transient_sqlstate("57P01"));
        assert!(transient_sqlstate("40P01"));
        assert!(!transient_sqlstate("23505"));
        assert!(matches!(db_error(sqlx::Error::PoolTimedOut), StoreError::Unavailable(_)));
        assert!(matches!(db_error(sqlx::Error::RowNotFound), StoreError::Database(_)));
    }
}

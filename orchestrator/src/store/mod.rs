//! Durable storage of definitions, executions, histories, timers, leases and the inbox of
//! outside requests, behind one trait with two implementations: [`postgres`] (production,
//! any number of replicas) and [`sqlite`] (the embedded default of `sagaflow dev` and
//! `sagaflow demo`, one replica). Both pass the same store test suite; [`open_store`] picks
//! one by the URL's scheme.
//!
//! Every write of an execution is fenced by its lease: the commit names the owner and epoch
//! it holds, and fails with [`StoreError::LeaseLost`] when another replica took over.

mod batch;
mod lane;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaflow_language::interpreter::{HistoryEvent, Status, WorkId};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

pub use crate::telemetry::TraceParent;

/// A registered definition version.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionRecord {
    pub id: i64,
    pub name: String,
    /// 1, 2, ... per name.
    pub version: u32,
    /// The JSON text as registered.
    pub content: String,
    /// SHA-256 of `content`, lowercase hex.
    pub hash: String,
    pub created_at: DateTime<Utc>,
}

/// A new execution, created already owned by the replica that starts it.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub id: Uuid,
    pub definition_id: i64,
    pub input: Value,
    /// At most one execution per (definition name, key); `None` for no such constraint.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the start request, to tell "the same start again" from "a different
    /// start under a used key".
    pub request_hash: String,
    pub owner: String,
    pub lease: Duration,
    /// The W3C trace context the start request carried, continued by the execution's spans.
    pub trace_parent: Option<TraceParent>,
}

/// What `create_execution` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// Inserted; the caller holds the lease at this epoch.
    New { epoch: i64 },
    /// An execution with this id or idempotency key exists already.
    Existing { id: Uuid, same_request: bool },
}

/// One committed step of one execution: everything in it lands atomically or not at all.
#[derive(Debug, Clone)]
pub struct Transition {
    pub execution_id: Uuid,
    /// The lease epoch the writer holds; the commit is refused if it is no longer current.
    pub epoch: i64,
    pub owner: String,
    /// Appended to the history, ids continuing it.
    pub events: Vec<HistoryEvent>,
    pub status: Status,
    /// The interpreter state (`sagaflow_language::interpreter::Execution`) as JSON text:
    /// serialized once, straight from the execution, and sent to the database as it is.
    pub snapshot: Box<RawValue>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub timers_added: Vec<Timer>,
    pub timers_removed: Vec<WorkId>,
    /// Inbox requests this step consumed (deleted with the commit).
    pub inbox_consumed: Vec<i64>,
    /// Give the lease up with this commit (the execution ended or parked).
    pub release: bool,
}

/// A durable timer: deliver `TimerFired { id: work_id }` at `due`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub work_id: WorkId,
    pub due: DateTime<Utc>,
}

/// An outside request waiting for the execution's owner (cancel, terminate, repairs, redrive).
#[derive(Debug, Clone, PartialEq)]
pub struct InboxItem {
    pub id: i64,
    pub execution_id: Uuid,
    /// A serialized `sagaflow_language::interpreter::Event` (or a redrive request).
    pub request: Value,
    pub created_at: DateTime<Utc>,
}

/// An execution this replica now owns, with what it needs to continue.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub record: ExecutionRecord,
    pub epoch: i64,
    pub timers: Vec<Timer>,
    pub inbox: Vec<InboxItem>,
    /// When the lease this claim replaced ran out; `None` when there was none (released, or
    /// never owned).
    pub previous_lease_expiry: Option<DateTime<Utc>>,
}

/// The stored row of an execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub id: Uuid,
    pub definition_id: i64,
    pub definition_name: String,
    pub definition_version: u32,
    pub status: Status,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub idempotency_key: Option<String>,
    pub snapshot: Value,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub last_event_id: u64,
    pub redrive_count: u32,
    pub owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The W3C trace context the start request carried, if any.
    pub trace_parent: Option<TraceParent>,
}

/// Filters of `list_executions`; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub statuses: Vec<Status>,
    pub definition_name: Option<String>,
    pub started_after: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
    pub id_prefix: Option<String>,
    /// Newest first; continue after this (started_at, id) position.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another replica owns the execution now (or the lease expired and was taken).
    #[error("lease on execution {0} lost to another replica")]
    LeaseLost(Uuid),
    #[error("execution {0} not found")]
    ExecutionNotFound(Uuid),
    #[error("definition {0} not found")]
    DefinitionNotFound(String),
    /// The database could not be reached or failed; the operation may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The storage of the orchestrator. Implementations are cheap to clone handles to a pool.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Apply the schema migrations this store needs.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Register `content` as the next version of `name`, unless it equals the latest
    /// version's content (then that version is returned and `created` is false).
    async fn put_definition(
        &self,
        name: &str,
        content: &str,
        hash: &str,
    ) -> Result<(DefinitionRecord, bool), StoreError>;
    /// A version, or the latest when `version` is `None`.
    async fn get_definition(&self, name: &str, version: Option<u32>) -> Result<Option<DefinitionRecord>, StoreError>;
    async fn get_definition_by_id(&self, id: i64) -> Result<Option<DefinitionRecord>, StoreError>;
    /// Every version of `name`, or of every definition, by name then version.
    async fn list_definitions(&self, name: Option<&str>) -> Result<Vec<DefinitionRecord>, StoreError>;

    /// Insert an execution owned by `new.owner`, together with its first transition, in one
    /// transaction; or report the existing execution for the same id or idempotency key.
    async fn create_execution(&self, new: NewExecution, first: Transition) -> Result<Created, StoreError>;
    /// Create several executions, each as [`Store::create_execution`] would, answering in
    /// order. A backend that can insert them in one transaction does (group commit of starts);
    /// one entry's failure never fails the others.
    async fn create_executions(&self, batch: Vec<(NewExecution, Transition)>) -> Vec<Result<Created, StoreError>> {
        let mut answers = Vec::with_capacity(batch.len());
        for (new, first) in batch {
            answers.push(self.create_execution(new, first).await);
        }
        answers
    }
    /// Commit transitions (possibly of several executions) in one database transaction.
    /// If any is fenced out, none is applied and the error names that execution.
    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError>;

    /// Take over up to `limit` executions that need an owner: active ones (RUNNING,
    /// COMPENSATING) whose lease is free or expired, and any with inbox requests waiting.
    async fn claim(&self, owner: &str, lease: Duration, limit: u32) -> Result<Vec<Claimed>, StoreError>;
    /// Extend the leases held by `owner` at these epochs; returns the ids whose lease was lost.
    async fn renew(&self, owner: &str, held: &[(Uuid, i64)], lease: Duration) -> Result<Vec<Uuid>, StoreError>;
    /// Give leases up (graceful shutdown), so another replica continues at once.
    async fn release(&self, owner: &str, held: &[(Uuid, i64)]) -> Result<(), StoreError>;

    /// Queue an outside request for the execution's owner.
    async fn post_request(&self, execution_id: Uuid, request: Value) -> Result<i64, StoreError>;
    /// Inbox requests for executions `owner` holds.
    async fn take_inbox(&self, owner: &str) -> Result<Vec<InboxItem>, StoreError>;
    /// Announcements of new inbox requests, when the backend can push them (PostgreSQL:
    /// `LISTEN`), so the engine need not poll for them. `None`: it cannot; poll.
    async fn inbox_announcements(&self) -> Result<Option<Box<dyn InboxAnnouncements>>, StoreError> {
        Ok(None)
    }

    async fn get_execution(&self, id: Uuid) -> Result<Option<ExecutionRecord>, StoreError>;
    /// Ids starting with `prefix` (at most `limit`), to resolve a short id.
    async fn find_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<Uuid>, StoreError>;
    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError>;
    /// History events with id > `after`, at most `limit`, in order.
    async fn history(&self, id: Uuid, after: u64, limit: u32) -> Result<Vec<HistoryEvent>, StoreError>;

    /// How many executions have `status` (for the metrics' gauges).
    async fn count_with_status(&self, status: Status) -> Result<i64, StoreError>;
    /// The connection pool's state, for the metrics.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

/// A feed of "a request was posted to some execution's inbox", from [`Store::inbox_announcements`].
#[async_trait]
pub trait InboxAnnouncements: Send {
    /// Wait for the next announcement: `Ok(true)` for one, `Ok(false)` when the feed was
    /// interrupted and restored, so announcements may have been missed meanwhile.
    async fn next(&mut self) -> Result<bool, StoreError>;
}

/// A connection pool's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open now.
    pub size: u32,
    /// Of those, waiting for work.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// Database connections of a PostgreSQL pool made by [`open_store`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// Open the store that `url` names, with [`DEFAULT_MAX_CONNECTIONS`]; see [`open_store_with`].
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with(url, DEFAULT_MAX_CONNECTIONS).await
}

/// Open the store that `url` names, without migrating it: `postgres://` or `postgresql://`
/// is PostgreSQL with a pool of `max_connections`; `sqlite:` or anything else is a path to
/// a SQLite file, created with its folder if missing (`max_connections` then bounds its
/// reading connections; it writes through one).
///
/// SQLite serves one replica: its leases fence replicas of one process, but the file cannot
/// be shared by replicas on several machines. Run more than one replica on PostgreSQL.
pub async fn open_store_with(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url, max_connections).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::open_with(url, max_connections).await?))
    }
}

/// The id range that a prefix of an execution id covers: a uuid compares byte by byte (in
/// both backends), so the ids whose hex digits start with the prefix are exactly those
/// between the prefix padded with `0` and with `f`, a range scan of the primary key. Dashes
/// are ignored (a prefix of the canonical text form has them), case too; `None` if anything
/// else is not hex.
fn prefix_range(prefix: &str) -> Option<(Uuid, Uuid)> {
    let digits: String = prefix.chars().filter(|c| *c != '-').collect();
    if digits.len() > 32 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let low = format!("{digits:0<32}");
    let high = format!("{digits:f<32}");
    Some((Uuid::parse_str(&low).ok()?, Uuid::parse_str(&high).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_covers_exactly_the_prefix() {
        let (low, high) = prefix_range("0190AB12-3").expect("valid prefix");
        assert_eq!(low.to_string(), "0190ab12-3000-0000-0000-000000000000");
        assert_eq!(high.to_string(), "0190ab12-3fff-ffff-ffff-ffffffffffff");
        let (low, high) = prefix_range("").expect("empty prefix");
        assert_eq!((low, high), (Uuid::nil(), Uuid::max()));
        assert!(prefix_range("0190xz").is_none());
        assert!(prefix_range(&"a".repeat(33)).is_none());
    }
}

//! The engine on its own: a SQLite store in a temporary file (PostgreSQL for what only it
//! does, such as announcing inbox requests) and an in-process invoker, no network. Checks
//! what is awkward to reach end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sagaflow::engine::{Engine, EngineConfig, StartRequest};
use sagaflow::invoker::{CallOutcome, Invoker};
use sagaflow::store::Store;
use sagaflow::store::sqlite::SqliteStore;
use sagaflow_language::interpreter::{Call, Status};
use serde_json::json;

/// Answers every call with its input.
struct Echo;

#[async_trait]
impl Invoker for Echo {
    async fn invoke(&self, call: &Call) -> CallOutcome {
        CallOutcome::Succeeded(call.input.clone())
    }
}

const DEFINITION: &str = r#"{
  "StartAt": "Work",
  "States": { "Work": { "Type": "Task", "Resource": "grpc://p/s.v1.S/Work", "SagaRole": "readonly", "End": true } }
}"#;

fn config() -> EngineConfig {
    EngineConfig {
        owner: "engine-test".into(),
        lease: Duration::from_secs(2),
        claim_interval: Duration::from_millis(50),
        claim_batch: 16,
        inbox_interval: Duration::from_millis(50),
        inbox_backstop: Duration::from_millis(50),
        metrics: None,
    }
}

async fn sqlite_store(dir: &std::path::Path) -> Arc<dyn Store> {
    let store = SqliteStore::open(dir.join("engine.db").to_str().expect("path")).await.expect("store");
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

/// Starts `definition` with a small input; its id.
async fn start(engine: &Engine, definition: &str) -> uuid::Uuid {
    let request = StartRequest {
        definition: definition.into(),
        version: None,
        input: json!({ "n": 1 }),
        execution_id: None,
        idempotency_key: None,
    };
    engine.start(request).await.expect("start").id
}

/// Starts `definition` with a small input and waits for the execution to settle.
async fn run_to_the_end(engine: &Engine, definition: &str) -> (uuid::Uuid, Status) {
    let id = start(engine, definition).await;
    (id, engine.wait(id, Duration::from_secs(10)).await.expect("wait"))
}

#[tokio::test]
async fn an_unreadable_inbox_request_is_consumed_not_retried_forever() {
    let dir = std::env::temp_dir().join(format!("sagaflow-engine-{}", uuid::Uuid::new_v4().simple()));
    let store = sqlite_store(&dir).await;
    let engine = Engine::new(store.clone(), Arc::new(Echo), config());
    engine.definitions().register("work", DEFINITION).await.expect("register");
    engine.spawn_loops();
    let (id, status) = run_to_the_end(&engine, "work").await;
    assert_eq!(status, Status::Succeeded);

    // A request no version of Sagaflow can read (written by hand, or by a newer one).
    store.post_request(id, json!({ "type": "NotAnEvent" })).await.expect("post");
    // The settled execution is claimed for it, the request is consumed, the lease released:
    // after that nothing makes it claimable again.
    let mut consumed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let record = store.get_execution(id).await.expect("get").expect("exists");
        if record.owner.is_none()
            && store.claim("someone-else", Duration::from_secs(1), 10).await.expect("claim").is_empty()
        {
            consumed = true;
            break;
        }
    }
    assert!(consumed, "the unreadable request still makes the execution claimable");
    let record = store.get_execution(id).await.expect("get").expect("exists");
    assert_eq!(record.status, Status::Succeeded, "discarding a request changes nothing else");
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Hang` never answers (and notes when its call is dropped), `Fail` fails after the hanging
/// call is surely in flight, anything else echoes and notes whether `Hang` was dropped by then.
#[derive(Default)]
struct HangAndFail {
    hang_dropped: Arc<AtomicBool>,
    dropped_before_next_call: AtomicBool,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Invoker for HangAndFail {
    async fn invoke(&self, call: &Call) -> CallOutcome {
        if call.resource.ends_with("/Hang") {
            let _guard = SetOnDrop(self.hang_dropped.clone());
            std::future::pending::<()>().await;
        }
        if call.resource.ends_with("/Fail") {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return CallOutcome::Failed { error: "Test.Boom".into(), cause: None, outcome_unknown: false };
        }
        self.dropped_before_next_call.store(self.hang_dropped.load(Ordering::SeqCst), Ordering::SeqCst);
        CallOutcome::Succeeded(call.input.clone())
    }
}

const PARALLEL: &str = r#"{
  "StartAt": "Both",
  "States": {
    "Both": {
      "Type": "Parallel",
      "Branches": [
        { "StartAt": "Hang", "States": { "Hang": { "Type": "Task", "Resource": "grpc://p/s.v1.S/Hang", "SagaRole": "readonly", "End": true } } },
        { "StartAt": "Fail", "States": { "Fail": { "Type": "Task", "Resource": "grpc://p/s.v1.S/Fail", "SagaRole": "readonly", "End": true } } }
      ],
      "Catch": [ { "ErrorEquals": ["States.ALL"], "Next": "After" } ],
      "Next": "After"
    },
    "After": { "Type": "Task", "Resource": "grpc://p/s.v1.S/After", "SagaRole": "readonly", "End": true }
  }
}"#;

/// The actor polls its calls itself: a call the interpreter abandons (here the sibling branch
/// of a failed Parallel) must be stopped then, not left running until the execution ends.
#[tokio::test]
async fn an_abandoned_call_is_stopped_while_the_execution_goes_on() {
    let dir = std::env::temp_dir().join(format!("sagaflow-engine-{}", uuid::Uuid::new_v4().simple()));
    let store = sqlite_store(&dir).await;
    let invoker = Arc::new(HangAndFail::default());
    let engine = Engine::new(store, invoker.clone(), config());
    engine.definitions().register("parallel", PARALLEL).await.expect("register");
    engine.spawn_loops();
    let (_, status) = run_to_the_end(&engine, "parallel").await;
    assert_eq!(status, Status::Succeeded);
    assert!(invoker.hang_dropped.load(Ordering::SeqCst), "the hanging call is still running");
    assert!(
        invoker.dropped_before_next_call.load(Ordering::SeqCst),
        "the hanging call was stopped only after the execution moved on"
    );
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Hangs every call until the test ends.
struct Hang;

#[async_trait]
impl Invoker for Hang {
    async fn invoke(&self, _: &Call) -> CallOutcome {
        std::future::pending().await
    }
}

/// Two replicas on one PostgreSQL database, both polling their inboxes only once an hour, so
/// that only an announcement can deliver a request: the owner runs an execution whose Task
/// hangs, and the other replica is where requests are posted.
struct TwoReplicas {
    owner: Engine,
    other: Engine,
    execution: uuid::Uuid,
}

impl TwoReplicas {
    async fn start(pool: sqlx::PgPool) -> TwoReplicas {
        let store: Arc<dyn Store> = Arc::new(sagaflow::store::postgres::PostgresStore::from_pool(pool));
        let hour = Duration::from_secs(3600);
        let replica = |name: &str| {
            let config = EngineConfig { owner: name.into(), inbox_interval: hour, inbox_backstop: hour, ..config() };
            Engine::new(store.clone(), Arc::new(Hang), config)
        };
        let (owner, other) = (replica("owner"), replica("other"));
        owner.definitions().register("hang", DEFINITION).await.expect("register");
        owner.spawn_loops();
        let execution = start(&owner, "hang").await;
        // Give the owner's listener time to connect: the first look at the inbox happens
        // once it is up, so a request posted before would be found that way instead.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let record = owner.store().get_execution(execution).await.expect("read").expect("row");
        assert_eq!(record.status, Status::Running);
        TwoReplicas { owner, other, execution }
    }

    /// Cancel through the other replica; the status the owner reaches.
    async fn cancel_elsewhere(&self) -> Status {
        self.other
            .request(self.execution, sagaflow_language::interpreter::Event::Cancel { reason: Some("test".into()) })
            .await
            .expect("post the cancel");
        let status = self.owner.wait(self.execution, Duration::from_secs(20)).await.expect("wait");
        self.owner.shutdown().await;
        status
    }
}

/// A request posted through another replica reaches the owner through PostgreSQL's `LISTEN`,
/// not through polling. (PostgreSQL only: SQLite announces nothing.)
#[test]
fn a_request_posted_elsewhere_is_delivered_by_its_announcement() {
    async fn body(pool: sqlx::PgPool) {
        let replicas = TwoReplicas::start(pool).await;
        // A readonly Task has nothing to compensate: a cancel ends it CANCELLED.
        assert_eq!(replicas.cancel_elsewhere().await, Status::Cancelled);
    }
    on_postgres(concat!(module_path!(), "::a_request_posted_elsewhere_is_delivered_by_its_announcement"), body);
}

/// The listener's connection dies (here killed by the server) and the request is posted
/// while it is down or just after: the engine looks at the inbox once the listener is back,
/// since announcements may have been missed.
#[test]
fn a_request_posted_while_the_listener_reconnects_is_delivered() {
    async fn body(pool: sqlx::PgPool) {
        let replicas = TwoReplicas::start(pool.clone()).await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'listen%'",
        )
        .fetch_all(&pool)
        .await
        .expect("terminate the listener's session");
        assert_eq!(killed, vec![true], "exactly one listening session");
        assert_eq!(replicas.cancel_elsewhere().await, Status::Cancelled);
    }
    on_postgres(concat!(module_path!(), "::a_request_posted_while_the_listener_reconnects_is_delivered"), body);
}

/// Runs `body` on a fresh, migrated PostgreSQL database (sqlx's test support, as the store
/// suite uses it).
fn on_postgres<Fut: std::future::Future<Output = ()>>(test_path: &'static str, body: fn(sqlx::PgPool) -> Fut) {
    if std::env::var_os("DATABASE_URL").is_none_or(|url| url.is_empty()) {
        panic!("DATABASE_URL is not set: this test needs a PostgreSQL server. Run ./scripts/test.sh");
    }
    let mut args = sqlx::testing::TestArgs::new(test_path);
    args.migrator(&sagaflow::store::postgres::MIGRATOR);
    sqlx::testing::TestFn::run_test(body, args)
}

//! The engine on its own: a SQLite store in a temporary file and an in-process invoker, no
//! network. Checks what is awkward to reach end to end.

use std::sync::Arc;
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

#[tokio::test]
async fn an_unreadable_inbox_request_is_consumed_not_retried_forever() {
    let dir = std::env::temp_dir().join(format!("sagaflow-engine-{}", uuid::Uuid::new_v4().simple()));
    let store = SqliteStore::open(dir.join("engine.db").to_str().expect("path")).await.expect("store");
    store.migrate().await.expect("migrate");
    let store: Arc<dyn Store> = Arc::new(store);
    let config = EngineConfig {
        owner: "engine-test".into(),
        lease: Duration::from_secs(2),
        claim_interval: Duration::from_millis(50),
        claim_batch: 16,
        inbox_interval: Duration::from_millis(50),
        metrics: None,
    };
    let engine = Engine::new(store.clone(), Arc::new(Echo), config);
    engine.definitions().register("work", DEFINITION).await.expect("register");
    engine.spawn_loops();
    let started = engine
        .start(StartRequest {
            definition: "work".into(),
            version: None,
            input: json!({ "n": 1 }),
            execution_id: None,
            idempotency_key: None,
        })
        .await
        .expect("start");
    assert_eq!(engine.wait(started.id, Duration::from_secs(10)).await.expect("wait"), Status::Succeeded);

    // A request no version of Sagaflow can read (written by hand, or by a newer one).
    store.post_request(started.id, json!({ "type": "NotAnEvent" })).await.expect("post");
    // The settled execution is claimed for it, the request is consumed, the lease released:
    // after that nothing makes it claimable again.
    let mut consumed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let record = store.get_execution(started.id).await.expect("get").expect("exists");
        if record.owner.is_none()
            && store.claim("someone-else", Duration::from_secs(1), 10).await.expect("claim").is_empty()
        {
            consumed = true;
            break;
        }
    }
    assert!(consumed, "the unreadable request still makes the execution claimable");
    let record = store.get_execution(started.id).await.expect("get").expect("exists");
    assert_eq!(record.status, Status::Succeeded, "discarding a request changes nothing else");
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

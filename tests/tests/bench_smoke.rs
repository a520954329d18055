//! `sagaflow bench` in its tiny CI form: the real binary, echo participants, a fresh
//! database, 20 orders at concurrency 4, on both paths. It must exit 0, print the figures
//! and leave the database as empty as it found it. No timed assertions: figures are
//! measured by hand (docs/performance.md), never checked here.

use std::process::Command;

use sagaflow_e2e::cluster::fresh_database;
use sqlx::Connection;

async fn run_bench(url: &str, path: &str, output: &str) -> String {
    let binary = sagaflow_e2e::process::binary("sagaflow").expect("sagaflow is built");
    let result = Command::new(binary)
        .args(["bench", "--database-url", url, "--orders", "20", "--concurrency", "4", "--participants", "echo"])
        .args(["--path", path, "--stats-wait", "1500ms", "--output", output])
        .output()
        .expect("the benchmark runs");
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "sagaflow bench --path {path} failed: {}\n{stdout}\n{stderr}", result.status);
    stdout
}

async fn user_relations(url: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connects");
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("counts")
}

#[tokio::test]
async fn the_benchmark_runs_both_paths_and_cleans_up() {
    let _serial = sagaflow_e2e::serial().await;
    let (url, database) = fresh_database("e2e_bench").await.expect("a fresh database");

    let human = run_bench(&url, "success", "human").await;
    let line = human.lines().find(|l| l.starts_with("bench echo/success")).unwrap_or_else(|| panic!("{human}"));
    for figure in ["sagas/s", "p50", "p99", "max", "commits/Task state", "WAL/saga", "peak RSS"] {
        assert!(line.contains(figure), "the result line lacks {figure:?}: {line}");
    }
    assert_eq!(user_relations(&url).await, 0, "the benchmark left tables behind");

    let json = run_bench(&url, "compensate", "json").await;
    let figures: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(figures["path"], "compensate");
    assert_eq!(figures["orders"], 20);
    assert_eq!(figures["unexpected"], 0);
    for field in ["sagas_per_second", "p50_ms", "p99_ms", "max_ms", "commits_per_task_state", "wal_bytes_per_saga"] {
        assert!(figures[field].is_number(), "{field} missing: {json}");
    }
    assert!(figures["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0), "{json}");
    assert_eq!(user_relations(&url).await, 0, "the benchmark left tables behind");

    database.drop_it().await.expect("drops the database");
}

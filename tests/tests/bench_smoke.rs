//! `sagaflow bench` in its tiny CI form: the real binary, echo participants, a fresh
//! database, 20 orders at concurrency 4, on both paths. It must exit 0, print the figures
//! and leave the database as empty as it found it. No timed assertions: figures are
//! measured by hand (docs/performance.md), never checked here.

use std::process::Command;

use sagaflow_e2e::cluster::fresh_database;
use sqlx::Connection;

async fn run_bench(url: &str, path: &str, output: &str) -> String {
    run_bench_with(url, path, output, &[]).await
}

async fn run_bench_with(url: &str, path: &str, output: &str, extra: &[&str]) -> String {
    let binary = sagaflow_e2e::process::binary("sagaflow").expect("sagaflow is built");
    let result = Command::new(binary)
        .args(["bench", "--database-url", url, "--orders", "20", "--concurrency", "4", "--participants", "echo"])
        .args(["--path", path, "--stats-wait", "1500ms", "--output", output])
        .args(extra)
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

/// `--preload-completed` fills the database with copies of finished sagas before measuring;
/// `--keep-data` keeps them, and a later run on that database reuses them.
#[tokio::test]
async fn the_benchmark_preloads_completed_executions_and_reuses_them() {
    let _serial = sagaflow_e2e::serial().await;
    let (url, database) = fresh_database("e2e_bench_scale").await.expect("a fresh database");
    let preload = ["--preload-completed", "300", "--keep-data"];

    let first = run_bench_with(&url, "success", "json", &preload).await;
    let first: serde_json::Value = serde_json::from_str(first.trim()).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(first["unexpected"], 0);
    let copies = first["preloaded_copies"].as_i64().expect("preloaded_copies");
    assert!(copies > 0 && copies <= 300, "{first}");
    assert_eq!(first["completed_before"], 300, "{first}");

    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connects");
    let (executions, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sagaflow.executions WHERE stopped_at IS NOT NULL),                 (SELECT count(*) FROM sagaflow.history)",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the kept tables");
    assert!(executions >= 300 + 20, "copies and measured sagas are kept: {executions}");
    let per_execution: f64 = events as f64 / executions as f64;
    assert!(per_execution > 10.0, "copies carry their history ({per_execution:.1} events each)");
    conn.close().await.ok();

    let again = ["--preload-completed", "300", "--allow-existing-data"];
    let second = run_bench_with(&url, "success", "json", &again).await;
    let second: serde_json::Value = serde_json::from_str(second.trim()).unwrap_or_else(|e| panic!("{e}: {second}"));
    assert_eq!(second["preloaded_copies"], 0, "enough completed executions were there already: {second}");
    assert!(second["completed_before"].as_i64().is_some_and(|n| n >= 320), "{second}");

    database.drop_it().await.expect("drops the database");
}

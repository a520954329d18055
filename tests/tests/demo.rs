//! `sagaflow demo` as a newcomer runs it: one process, embedded SQLite, in-process
//! participants, a batch of orders with faults injected. It must exit 0 (every invariant
//! holds) and show the summary and a compensated saga's timeline.

use std::process::Command;

#[test]
fn the_demo_runs_a_batch_and_every_invariant_holds() {
    let binary = sagaflow_e2e::process::binary("sagaflow").expect("sagaflow is built");
    let data = std::env::temp_dir().join(format!("sagaflow-demo-{}", uuid::Uuid::new_v4().simple()));
    let output = Command::new(binary)
        .args(["demo", "--orders", "30", "--data-dir"])
        .arg(&data)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&data);
    assert!(output.status.success(), "the demo failed: {}\n{stdout}\n{stderr}", output.status);
    for expected in
        ["SUCCEEDED", "COMPENSATED", "saga latency", "money: charged", "saga ledger", "every invariant holds"]
    {
        assert!(stdout.contains(expected), "the demo output lacks {expected:?}:\n{stdout}");
    }
}

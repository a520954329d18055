//! The end-to-end harness: a fresh database per test, the real `sagaflow-participant` and
//! `sagaflow serve` processes on real sockets, clients for every service, and the DESIGN §6
//! invariants checked through the participants' read RPCs.
//!
//! # Layout
//! - [`process`]: starting, killing (SIGKILL) and restarting the real binaries.
//! - [`cluster`]: databases, participants, orchestrator replicas, clients.
//! - [`invariants`]: money, stock and shipments per order, checked after a run.

pub mod cluster;
pub mod invariants;
pub mod process;

/// Heavy end-to-end tests run one at a time: the machine has two cores, and timing-sensitive
/// checks (leases, retries) must not starve each other.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

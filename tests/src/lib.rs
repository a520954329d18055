//! The end-to-end harness: a fresh database per test, the real `sagaflow-participant` and
//! `sagaflow serve` processes on real sockets, clients for every service, and the DESIGN §6
//! invariants checked through the participants' read RPCs.
//!
//! # Layout
//! - [`process`]: starting, killing (SIGKILL) and restarting the real binaries.
//! - [`cluster`]: databases, participants, orchestrator replicas, clients.
//! - [`certs`]: throwaway certificate authorities and certificates for TLS tests.
//! - [`invariants`]: money, stock and shipments per order, checked after a run.
//! - [`otlp`]: a small OTLP trace receiver the processes export to, for trace tests.
//! - [`pg_cluster`]: a private PostgreSQL cluster that tests may stop and restart.
//! - [`proxy`]: a fault-injecting TCP proxy (delay, blackhole, cut, restore).
//! - [`fault_suite`]: orders under injected faults of every kind, checked at the end.
//! - [`soak`]: steady load with periodic faults for a while, with throughput, memory and
//!   database growth over time.

pub mod certs;
pub mod cluster;
pub mod fault_suite;
pub mod invariants;
pub mod otlp;
pub mod pg_cluster;
pub mod process;
pub mod proxy;
pub mod soak;

/// Heavy end-to-end tests run one at a time: the machine has two cores, and timing-sensitive
/// checks (leases, retries) must not starve each other.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

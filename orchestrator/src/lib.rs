//! Sagaflow, the durable saga orchestrator: the engine, store, invoker, API and CLI around
//! the pure States Language crate ([`sagaflow_language`]).
//!
//! # Layout
//! - [`cli`]: the `sagaflow` command line, one module per command.
//! - [`store`]: durable storage behind one trait: PostgreSQL (replicas share it) and SQLite (embedded).
//! - [`engine`]: owns executions through leases; step, commit, then act.
//! - [`bench`]: `sagaflow bench`, the engine measured against a real PostgreSQL.
//! - [`api`]: the gRPC services (OrderService, SagaService, health, reflection).
//! - [`demo`]: the whole system in one process (`sagaflow demo`, `sagaflow dev`).
//! - [`invoker`]: gRPC calls to participants, typed at run time through reflection.
//! - [`security`]: TLS, bearer-token authentication and field redaction.
//! - [`telemetry`]: logs, a trace per saga (OTLP) and Prometheus metrics.

pub mod api;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod engine;
pub mod invoker;
pub mod security;
pub mod store;
pub mod telemetry;

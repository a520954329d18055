//! Sagaflow, the durable saga orchestrator: the engine, store, invoker, API and CLI around
//! the pure States Language crate ([`sagaflow_language`]).
//!
//! # Layout
//! - [`cli`]: the `sagaflow` command line, one module per command.
//! - [`store`]: durable storage behind one trait (PostgreSQL; SQLite later).
//! - [`invoker`]: gRPC calls to participants, typed at run time through reflection.

pub mod cli;
pub mod invoker;
pub mod store;

//! Sagaflow, the durable saga orchestrator: the engine, store, invoker, API and CLI around
//! the pure States Language crate ([`sagaflow_language`]).
//!
//! # Layout
//! - [`cli`]: the `sagaflow` command line, one module per command.

pub mod cli;

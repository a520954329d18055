//! Sagaflow's demo saga participants (DESIGN §6): payment, inventory, fraud and fulfillment,
//! each a gRPC service with its own PostgreSQL schema and idempotency table, compensation
//! tombstones (DESIGN §3) and runtime fault injection. One binary serves any of them, or all.
//!
//! # Layout
//! - [`kit`]: what every participant shares: idempotency and tombstones
//!   ([`kit::idempotency`]), business errors and their mapping to `tonic::Status`
//!   ([`kit::error`]), fault injection and the Chaos service ([`kit::chaos`]), the clock
//!   ([`kit::clock`]) and storage errors and migrations ([`kit::store`]).
//! - [`payment`]: `payment.v1.Payment`, charges and refunds.
//! - [`inventory`]: `inventory.v1.Inventory`, expiring reservations, commits, restocks.
//! - [`fraud`]: `fraud.v1.Fraud`, stored screening decisions.
//! - [`fulfillment`]: `fulfillment.v1.Fulfillment`, shipments and their cancellation.
//! - [`server`]: one process: migrations, services, health, reflection, shutdown.
//! - [`config`]: the `sagaflow-participant` command line.
//!
//! Each service keeps all its SQL in its `store.rs`, behind a store trait and a transaction
//! trait, so a second backend only implements those.

pub mod config;
pub mod fraud;
pub mod fulfillment;
pub mod inventory;
pub mod kit;
pub mod payment;
pub mod server;

pub use server::{ServeError, ServeOptions, ServiceKind, migrate, run, seed_demo_catalog, serve};

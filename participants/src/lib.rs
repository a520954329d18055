//! Sagaflow's demo saga participants (DESIGN §6): payment, inventory, fraud and fulfillment,
//! each a gRPC service with its own storage (a PostgreSQL schema, or SQLite tables) and
//! idempotency table, compensation tombstones (DESIGN §3) and runtime fault injection. One
//! binary serves any of them, or all; other Rust code can run them in-process ([`embedded`]).
//!
//! # Layout
//! - [`kit`]: what every participant shares: idempotency and tombstones
//!   ([`kit::idempotency`]), business errors and their mapping to `tonic::Status`
//!   ([`kit::error`]), fault injection and the Chaos service ([`kit::chaos`]), the clock
//!   ([`kit::clock`]), storage errors and migrations ([`kit::store`]) and what the SQLite
//!   stores share ([`kit::sqlite`]: WAL, busy timeout, `BEGIN IMMEDIATE`, text timestamps).
//! - [`payment`]: `payment.v1.Payment`, charges and refunds.
//! - [`inventory`]: `inventory.v1.Inventory`, expiring reservations, commits, restocks.
//! - [`fraud`]: `fraud.v1.Fraud`, stored screening decisions.
//! - [`fulfillment`]: `fulfillment.v1.Fulfillment`, shipments and their cancellation.
//! - [`backend`]: [`Backend`], the database a URL names (`postgres://` → PostgreSQL,
//!   `sqlite:` or a file path → SQLite): [`Backend::open`], migrations, the services' stores.
//! - [`server`]: one process: migrations, services, health, reflection, shutdown
//!   ([`serve`] on a bound listener, [`run`] for the binary).
//! - [`embedded`]: participants inside another process: [`serve_embedded`] (some services,
//!   one database URL, the caller's listener, until a future completes) and
//!   [`EmbeddedParticipants::start`] (each service on `<data dir>/<service>.db` and its own
//!   `127.0.0.1:0` port; `addr(service)` says where, `shutdown()` stops them).
//! - [`config`]: the `sagaflow-participant` command line.
//!
//! Each service keeps all its SQL in its `store.rs` (PostgreSQL, checked by sqlx against
//! `participants/.sqlx`) and `store/sqlite.rs` (SQLite, runtime queries), behind a store
//! trait and a transaction trait; the behaviour tests run against both backends.

pub mod backend;
pub mod config;
pub mod embedded;
pub mod fraud;
pub mod fulfillment;
pub mod inventory;
pub mod kit;
pub mod payment;
pub mod server;

pub use backend::{Backend, BackendKind, OpenError};
pub use embedded::{EmbeddedParticipants, serve_embedded};
pub use server::{ServeError, ServeOptions, ServiceKind, migrate, run, seed_demo_catalog, serve};

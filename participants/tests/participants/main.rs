//! Integration tests of the demo participants: each test gets a fresh, migrated PostgreSQL
//! database and a real server on 127.0.0.1:0, and talks to it with the generated clients.
//! DATABASE_URL names the server to create those databases on (./scripts/test.sh starts a
//! throwaway one).

mod common;

mod chaos;
mod fraud;
mod fulfillment;
mod inventory;
mod payment;
mod process;
mod server;

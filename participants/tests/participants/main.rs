//! Integration tests of the demo participants: each test gets a fresh, migrated database and
//! a real server on 127.0.0.1:0, and talks to it with the generated clients.
//!
//! Every behaviour test runs once per storage backend, as `<module>::postgres::<test>` and
//! `<module>::sqlite::<test>`. The SQLite runs use a fresh file in a temporary directory and
//! need nothing else (`cargo test -p sagaflow-participants sqlite`); the PostgreSQL runs need
//! DATABASE_URL naming a server where the user may create databases (./scripts/test.sh
//! starts a throwaway one).

/// Turns each named `async fn(Db)` into two tests: `postgres::<name>` and `sqlite::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::Db::Postgres).await
                }
            )+
        }

        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::Db::Sqlite).await
                }
            )+
        }
    };
}

mod common;

mod chaos;
mod embedded;
mod fraud;
mod fulfillment;
mod inventory;
mod payment;
mod process;
mod server;
mod telemetry;

//! A connection kept out of the pool for one stream of writes (the group commits of
//! transitions, and of new executions), each used by one task at a time.
//!
//! Why not the pool: sqlx 0.8 sends a Sync and waits for the server's answer every time a
//! connection goes back to the pool, so each pooled statement costs a second round trip and a
//! wake-up of a backend on both sides. Measured with `sagaflow bench`, that was a few percent of
//! both processes' CPU on the commit path. A lane holds its connection between statements and
//! gives it back (pinged, so the pool's health check still applies) once it is a minute old or
//! after an error that was not the database refusing a statement.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Error, Postgres};
use tokio::sync::{Mutex, MutexGuard};

/// How long a lane keeps one connection before handing it back to the pool.
const KEEP: Duration = Duration::from_secs(60);

/// One held connection, taken from `pool` when first needed.
#[derive(Debug, Default)]
pub(super) struct Lane {
    held: Mutex<Option<(PoolConnection<Postgres>, Instant)>>,
}

/// The lane's connection, for one statement.
pub(super) struct LaneGuard<'a> {
    held: MutexGuard<'a, Option<(PoolConnection<Postgres>, Instant)>>,
    settled: bool,
}

impl Lane {
    /// The held connection, or a fresh one from `pool`.
    pub(super) async fn get(&self, pool: &PgPool) -> Result<LaneGuard<'_>, Error> {
        let mut held = self.held.lock().await;
        if held.as_ref().is_some_and(|(_, since)| since.elapsed() > KEEP) {
            *held = None;
        }
        if held.is_none() {
            *held = Some((pool.acquire().await?, Instant::now()));
        }
        Ok(LaneGuard { held, settled: false })
    }
}

impl LaneGuard<'_> {
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        match self.held.as_mut() {
            Some((conn, _)) => conn,
            None => unreachable!("a lane guard always holds a connection"),
        }
    }

    /// Note how the statement went: a connection that failed for any reason other than the
    /// server refusing the statement goes back to the pool, which checks it and closes it if
    /// it is broken.
    pub(super) fn settle<T>(mut self, result: &Result<T, Error>) {
        self.settled = true;
        if let Err(e) = result
            && !matches!(e, Error::Database(_))
        {
            *self.held = None;
        }
    }
}

impl Drop for LaneGuard<'_> {
    /// A statement abandoned midway (its future dropped) may leave the connection inside the
    /// protocol: it goes back to the pool, whose check on release cleans it up or closes it.
    fn drop(&mut self) {
        if !self.settled {
            *self.held = None;
        }
    }
}

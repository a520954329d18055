//! Time as the services see it. Reservation expiry depends on "now"; injecting the clock lets
//! tests move time forward instead of sleeping through a TTL.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

/// The source of "now" for every timestamp a participant stores or compares.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, truncated to microseconds: PostgreSQL keeps no more, and a value
    /// must compare equal after a round trip through the database.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A manual clock starting at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self { now: Arc::new(Mutex::new(SystemClock.now())) }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

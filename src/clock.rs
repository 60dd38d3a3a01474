//! The one place that reads the wall clock.
//!
//! Everything else gets the time as an argument (`now`), or a [`Clock`] it asks when an event
//! happens (a request arrives, a loop wakes up). The daemon passes [`Clock::system`]; tests pass
//! [`Clock::fixed`] or a closure of their own ([`Clock::from_fn`]). `clippy.toml` keeps
//! `Utc::now`, `SystemTime::now` and `Uuid::now_v7` out of every other module.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Where the shell reads the time. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The wall clock (UTC).
    pub fn system() -> Clock {
        #[allow(clippy::disallowed_methods)] // the one wall-clock read of the crate
        Clock(Arc::new(Utc::now))
    }

    /// A clock that always says `at`.
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock(Arc::new(move || at))
    }

    /// A clock that asks `now` (tests that move time along).
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The time now.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_fixed_clock_says_its_time_and_the_system_clock_moves_forward() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        assert_eq!(Clock::fixed(at).now(), at);
        let system = Clock::system();
        let (a, b) = (system.now(), system.now());
        assert!(b >= a && a > at - chrono::Duration::days(365 * 100));
        let stepped = std::sync::atomic::AtomicI64::new(0);
        let clock = Clock::from_fn(move || {
            let n = stepped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            at + chrono::Duration::seconds(n)
        });
        assert_eq!(clock.now(), at);
        assert_eq!(clock.now(), at + chrono::Duration::seconds(1));
    }
}

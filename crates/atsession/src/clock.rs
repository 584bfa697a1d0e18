//! Time, injectable: the library reads the time only through a [`Clock`], so tests (yours
//! and ours) can move it.
//!
//! ```
//! use std::time::Duration;
//! use atsession::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now().unix_timestamp(), 90);
//! ```

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told to. For tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock stopped at `at`.
    #[must_use]
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(at))
    }

    /// A clock stopped at the current wall-clock time, rounded to the millisecond.
    #[must_use]
    pub fn at_now() -> Self {
        Self::new(truncate_ms(OffsetDateTime::now_utc()))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t = add_saturating(*t, by);
    }

    /// Sets the clock.
    pub fn set(&self, at: OffsetDateTime) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Milliseconds since the Unix epoch: how stores keep times.
#[must_use]
pub fn to_millis(t: OffsetDateTime) -> i64 {
    // Whole seconds and milliseconds apart: no 128-bit division (this is on every lookup).
    // The range of `OffsetDateTime` (±9999 years) keeps this far from overflowing.
    t.unix_timestamp()
        .saturating_mul(1000)
        .saturating_add(i64::from(t.millisecond()))
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch.
#[must_use]
pub fn from_millis(ms: i64) -> OffsetDateTime {
    let secs = ms.div_euclid(1000);
    let millis = u16::try_from(ms.rem_euclid(1000)).unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.replace_millisecond(millis).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Drops sub-millisecond precision, so a time survives a round trip through a store.
#[must_use]
pub fn truncate_ms(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_millisecond(t.millisecond()).unwrap_or(t)
}

/// The longest duration any lifetime, interval or timeout in a configuration may have: ten
/// years. Longer values are refused when the configuration is checked, so that no time
/// computed from one can leave the range a store keeps.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// `t + d`, or the last representable time if that overflows: never panics.
///
/// ```
/// use std::time::Duration;
/// use atsession::clock::add_saturating;
/// use time::OffsetDateTime;
///
/// let t = OffsetDateTime::UNIX_EPOCH;
/// assert_eq!(add_saturating(t, Duration::from_secs(60)).unix_timestamp(), 60);
/// assert!(add_saturating(t, Duration::MAX) > t); // no panic
/// ```
#[must_use]
pub fn add_saturating(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d))
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
}

/// `start + d` for a monotonic instant, or about 30 years later if that overflows.
pub(crate) fn instant_after(start: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    const FAR: Duration = Duration::from_secs(30 * 366 * 24 * 3600);
    start
        .checked_add(d.min(FAR))
        .or_else(|| start.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_before_and_after_the_epoch() {
        for ms in [
            0,
            1,
            999,
            1000,
            -1,
            -999,
            -1000,
            -1001,
            1_764_000_000_123,
            -62_000_000_000_001,
        ] {
            assert_eq!(to_millis(from_millis(ms)), ms, "{ms}");
        }
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_789).unwrap();
        assert_eq!(to_millis(t), 1_764_000_000_123);
        assert_eq!(
            truncate_ms(t).unix_timestamp_nanos(),
            1_764_000_000_123_000_000
        );
        let before = OffsetDateTime::from_unix_timestamp_nanos(-1_500_000).unwrap();
        assert_eq!(to_millis(before), -2);
        assert_eq!(to_millis(truncate_ms(before)), -2);
        // Out of range: the epoch, as before.
        assert_eq!(from_millis(i64::MAX), OffsetDateTime::UNIX_EPOCH);
    }
}

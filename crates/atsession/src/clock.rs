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

/// The system's wall clock, to the millisecond.
///
/// Read on every session lookup, so made cheap: on Linux it is the coarse real-time clock
/// (`CLOCK_REALTIME_COARSE`, read from memory the kernel updates on every tick, so up to one
/// tick, a few milliseconds, behind the precise clock; never ahead of it), and the calendar
/// date of the current second is worked out once per second per thread. Elsewhere it is
/// [`SystemTime::now`](std::time::SystemTime::now).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let (secs, millis) = unix_now();
        thread_local! {
            /// The last second converted on this thread, and its start as a date and time.
            static SECOND: std::cell::Cell<(i64, OffsetDateTime)> =
                const { std::cell::Cell::new((0, OffsetDateTime::UNIX_EPOCH)) };
        }
        let start = SECOND.with(|cached| {
            let (at, start) = cached.get();
            if at == secs {
                return start;
            }
            let start =
                OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
            cached.set((secs, start));
            start
        });
        start.replace_millisecond(millis).unwrap_or(start)
    }
}

/// Seconds and milliseconds since the Unix epoch, now.
#[cfg(target_os = "linux")]
fn unix_now() -> (i64, u16) {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    let millis = u16::try_from(t.tv_nsec / 1_000_000).unwrap_or(0).min(999);
    (t.tv_sec, millis)
}

/// Seconds and milliseconds since the Unix epoch, now (before 1970: the epoch).
#[cfg(not(target_os = "linux"))]
fn unix_now() -> (i64, u16) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let millis = u16::try_from(d.subsec_millis()).unwrap_or(0);
    (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), millis)
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

    #[test]
    fn the_system_clock_follows_the_precise_clock_to_the_millisecond_across_seconds() {
        // Readings over more than one second boundary, each between the precise clock a
        // little before (less the coarse clock's lag of at most a tick) and just after.
        let end = std::time::Instant::now() + Duration::from_millis(1100);
        let mut last = OffsetDateTime::UNIX_EPOCH;
        let mut seconds = std::collections::BTreeSet::new();
        while std::time::Instant::now() < end {
            let before = OffsetDateTime::now_utc();
            let ours = SystemClock.now();
            let after = OffsetDateTime::now_utc();
            assert!(ours <= after, "{ours} is ahead of {after}");
            assert!(
                ours > before - Duration::from_millis(100),
                "{ours} lags {before}"
            );
            assert!(ours >= last, "{ours} went back from {last}");
            assert_eq!(ours.nanosecond() % 1_000_000, 0);
            seconds.insert(ours.unix_timestamp());
            last = ours;
            std::thread::sleep(Duration::from_micros(300));
        }
        assert!(seconds.len() >= 2, "{seconds:?}");
    }
}

//! Time as plain integer ticks. lb-core never reads a clock: the caller passes `now` in.
//!
//! One tick is one millisecond. `Instant` is a 64-bit count since an epoch of the caller's
//! choosing (boot, process start, a virtual clock in tests); it never wraps in practice.
//!
//! Both types convert to and from smoltcp's (`smoltcp::time::{Instant, Duration}`, so a
//! frontend that already keeps smoltcp time passes it straight in) and `Duration` to and from
//! `core::time::Duration`. A host frontend builds `now` from `std::time::Instant` by taking the
//! time elapsed since its own start:
//!
//! ```
//! let start = std::time::Instant::now();
//! // ... on every loop iteration:
//! let now = lb_core::Instant::from(start.elapsed());
//! assert!(now.millis() < 1_000);
//! ```

use core::ops::{Add, AddAssign, Sub};

/// A point in time, in milliseconds since the caller's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    millis: u64,
}

/// A span of time, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    millis: u64,
}

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant { millis: 0 };

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant { millis }
    }

    /// An instant `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            millis: secs.saturating_mul(1000),
        }
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> u64 {
        self.millis
    }

    /// Time elapsed since `earlier`, or zero if `earlier` is later than `self`.
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration {
            millis: self.millis.saturating_sub(earlier.millis),
        }
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration { millis: 0 };

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            millis: secs.saturating_mul(1000),
        }
    }

    /// The duration in milliseconds.
    pub const fn millis(self) -> u64 {
        self.millis
    }

    /// The duration in whole seconds (rounded down).
    pub const fn secs(self) -> u64 {
        self.millis / 1000
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant {
            millis: self.millis.saturating_add(rhs.millis),
        }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration {
            millis: self.millis.saturating_add(rhs.millis),
        }
    }
}

impl core::fmt::Display for Duration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}s", self.millis / 1000, self.millis % 1000)
    }
}

impl From<smoltcp::time::Instant> for Instant {
    /// smoltcp's instants are signed microseconds; one before smoltcp's epoch becomes
    /// [`Instant::ZERO`], the rest are rounded down to the millisecond.
    fn from(t: smoltcp::time::Instant) -> Self {
        Instant::from_millis(u64::try_from(t.total_millis()).unwrap_or(0))
    }
}

impl From<Instant> for smoltcp::time::Instant {
    /// Saturates at `i64::MAX` milliseconds (292 million years).
    fn from(t: Instant) -> Self {
        smoltcp::time::Instant::from_millis(i64::try_from(t.millis()).unwrap_or(i64::MAX))
    }
}

impl From<smoltcp::time::Duration> for Duration {
    /// Rounded down to the millisecond.
    fn from(d: smoltcp::time::Duration) -> Self {
        Duration::from_millis(d.total_millis())
    }
}

impl From<Duration> for smoltcp::time::Duration {
    fn from(d: Duration) -> Self {
        smoltcp::time::Duration::from_millis(d.millis())
    }
}

impl From<core::time::Duration> for Duration {
    /// Rounded down to the millisecond; saturates at `u64::MAX` milliseconds.
    fn from(d: core::time::Duration) -> Self {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_millis(d.millis())
    }
}

impl From<core::time::Duration> for Instant {
    /// The instant that long after the caller's epoch (e.g. `std::time::Instant::elapsed` since
    /// the frontend started).
    fn from(d: core::time::Duration) -> Self {
        Instant::ZERO + Duration::from(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoltcp_and_core_conversions_round_trip_to_the_millisecond() {
        let t = Instant::from_millis(123_456);
        assert_eq!(Instant::from(smoltcp::time::Instant::from(t)), t);
        assert_eq!(
            Instant::from(smoltcp::time::Instant::from_micros(1_999)),
            Instant::from_millis(1)
        );
        assert_eq!(
            Instant::from(smoltcp::time::Instant::from_millis(-5)),
            Instant::ZERO
        );
        let d = Duration::from_millis(90_001);
        assert_eq!(Duration::from(smoltcp::time::Duration::from(d)), d);
        assert_eq!(Duration::from(core::time::Duration::from(d)), d);
        assert_eq!(
            Duration::from(core::time::Duration::from_micros(2_500)),
            Duration::from_millis(2)
        );
        assert_eq!(
            Instant::from(core::time::Duration::from_secs(3)),
            Instant::from_secs(3)
        );
    }
}

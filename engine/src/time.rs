//! Time: `Timestamp` (microseconds since the Unix epoch) and the injectable `Clock`.
//!
//! The store never reads the system time directly: every commit time comes from the
//! `Clock` in its config, so tests and simulations can set time exactly. `ManualClock` is
//! the settable one; `SystemClock` the default.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: microseconds since the Unix epoch, UTC. Displays and parses as
/// RFC 3339 (`2026-11-21T10:00:00.000000Z`).
///
/// RFC 3339 writes years with four digits, so the latest time it can name is
/// [`Timestamp::MAX`]; the store refuses to record a later expiry. A later value (a
/// library caller's, or one written by a build without that check) still displays, as
/// microseconds after the epoch, so no value can make a view fail.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The latest time RFC 3339 can write: 9999-12-31T23:59:59.999999Z.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999_999);

    /// The timestamp of a `SystemTime` (times before 1970 become the epoch).
    pub fn from_system_time(time: SystemTime) -> Timestamp {
        let micros = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros());
        Timestamp(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// This timestamp as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.0)
    }

    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// This time moved forward by `duration`, saturating at the largest timestamp.
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(micros))
    }

    /// This time moved back by `duration`, saturating at the epoch.
    pub fn saturating_sub(self, duration: Duration) -> Timestamp {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(micros))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self > Timestamp::MAX {
            return write!(f, "{}us after the epoch (past year 9999)", self.0);
        }
        write!(
            f,
            "{}",
            humantime::format_rfc3339_micros(self.to_system_time())
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// Why a string is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp {input:?}: expected RFC 3339 in UTC, like 2026-11-21T10:00:00Z ({reason})"
)]
pub struct ParseTimestampError {
    /// The text that failed to parse.
    pub input: String,
    /// What the parser said.
    pub reason: String,
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Exactly `YYYY-MM-DDTHH:MM:SS[.F]Z` (or `+00:00`), a real date from 1970 on, up to
    /// nine fraction digits, seconds up to 59. Nothing may follow. A leap second (`:60`) is
    /// refused: the store's times have no instant for it (the parser would fold it back to
    /// `:59`, before times a client sent earlier at `:59.5`).
    fn from_str(input: &str) -> Result<Timestamp, ParseTimestampError> {
        let refused = |reason: String| ParseTimestampError {
            input: input.to_owned(),
            reason,
        };
        if !is_rfc3339_utc_shape(input) {
            return Err(refused(match other_utc_offset(input) {
                // Found by a review: `+01:00` was only "timestamp format is invalid".
                Some(offset) => {
                    format!("offset {offset} is not UTC: end the time with Z or +00:00")
                }
                None => "timestamp format is invalid".to_owned(),
            }));
        }
        // Found by a review: 1969-12-31T23:59:59Z was "numeric component is out of range".
        if input.get(..4).is_some_and(|year| year < "1970") {
            return Err(refused(
                "a time before 1970-01-01T00:00:00Z, which no store holds: give 1970 or later"
                    .to_owned(),
            ));
        }
        if input.get(17..19) == Some("60") {
            return Err(refused(
                "second 60, a leap second, has no instant of its own here: give :59.999999 or the next minute".to_owned(),
            ));
        }
        humantime::parse_rfc3339(input)
            .map(Timestamp::from_system_time)
            .map_err(|error| refused(error.to_string()))
    }
}

/// The offset `input` ends with (`+01:00`, `-05:00`), if it looks like an RFC 3339 time
/// with one other than UTC's.
fn other_utc_offset(input: &str) -> Option<&str> {
    let cut = input.len().checked_sub(6)?;
    let offset = input.get(cut..)?;
    let bytes = offset.as_bytes();
    let shaped = matches!(bytes.first(), Some(b'+' | b'-'))
        && bytes.get(3) == Some(&b':')
        && [1, 2, 4, 5]
            .iter()
            .all(|&at| bytes.get(at).is_some_and(u8::is_ascii_digit));
    (shaped && offset != "+00:00" && input.get(10..11) == Some("T")).then_some(offset)
}

/// Whether `input` has the shape of an RFC 3339 UTC time as the store writes and reads
/// them (the calendar is humantime's to check): humantime alone accepts text after it.
fn is_rfc3339_utc_shape(input: &str) -> bool {
    let body = input
        .strip_suffix('Z')
        .or_else(|| input.strip_suffix("+00:00"));
    let Some(body) = body else {
        return false;
    };
    let (seconds, fraction) = match body.split_once('.') {
        Some((seconds, fraction)) => (seconds, Some(fraction)),
        None => (body, None),
    };
    let shape_ok = seconds.len() == 19
        && seconds
            .bytes()
            .enumerate()
            .all(|(index, byte)| match index {
                4 | 7 => byte == b'-',
                10 => byte == b'T',
                13 | 16 => byte == b':',
                _ => byte.is_ascii_digit(),
            });
    let fraction_ok = fraction.is_none_or(|digits| {
        (1..=9).contains(&digits.len()) && digits.bytes().all(|byte| byte.is_ascii_digit())
    });
    shape_ok && fraction_ok
}

/// Where the store gets the time of each commit and branch operation.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// A clock that only moves when told to: for tests and simulations. Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            micros: Arc::new(AtomicU64::new(start.0)),
        }
    }

    /// Sets the time (it may go backwards: the store clamps commit times itself).
    pub fn set(&self, time: Timestamp) {
        self.micros.store(time.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `duration`.
    pub fn advance(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.micros.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_and_parse_as_rfc3339() {
        let time: Timestamp = "2026-04-08T10:15:30.250000Z".parse().unwrap();
        assert_eq!(time.to_string(), "2026-04-08T10:15:30.250000Z");
        assert_eq!(time.to_string().parse::<Timestamp>(), Ok(time));
        let error = "yesterday".parse::<Timestamp>().unwrap_err();
        assert!(error.to_string().contains("yesterday"));
    }

    #[test]
    fn only_the_exact_shape_parses() {
        for good in [
            "2026-04-08T10:15:30Z",
            "2026-04-08T10:15:30.123456789Z",
            "2024-02-29T00:00:00+00:00",
        ] {
            assert!(good.parse::<Timestamp>().is_ok(), "{good}");
        }
        for bad in [
            "2026-04-08T10:15:30ZZ",
            "2026-04-08t10:15:30z",
            "2026-04-08 10:15:30Z",
            "2026-04-08T10:15:30+01:00",
            "2026-04-08T10:15:30.Z",
            "2026-04-08T10:15:30.1234567890Z",
            "2023-02-29T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-4-08T10:15:30Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
        // Another offset than UTC's is named as such.
        for (other, offset) in [
            ("2026-04-08T10:15:30+01:00", "+01:00"),
            ("2026-04-08T10:15:30.5-05:30", "-05:30"),
        ] {
            let error = other.parse::<Timestamp>().unwrap_err();
            assert!(
                error.reason.contains(offset) && error.reason.contains("not UTC"),
                "{error}"
            );
        }
        let error = "2026-04-08 10:15:30".parse::<Timestamp>().unwrap_err();
        assert_eq!(error.reason, "timestamp format is invalid");
        // Found by a review: a time before the epoch said "numeric component is out of
        // range".
        for before in [
            "1969-12-31T23:59:59.999999Z",
            "1900-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
        ] {
            let error = before.parse::<Timestamp>().unwrap_err();
            assert!(
                error.reason.contains("before 1970-01-01"),
                "{before}: {error}"
            );
        }
        assert_eq!(
            "1970-01-01T00:00:00Z".parse::<Timestamp>(),
            Ok(Timestamp(0))
        );
    }

    #[test]
    fn every_timestamp_displays() {
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(
            Timestamp::MAX.to_string().parse::<Timestamp>(),
            Ok(Timestamp::MAX)
        );
        let past = Timestamp(Timestamp::MAX.0 + 1);
        assert_eq!(
            past.to_string(),
            "253402300800000000us after the epoch (past year 9999)"
        );
        assert!(Timestamp(u64::MAX).to_string().contains("past year 9999"));
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp(1_000));
        assert_eq!(clock.now(), Timestamp(1_000));
        clock.advance(Duration::from_millis(2));
        assert_eq!(clock.now(), Timestamp(3_000));
        let shared = clock.clone();
        shared.set(Timestamp(10));
        assert_eq!(clock.now(), Timestamp(10));
    }
}

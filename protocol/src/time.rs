//! Time as the protocol carries it: whole milliseconds since the Unix epoch, UTC.
//!
//! CBOR carries the integer; JSON carries RFC 3339 with milliseconds (`2026-11-26T08:00:00.000Z`),
//! which is what an operator reading the API expects. No floats anywhere.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// The latest representable instant we accept (year 9999), so that text formatting never fails.
const MAX_MILLIS: u64 = 253_402_300_799_999;

impl Timestamp {
    /// The current wall-clock time. Cores never call this: time is passed in.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(
            u64::try_from(d.as_millis())
                .unwrap_or(MAX_MILLIS)
                .min(MAX_MILLIS),
        )
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0
    }

    /// `self + ms`, saturating.
    pub fn plus_millis(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms).min(MAX_MILLIS))
    }

    /// Parses RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SS`, optionally `.` and 1 to 9 fractional
    /// digits, then `Z` (uppercase `T` and `Z`; no other offset, not even `+00:00`). Digits
    /// below the millisecond are dropped. Seconds run from 00 to 59: Unix time has no leap
    /// second, and accepting `:60` would give one instant two spellings.
    ///
    /// # Errors
    /// A message saying what form is expected.
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let expected = |why: &str| {
            format!(
                "invalid time {s:?}: {why}; expected e.g. 2026-11-26T08:00:00Z or 2026-11-26T08:00:00.123Z"
            )
        };
        let b = s.as_bytes();
        let layout_ok = b.len() >= 20
            && b.iter().take(19).enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            });
        if !layout_ok {
            return Err(expected("not of the form YYYY-MM-DDTHH:MM:SS"));
        }
        let fraction = match (&b[19..b.len() - 1], b[b.len() - 1]) {
            ([], b'Z') => &[][..],
            ([b'.', digits @ ..], b'Z')
                if (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) =>
            {
                digits
            }
            _ => {
                return Err(expected(
                    "after the seconds only '.' and 1 to 9 digits, then Z",
                ));
            }
        };
        if &b[17..19] > b"59".as_slice() {
            return Err(expected("seconds run from 00 to 59"));
        }
        // The layout is now strict, so the calendar checks (month, day, leap years, year from
        // 1970) and the arithmetic can be left to humantime.
        let whole = format!("{}Z", &s[..19]);
        let t = humantime::parse_rfc3339(&whole).map_err(|e| expected(&e.to_string()))?;
        let d = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| format!("time {s:?} is before 1970"))?;
        let millis_of_fraction = fraction
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(3)
            .fold(0u64, |acc, c| acc * 10 + u64::from(c - b'0'));
        u64::try_from(d.as_millis())
            .ok()
            .and_then(|m| m.checked_add(millis_of_fraction))
            .filter(|m| *m <= MAX_MILLIS)
            .map(Timestamp)
            .ok_or_else(|| format!("time {s:?} is out of range"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_millis(self.0.min(MAX_MILLIS));
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
        } else {
            let ms = u64::deserialize(d)?;
            if ms > MAX_MILLIS {
                return Err(serde::de::Error::custom("timestamp beyond year 9999"));
            }
            Ok(Timestamp(ms))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_is_rfc3339_with_milliseconds_and_round_trips() {
        let t = Timestamp(1_764_144_000_123);
        assert_eq!(t.to_string(), "2025-11-26T08:00:00.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn a_cbor_timestamp_beyond_year_9999_is_shape() {
        use crate::canonical::{Limits, from_canonical, to_canonical};
        let last = to_canonical(&MAX_MILLIS).expect("encode");
        assert_eq!(
            from_canonical::<Timestamp>(&last, &Limits::default()),
            Ok(Timestamp(MAX_MILLIS))
        );
        let beyond = to_canonical(&(MAX_MILLIS + 1)).expect("encode");
        let err = from_canonical::<Timestamp>(&beyond, &Limits::default()).expect_err("year 10000");
        assert_eq!(err.kind(), "shape", "{err}");
    }

    #[test]
    fn parsing_accepts_z_with_up_to_nine_fractional_digits_and_drops_sub_milliseconds() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).map(Timestamp::millis);
        assert_eq!(t("2026-06-01T00:00:00Z"), Ok(1_780_272_000_000));
        assert_eq!(t("2026-06-01T00:00:00.5Z"), Ok(1_780_272_000_500));
        assert_eq!(t("2026-06-01T00:00:00.123Z"), Ok(1_780_272_000_123));
        assert_eq!(t("2026-06-01T00:00:00.123999999Z"), Ok(1_780_272_000_123));
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("9999-12-31T23:59:59.999Z"), Ok(MAX_MILLIS));
    }

    #[test]
    fn parsing_refuses_offsets_long_fractions_leap_seconds_and_loose_layouts() {
        for bad in [
            "2026-06-01T00:00:00+00:00",
            "2026-06-01T00:00:00.000+00:00",
            "2026-06-01T00:00:00+08:00",
            "2026-06-01T00:00:00",
            "2026-06-01T00:00:00z",
            "2026-06-01t00:00:00Z",
            "2026-06-01 00:00:00Z",
            "2026-06-01T00:00:00.Z",
            "2026-06-01T00:00:00.1234567890Z",
            "2026-06-01T00:00:00.12a4Z",
            "2026-06-01T00:00:00ZZ",
            "2026-06-01T00:00:00Z ",
            "2026-06-01T00:00:60Z",
            "2026-02-30T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-6-01T00:00:00Z",
            "２026-06-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
    }
}

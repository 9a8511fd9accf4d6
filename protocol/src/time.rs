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
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(d.as_millis()).unwrap_or(MAX_MILLIS).min(MAX_MILLIS))
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0
    }

    /// `self + ms`, saturating.
    pub fn plus_millis(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms).min(MAX_MILLIS))
    }

    /// Parses RFC 3339 (`2026-11-26T08:00:00Z`, fractional seconds allowed, `Z` only).
    ///
    /// # Errors
    /// A message saying what form is expected.
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let t = humantime::parse_rfc3339(s)
            .map_err(|e| format!("invalid time {s:?}: {e}; expected e.g. 2026-11-26T08:00:00Z"))?;
        let d = t.duration_since(UNIX_EPOCH).map_err(|_| format!("time {s:?} is before 1970"))?;
        u64::try_from(d.as_millis())
            .ok()
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
        if s.is_human_readable() { s.collect_str(self) } else { s.serialize_u64(self.0) }
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
}

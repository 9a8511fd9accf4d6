//! Identifiers: exchanges, zones, nodes, parties, and content ids.
//!
//! Every identifier has exactly one text form, parsed strictly: what parses prints back to the
//! same string. The text form is also the CBOR form (a text string), except for [`ContentId`],
//! which is 32 raw bytes in CBOR and `sha256:<64 lowercase hex>` in text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A segment is empty, too long, or uses characters outside its alphabet.
    #[error(
        "invalid {what} {value:?}: expected {len} characters of lowercase ASCII letters, digits \
         and '-', starting with a letter or digit"
    )]
    BadSegment {
        /// Which kind of identifier.
        what: &'static str,
        /// The rejected input.
        value: String,
        /// The allowed length range, for the message.
        len: &'static str,
    },
    /// A compound identifier does not have the expected number of `/`-separated parts.
    #[error("invalid {what} {value:?}: expected the form {form}")]
    BadForm {
        /// Which kind of identifier.
        what: &'static str,
        /// The rejected input.
        value: String,
        /// The expected form, for the message.
        form: &'static str,
    },
    /// A content id that is not `sha256:` followed by 64 lowercase hex digits.
    #[error(
        "invalid content id {value:?}: expected \"sha256:\" followed by 64 lowercase hex digits"
    )]
    BadContentId {
        /// The rejected input.
        value: String,
    },
}

/// A segment: 1..=max chars of `[a-z0-9-]`, first char alphanumeric, no trailing '-'.
fn segment_ok(s: &str, max: usize, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && !b[0].is_ascii_uppercase()
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || extra.contains(c)
        })
        && !b.ends_with(b"-")
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_id! {
    /// An exchange, e.g. `xuchang`: 1 to 32 characters of `[a-z0-9-]`.
    ExchangeId
}
text_id! {
    /// A zone of an exchange, e.g. `xuchang/yuzhou`: `<exchange>/<zone>`, the zone part 1 to
    /// 32 characters of `[a-z0-9-]`.
    ZoneId
}
text_id! {
    /// A node's name, unique within its zone, e.g. `yuzhou-1`: 1 to 63 characters of `[a-z0-9-]`.
    NodeName
}
text_id! {
    /// A party (provider, buyer, broker, reviewer), e.g. `yuzhou-credit-center`: 1 to 64
    /// characters of `[a-z0-9-._]`.
    PartyId
}

impl FromStr for ExchangeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if segment_ok(s, 32, b"") {
            Ok(ExchangeId(s.to_owned()))
        } else {
            Err(IdError::BadSegment {
                what: "exchange id",
                value: s.to_owned(),
                len: "1 to 32",
            })
        }
    }
}

impl FromStr for ZoneId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad_form = || IdError::BadForm {
            what: "zone id",
            value: s.to_owned(),
            form: "<exchange>/<zone>, e.g. xuchang/yuzhou",
        };
        let (exchange, zone) = s.split_once('/').ok_or_else(bad_form)?;
        exchange.parse::<ExchangeId>()?;
        if !segment_ok(zone, 32, b"") {
            return Err(IdError::BadSegment {
                what: "zone name",
                value: zone.to_owned(),
                len: "1 to 32",
            });
        }
        Ok(ZoneId(s.to_owned()))
    }
}

impl ZoneId {
    /// Builds `<exchange>/<zone>`.
    ///
    /// # Errors
    /// [`IdError::BadSegment`] if `zone` is not a valid zone name.
    pub fn new(exchange: &ExchangeId, zone: &str) -> Result<Self, IdError> {
        format!("{exchange}/{zone}").parse()
    }

    /// The exchange this zone belongs to.
    pub fn exchange(&self) -> ExchangeId {
        let (exchange, _) = self.0.split_once('/').unwrap_or((&self.0, ""));
        ExchangeId(exchange.to_owned())
    }

    /// The zone's own name, without the exchange.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, z)| z)
    }
}

impl FromStr for NodeName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if segment_ok(s, 63, b"") {
            Ok(NodeName(s.to_owned()))
        } else {
            Err(IdError::BadSegment {
                what: "node name",
                value: s.to_owned(),
                len: "1 to 63",
            })
        }
    }
}

impl FromStr for PartyId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if segment_ok(s, 64, b"._") {
            Ok(PartyId(s.to_owned()))
        } else {
            Err(IdError::BadSegment {
                what: "party id",
                value: s.to_owned(),
                len: "1 to 64",
            })
        }
    }
}

/// The SHA-256 of an object's canonical CBOR encoding: the object's identity everywhere.
///
/// Text form `sha256:` + 64 lowercase hex digits; CBOR form a 32-byte byte string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// The prefix of the text form.
    pub const PREFIX: &'static str = "sha256:";

    /// Hashes canonical bytes.
    pub fn of(canonical: &[u8]) -> Self {
        ContentId(Sha256::digest(canonical).into())
    }

    /// Wraps a digest.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ContentId(bytes)
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ContentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadContentId {
            value: s.to_owned(),
        };
        let digits = s.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        if digits.len() != 64
            || !digits
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out).map_err(|_| bad())?;
        Ok(ContentId(out))
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            crate::bytes::deserialize_array::<D, 32>(d).map(ContentId)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip_through_their_text_form() {
        for s in ["xuchang", "zz-1", "a"] {
            assert_eq!(s.parse::<ExchangeId>().expect(s).to_string(), s);
        }
        let zone: ZoneId = "xuchang/yuzhou".parse().expect("zone");
        assert_eq!(zone.exchange().as_str(), "xuchang");
        assert_eq!(zone.name(), "yuzhou");
        assert_eq!(
            "yuzhou-credit.center_1"
                .parse::<PartyId>()
                .expect("party")
                .as_str(),
            "yuzhou-credit.center_1"
        );
    }

    #[test]
    fn identifiers_reject_everything_outside_their_alphabet() {
        for bad in [
            "",
            "Xuchang",
            "-a",
            "a-",
            "a b",
            "许昌",
            "a/b",
            &"x".repeat(33),
        ] {
            assert!(bad.parse::<ExchangeId>().is_err(), "{bad:?} accepted");
        }
        for bad in [
            "xuchang",
            "xuchang/",
            "/yuzhou",
            "xuchang/yu/zhou",
            "xuchang/Yuzhou",
        ] {
            assert!(bad.parse::<ZoneId>().is_err(), "{bad:?} accepted");
        }
        assert!("a..b/".parse::<PartyId>().is_err());
    }

    #[test]
    fn content_id_text_form_is_prefix_and_lowercase_hex() {
        let id = ContentId::of(b"");
        let text = id.to_string();
        assert_eq!(
            text,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(text.parse::<ContentId>().expect("parse"), id);
        assert!(text.to_uppercase().parse::<ContentId>().is_err());
        assert!(text.replace("sha256:", "").parse::<ContentId>().is_err());
        assert!(format!("{text}0").parse::<ContentId>().is_err());
    }
}

//! The versioned encoding of a [`Batch`], the payload of every Raft log entry and of every
//! write one zone member forwards to another.
//!
//! A batch is written as a map `{"v": 1, "commands": [...]}`. The first release wrote the bare
//! array of commands; that is format 0, still read, so a log or a peer from before the version
//! field keeps working. A batch of a format newer than [`BATCH_FORMAT`] is refused with a
//! message naming both, rather than misread. The commands' variant names (`submit_listing`, ...)
//! are wire names too: a variant renamed in Rust keeps its old name with `#[serde(rename)]`,
//! and the log fixture test (`store::state_machine`) fails if one does not.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Batch, CatalogCommand};

/// The format this release writes.
pub const BATCH_FORMAT: u16 = 1;

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_struct("Batch", 2)?;
        map.serialize_field("v", &BATCH_FORMAT)?;
        map.serialize_field("commands", &self.0)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Batch, D::Error> {
        d.deserialize_any(BatchVisitor)
    }
}

struct BatchVisitor;

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = Batch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch: {\"v\": format, \"commands\": [...]} or, format 0, an array")
    }

    /// Format 0: the bare array of commands.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch, A::Error> {
        let mut commands = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(command) = seq.next_element::<CatalogCommand>()? {
            commands.push(command);
        }
        Ok(Batch(commands))
    }

    /// Format 1 and later: the version first, then the commands in that version's form.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Batch, A::Error> {
        let mut version: Option<u16> = None;
        let mut commands: Option<Vec<CatalogCommand>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "v" if version.is_none() => {
                    let v = map.next_value::<u16>()?;
                    if v == 0 || v > BATCH_FORMAT {
                        return Err(de::Error::custom(format!(
                            "a batch in format {v}: this release reads formats 0 to \
                             {BATCH_FORMAT} (upgrade it to read a newer member's log)"
                        )));
                    }
                    version = Some(v);
                }
                "commands" if version.is_some() && commands.is_none() => {
                    commands = Some(map.next_value()?);
                }
                "commands" => return Err(de::Error::custom("a batch's commands before its \"v\"")),
                other => {
                    return Err(de::Error::custom(format!(
                        "a batch with an unknown or repeated field {other:?}"
                    )));
                }
            }
        }
        match (version, commands) {
            (Some(_), Some(commands)) => Ok(Batch(commands)),
            (None, _) => Err(de::Error::missing_field("v")),
            (_, None) => Err(de::Error::missing_field("commands")),
        }
    }
}

#[cfg(test)]
mod tests {
    use xchg_federation_config::Role;
    use xchg_protocol::Timestamp;

    use super::*;
    use crate::catalog::Actor;

    fn token() -> CatalogCommand {
        CatalogCommand::RevokeToken {
            token_hash: "cd".repeat(32),
            role: Role::Buyer,
            config_admins: None,
            at: Timestamp(9),
            actor: Actor {
                id: "admin".into(),
                role: Role::Admin,
            },
        }
    }

    fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), value).expect("cbor")
    }

    #[test]
    fn a_batch_round_trips_in_the_current_format_with_its_version() {
        let batch = Batch(vec![token(), token()]);
        let bytes = cbor(&batch);
        let back: Batch = cbor4ii::serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, batch);
        #[derive(Deserialize)]
        struct Head {
            v: u16,
        }
        #[derive(Deserialize)]
        struct Probe {
            #[serde(flatten)]
            head: Head,
        }
        let probe: Result<Probe, _> = cbor4ii::serde::from_slice(&bytes);
        assert_eq!(probe.map(|p| p.head.v).ok(), Some(BATCH_FORMAT));
    }

    #[test]
    fn a_format_0_batch_the_bare_array_is_still_read() {
        let bytes = cbor(&vec![token()]);
        let back: Batch = cbor4ii::serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, Batch(vec![token()]));
    }

    #[test]
    fn a_batch_from_a_newer_release_is_refused_naming_its_format() {
        #[derive(Serialize)]
        struct Future {
            v: u16,
            commands: Vec<CatalogCommand>,
        }
        let bytes = cbor(&Future {
            v: BATCH_FORMAT + 1,
            commands: vec![token()],
        });
        let err = cbor4ii::serde::from_slice::<Batch>(&bytes)
            .expect_err("a newer format")
            .to_string();
        assert!(err.contains("format 2"), "{err}");
    }
}

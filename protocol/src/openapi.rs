//! OpenAPI schemas of the types whose JSON form is a string (feature `openapi`).
//!
//! These types serialize by hand (one text form each), so a derived schema would describe
//! their Rust layout instead; each schema here states the text form its `Deserialize` accepts.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::ids::{ContentId, ExchangeId, NodeName, PartyId, ZoneId};
use crate::keys::PublicKey;
use crate::party::CreditCode;
use crate::time::Timestamp;

/// A string schema: what it is, the pattern its text form matches, and one example.
fn text(description: &str, pattern: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .examples([example])
}

macro_rules! text_schema {
    ($name:ty, $schema:expr) => {
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($schema.build()))
            }
        }

        impl ToSchema for $name {}
    };
}

text_schema!(
    Timestamp,
    text(
        "An instant in UTC, RFC 3339 with milliseconds.",
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$",
        "2026-11-26T08:00:00.000Z",
    )
    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
);
text_schema!(
    ContentId,
    text(
        "SHA-256 of an object's canonical CBOR encoding.",
        "^sha256:[0-9a-f]{64}$",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    )
);
text_schema!(
    ExchangeId,
    text(
        "An exchange: 1 to 32 characters of [a-z0-9-].",
        "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
        "xuchang",
    )
);
text_schema!(
    ZoneId,
    text(
        "A zone of an exchange: <exchange>/<zone>.",
        "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?/[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
        "xuchang/yuzhou",
    )
);
text_schema!(
    NodeName,
    text(
        "A node's name, unique within its zone: 1 to 63 characters of [a-z0-9-].",
        "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        "yuzhou-1",
    )
);
text_schema!(
    PartyId,
    text(
        "A party (provider, buyer, broker, reviewer): 1 to 64 characters of [a-z0-9-._].",
        "^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9._])?$",
        "yuzhou-credit-center",
    )
);
text_schema!(
    CreditCode,
    text(
        "A unified social credit code (统一社会信用代码, GB 32100): 18 characters of 0-9 A-H J-N \
         P-R T-U W-Y (capitals, no I, O, S, V, Z), characters 3 to 8 digits (the administrative \
         division), the 18th the check character of the first 17: 31 - (sum of value x 3^(i-1) \
         mod 31, mod 31), 31 written 0, values in the order of that alphabet. A code whose check \
         character is wrong is refused.",
        "^[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}$",
        "91350100M000100Y43",
    )
);
text_schema!(
    PublicKey,
    text(
        "An ed25519 public key: 64 lowercase hex digits (config files use base64 instead).",
        "^[0-9a-f]{64}$",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    )
);

#[cfg(test)]
mod tests {
    use super::*;

    fn example_of<T: PartialSchema>() -> String {
        let RefOr::T(Schema::Object(o)) = T::schema() else {
            panic!("not an inline object schema");
        };
        let example = o.examples.first().expect("an example");
        example.as_str().expect("a string example").to_owned()
    }

    #[test]
    fn every_string_schema_example_parses_as_its_type() {
        assert!(Timestamp::parse_rfc3339(&example_of::<Timestamp>()).is_ok());
        assert!(example_of::<ContentId>().parse::<ContentId>().is_ok());
        assert!(example_of::<ExchangeId>().parse::<ExchangeId>().is_ok());
        assert!(example_of::<ZoneId>().parse::<ZoneId>().is_ok());
        assert!(example_of::<NodeName>().parse::<NodeName>().is_ok());
        assert!(example_of::<PartyId>().parse::<PartyId>().is_ok());
        assert!(example_of::<PublicKey>().parse::<PublicKey>().is_ok());
        assert!(example_of::<CreditCode>().parse::<CreditCode>().is_ok());
    }
}

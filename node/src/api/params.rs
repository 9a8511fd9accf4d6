//! Numbers in query strings, read the same way by every route.
//!
//! One rule for all of them, so that a client learns it once: a number is a whole number in
//! decimal digits (no sign, no fraction; anything else is `400 invalid_field` naming the
//! parameter). A page size (`limit`) is brought within its range, never refused for its size.
//! A position (`from`, `cursor`) larger than any the node holds simply finds nothing: it
//! saturates instead of wrapping (`from=2^63` used to wrap negative and read from the start).

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::error::ApiError;

/// Reads a whole number; one too large for 64 bits saturates at `u64::MAX`.
///
/// # Errors
/// 400 `invalid_field` naming `field` when `raw` is not one or more ASCII digits.
pub fn whole_number(field: &str, raw: &str) -> Result<u64, ApiError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_field(
            field,
            format!("expected a whole number in decimal digits, got {raw:.40?}"),
        ));
    }
    Ok(raw.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// A `listing_id` query parameter, checked, in its text form; `400 invalid_field` naming it
/// when it is not a listing id (a filter on it would only ever select nothing).
///
/// # Errors
/// As said.
pub fn listing_id_filter(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    raw.map(|raw| {
        raw.parse::<xchg_protocol::ContentId>()
            .map(|id| id.to_string())
            .map_err(|_| {
                ApiError::invalid_field(
                    "listing_id",
                    format!(
                        "{raw:.80?} is not a listing id: expected sha256: followed by 64 \
                         lowercase hex digits"
                    ),
                )
            })
    })
    .transpose()
}

/// The number in a path naming one `what` (an application, an entrustment …).
///
/// # Errors
/// 404 `not_found` when `raw` is not a number: no such `what` can exist.
pub fn number_in_path(what: &str, raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("no {what} {raw:?}: expected its number")))
}

/// A page size: `default` when absent, else brought within 1 to `max`.
///
/// # Errors
/// As [`whole_number`].
pub fn page_size(field: &str, raw: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let n = whole_number(field, raw)?;
    Ok(u32::try_from(n.clamp(1, u64::from(max))).unwrap_or(max))
}

/// A position in an ordered record (a sequence number or a cursor), as SQLite's signed 64-bit
/// integer: beyond `i64::MAX` it stays there, past every row, so it finds nothing.
///
/// # Errors
/// As [`whole_number`].
pub fn position(field: &str, raw: &str) -> Result<i64, ApiError> {
    let n = whole_number(field, raw)?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The schema of a page size.
pub fn page_size_schema(default: u32, max: u32) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .default(Some(default.into()))
        .description(Some(format!(
            "Page size (default {default}): any whole number; values outside 1 to {max} are \
             brought within"
        )))
        .build()
}

/// The schema of a position passed as a query string: a whole number in decimal digits.
pub fn position_schema(description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[0-9]+$"))
        .description(Some(format!(
            "{description} A whole number in decimal digits; one beyond every record finds \
             nothing."
        )))
        .build()
}

/// The schema of a whole-number position read as an integer (`from`).
pub fn position_integer_schema(description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .description(Some(format!(
            "{description} Any whole number; one beyond every record finds nothing."
        )))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_number_is_digits_only_and_saturates() {
        assert_eq!(whole_number("n", "0").ok(), Some(0));
        assert_eq!(whole_number("n", "0042").ok(), Some(42));
        assert_eq!(
            whole_number("n", "99999999999999999999999").ok(),
            Some(u64::MAX)
        );
        for bad in ["", "-1", "+1", "1.5", "1e3", " 1", "abc", "１"] {
            let e = whole_number("n", bad).expect_err(bad);
            assert_eq!((e.code, e.field.as_deref()), ("invalid_field", Some("n")));
        }
    }

    #[test]
    fn a_page_size_is_brought_within_its_range() {
        assert_eq!(page_size("limit", None, 20, 100).ok(), Some(20));
        assert_eq!(page_size("limit", Some("0"), 20, 100).ok(), Some(1));
        assert_eq!(page_size("limit", Some("7"), 20, 100).ok(), Some(7));
        assert_eq!(page_size("limit", Some("5000"), 20, 100).ok(), Some(100));
        assert_eq!(
            page_size("limit", Some("18446744073709551616"), 20, 1000).ok(),
            Some(1000)
        );
    }

    #[test]
    fn a_position_beyond_i64_stays_at_the_end_instead_of_wrapping() {
        assert_eq!(position("from", "9223372036854775808").ok(), Some(i64::MAX));
        assert_eq!(position("from", "3").ok(), Some(3));
    }
}

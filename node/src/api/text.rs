//! The free text of request bodies (review notes, reasons, token labels) under the protocol's
//! text rule ([`xchg_protocol::text`]), the same rule as every text field of a listing: a text
//! the API accepts is one every receiver accepts and every reader sees as it is stored.

use xchg_protocol::{FieldError, ValidationError, text};

use super::error::ApiError;

/// One free-text field of a request: its name, its value, its maximum length in characters,
/// and whether it must show something.
pub struct Text<'a> {
    /// Dotted path of the field.
    pub field: &'a str,
    /// The value.
    pub value: &'a str,
    /// Most characters allowed.
    pub max: usize,
    /// Whether it must hold a visible character.
    pub required: bool,
}

/// Checks every text and reports every broken rule at once.
///
/// # Errors
/// 400 `invalid_field` naming the first field at fault, with `details` listing each problem.
pub fn check(texts: &[Text<'_>]) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = texts
        .iter()
        .flat_map(|t| {
            text::problems(t.value, t.max, t.required)
                .into_iter()
                .map(|p| FieldError {
                    field: t.field.to_owned(),
                    message: p.message(t.max),
                })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationError(errors).into())
    }
}

//! JSON body extractors: a body is read only when declared as JSON, a struct only from a JSON
//! object (at every depth, see [`objects`]), and a failure names the offending field.

mod objects;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let bytes = read_body(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// A JSON request body of type `T` that may be left out: an empty (or all-whitespace) body, or
/// JSON `null`, is `T::default()` (the OpenAPI document describes such a body as `T` or `null`).
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // An empty body needs no Content-Type; a body that is there must be JSON.
        let declared_json = require_json(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        declared_json?;
        parse::<Option<T>>(&bytes).map(|body| OptionalJsonBody(body.unwrap_or_default()))
    }
}

/// The whole body, within the router's size limit.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body exceeds the size limit",
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// Refuses a body declared as anything but JSON; a body without a Content-Type is read as JSON.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    if is_json(ct.as_bytes()) {
        return Ok(());
    }
    let ct = String::from_utf8_lossy(ct.as_bytes());
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "expected Content-Type: application/json (optionally with parameters such as \
             `; charset=utf-8`), got {ct:.100}"
        ),
    ))
}

/// Whether a Content-Type value declares JSON: the media type `application/json` exactly (in
/// any case, RFC 9110 8.3.1), then parameters, of which a `charset` must be UTF-8, the only
/// encoding JSON has (RFC 8259 8.1). A prefix match let `application/jsonp` in.
fn is_json(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .all(|param| match param.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                value.eq_ignore_ascii_case("utf-8")
            }
            Some((name, _)) => !name.trim().is_empty(),
            None => false,
        })
}

/// Parses `bytes` as `T`, reporting the path of the field that failed. Structs are read only
/// from JSON objects.
///
/// # Errors
/// 400 `malformed_json` for syntax errors and trailing data, 400 `invalid_field` for a wrong,
/// missing or unknown field, and for an array (or anything else) where an object belongs.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("malformed JSON: {e}"),
        )
    };
    // Syntax first, over the whole body: `{}{}` is malformed, not an object lacking fields.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(objects::ObjectsOnly(&mut *de)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return malformed(inner);
        }
        let path = if path == "." { String::new() } else { path };
        // The path of an unknown field ends with that field. A missing field is named only in
        // the message (`missing field `x``), and the path ends at the object that lacks it.
        let message = inner.to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match missing {
            Some(name) if path.is_empty() => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        ApiError::invalid_field(&field, message)
    })?;
    // Without this, anything after the first JSON value would be silently ignored.
    de.end().map_err(malformed)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        id: String,
        name: String,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        title: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
    }

    fn refusal<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> ApiError {
        parse::<T>(json.as_bytes()).expect_err("refused")
    }

    #[test]
    fn trailing_data_is_malformed_even_when_the_first_value_lacks_fields() {
        for body in ["{}{}", "{} x", "{\"title\": \"t\"}]"] {
            let e = refusal::<Outer>(body);
            assert_eq!(e.code, "malformed_json", "{body}: {e:?}");
        }
    }

    #[test]
    fn an_object_body_is_read_at_every_depth() {
        let v: Outer =
            parse(br#"{"title":"t","inner":{"id":"a","name":"b"},"list":[{"id":"c","name":"d"}]}"#)
                .expect("parses");
        assert_eq!(v.list[0].name, "d");
        assert_eq!(v.inner.map(|i| i.id).as_deref(), Some("a"));
    }

    #[test]
    fn an_array_of_field_values_is_refused_where_a_struct_belongs() {
        let e = refusal::<Outer>(r#"["t", null, []]"#);
        assert_eq!((e.status.as_u16(), e.code), (400, "invalid_field"));
        assert!(e.message.contains("expected struct Outer"), "{}", e.message);
        let e = refusal::<Outer>(r#"{"title":"t","inner":["a","b"]}"#);
        assert_eq!(e.field.as_deref(), Some("inner"));
        let e = refusal::<Outer>(r#"{"title":"t","list":[["a","b"]]}"#);
        assert_eq!(e.field.as_deref(), Some("list[0]"));
        let e = refusal::<Option<Outer>>("[null,null]");
        assert_eq!(e.code, "invalid_field");
    }

    #[test]
    fn null_is_no_value_only_where_the_body_is_optional() {
        assert_eq!(parse::<Option<Outer>>(b"null").expect("null"), None);
        assert_eq!(refusal::<Outer>("null").code, "invalid_field");
    }

    #[test]
    fn only_the_json_media_type_with_parameters_is_json() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/json ; foo=bar",
            "application/json;",
        ] {
            assert!(is_json(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "application/jsonp",
            "application/json-seq",
            "application/json+x",
            "application/problem+json",
            "text/json",
            "application/json; charset=latin1",
            "application/json; nonsense",
            "application/json, text/plain",
            "",
        ] {
            assert!(!is_json(bad.as_bytes()), "{bad}");
        }
        assert!(!is_json(b"application/json\xff"));
    }
}

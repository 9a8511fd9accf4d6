//! The hub dashboard: a static page (HTML, CSS, vanilla JavaScript modules) compiled into the
//! binary and served at `/` and `/assets/{file}`.
//!
//! Everything the page needs is here, so it works on a machine with no outside network; it
//! reads the federation through the same `/v1` API as any client, with the token the user
//! gives it. No build step: the files under `assets/` are what the browser runs.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// File name under `/assets/` (`index.html` is served at `/`).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

/// The page and every file it loads.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", CSS),
    asset!("icon.svg", SVG),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("i18n.js", JS),
    asset!("dom.js", JS),
    asset!("map.js", JS),
    asset!("catalog.js", JS),
    asset!("flows.js", JS),
    asset!("audit.js", JS),
    asset!("applications.js", JS),
    asset!("trades.js", JS),
    asset!("supervision.js", JS),
];

/// The page may load only what this node serves and talk only to this node; the token lives
/// in the page, so no other origin may frame it or run script in it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Strong validators, computed once: the files only change with the binary.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
            .collect()
    })
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    // Revalidate every time: an upgraded node must never run yesterday's script against
    // today's API. The ETag makes revalidation a 304.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if asset.content_type == HTML {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    (headers, asset.body).into_response()
}

/// `GET /`: the dashboard page.
pub async fn index(request: HeaderMap) -> Response {
    serve(0, &request)
}

/// `GET /assets/{file}`: a script, style sheet or icon of the page.
///
/// # Errors
/// 404 for a name that is not one of [`ASSETS`].
pub async fn asset(Path(file): Path<String>, request: HeaderMap) -> Result<Response, NoAsset> {
    ASSETS
        .iter()
        .position(|a| a.name == file && a.name != "index.html")
        .map(|i| serve(i, &request))
        .ok_or(NoAsset(file))
}

/// A request for a file the dashboard does not have: `404 not_found` in the API's error shape
/// (the README's error table), without depending on the API layer.
#[derive(Debug)]
pub struct NoAsset(String);

impl IntoResponse for NoAsset {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": "not_found", "message": format!("no asset {:?}", self.0)}
        });
        (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_references_is_embedded() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        for part in page.split("/assets/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html loads /assets/{name}, which is not embedded"
            );
        }
    }

    #[test]
    fn every_module_import_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.body).unwrap_or_default();
            for part in text.split("from \"./").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|x| x.name == name),
                    "{} imports ./{name}, which is not embedded",
                    a.name
                );
            }
        }
    }

    #[test]
    fn an_unchanged_asset_is_answered_not_modified() {
        let mut request = HeaderMap::new();
        let etag = etags()[1].clone();
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("x")),
        );
        assert_eq!(serve(1, &request).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve(1, &HeaderMap::new()).status(), StatusCode::OK);
    }
}

//! The script and the stylesheet, embedded in the binary. Pages link them
//! with their content hash, so a browser may keep them for a year and
//! still never runs a stale script.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    hash: LazyLock<String>,
}

impl Asset {
    /// Where pages link it: its name and content hash.
    pub fn href(&self) -> String {
        format!("/assets/{}?v={}", self.name, *self.hash)
    }
}

fn hash_of(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..6])
}

pub static SCRIPT: Asset = Asset {
    name: "app.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("../assets/app.js"),
    hash: LazyLock::new(|| hash_of(include_str!("../assets/app.js"))),
};

pub static STYLE: Asset = Asset {
    name: "style.css",
    content_type: "text/css; charset=utf-8",
    body: include_str!("../assets/style.css"),
    hash: LazyLock::new(|| hash_of(include_str!("../assets/style.css"))),
};

/// The version a link names (`?v=`).
#[derive(serde::Deserialize)]
pub struct Version {
    v: Option<String>,
}

/// `GET /assets/{name}`: the file, cached for a year under a link that
/// names its content hash (the pages' links), revalidated otherwise (the
/// sign-in page links it by name); 304 when the browser has it.
pub async fn serve(
    Path(name): Path<String>,
    Query(version): Query<Version>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = [&SCRIPT, &STYLE].into_iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{}\"", *asset.hash);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut answer = match fresh {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false => ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response(),
    };
    let h = answer.headers_mut();
    let cache = match version.v.as_deref() == Some(asset.hash.as_str()) {
        true => "public, max-age=31536000, immutable",
        false => "no-cache",
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    answer
}

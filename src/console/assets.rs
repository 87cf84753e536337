//! The console's one stylesheet and one script, written by hand and
//! compiled into the binary. Their URLs carry a hash of their content, so
//! browsers may keep them for good and a new version is a new URL.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub const CSS: &str = include_str!("static/console.css");
pub const JS: &str = include_str!("static/console.js");

struct Asset {
    url: String,
    name: String,
}

fn asset(stem: &str, ext: &str, body: &str) -> Asset {
    let hash = hex::encode(&Sha256::digest(body.as_bytes())[..6]);
    let name = format!("{stem}.{hash}.{ext}");
    Asset { url: format!("/desk/static/{name}"), name }
}

static CSS_ASSET: LazyLock<Asset> = LazyLock::new(|| asset("console", "css", CSS));
static JS_ASSET: LazyLock<Asset> = LazyLock::new(|| asset("console", "js", JS));

pub fn css_url() -> &'static str {
    &CSS_ASSET.url
}

pub fn js_url() -> &'static str {
    &JS_ASSET.url
}

pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, ctype) = if name == CSS_ASSET.name {
        (CSS, "text/css; charset=utf-8")
    } else if name == JS_ASSET.name {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    r
}

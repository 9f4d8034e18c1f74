//! The recruiter dashboard: a single page served at `/`, its scripts, styles and vendored
//! libraries under `/assets/`, all embedded in the binary (no Node toolchain to build or run).
//!
//! The page signs in with an API key kept in `sessionStorage` and does everything through the
//! public API (`/api/v1`), so it can do nothing its key cannot. Every response here carries a
//! strict Content-Security-Policy (scripts, styles, audio workers and connections from this origin
//! only; recordings play from `blob:` URLs), `X-Content-Type-Options: nosniff` and no framing.
//!
//! Caching: each file has a strong `ETag` (a hash of its bytes) and is revalidated on every use
//! (`Cache-Control: no-cache`, `304 Not Modified` when unchanged), so a new binary is picked up at
//! once; the vendored libraries live under versioned folders and are cached for a year.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AppState;

/// The policy for the page and everything it loads. `connect-src 'self'` covers the same-origin
/// `ws:`/`wss:` of the browser call (CSP level 3).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; media-src 'self' blob:; connect-src 'self'; \
     worker-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// `(path under assets/, bytes)`, for every file the page uses.
macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("assets/", $path)) as &[u8])),*]
    };
}

static FILES: &[(&str, &[u8])] = embed![
    "index.html",
    "app.css",
    "favicon.svg",
    "js/api.js",
    "js/format.js",
    "js/lib.js",
    "js/main.js",
    "js/ui.js",
    "js/player.js",
    "js/webcall.js",
    "js/mic-worklet.js",
    "js/pages/analytics.js",
    "js/pages/candidate.js",
    "js/pages/editor.js",
    "js/pages/pipeline.js",
    "js/pages/receptionists.js",
    "js/pages/settings.js",
    "js/pages/signin.js",
    "js/pages/tryit.js",
    "vendor/README.md",
    "vendor/htm-3.1.1/LICENSE",
    "vendor/htm-3.1.1/htm.umd.js",
    "vendor/preact-10.29.8/LICENSE",
    "vendor/preact-10.29.8/hooks.umd.js",
    "vendor/preact-10.29.8/preact.umd.js",
];

struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
    cache_control: &'static str,
}

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(path, bytes)| {
            let digest = Sha256::digest(bytes);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            let asset = Asset {
                bytes,
                content_type: content_type(path),
                etag: HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header"),
                cache_control: if path.starts_with("vendor/") {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                },
            };
            (path, asset)
        })
        .collect()
});

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // the page itself is only served at `/`
    if path == "index.html" {
        return not_found();
    }
    serve(&path, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.get(path) else {
        return not_found();
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t.as_bytes() == asset.etag.as_bytes())
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.bytes.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(asset.cache_control),
    );
    security_headers(h);
    response
}

fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, "not found").into_response();
    security_headers(response.headers_mut());
    response
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under assets/ is embedded (and nothing embedded is missing), so a new file cannot
    /// be forgotten in the table.
    #[test]
    fn every_asset_is_embedded() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/dashboard/assets");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    on_disk.push(rel);
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    /// No inline script or style in the page: the CSP would block them.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(ASSETS["index.html"].bytes).unwrap();
        assert!(!page.contains("<style"));
        assert!(!page.contains("style="));
        for tag in page.split("<script").skip(1) {
            let (attrs, rest) = tag.split_once('>').unwrap();
            assert!(attrs.contains("src=\"/assets/"), "{attrs}");
            assert!(rest.starts_with("</script>"), "inline script: {rest}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[test]
    fn files_are_served_with_their_headers_and_revalidated() {
        let page = serve("index.html", &HeaderMap::new());
        assert_eq!(page.status(), StatusCode::OK);
        let h = page.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        let etag = h[header::ETAG].clone();

        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag.clone());
        let not_modified = serve("index.html", &again);
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(not_modified.headers()[header::ETAG], etag);

        let vendor = serve("vendor/htm-3.1.1/htm.umd.js", &again);
        assert_eq!(vendor.status(), StatusCode::OK);
        assert!(
            vendor.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );

        let missing = serve("nope.js", &HeaderMap::new());
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("js/main.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("app.css"), "text/css; charset=utf-8");
        assert_eq!(
            content_type("vendor/htm-3.1.1/LICENSE"),
            "text/plain; charset=utf-8"
        );
    }
}

//! The back-office console: static files (HTML, one ES module, one stylesheet) embedded in the
//! binary and served at `/console/` on the API's origin. The console is a client of the public
//! REST API only, so everything it shows is what the API allows the caller's role. Every answer
//! carries a strict `Content-Security-Policy` (no inline script or style, nothing from other
//! origins), `X-Frame-Options: DENY` and `nosniff`.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};

/// Where the console is served.
pub const PREFIX: &str = "/console/";

/// Scripts, styles, images and API calls from this origin only; no framing, no plugins, forms
/// post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's files: (path under [`PREFIX`], media type, contents).
macro_rules! files {
    ($($media:ident: $($path:literal),*;)*) => {
        &[$($(($path, $media, include_str!(concat!("../console/", $path))),)*)*]
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The page, at the prefix itself.
const PAGE: &[(&str, &str, &str)] = &[("", HTML, include_str!("../console/index.html"))];

/// Every file the page loads.
#[rustfmt::skip]
const ASSETS: &[(&str, &str, &str)] = files! {
    CSS: "console.css", "vendor/uPlot.min.css";
    JS: "js/main.js", "js/api.js", "js/ui.js", "js/players.js", "js/transactions.js",
        "js/providers.js", "js/queues.js", "js/reports.js", "js/ops.js", "vendor/uPlot.iife.min.js";
};

/// Every file of the console, the page first.
fn all() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    PAGE.iter().chain(ASSETS)
}

/// `true` for the paths the console answers.
pub fn owns(path: &str) -> bool {
    path == "/console" || path.starts_with(PREFIX)
}

/// Answers a request for a console path: a file, a redirect from `/console` to `/console/`,
/// 404 for a file it does not have, 405 for anything but GET and HEAD.
pub fn serve(method: &Method, path: &str) -> Response<Bytes> {
    if method != Method::GET && method != Method::HEAD {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only");
    }
    if path == "/console" {
        let mut response = answer(StatusCode::MOVED_PERMANENTLY, "text/plain", "");
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static(PREFIX));
        return response;
    }
    let name = path.strip_prefix(PREFIX).unwrap_or_default();
    match all().find(|(n, _, _)| *n == name) {
        Some((_, media, body)) => answer(StatusCode::OK, media, body),
        None => answer(StatusCode::NOT_FOUND, "text/plain", "no such file"),
    }
}

fn answer(status: StatusCode, media: &'static str, body: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_with_the_policy_and_nothing_else_is() {
        for (name, media, _) in all() {
            let response = serve(&Method::GET, &format!("{PREFIX}{name}"));
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], *media);
            assert_eq!(
                response.headers()[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        }
        let missing = serve(&Method::GET, "/console/../Cargo.toml");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let post = serve(&Method::POST, "/console/");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        let bare = serve(&Method::GET, "/console");
        assert_eq!(bare.headers()[header::LOCATION], PREFIX);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = PAGE[0].2;
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "{page}"
        );
        assert!(page.contains(r#"<script type="module" src="/console/js/main.js">"#));
    }

    #[test]
    fn every_module_the_scripts_import_is_served() {
        for (name, _, body) in all().filter(|(n, _, _)| n.starts_with("js/")) {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let module = line
                    .rsplit_once("\"./")
                    .map(|(_, m)| m.trim_end_matches("\";"));
                let module = module.unwrap_or_else(|| panic!("{name}: {line}"));
                let path = format!("js/{module}");
                assert!(all().any(|(n, _, _)| *n == path), "{name} imports {path}");
            }
        }
    }
}

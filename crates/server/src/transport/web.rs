//! The Map Command page: static files from the configured web folder
//! (`WEB_DIR`, the built `web/dist`), served at `/`. Only files inside that
//! folder are served; unknown paths that look like app routes get
//! `index.html`. Without a built page, `/` says how to build it.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::state::SharedState;

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// `rel` as a path inside `root`, or `None` when it would leave it.
fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    rel.components().all(|c| matches!(c, Component::Normal(_))).then(|| root.join(rel))
}

async fn file(path: PathBuf) -> Option<Response> {
    let bytes = tokio::task::spawn_blocking({
        let path = path.clone();
        move || std::fs::read(path)
    })
    .await
    .ok()?
    .ok()?;
    // index.html must never be cached (it names the current bundle); the
    // bundles themselves carry a content hash or are small.
    let cache = if path.ends_with("index.html") { "no-cache" } else { "public, max-age=300" };
    Some(
        ([(header::CONTENT_TYPE, content_type(&path)), (header::CACHE_CONTROL, cache)], Body::from(bytes))
            .into_response(),
    )
}

pub(crate) async fn index(State(app): State<SharedState>) -> Response {
    let Some(root) = app.config.web_dir.as_deref() else { return not_built() };
    file(root.join("index.html")).await.unwrap_or_else(not_built)
}

pub(crate) async fn asset(State(app): State<SharedState>, UrlPath(rel): UrlPath<String>) -> Response {
    if rel.starts_with("api/") {
        return super::error::ApiError::not_found().into_response();
    }
    let Some(root) = app.config.web_dir.as_deref() else { return not_built() };
    let Some(path) = inside(root, &rel) else { return StatusCode::NOT_FOUND.into_response() };
    if let Some(found) = file(path).await {
        return found;
    }
    // A client-side route (no file extension): the app handles it.
    if Path::new(&rel).extension().is_none() {
        return file(root.join("index.html")).await.unwrap_or_else(not_built);
    }
    StatusCode::NOT_FOUND.into_response()
}

fn not_built() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "The Map Command page is not built. Run ./scripts/run.sh (it builds web/ and serves it), \
         or build web/ and start the server with WEB_DIR pointing at web/dist.\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_leave_the_web_folder() {
        let root = Path::new("/srv/web");
        assert_eq!(inside(root, "app.js"), Some(PathBuf::from("/srv/web/app.js")));
        assert_eq!(inside(root, "assets/x.css"), Some(PathBuf::from("/srv/web/assets/x.css")));
        assert_eq!(inside(root, "../etc/passwd"), None);
        assert_eq!(inside(root, "/etc/passwd"), None);
        assert_eq!(inside(root, "a/../../b"), None);
    }
}

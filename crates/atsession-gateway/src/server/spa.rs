//! `--static DIR`: a single-page app served from the gateway's own origin, so that one
//! process is the whole backend of a browser app. Files are served from `DIR`; a `GET`
//! for a path that names no file gets `DIR/index.html` (the app's client-side routes).
//! The gateway's own routes (`/oauth/…`, `/session`, `/logout`, `/xrpc/…`, `/metrics`,
//! `/healthz`) take precedence over files of the same name.

use std::path::{Path, PathBuf};

use tower_http::services::{ServeDir, ServeFile};

/// Why `--static` cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum SpaError {
    /// The directory has no `index.html`.
    #[error("--static {0}: no index.html in this directory")]
    NoIndex(PathBuf),
}

/// The service for `dir`: its files, `index.html` for any other path.
pub fn service(dir: &Path) -> Result<ServeDir<ServeFile>, SpaError> {
    let index = dir.join("index.html");
    if !index.is_file() {
        return Err(SpaError::NoIndex(dir.to_path_buf()));
    }
    Ok(ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(index)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt as _;

    async fn get_text(app: &Router, path: &str) -> (StatusCode, String) {
        let r = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn files_index_fallback_and_routes_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>app</h1>").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app.js"), "console.log(1)").unwrap();
        std::fs::write(dir.path().join("session"), "a file that a route shadows").unwrap();
        let app = Router::new()
            .route("/session", get(|| async { "the route" }))
            .fallback_service(service(dir.path()).unwrap());
        assert_eq!(
            get_text(&app, "/assets/app.js").await,
            (StatusCode::OK, "console.log(1)".into())
        );
        assert_eq!(
            get_text(&app, "/").await,
            (StatusCode::OK, "<h1>app</h1>".into())
        );
        assert_eq!(
            get_text(&app, "/profile/alice").await,
            (StatusCode::OK, "<h1>app</h1>".into())
        );
        assert_eq!(get_text(&app, "/session").await.1, "the route");
        // No escape from the directory.
        let (_, body) = get_text(&app, "/../../etc/passwd").await;
        assert_eq!(body, "<h1>app</h1>");
    }

    #[test]
    fn a_directory_without_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(service(dir.path()), Err(SpaError::NoIndex(_))));
    }
}

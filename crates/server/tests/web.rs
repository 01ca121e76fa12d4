//! The Map Command page is served from the web folder at `/`.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

#[tokio::test]
async fn page_and_assets_are_served_from_the_web_folder_only() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<!doctype html><title>Map Command</title>").unwrap();
    std::fs::write(web.path().join("app.js"), "console.log('map')").unwrap();
    let dir = web.path().to_path_buf();
    let server = TestServer::start_with(move |c| c.web_dir = Some(dir)).await;
    let (code, body) = server.http("GET", "/", None, None).await;
    assert_eq!((code, body.as_str().map(|s| s.contains("Map Command"))), (200, Some(true)));
    let (code, body) = server.http("GET", "/app.js", None, None).await;
    assert_eq!((code, body.as_str()), (200, Some("console.log('map')")));
    let (code, body) = server.http("GET", "/drivers/amb-1", None, None).await;
    assert_eq!((code, body.as_str().map(|s| s.contains("Map Command"))), (200, Some(true)), "app routes get the page");
    let (code, _) = server.http("GET", "/missing.css", None, None).await;
    assert_eq!(code, 404);
    let (code, body) = server.http("GET", "/api/realtime/nope", None, None).await;
    assert_eq!((code, body["code"].as_str()), (404, Some("INVALID_PAYLOAD")), "API paths stay JSON");
    let (code, _) = server.http("GET", "/..%2F..%2Fetc%2Fpasswd", None, None).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn without_a_built_page_the_root_says_how_to_build_it() {
    let server = TestServer::start().await;
    let (code, body) = server.http("GET", "/", None, None).await;
    assert_eq!(code, 404);
    assert!(body.as_str().unwrap().contains("scripts/run.sh"));
}

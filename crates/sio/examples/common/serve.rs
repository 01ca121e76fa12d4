//! What the examples share: serving a [`Server`] (and one other route) on
//! a loopback port with hyper, websocket upgrades included.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use wecare_sio::{Namespace, Server};

/// Serves `server` on `addr`, and `other` for every other request; prints
/// `listening on http://ADDR` once bound.
pub(crate) async fn serve<N, F, Fut>(addr: &str, server: Arc<Server<N>>, other: F) -> std::io::Result<()>
where
    N: Namespace,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = String> + Send,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let (server, other) = (Arc::clone(&server), other.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Body>| {
                let (server, other) = (Arc::clone(&server), other.clone());
                async move {
                    if server.handles(req.uri().path()) {
                        return Ok::<_, Infallible>(server.handle(req).await);
                    }
                    Ok(Response::new(Full::new(Bytes::from(other().await))))
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await;
        });
    }
}

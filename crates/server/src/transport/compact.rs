//! Socket.io requests are stored by the transport for the life of their
//! connection (`socket.req_parts()`). hyper parses a request's headers and
//! URI as zero-copy slices of its connection read buffer, so keeping them
//! kept that whole buffer (8–16 KiB) alive per socket — measured with
//! massif as the largest item of an idle connection. This layer gives
//! socket.io requests owned, compact copies instead, so the read buffer is
//! freed once the connection is upgraded or the poll completes.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Uri};
use axum::middleware::Next;
use axum::response::Response;

pub(crate) async fn compact_socketio_request(mut req: Request<Body>, next: Next) -> Response {
    if req.uri().path().starts_with("/socket.io") {
        let mut headers = HeaderMap::with_capacity(req.headers().len());
        for (name, value) in req.headers() {
            if let Ok(owned) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), owned);
            }
        }
        *req.headers_mut() = headers;
        if let Ok(uri) = req.uri().to_string().parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}

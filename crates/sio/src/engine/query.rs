//! The Engine.IO query (`EIO`, `transport`, `sid`) and its errors, answered
//! as the reference server answers them: `400 {"code","message"}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};

use super::ResponseBody;

/// Why an Engine.IO request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineError {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    UnsupportedProtocolVersion,
    /// A POST larger than the payload bound (the session is ended).
    PayloadTooLarge,
    /// A handshake while too many sessions have not joined yet.
    Busy,
}

impl EngineError {
    fn code_and_message(self) -> (u8, &'static str) {
        match self {
            Self::UnknownTransport => (0, "Transport unknown"),
            Self::UnknownSid => (1, "Session ID unknown"),
            Self::BadHandshakeMethod => (2, "Bad handshake method"),
            Self::BadRequest | Self::PayloadTooLarge => (3, "Bad request"),
            Self::UnsupportedProtocolVersion => (5, "Unsupported protocol version"),
            // The reference server's code for a handshake its application
            // refused (`allowRequest`).
            Self::Busy => (4, "Server busy"),
        }
    }

    pub(crate) fn response(self) -> Response<ResponseBody> {
        let status = match self {
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            // Passing: a stock client tries again after its backoff.
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let (code, message) = self.code_and_message();
        let body = format!(r#"{{"code":{code},"message":"{message}"}}"#);
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        if self == Self::Busy {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        res
    }
}

/// The parts of the query Engine.IO reads.
#[derive(Debug)]
pub(crate) struct Query<'a> {
    pub(crate) raw: &'a str,
    eio: Option<&'a str>,
    pub(crate) transport: &'a str,
    pub(crate) sid: Option<String>,
}

impl<'a> Query<'a> {
    pub(crate) fn parse(raw: &'a str) -> Self {
        let mut q = Query { raw, eio: None, transport: "", sid: None };
        for pair in raw.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "EIO" => q.eio = Some(v),
                "transport" => q.transport = v,
                // A sid is URL-safe base64; a client may still escape it.
                "sid" => q.sid = Some(v.replace("%2D", "-").replace("%5F", "_")),
                _ => {}
            }
        }
        q
    }

    /// Version 4, and a transport this server speaks.
    pub(crate) fn check(self) -> Result<Self, EngineError> {
        if self.eio != Some("4") {
            return Err(EngineError::UnsupportedProtocolVersion);
        }
        if !matches!(self.transport, "polling" | "websocket") {
            return Err(EngineError::UnknownTransport);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_and_checked() {
        let q = Query::parse("EIO=4&transport=polling&t=abc&sid=x-y_z").check().unwrap();
        assert_eq!((q.transport, q.sid.as_deref()), ("polling", Some("x-y_z")));
        assert_eq!(
            Query::parse("EIO=3&transport=polling").check().unwrap_err(),
            EngineError::UnsupportedProtocolVersion
        );
        assert_eq!(Query::parse("EIO=4&transport=flash").check().unwrap_err(), EngineError::UnknownTransport);
        assert_eq!(Query::parse("").check().unwrap_err(), EngineError::UnsupportedProtocolVersion);
    }

    #[test]
    fn errors_are_answered_like_the_reference_server() {
        let res = EngineError::UnknownSid.response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(EngineError::PayloadTooLarge.response().status(), StatusCode::PAYLOAD_TOO_LARGE);
        let busy = EngineError::Busy.response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
    }
}

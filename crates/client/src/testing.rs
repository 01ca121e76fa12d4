//! Test support (feature `test-util`): tools to prove the SDK's guarantees
//! under network faults and over TLS, and the real server to prove them
//! against. Not part of the normal API.

mod proxy;
pub mod server;
mod tls_proxy;

pub use proxy::{FaultProxy, ProxyStats};
pub use tls_proxy::{TlsProxy, TlsProxyStats};

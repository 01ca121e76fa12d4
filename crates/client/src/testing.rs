//! Test support (feature `test-util`): tools to prove the SDK's guarantees
//! under network faults and over TLS. Not part of the normal API.

mod proxy;
mod tls_proxy;

pub use proxy::{FaultProxy, ProxyStats};
pub use tls_proxy::{TlsProxy, TlsProxyStats};

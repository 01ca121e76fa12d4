//! Test support (feature `test-util`): tools to prove the SDK's guarantees
//! under network faults. Not part of the normal API.

mod proxy;

pub use proxy::{FaultProxy, ProxyStats};

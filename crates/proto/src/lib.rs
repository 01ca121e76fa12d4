//! Wire types of the WeCare Realtime protocol (contract v1.1).
//!
//! Everything a client and the server must agree on lives here: event names
//! ([`event`]), the stable error codes and whether they are worth retrying
//! ([`error`]), stream positions ([`Seq`]), identifiers ([`DriverId`],
//! [`MessageId`]) and driver statuses ([`DriverStatus`]).
//!
//! # Design
//! The crate has no runtime dependencies beyond serde: the server, the Rust
//! SDK and the CLI share it, so a rename here is a compile error everywhere
//! instead of a silent protocol drift. The prose version of the protocol is
//! `docs/protocol.md` in the repository.
//!
//! ```
//! use wecare_proto::{ErrorCode, DriverStatus};
//! assert!(ErrorCode::RateLimited.is_retryable());
//! assert_eq!("on_trip".parse::<DriverStatus>().unwrap().as_str(), "ON_TRIP");
//! ```
#![warn(missing_docs)]

pub mod codec;
pub mod error;
pub mod event;
mod ids;
#[allow(missing_docs)] // field names are the contract's, documented in docs/protocol.md
pub mod payload;
mod seq;
mod status;
#[cfg(test)]
mod typescript;

pub use error::ErrorCode;
pub use ids::{DriverId, IdError, MessageId};
pub use seq::Seq;
pub use status::{DriverStatus, UnknownStatus};

/// The Socket.io namespace every client connects to.
pub const NAMESPACE: &str = "/locations";

//! WeCare Realtime client SDK: a small, websocket-only Socket.IO v5
//! (Engine.IO v4) client for the `/locations` namespace.
//!
//! [`SocketClient::connect`] opens one namespace connection described by
//! [`ConnectOptions`] and returns a cheap, cloneable [`SocketClient`] handle
//! plus a bounded channel of [`ServerEvent`]s. The handle emits events, with
//! or without an ack; errors are [`ClientError`].
//!
//! # Design
//! Each connection runs two tasks: a writer that owns the websocket sink
//! (frames reach it through one bounded queue, so emits keep their order and
//! are batched into few flushes) and a reader that answers heartbeats,
//! completes acks and forwards events. Ack ids increase monotonically per
//! connection and each pending ack has its own deadline, so a reply can only
//! ever complete the call it belongs to; when the connection ends every
//! pending ack fails with [`ClientError::Closed`] and the last event on the
//! channel is [`ServerEvent::Disconnected`]. The server is declared dead when
//! no ping arrives within `pingInterval + pingTimeout` (the values of its
//! Engine.IO open packet). The event channel is bounded: when the application
//! does not read it, the reader waits (backpressure) rather than buffering
//! without bound; see [`ConnectOptions::event_buffer`]. High-rate consumers
//! can choose [`EventMode::Raw`] and deserialize only the fields they need
//! from a [`RawEvent`].
//!
//! There is no reconnection here: a connection that ends stays ended, and
//! the caller connects again (with a fresh token). Binary packets and acks
//! requested by the server are not supported (the contract uses neither);
//! polling and TLS are out of scope.
//!
//! ```no_run
//! use std::time::Duration;
//! use wecare_client::{ConnectOptions, ServerEvent, SocketClient};
//!
//! # async fn demo(token: &str) -> Result<(), wecare_client::ClientError> {
//! let opts = ConnectOptions::new(
//!     "http://127.0.0.1:3000",
//!     "/locations",
//!     serde_json::json!({ "token": token }),
//! );
//! let (client, mut events) = SocketClient::connect(opts).await?;
//! let ack = client
//!     .emit_with_ack(
//!         "location:update",
//!         &serde_json::json!({ "id": "fix-1", "lat": 13.75, "lng": 100.5 }),
//!         Duration::from_secs(10),
//!     )
//!     .await?;
//! println!("stored as seq {}", ack["seq"]);
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ServerEvent::Event { name, data } => println!("{name}: {data}"),
//!         ServerEvent::Disconnected { reason } => {
//!             println!("gone: {reason}");
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod ack;
mod connection;
mod endpoint;
mod engine;
mod error;
mod event;
mod options;
mod packet;
mod socket;

pub use error::ClientError;
pub use event::{RawEvent, ServerEvent};
pub use options::{ConnectOptions, EventMode};
pub use socket::SocketClient;

//! WeCare Realtime client SDK.
//!
//! Three layers, each usable on its own:
//!
//! * [`Driver`] — the sending side. [`Driver::record`] stores a [`Fix`] in a
//!   durable [`Outbox`] (an SQLite file) under a fresh 128-bit id and wakes a
//!   background sender, which drains the outbox with `location:batch` acks,
//!   reconnects forever, and falls back to `POST /api/driver-locations`
//!   while the socket is unusable. Its [`DriverState`] is a `watch` channel.
//! * [`Watcher`] — the receiving side: a snapshot, then the stream events in
//!   `seq` order, each once, resumed from a persisted position after any
//!   reconnect or restart, long-polled over HTTP while the socket is down.
//! * [`SocketClient`] — the low-level websocket-only Socket.IO v5 client both
//!   are built on: one namespace connection, acks, events; no reconnection.
//!
//! # Design
//! **Outbox first.** A fix is durable before anything is sent; it leaves the
//! outbox only on an `ok` ack (a `duplicate` counts), or, refused as
//! non-retryable, into the dead-letter table ([`Driver::dead_letters`]).
//! Timeouts, disconnects and `RATE_LIMITED`/`UNAVAILABLE` keep it for a
//! resend with the *same* id, which the server deduplicates, over the socket
//! or HTTP alike. After an outage the newest fix goes first (the marker
//! becomes current) and the backlog follows oldest-first; the server marks
//! those `outdated`. The outbox is bounded ([`OutboxLimits`]): beyond it the
//! oldest fixes are dropped and counted in [`DriverState::dropped`].
//!
//! **Never give up.** Reconnects and resends wait per [`BackoffConfig`]
//! (exponential, full jitter, capped) and never stop. The [`TokenProvider`]
//! is asked for a token on every connect attempt, for every in-band
//! `auth:refresh` (sent on `auth:expiring`), and for every HTTP request;
//! after `auth:expired` or a token refusal the client reconnects with a
//! fresh one.
//!
//! **Watcher position.** The watcher keeps `streamId` and the last `seq` it
//! handed over (in [`WatcherConfig::cursor_path`]), passes them as
//! `auth.lastSeq`/`auth.streamId`, drops anything at or below that position,
//! and starts over from a snapshot on a new stream or a gap. The position is
//! saved after each event is handed to the application, so after a crash
//! the application may see the last event again, never miss one.
//!
//! ```no_run
//! use wecare_client::{Driver, DriverConfig, Fix, TokenError, Watcher, WatcherConfig, WatcherEvent};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Driver: record fixes; the SDK delivers them, however long it takes.
//! let driver_token = || async { Ok::<_, TokenError>("<driver JWT>".to_owned()) };
//! let driver = Driver::start(DriverConfig::new("http://127.0.0.1:3000", "outbox.sqlite3", driver_token)).await?;
//! let id = driver.record(Fix::new(13.7563, 100.5018)).await?;
//! let mut state = driver.state();
//! state.wait_for(|s| s.pending == 0).await?;
//! println!("{id} delivered; last ack {:?}", state.borrow().last_ack);
//! driver.shutdown().await;
//!
//! // Watcher: a snapshot, then every event once, in order.
//! let officer_token = || async { Ok::<_, TokenError>("<officer JWT>".to_owned()) };
//! let mut config = WatcherConfig::new("http://127.0.0.1:3000", officer_token);
//! config.cursor_path = Some("watcher-cursor.json".into());
//! let (watcher, mut events) = Watcher::start(config).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         WatcherEvent::Snapshot { drivers, seq, .. } => println!("{} drivers as of {seq}", drivers.len()),
//!         WatcherEvent::Event(event) => println!("{} {} about {}", event.seq(), event.name(), event.driver_id()),
//!         _ => {}
//!     }
//! }
//! watcher.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # TLS
//! `https://` and `wss://` URLs connect over TLS (rustls; no OpenSSL), for
//! the socket and the HTTP fallback alike; the default port is then 443.
//! The server's certificate is always verified — it must chain to a trusted
//! CA, be valid now and name the URL's host — and there is no switch to turn
//! that off. The default [`TlsConfig`] trusts Mozilla's root CAs (compiled
//! in); a server with a private CA needs that CA added with
//! [`TlsConfig::builder`] and set as `tls` on the [`DriverConfig`],
//! [`WatcherConfig`] or [`ConnectOptions`]. A refused certificate is a
//! [`ClientError::Certificate`] saying why ([`CertificateProblem`]), right
//! after the handshake; the driver and the watcher keep retrying as for any
//! failed connect, so [`TlsConfig::check_server`] exists to fail fast at
//! start-up.
//!
//! ```no_run
//! use wecare_client::{DriverConfig, TlsConfig, TokenError};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsConfig::builder().ca_pem_file("/etc/wecare/ca.pem").build()?;
//! tls.check_server("https://realtime.example.org", std::time::Duration::from_secs(10)).await?;
//! let token = || async { Ok::<_, TokenError>("<driver JWT>".to_owned()) };
//! let mut config = DriverConfig::new("https://realtime.example.org", "outbox.sqlite3", token);
//! config.tls = tls;
//! # Ok(())
//! # }
//! ```
//!
//! # The socket client
//! [`SocketClient::connect`] opens one namespace connection described by
//! [`ConnectOptions`] and returns a cheap, cloneable [`SocketClient`] handle
//! plus a bounded channel of [`ServerEvent`]s. The handle emits events, with
//! or without an ack; errors are [`ClientError`].
//!
//! ## Design of the socket client
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
//! polling is out of scope.
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
pub mod backoff;
mod connection;
mod driver;
mod endpoint;
// The wire codec is shared with the server side (`wecare_proto::codec`).
use wecare_proto::codec::{engine, packet};

mod error;
mod event;
mod http;
mod options;
pub mod outbox;

mod socket;
#[cfg(feature = "test-util")]
pub mod testing;
mod tls;
mod token;
mod watcher;

pub use backoff::BackoffConfig;
pub use driver::{Driver, DriverConfig, DriverConnection, DriverError, DriverState, Fix, OutboxStore};
pub use error::{CertificateProblem, ClientError};
pub use event::{RawEvent, ServerEvent};
pub use options::{ConnectOptions, EventMode};
pub use outbox::{DeadLetter, MemoryOutbox, Outbox, OutboxError, OutboxLimits, OutboxStats, SqliteOutbox};
pub use socket::SocketClient;
pub use tls::{TlsBuilder, TlsConfig};
pub use token::{TokenError, TokenProvider};
pub use watcher::{Watcher, WatcherConfig, WatcherConnection, WatcherEvent};

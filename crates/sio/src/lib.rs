//! The server half of Engine.IO v4 and Socket.IO v5, as much of it as our
//! wire uses: one namespace, text packets, acks (issue 18).
//!
//! # Layers
//! * [`engine`](Server) — sessions over HTTP long-polling and websocket,
//!   the probe/upgrade between them, the server's pings, the payload bound.
//!   Each session has one task: the websocket's reader/writer, or — for a
//!   polling session — its heartbeat (the polls are served by the HTTP
//!   requests themselves).
//! * [`socket`](Socket) — the namespace: CONNECT with `auth`, events in,
//!   acks and events out, DISCONNECT. The application sees it through the
//!   [`Namespace`] trait.
//! * [`outbox`](Frame) — each session's bounded send queue of encoded frames.
//!   A frame is shared, not copied: an event encoded once can be queued on
//!   every watcher's socket, and the queue's length is visible to a drain.
//!
//! The packet codec is [`wecare_proto::codec`], shared with the SDK's
//! client half.

mod config;
mod engine;
mod outbox;
mod sid;
mod socket;

pub use config::Config;
pub use engine::{ResponseBody, Server};
pub use outbox::{Frame, Write};
pub use socket::{Connected, DisconnectReason, Handshake, Incoming, Namespace, Refusal, Socket};

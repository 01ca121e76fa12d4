//! The edges: Socket.io handlers, REST routes, and the wire shapes of their
//! answers. Nothing here runs SQL or decides validity; it calls `ingest`,
//! `stream` and `storage`.

pub(crate) mod ack;
pub(crate) mod conn;
pub(crate) mod draining;
pub(crate) mod engine_io;
pub(crate) mod error;
pub(crate) mod events_page;
pub(crate) mod http;
pub(crate) mod limits;
pub(crate) mod listener;
pub(crate) mod origin;
pub(crate) mod peers;
pub(crate) mod recovery;
pub(crate) mod reply;
pub(crate) mod revocation;
pub(crate) mod session;
pub(crate) mod socket;
pub(crate) mod state;
pub(crate) mod watcher_sink;
pub(crate) mod web;

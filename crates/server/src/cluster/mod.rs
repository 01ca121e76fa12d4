//! What the nodes of a cluster coordinate on (contract §11), behind one
//! trait, [`Cluster`]: which drivers and users hold sockets on which node
//! (presence, `MAX_CONNECTIONS_PER_USER`), which node runs a once-per-
//! cluster job (retention, forwarding), and best-effort messages between
//! nodes (the notification relay, evictions, revocations). A single node
//! ([`local::LocalCluster`]) keeps all of it in memory; a PostgreSQL
//! cluster keeps it in the database, with node leases so that a dead
//! node's sockets stop counting.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};
use wecare_proto::DriverId;

use crate::clock::Millis;
use crate::storage::{BoxFuture, StorageError};

pub(crate) mod local;
pub(crate) mod postgres;
pub(crate) mod sockets;

/// A job that runs on one node of the cluster at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Job {
    Retention,
    Forwarding,
}

impl Job {
    /// The advisory-lock key of the job (stable across versions).
    pub(crate) const fn lock_key(self) -> i64 {
        match self {
            Self::Retention => 0x5743_0001,
            Self::Forwarding => 0x5743_0002,
        }
    }
}

/// A socket somewhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SocketKey {
    pub(crate) node: String,
    pub(crate) sid: String,
}

/// A message between nodes. Best effort: what must not be lost (revocations,
/// the stream) is in the database, and this only makes it take effect now.
///
/// Externally tagged (`{"notify": {…}}`) on purpose: an internally tagged
/// enum is buffered before its variant is known, and a buffered
/// [`RawValue`] cannot be read back, so every `Notify` was unreadable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BusMessage {
    /// Relay `event` to this node's sockets in `rooms`, then answer with
    /// [`BusMessage::Delivered`].
    Notify { id: String, from: String, rooms: Vec<String>, event: String, data: Box<RawValue> },
    /// How many sockets of `node` a [`BusMessage::Notify`] was written to.
    Delivered { id: String, to: String, node: String, delivered: usize },
    /// Close this socket: its user opened more than allowed elsewhere.
    Evict { node: String, sid: String },
    /// Revocations changed: reload them and cut the sockets they refuse.
    Revoked,
}

/// Cluster coordination. See the module docs.
pub(crate) trait Cluster: Send + Sync + std::fmt::Debug + 'static {
    /// This node's id, unique in the cluster for the life of the process.
    fn node_id(&self) -> &str;
    /// A driver's socket opened on this node.
    fn driver_socket_opened(&self, driver: &DriverId) -> BoxFuture<'_, Result<(), StorageError>>;
    /// A driver's socket on this node closed.
    fn driver_socket_closed(&self, driver: &DriverId) -> BoxFuture<'_, Result<(), StorageError>>;
    /// At start: `online` drivers no node has a record of (the whole
    /// service restarted) count as if their sockets closed now, so they get
    /// the grace period before they are announced offline.
    fn restored(&self, online: Vec<DriverId>) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Those of `online` that hold no socket on a live node and had none
    /// within `grace` ms (a dead node's sockets count until its lease ran
    /// out): they should be announced offline.
    fn gone_drivers(&self, online: Vec<DriverId>, grace: Millis) -> BoxFuture<'_, Result<Vec<DriverId>, StorageError>>;
    /// A user's socket opened here, its handshake accepted at `opened_at`
    /// (epoch µs, see `clock::handshake_micros`); returns that user's
    /// sockets beyond the newest `max` by `opened_at`, anywhere in the
    /// cluster (to be closed).
    fn user_socket_opened(
        &self,
        subject: &str,
        sid: &str,
        opened_at: i64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<SocketKey>, StorageError>>;
    /// A user's socket on this node closed.
    fn user_socket_closed(&self, subject: &str, sid: &str) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Whether this node runs `job` now (it holds the job's cluster-wide
    /// lock, which another node takes over when this one dies).
    fn leads(&self, job: Job) -> BoxFuture<'_, Result<bool, StorageError>>;
    /// Sends `msg` to every other node.
    fn publish(&self, msg: BusMessage) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Messages from other nodes.
    fn subscribe(&self) -> broadcast::Receiver<BusMessage>;
    /// Bumped when another node may have committed to the stream (a hint:
    /// the tailer also reads on a timer).
    fn commits(&self) -> watch::Receiver<u64>;
    /// Bumped when this node renewed its lease after renewals had failed:
    /// meanwhile other nodes may have judged it dead and announced its
    /// drivers offline, so it announces again the drivers it holds.
    fn rejoins(&self) -> watch::Receiver<u64>;
    /// How many nodes are alive (this one included).
    fn live_nodes(&self) -> BoxFuture<'_, Result<usize, StorageError>>;
    /// Whether this node's database connection accepts writes (`/readyz`).
    fn is_healthy(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bus_message_reads_back() {
        let data = RawValue::from_string(r#"{"rideId":9,"title":"x"}"#.to_owned()).unwrap();
        let messages = [
            BusMessage::Notify {
                id: "n1".into(),
                from: "node-a".into(),
                rooms: vec!["user:42".into()],
                event: "notification:new".into(),
                data,
            },
            BusMessage::Delivered { id: "n1".into(), to: "node-a".into(), node: "node-b".into(), delivered: 2 },
            BusMessage::Evict { node: "node-b".into(), sid: "s1".into() },
            BusMessage::Revoked,
        ];
        for msg in messages {
            let text = serde_json::to_string(&msg).unwrap();
            let back: BusMessage = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }
}

//! [`LocalCluster`]: the cluster of one node (the embedded store). Every
//! fact is in this process; there are no other nodes to tell.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use wecare_proto::DriverId;

use super::sockets::LocalSockets;
use super::{BusMessage, Cluster, Job, SocketKey};
use crate::clock::{Millis, now_ms};
use crate::storage::SocketsHeld;
use crate::storage::{BoxFuture, StorageError};

const NODE: &str = "local";

/// A cluster of one. See the module docs.
#[derive(Debug)]
pub(crate) struct LocalCluster {
    sockets: Arc<LocalSockets>,
    /// Each user's open sockets, oldest first.
    /// Per user: `(opened_at, sid)`, oldest first.
    users: Mutex<HashMap<String, VecDeque<(i64, String)>>>,
    bus: broadcast::Sender<BusMessage>,
    commits: watch::Sender<u64>,
    /// Never bumped: one node with its store in-process has no lease.
    rejoins: watch::Sender<u64>,
}

impl LocalCluster {
    pub(crate) fn new(sockets: Arc<LocalSockets>) -> Self {
        Self {
            sockets,
            users: Mutex::default(),
            bus: broadcast::channel(1).0,
            commits: watch::channel(0).0,
            rejoins: watch::channel(0).0,
        }
    }
}

fn done<T: Send + 'static>(v: T) -> BoxFuture<'static, Result<T, StorageError>> {
    Box::pin(std::future::ready(Ok(v)))
}

impl Cluster for LocalCluster {
    fn node_id(&self) -> &str {
        NODE
    }

    fn driver_socket_opened(&self, driver: &DriverId) -> BoxFuture<'_, Result<(), StorageError>> {
        self.sockets.opened(driver);
        done(())
    }

    fn driver_socket_closed(&self, driver: &DriverId) -> BoxFuture<'_, Result<(), StorageError>> {
        self.sockets.closed(driver, now_ms());
        done(())
    }

    fn restored(&self, online: Vec<DriverId>) -> BoxFuture<'_, Result<(), StorageError>> {
        let now = now_ms();
        for d in &online {
            self.sockets.restored(d, now);
        }
        done(())
    }

    fn gone_drivers(&self, online: Vec<DriverId>, grace: Millis) -> BoxFuture<'_, Result<Vec<DriverId>, StorageError>> {
        let now = now_ms();
        let gone = online.into_iter().filter(|d| !self.sockets.connected_within(d, grace, now)).collect();
        self.sockets.forget_gone(grace, now);
        done(gone)
    }

    fn user_socket_opened(
        &self,
        subject: &str,
        sid: &str,
        opened_at: i64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<SocketKey>, StorageError>> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let open = users.entry(subject.to_string()).or_default();
        // In handshake order, whatever order the connect handlers run in.
        let at = open.partition_point(|(t, _)| *t <= opened_at);
        open.insert(at, (opened_at, sid.to_string()));
        let excess = open.len().saturating_sub(max.max(1));
        let evicted = open.drain(..excess).map(|(_, sid)| SocketKey { node: NODE.to_string(), sid }).collect();
        done(evicted)
    }

    fn user_socket_closed(&self, subject: &str, sid: &str) -> BoxFuture<'_, Result<(), StorageError>> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = users.get_mut(subject) {
            open.retain(|(_, s)| s != sid);
            if open.is_empty() {
                users.remove(subject);
            }
        }
        done(())
    }

    fn leads(&self, _job: Job) -> BoxFuture<'_, Result<bool, StorageError>> {
        done(true)
    }

    fn publish(&self, _msg: BusMessage) -> BoxFuture<'_, Result<(), StorageError>> {
        done(())
    }

    fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.bus.subscribe()
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    fn rejoins(&self) -> watch::Receiver<u64> {
        self.rejoins.subscribe()
    }

    fn live_nodes(&self) -> BoxFuture<'_, Result<usize, StorageError>> {
        done(1)
    }

    fn is_healthy(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_more_socket_than_allowed_evicts_the_oldest() {
        let c = LocalCluster::new(Arc::default());
        assert!(c.user_socket_opened("u", "a", 1, 2).await.unwrap().is_empty());
        assert!(c.user_socket_opened("u", "b", 2, 2).await.unwrap().is_empty());
        let evicted = c.user_socket_opened("u", "c", 3, 2).await.unwrap();
        assert_eq!(evicted, vec![SocketKey { node: NODE.into(), sid: "a".into() }]);
        c.user_socket_closed("u", "b").await.unwrap();
        assert!(c.user_socket_opened("u", "d", 4, 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_oldest_is_the_first_handshake_whatever_order_the_sockets_are_counted_in() {
        let c = LocalCluster::new(Arc::default());
        // The second socket's connect handler ran first.
        assert!(c.user_socket_opened("u", "second", 20, 2).await.unwrap().is_empty());
        assert!(c.user_socket_opened("u", "first", 10, 2).await.unwrap().is_empty());
        let evicted = c.user_socket_opened("u", "third", 30, 2).await.unwrap();
        assert_eq!(evicted, vec![SocketKey { node: NODE.into(), sid: "first".into() }]);
    }
}

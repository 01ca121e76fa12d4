//! Pending acks: monotonically increasing ids, one waiting caller per id,
//! all failed with [`ClientError::Closed`] when the connection ends.
//!
//! Ids are never reused or random within a connection, so a late reply can
//! never complete the wrong call (the flaw of picking ids at random in 0..999).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::ClientError;

/// What a waiting caller receives: the first ack argument, or why there is none.
pub(crate) type AckResult = Result<serde_json::Value, ClientError>;

/// The acks a connection is waiting for.
#[derive(Debug, Default)]
pub(crate) struct AckRegistry {
    next_id: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    pending: HashMap<u64, oneshot::Sender<AckResult>>,
}

impl AckRegistry {
    /// Reserves the next id and registers a waiter for it; the returned guard
    /// unregisters it when dropped (timeout or cancelled caller).
    pub(crate) fn register(&self) -> Result<PendingAck<'_>, ClientError> {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        if state.closed {
            return Err(ClientError::Closed);
        }
        state.pending.insert(id, tx);
        Ok(PendingAck { registry: self, id, rx })
    }

    /// Hands `result` to the caller waiting for `id`; a reply nobody waits for
    /// any more (it timed out) is dropped.
    pub(crate) fn complete(&self, id: u64, result: AckResult) {
        let waiter = self.lock().pending.remove(&id);
        if let Some(tx) = waiter {
            let _ = tx.send(result);
        }
    }

    /// Fails every pending ack with [`ClientError::Closed`] and refuses new ones.
    pub(crate) fn close(&self) {
        let pending = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.pending)
        };
        for (_, tx) in pending {
            let _ = tx.send(Err(ClientError::Closed));
        }
    }

    /// How many acks are outstanding.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().pending.len()
    }

    fn remove(&self, id: u64) {
        self.lock().pending.remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The lock is never held across a panic-prone section, but recover
        // from poisoning anyway: the map stays consistent at every step.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A registered ack; await it with [`PendingAck::wait`].
#[derive(Debug)]
pub(crate) struct PendingAck<'a> {
    registry: &'a AckRegistry,
    id: u64,
    rx: oneshot::Receiver<AckResult>,
}

impl PendingAck<'_> {
    /// The ack id to put on the wire.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the reply until `deadline`.
    pub(crate) async fn wait(mut self, deadline: Instant) -> AckResult {
        match tokio::time::timeout_at(deadline, &mut self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

impl Drop for PendingAck<'_> {
    fn drop(&mut self) {
        // Completed or closed acks are already gone from the map; a timed out
        // or abandoned one must not linger.
        if !matches!(self.rx.try_recv(), Ok(_) | Err(oneshot::error::TryRecvError::Closed)) {
            self.registry.remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn ids_increase_monotonically() {
        let registry = AckRegistry::default();
        let ids: Vec<u64> = (0..5).map(|_| registry.register().unwrap().id()).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        assert_eq!(registry.len(), 0, "dropped guards unregister");
    }

    #[tokio::test]
    async fn reply_reaches_the_matching_waiter() {
        let registry = AckRegistry::default();
        let a = registry.register().unwrap();
        let b = registry.register().unwrap();
        registry.complete(b.id(), Ok(json!("b")));
        registry.complete(a.id(), Ok(json!("a")));
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(a.wait(deadline).await.unwrap(), json!("a"));
        assert_eq!(b.wait(deadline).await.unwrap(), json!("b"));
        assert_eq!(registry.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_ack_times_out_and_is_forgotten() {
        let registry = AckRegistry::default();
        let pending = registry.register().unwrap();
        let id = pending.id();
        let result = pending.wait(Instant::now() + Duration::from_secs(10)).await;
        assert!(matches!(result, Err(ClientError::Timeout)));
        assert_eq!(registry.len(), 0);
        // A late reply is dropped without effect.
        registry.complete(id, Ok(json!(1)));
    }

    #[tokio::test]
    async fn close_fails_pending_and_refuses_new_acks() {
        let registry = AckRegistry::default();
        let pending = registry.register().unwrap();
        registry.close();
        let result = pending.wait(Instant::now() + Duration::from_secs(5)).await;
        assert!(matches!(result, Err(ClientError::Closed)));
        assert!(matches!(registry.register(), Err(ClientError::Closed)));
    }
}

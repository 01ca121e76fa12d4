//! Open sockets per user (`MAX_CONNECTIONS_PER_USER`). When a user opens one
//! more than allowed, the *oldest* is disconnected rather than the new one
//! refused: a phone that reconnects through a flaky network leaves
//! half-open sockets behind, and the newest is the one that works.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;

#[derive(Debug)]
pub(crate) struct Connections {
    max: usize,
    by_user: Mutex<HashMap<String, VecDeque<SocketRef>>>,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Self {
        Self { max: max.max(1), by_user: Mutex::default() }
    }

    /// Records `socket` for `subject`; returns the sockets to evict.
    pub(crate) fn admit(&self, subject: &str, socket: SocketRef) -> Vec<SocketRef> {
        let mut map = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        let open = map.entry(subject.to_string()).or_default();
        open.push_back(socket);
        let excess = open.len().saturating_sub(self.max);
        open.drain(..excess).collect()
    }

    pub(crate) fn remove(&self, subject: &str, sid: Sid) {
        let mut map = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = map.get_mut(subject) {
            open.retain(|s| s.id != sid);
            if open.is_empty() {
                map.remove(subject);
            }
        }
    }
}

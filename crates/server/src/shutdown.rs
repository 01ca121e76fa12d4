//! Graceful shutdown (contract §9): once shutdown is requested no new event
//! is taken, every event already taken is finished — stored, acked to its
//! sender, delivered to the watchers connected then — and only after that
//! are the sockets closed. A client that sends no `id` cannot be
//! deduplicated, so an ack lost to a close would store its fix twice.

use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

/// Tracks the events being handled, and refuses new ones once shutdown
/// has been requested.
#[derive(Debug)]
pub(crate) struct Drain {
    /// Cancelled when shutdown is requested (SIGTERM).
    requested: CancellationToken,
    in_flight: TaskTracker,
}

/// Held by a handler from taking an event until its answer is queued on
/// the socket (or written to the HTTP response): shutdown waits for it.
#[derive(Debug)]
pub(crate) struct Accepting {
    _token: TaskTrackerToken,
}

impl Drain {
    pub(crate) fn new(requested: CancellationToken) -> Self {
        Self { requested, in_flight: TaskTracker::new() }
    }

    /// `Some` while events are taken, `None` once shutdown was requested.
    pub(crate) fn accept(&self) -> Option<Accepting> {
        // Counted before the check: a handler that passes the check is
        // always waited for by `settled`, whatever the interleaving.
        let token = self.in_flight.token();
        (!self.requested.is_cancelled()).then_some(Accepting { _token: token })
    }

    /// Whether shutdown was requested.
    pub(crate) fn is_draining(&self) -> bool {
        self.requested.is_cancelled()
    }

    /// The token cancelled when shutdown is requested.
    pub(crate) fn requested(&self) -> &CancellationToken {
        &self.requested
    }

    /// Resolves once every event taken before shutdown has been answered.
    pub(crate) async fn settled(&self) {
        self.in_flight.close();
        self.in_flight.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn settles_only_after_accepted_events_finish_and_refuses_new_ones() {
        let requested = CancellationToken::new();
        let drain = Drain::new(requested.clone());
        let accepted = drain.accept().expect("accepting before shutdown");
        requested.cancel();
        assert!(drain.accept().is_none(), "nothing new once shutdown is requested");
        let settled = drain.settled();
        tokio::pin!(settled);
        assert!(tokio::time::timeout(Duration::from_millis(20), &mut settled).await.is_err(), "still in flight");
        drop(accepted);
        tokio::time::timeout(Duration::from_secs(5), settled).await.expect("settles once the handler is done");
    }
}

//! The bound on sessions that are open but have not asked to join.
//!
//! Such a session costs no token check to open: one GET makes it, and a
//! polling one holds no connection once that GET is answered. Its connect
//! timeout ends each one, but a peer that opens them faster than they time
//! out would grow the registry without limit. So a session holds a
//! [`Ticket`] from its handshake until it asks to join (or ends), and a
//! handshake that finds every ticket taken is refused (`503`): a stock
//! client takes that as a failed attempt and tries again after its backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The tickets of not-yet-joined sessions.
#[derive(Debug)]
pub(crate) struct PendingSessions {
    held: Arc<AtomicUsize>,
    max: usize,
    refused: AtomicU64,
}

/// A not-yet-joined session's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PendingSessions {
    pub(crate) fn new(max: usize) -> Self {
        Self { held: Arc::new(AtomicUsize::new(0)), max, refused: AtomicU64::new(0) }
    }

    /// A ticket for a new session, or `None` (counted) when all are held.
    pub(crate) fn admit(&self) -> Option<Ticket> {
        let taken = self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1));
        match taken {
            Ok(_) => Some(Ticket(Arc::clone(&self.held))),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Tickets held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Handshakes refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_is_free_again_once_its_ticket_goes() {
        let pending = PendingSessions::new(2);
        let a = pending.admit().expect("first");
        let _b = pending.admit().expect("second");
        assert!(pending.admit().is_none(), "a third over the bound");
        assert_eq!((pending.held(), pending.refused()), (2, 1));
        drop(a);
        assert!(pending.admit().is_some(), "the freed place is taken again");
        assert_eq!(pending.refused(), 1);
    }
}

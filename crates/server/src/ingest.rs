//! Accepting driver input, whatever the transport: role check, validation,
//! rate limit, then the sequencer. Socket handlers and REST routes both call
//! this, so a fix is judged the same way on every path.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use serde_json::Value;
use wecare_proto::{ErrorCode, MessageId, Seq};

use crate::clock::{Millis, now_ms};
use crate::domain::auth::Principal;
use crate::domain::event::NewEvent;
use crate::domain::fields::SentFields;
use crate::domain::rate::RateLimiter;
use crate::domain::validate::{self, Rejection};
use crate::metrics::Metrics;
use crate::storage::Appended;
use crate::stream::sequencer::Sequencer;

/// A stored (or already stored) event, as its ack reports it.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub(crate) id: MessageId,
    pub(crate) seq: Seq,
    pub(crate) received: Millis,
    pub(crate) duplicate: bool,
    pub(crate) adjusted: bool,
}

pub(crate) type Outcome = Result<Accepted, Rejection>;

const NOT_A_DRIVER: Rejection = Rejection::new(ErrorCode::Forbidden, "only drivers may send this");
const RATE_LIMITED: Rejection = Rejection::new(ErrorCode::RateLimited, "over the per-driver rate; retry later");
const UNAVAILABLE: Rejection = Rejection::new(ErrorCode::Unavailable, "storage could not commit; retry later");

#[derive(Debug)]
pub(crate) struct Ingest {
    sequencer: Sequencer,
    rate: RateLimiter,
    metrics: Arc<Metrics>,
}

impl Ingest {
    pub(crate) fn new(sequencer: Sequencer, rate_per_sec: u32, metrics: Arc<Metrics>) -> Self {
        Self { sequencer, rate: RateLimiter::new(rate_per_sec), metrics }
    }

    /// Validates and stores one `location:update`, as read ([`SentFields`])
    /// or refused as it was read: the rules of [`Self::fixes`], without a
    /// list per step for the one fix of the hot path.
    pub(crate) async fn fix(&self, who: &Principal, item: Result<SentFields, Rejection>) -> Outcome {
        let received = now_ms();
        let outcome = match who.sender() {
            None => Err(NOT_A_DRIVER),
            Some(sender) => match item.and_then(|sent| validate::fix_fields(&sent, &sender.driver, received)) {
                Err(r) => Err(r),
                Ok(_) if self.rate.take(&sender.driver, 1, Instant::now()) == 0 => Err(RATE_LIMITED),
                Ok(fix) => {
                    let adjusted = fix.adjusted;
                    self.store_one(NewEvent::location(sender, fix, received), adjusted).await
                }
            },
        };
        self.count_one(&outcome);
        outcome
    }

    /// Validates and stores fixes (a batch's items, or one sent over
    /// HTTP), each as read ([`SentFields`]) or refused as it was read.
    pub(crate) async fn fixes(&self, who: &Principal, items: Vec<Result<SentFields, Rejection>>) -> Vec<Outcome> {
        let received = now_ms();
        let Some(sender) = who.sender() else {
            return self.count(items.iter().map(|_| Err(NOT_A_DRIVER)).collect());
        };
        let driver = &sender.driver;
        let mut out: Vec<Option<Outcome>> = vec![None; items.len()];
        let mut slots = Vec::with_capacity(items.len());
        let mut events = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item.and_then(|sent| validate::fix_fields(&sent, driver, received)) {
                Ok(fix) => {
                    slots.push((i, fix.adjusted));
                    events.push(NewEvent::location(sender.clone(), fix, received));
                }
                Err(r) => out[i] = Some(Err(r)),
            }
        }
        let granted = self.rate.take(driver, events.len(), Instant::now());
        for &(i, _) in &slots[granted..] {
            out[i] = Some(Err(RATE_LIMITED));
        }
        events.truncate(granted);
        let ids: Vec<MessageId> = events.iter().map(|e| e.id.clone()).collect();
        self.metrics.events_submitted.fetch_add(events.len() as u64, Relaxed);
        match self.sequencer.submit(events).await {
            Ok(stored) => {
                for ((&(i, adjusted), appended), id) in slots.iter().zip(stored).zip(ids) {
                    out[i] = Some(Ok(accepted(id, appended, received, adjusted)));
                }
            }
            Err(_) => {
                for &(i, _) in &slots[..granted] {
                    out[i] = Some(Err(UNAVAILABLE));
                }
            }
        }
        self.count(out.into_iter().map(|o| o.unwrap_or(Err(UNAVAILABLE))).collect())
    }

    /// Validates and stores a status change.
    pub(crate) async fn status(&self, who: &Principal, payload: &Value) -> Outcome {
        let received = now_ms();
        let outcome = match who.sender() {
            None => Err(NOT_A_DRIVER),
            Some(sender) => match validate::status_change(payload, &sender.driver) {
                Err(r) => Err(r),
                Ok(_) if self.rate.take(&sender.driver, 1, Instant::now()) == 0 => Err(RATE_LIMITED),
                Ok(change) => self.store_one(NewEvent::status(sender, change, received), false).await,
            },
        };
        self.count_one(&outcome);
        outcome
    }

    /// Submits one accepted event and reports it as its ack does.
    async fn store_one(&self, ev: NewEvent, adjusted: bool) -> Outcome {
        let (id, received) = (ev.id.clone(), ev.received);
        self.metrics.events_submitted.fetch_add(1, Relaxed);
        match self.sequencer.submit_one(ev).await {
            Ok(appended) => Ok(accepted(id, appended, received, adjusted)),
            Err(_) => Err(UNAVAILABLE),
        }
    }

    fn count(&self, outcomes: Vec<Outcome>) -> Vec<Outcome> {
        outcomes.iter().for_each(|o| self.count_one(o));
        outcomes
    }

    fn count_one(&self, outcome: &Outcome) {
        match outcome {
            Ok(a) => {
                self.metrics.acks_ok.fetch_add(1, Relaxed);
                if a.duplicate {
                    self.metrics.dedup_hits.fetch_add(1, Relaxed);
                }
            }
            Err(r) => self.metrics.rejected(r.code),
        }
    }
}

fn accepted(id: MessageId, appended: Appended, received: Millis, adjusted: bool) -> Accepted {
    match appended {
        Appended::Stored(ev) => Accepted { id, seq: ev.seq, received, duplicate: false, adjusted },
        Appended::Duplicate(seq) => Accepted { id, seq, received, duplicate: true, adjusted },
        // Only presence events can be dropped, and they are not acked.
        Appended::Unchanged => Accepted { id, seq: Seq::ZERO, received, duplicate: true, adjusted },
    }
}

//! A simulated driver: sends `location:update` with an ack, on a fixed
//! schedule (open loop, so slow acks do not lower the offered load) or as
//! fast as its acks allow, and records what every ack said.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};
use wecare_client::{ClientError, SocketClient};
use wecare_proto::event;
use wecare_proto::payload::{LocationResult, ReceivedCode};

use super::Pace;
use super::load::{Live, Window, histogram, micros};
use super::update_id::UpdateId;

/// How long a driver waits for one ack (then counts a timeout).
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Open loop only: outstanding updates per driver beyond which a tick is
/// skipped (and counted) instead of piling up futures.
const MAX_BACKLOG: usize = 1000;

/// What one driver does.
#[derive(Debug, Clone)]
pub(super) struct DriverPlan {
    pub(super) index: u32,
    pub(super) drivers: u32,
    pub(super) pace: Pace,
    pub(super) run: Arc<str>,
    /// The instant all `sent_us` are measured from.
    pub(super) origin: Instant,
    /// When this driver starts sending.
    pub(super) start: Instant,
    pub(super) window: Window,
    /// When sending stops (outstanding acks are still awaited).
    pub(super) end: Instant,
}

/// What one driver saw, for updates sent inside the measurement window.
#[derive(Debug)]
pub(super) struct DriverStats {
    pub(super) index: u32,
    /// Updates sent.
    pub(super) sent: u64,
    /// Ack round trips (µs) of every answered update, success or refusal.
    pub(super) ack_latency: Histogram<u64>,
    /// Counters (`n`) of updates acked `ok` and not duplicate: the ones
    /// every watcher must receive.
    pub(super) stored: Vec<u32>,
    pub(super) duplicates: u64,
    /// Refusals by error code.
    pub(super) rejected: BTreeMap<String, u64>,
    pub(super) timeouts: u64,
    pub(super) closed: u64,
    pub(super) other_errors: u64,
    /// Open-loop ticks skipped because [`MAX_BACKLOG`] acks were outstanding.
    pub(super) skipped: u64,
    /// The socket went away during the run.
    pub(super) lost_connection: bool,
}

enum AckOutcome {
    Stored,
    Duplicate,
    Rejected(String),
    Timeout,
    Closed,
    Other,
}

struct Sent {
    n: u32,
    sent_us: u64,
    latency: Duration,
    outcome: AckOutcome,
}

/// Runs one driver until `plan.end`, then waits for its outstanding acks.
pub(super) async fn drive(client: SocketClient, plan: DriverPlan, live: Arc<Live>) -> DriverStats {
    let mut stats = DriverStats {
        index: plan.index,
        sent: 0,
        ack_latency: histogram(),
        stored: Vec::new(),
        duplicates: 0,
        rejected: BTreeMap::new(),
        timeouts: 0,
        closed: 0,
        other_errors: 0,
        skipped: 0,
        lost_connection: false,
    };
    let mut ticker = match plan.pace {
        Pace::Rate(rate) => {
            let mut ticker = tokio::time::interval_at(plan.start, Duration::from_secs_f64(1.0 / rate));
            // Catch up after a stall: the offered load is the point.
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
            Some(ticker)
        }
        Pace::Max { .. } => None,
    };
    let in_flight_target = match plan.pace {
        Pace::Max { in_flight } => in_flight as usize,
        Pace::Rate(_) => 0,
    };
    let end = tokio::time::sleep_until(plan.end);
    tokio::pin!(end);
    let mut in_flight = FuturesUnordered::new();
    let mut n: u32 = 0;
    let mut sending = true;
    if ticker.is_none() {
        tokio::time::sleep_until(plan.start).await;
    }
    let has_ticker = ticker.is_some();
    loop {
        if sending && !client.is_connected() {
            stats.lost_connection = true;
            sending = false;
        }
        while sending && in_flight.len() < in_flight_target {
            in_flight.push(send_one(&client, &plan, n));
            n = n.wrapping_add(1);
        }
        let tick = async {
            match ticker.as_mut() {
                Some(ticker) => ticker.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut end, if sending => sending = false,
            Some(sent) = in_flight.next(), if !in_flight.is_empty() => {
                record(&mut stats, &plan.window, &live, sent);
            }
            _ = tick, if sending && has_ticker => {
                if in_flight.len() >= MAX_BACKLOG {
                    stats.skipped += 1;
                } else {
                    in_flight.push(send_one(&client, &plan, n));
                    n = n.wrapping_add(1);
                }
            }
            else => break,
        }
    }
    stats
}

/// Sends update `n` and waits for its ack.
async fn send_one(client: &SocketClient, plan: &DriverPlan, n: u32) -> Sent {
    let sent_at = Instant::now();
    let sent_us = micros(sent_at.saturating_duration_since(plan.origin));
    let id = UpdateId { run: &plan.run, driver: plan.index, n, sent_us };
    let (lat, lng) = position(plan.index, plan.drivers, n);
    let payload = format!(r#"{{"id":"{id}","lat":{lat:.6},"lng":{lng:.6},"recordedAt":{}}}"#, super::epoch_ms());
    let result = client.emit_raw_with_ack(event::LOCATION_UPDATE, &payload, ACK_TIMEOUT).await;
    let outcome = match result {
        Ok(ack) => classify(&ack),
        Err(ClientError::Timeout) => AckOutcome::Timeout,
        Err(ClientError::Closed) => AckOutcome::Closed,
        Err(_) => AckOutcome::Other,
    };
    Sent { n, sent_us, latency: sent_at.elapsed(), outcome }
}

fn classify(ack: &serde_json::Value) -> AckOutcome {
    match LocationResult::<ReceivedCode>::deserialize(ack) {
        Ok(LocationResult::Ok(ok)) if ok.duplicate => AckOutcome::Duplicate,
        Ok(LocationResult::Ok(_)) => AckOutcome::Stored,
        Ok(LocationResult::Error(err)) => AckOutcome::Rejected(err.code.as_str().to_owned()),
        Err(_) => AckOutcome::Rejected("UNREADABLE_ACK".to_owned()),
    }
}

fn record(stats: &mut DriverStats, window: &Window, live: &Live, sent: Sent) {
    match &sent.outcome {
        AckOutcome::Stored | AckOutcome::Duplicate => {
            live.acked.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !window.contains(sent.sent_us) {
        return;
    }
    stats.sent += 1;
    let answered = matches!(sent.outcome, AckOutcome::Stored | AckOutcome::Duplicate | AckOutcome::Rejected(_));
    if answered {
        stats.ack_latency.saturating_record(micros(sent.latency));
    }
    match sent.outcome {
        AckOutcome::Stored => stats.stored.push(sent.n),
        AckOutcome::Duplicate => stats.duplicates += 1,
        AckOutcome::Rejected(code) => *stats.rejected.entry(code).or_default() += 1,
        AckOutcome::Timeout => stats.timeouts += 1,
        AckOutcome::Closed => stats.closed += 1,
        AckOutcome::Other => stats.other_errors += 1,
    }
}

/// A plausible position: drivers spread over a grid around Bangkok, each
/// creeping along a short track.
fn position(index: u32, drivers: u32, n: u32) -> (f64, f64) {
    let side = f64::from(drivers).sqrt().ceil().max(1.0);
    let row = f64::from(index) % side;
    let col = (f64::from(index) / side).floor();
    let step = f64::from(n % 10_000) * 0.000_01;
    (13.60 + row * 0.002 + step, 100.40 + col * 0.002 + step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn acks_are_classified_by_status_and_duplicate() {
        let ok = |duplicate| json!({"status": "ok", "id": "a", "seq": 1, "timestamp": "2026-12-07T10:00:00.000Z", "duplicate": duplicate});
        assert!(matches!(classify(&ok(false)), AckOutcome::Stored));
        assert!(matches!(classify(&ok(true)), AckOutcome::Duplicate));
        assert!(matches!(
            classify(&json!({"status": "error", "code": "RATE_LIMITED", "message": "slow down", "retryable": true})),
            AckOutcome::Rejected(code) if code == "RATE_LIMITED"
        ));
        assert!(matches!(
            classify(&json!({"status": "error", "code": "SOMETHING_NEWER", "message": "m", "retryable": false})),
            AckOutcome::Rejected(code) if code == "SOMETHING_NEWER"
        ));
        assert!(matches!(classify(&json!(null)), AckOutcome::Rejected(code) if code == "UNREADABLE_ACK"));
    }

    #[test]
    fn positions_are_valid_coordinates() {
        for (index, n) in [(0, 0), (9_999, u32::MAX), (5, 123_456)] {
            let (lat, lng) = position(index, 10_000, n);
            assert!((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng));
        }
    }
}

//! A watcher: reads the stream in raw mode, parses only `id` and `seq` of
//! each `location:updated`, and records end-to-end latency, which updates
//! arrived, and whether `seq` kept increasing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use hdrhistogram::Histogram;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wecare_client::{RawEvent, ServerEvent};
use wecare_proto::payload::EventPlace;
use wecare_proto::{Seq, event};

use super::load::{Live, Window, histogram, micros};
use super::update_id::UpdateId;

/// What one watcher saw of the updates sent inside the measurement window.
#[derive(Debug)]
pub(super) struct WatcherStats {
    /// Driver send → watcher receive, µs.
    pub(super) end_to_end: Histogram<u64>,
    /// [`UpdateId::key`]s received, in arrival order.
    pub(super) received: Vec<u64>,
    /// `location:updated` events whose seq was not above the previous one.
    pub(super) order_violations: u64,
    /// Events that could not be read (no `id`/`seq`).
    pub(super) malformed: u64,
    /// Why the socket went away before the end, if it did.
    pub(super) disconnected: Option<String>,
}

/// Where a watcher is told the run's timing.
#[derive(Debug, Clone)]
pub(super) struct WatchPlan {
    pub(super) run: Arc<str>,
    pub(super) origin: Instant,
    /// Set once traffic starts; updates seen before are not counted.
    pub(super) window: Arc<OnceLock<Window>>,
}

/// Reads `events` until `stop` (or a disconnect); reports `ready` on the
/// first `drivers:snapshot`, i.e. once it is subscribed to the live stream.
pub(super) async fn watch(
    mut events: mpsc::Receiver<ServerEvent>,
    ready: oneshot::Sender<()>,
    plan: WatchPlan,
    live: Arc<Live>,
    stop: CancellationToken,
) -> WatcherStats {
    let mut stats = WatcherStats {
        end_to_end: histogram(),
        received: Vec::new(),
        order_violations: 0,
        malformed: 0,
        disconnected: None,
    };
    let mut ready = Some(ready);
    let mut last_seq = 0;
    loop {
        let event = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            event = events.recv() => event,
        };
        match event {
            Some(ServerEvent::Raw(raw)) => {
                if raw.name() == event::LOCATION_UPDATED {
                    on_update(&raw, &plan, &live, &mut stats, &mut last_seq);
                } else if raw.name() == event::DRIVERS_SNAPSHOT
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
            Some(ServerEvent::Disconnected { reason }) => {
                stats.disconnected = Some(reason);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    stats
}

fn on_update(raw: &RawEvent, plan: &WatchPlan, live: &Live, stats: &mut WatcherStats, last_seq: &mut u64) {
    let received_us = micros(plan.origin.elapsed());
    let Ok(EventPlace { seq: Seq(seq), id: Some(id) }) = raw.parse_data::<EventPlace<'_>>() else {
        stats.malformed += 1;
        return;
    };
    if seq <= *last_seq {
        stats.order_violations += 1;
    }
    *last_seq = seq;
    let Some(update) = UpdateId::parse(id).filter(|u| u.run == &*plan.run) else {
        // Another client's update, or another run's.
        return;
    };
    live.delivered.fetch_add(1, Ordering::Relaxed);
    let Some(window) = plan.window.get() else {
        return;
    };
    if window.contains(update.sent_us) {
        live.delivered_in_window.fetch_add(1, Ordering::Relaxed);
        stats.end_to_end.saturating_record(received_us.saturating_sub(update.sent_us));
        stats.received.push(update.key());
    }
}

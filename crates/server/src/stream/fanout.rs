//! Live delivery. One task owns the set of live watchers and a ring of the
//! latest events. Each committed event arrives here once, already encoded;
//! the per-watcher work is only the socket write of those bytes.
//!
//! Because this task is the only one that adds watchers to the live set and
//! the only one that delivers live events, a watcher that finished its
//! replay up to `after` is handed the ring's events `> after` and then
//! joins, with nothing in between: no gap, no duplicate.
//!
//! A write that fails because the watcher's send buffer is full is never
//! ignored: that watcher leaves the live set, and its [`Behind`] is called
//! with the `seq` after which it fell behind: a new task of
//! [`super::watcher`] (which owns the watcher's life) reads on from storage,
//! paced, and joins again when current (design
//! invariant: a watcher never silently misses an event, and no buffer grows
//! without bound). The fan-out only writes and signals; it decides nothing
//! about a watcher's life.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wecare_proto::{Seq, event, payload};

use super::StreamDeps;
use super::sink::{WatcherSink, Write};
use crate::domain::event::SharedEvent;

/// Events kept in memory for joins (older ones are read from storage).
const RING: usize = 16_384;
/// How long a delivery round waits for further commits.
const GATHER: Duration = Duration::from_millis(3);
/// Most events in one delivery round (one commit past it at most).
const GATHER_MAX: usize = 512;
/// Frames a watcher's socket queues (`max_buffer_size`): a round of
/// [`GATHER_MAX`] plus a whole group commit, with room for what else it is
/// sent; a watcher that lets it fill is behind (paced from storage). Kept
/// no larger than that: a frame may be a 64 KiB notification, and a socket
/// that stopped reading holds its queue until the write-stall bound closes it.
pub(crate) const SOCKET_QUEUE: usize = super::sequencer::MAX_GROUP + 2 * GATHER_MAX;

/// What the fan-out task is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Newly committed events, in `seq` order.
    Publish { events: Vec<SharedEvent>, committed_at: Instant },
    /// A watcher that has everything up to `after` wants to go live.
    Join(Join),
    /// A watcher's session ended (its `stop` fired): let it go now rather
    /// than at the next publish.
    Forget,
    /// Answered once every earlier publish has been delivered.
    Flush(oneshot::Sender<()>),
}

/// A request to go live.
#[derive(Debug)]
pub(crate) struct Join {
    pub(crate) sink: Arc<dyn WatcherSink>,
    /// Cancelled when the watcher's session ends (token expired, socket gone).
    pub(crate) stop: CancellationToken,
    pub(crate) after: Seq,
    /// Set for a client-requested replay: `sync:complete` goes out on joining.
    pub(crate) sync: Option<SyncProgress>,
    pub(crate) reply: oneshot::Sender<Joined>,
    /// Once live: called with the last `seq` delivered if the watcher falls
    /// behind (dropped when it leaves the live set for good).
    pub(crate) behind: Behind,
}

/// What a live watcher that fell behind does next (its catch-up from
/// storage): a live watcher has no task of its own waiting for this.
pub(crate) struct Behind(pub(crate) Box<dyn FnOnce(Seq) + Send>);

impl std::fmt::Debug for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Behind")
    }
}

/// A replay's progress, for its `sync:complete`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncProgress {
    pub(crate) from: Seq,
    pub(crate) replayed: u64,
}

/// The answer to a [`Join`].
#[derive(Debug)]
pub(crate) enum Joined {
    Live,
    /// The ring no longer covers the watcher's position (or its buffer
    /// filled while being caught up): keep reading storage after `cursor`.
    /// `sent` ring events were delivered before that.
    Behind {
        cursor: Seq,
        sent: u64,
    },
}

struct LiveWatcher {
    sink: Arc<dyn WatcherSink>,
    stop: CancellationToken,
    /// Events at or below this were delivered (before joining, or live).
    after: Seq,
    behind: Behind,
}

/// Writes one event to one watcher.
pub(crate) fn write(sink: &dyn WatcherSink, ev: &SharedEvent) -> Write {
    sink.send_event(ev)
}

struct Fanout {
    deps: Arc<StreamDeps>,
    live: Vec<LiveWatcher>,
    ring: VecDeque<SharedEvent>,
}

/// Runs until the stream stops.
pub(crate) async fn run(deps: Arc<StreamDeps>, mut rx: mpsc::Receiver<Command>) {
    let mut fanout = Fanout { deps: Arc::clone(&deps), live: Vec::new(), ring: VecDeque::with_capacity(RING) };
    loop {
        let cmd = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => break },
            () = deps.stop.cancelled() => break,
        };
        let mut next = Some(cmd);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Publish { mut events, committed_at } => {
                    next = gather(&mut rx, &mut events).await;
                    fanout.publish(&events, committed_at);
                }
                Command::Join(join) => fanout.join(join),
                Command::Forget => fanout.live.retain(|w| !w.stop.is_cancelled()),
                Command::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
    tracing::debug!("fan-out stopped");
}

/// Collects the commits that follow within [`GATHER`] (up to
/// [`GATHER_MAX`] events) into one delivery round. A socket's queued frames
/// go out in one write, so under load each watcher costs one syscall per
/// round instead of one per event. Returns a non-publish command that
/// arrived meanwhile, to be handled after this round (order is kept).
async fn gather(rx: &mut mpsc::Receiver<Command>, events: &mut Vec<SharedEvent>) -> Option<Command> {
    let deadline = tokio::time::Instant::now() + GATHER;
    while events.len() < GATHER_MAX {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Command::Publish { events: more, .. })) => events.extend(more),
            Ok(other) => return other,
            Err(_) => return None,
        }
    }
    None
}

impl Fanout {
    fn publish(&mut self, events: &[SharedEvent], committed_at: Instant) {
        for ev in events {
            if self.ring.len() == RING {
                self.ring.pop_front();
            }
            self.ring.push_back(Arc::clone(ev));
        }
        let mut delivered = 0u64;
        let mut i = 0;
        while i < self.live.len() {
            let w = &mut self.live[i];
            if w.stop.is_cancelled() {
                self.live.swap_remove(i);
                continue;
            }
            let mut outcome = Write::Sent;
            let mut last_sent = w.after;
            for ev in events.iter().filter(|e| e.seq > w.after) {
                outcome = write(w.sink.as_ref(), ev);
                match outcome {
                    Write::Sent => {
                        delivered += 1;
                        last_sent = ev.seq;
                    }
                    Write::Full | Write::Gone => break,
                }
            }
            // What it has now: a later round that finds its buffer full
            // sends it on from here, not from where it joined.
            w.after = last_sent;
            match outcome {
                Write::Sent => i += 1,
                Write::Gone => {
                    self.live.swap_remove(i);
                }
                Write::Full => {
                    let w = self.live.swap_remove(i);
                    self.deps.metrics.watchers_behind.fetch_add(1, Relaxed);
                    tracing::info!(watcher = %w.sink.name(), after = last_sent.0, "watcher fell behind; catching up from storage");
                    (w.behind.0)(last_sent);
                }
            }
        }
        self.deps.metrics.events_out.fetch_add(delivered, Relaxed);
        self.deps.metrics.fanout_latency.observe(committed_at.elapsed());
    }

    fn join(&mut self, join: Join) {
        let Join { sink, stop, after, sync, reply, behind } = join;
        if stop.is_cancelled() {
            // Its session ended while the request was on its way.
            let _ = reply.send(Joined::Live);
            return;
        }
        let mut cursor = after;
        let mut sent = 0u64;
        if let Some(front) = self.ring.front() {
            if front.seq > cursor.next() && self.ring.back().is_some_and(|b| b.seq > cursor) {
                let _ = reply.send(Joined::Behind { cursor, sent });
                return;
            }
            let skip = cursor.next().0.saturating_sub(front.seq.0) as usize;
            for ev in self.ring.iter().skip(skip) {
                match write(sink.as_ref(), ev) {
                    Write::Sent => {
                        cursor = ev.seq;
                        sent += 1;
                    }
                    Write::Full => {
                        let _ = reply.send(Joined::Behind { cursor, sent });
                        return;
                    }
                    Write::Gone => {
                        let _ = reply.send(Joined::Live);
                        return;
                    }
                }
            }
        }
        self.deps.metrics.events_out.fetch_add(sent, Relaxed);
        if let Some(p) = sync {
            let done = payload::SyncComplete {
                stream_id: self.deps.log.stream_id().to_string(),
                from_seq: p.from,
                to_seq: cursor,
                replayed: p.replayed + sent,
            };
            let done = serde_json::value::to_raw_value(&done).expect("a struct of numbers and a string encodes");
            if sink.send(event::SYNC_COMPLETE, &done) != Write::Sent {
                let _ = reply.send(Joined::Behind { cursor, sent });
                return;
            }
        }
        self.live.push(LiveWatcher { sink, stop, after: cursor, behind });
        let _ = reply.send(Joined::Live);
    }
}

//! One watcher's life in the stream: a task while it is brought up to date
//! (and again while it catches up after falling behind), none while live —
//! the fan-out holds a live watcher, and starts its catch-up:
//!
//! ```text
//!   snapshot ─┐                      ┌──────────── behind ◄─┐
//!             ├─► replaying ─► (join)┴► live ──(queue full)─┘
//!   resume  ──┘      ▲  gap: snapshot again
//! ```
//!
//! Brought up to date — a snapshot or a resume (`seq > lastSeq` in order,
//! then `sync:complete`) as [`super::resume`] decides, or a snapshot after
//! all when retention dropped events it needs — then handed to the live
//! fan-out; and, when the fan-out says it fell behind, caught up from
//! storage by a new task and handed back. It writes through a [`WatcherSink`], so this
//! whole life is tested below without a socket.
//!
//! Writes are paced against the sink's bounded queue: when it is full the
//! task waits for it to drain, so a replay of any length holds at most one
//! page in memory and never drops an event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use wecare_proto::{Seq, event};

use super::StreamDeps;
use super::fanout::{Behind, Command, Join, Joined, SyncProgress, write};
use super::resume::{Claim, StartFrom};
use super::sink::{WatcherSink, Write};
use crate::domain::event::SharedEvent;

/// Events read from storage at a time.
pub(crate) const PAGE: usize = 1000;
/// Wait between attempts while a socket's send buffer is full.
const DRAIN_POLL: Duration = Duration::from_millis(1);
/// A watcher whose buffer does not drain for this long is given up on; the
/// heartbeat then closes its transport and it resumes on reconnect.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// The socket went away or the server is stopping.
#[derive(Debug)]
struct Stop;

/// How a watcher starts.
#[derive(Debug, Default)]
pub(crate) enum Start {
    /// As its claim says, announcing the end of a resume with `sync:complete`.
    #[default]
    Resume,
    /// Socket.IO connection-state recovery: the events after the claim,
    /// no `sync:complete`; told on `live` once it is live — `true` when
    /// only events were sent, `false` when it had to send a snapshot
    /// (retention dropped what it needed).
    Recover { live: oneshot::Sender<bool> },
    /// It fell behind while live: the events after the last one delivered,
    /// from storage, no `sync:complete`.
    CatchUp,
}

/// Runs the watcher behind `sink` with what its handshake claims, until it
/// is gone or `stop` fires (its session ended: a socket never outlives its
/// token, also mid-replay).
pub(crate) fn spawn(
    deps: &Arc<StreamDeps>,
    sink: Arc<dyn WatcherSink>,
    claim: Claim,
    start: Start,
    stop: CancellationToken,
) {
    let deps = Arc::clone(deps);
    let tracker = deps.tracker.clone();
    tracker.spawn(async move {
        tokio::select! {
            _ = drive(&deps, &sink, claim, start, &stop) => {}
            () = stop.cancelled() => {}
        }
    });
}

/// Retries a storage read until it succeeds: a watcher waits through a
/// storage hiccup instead of being left connected without events.
async fn read_retrying<T, F, Fut>(mut read: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::storage::StorageError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match read().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, "replay read failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn drive(
    deps: &Arc<StreamDeps>,
    sink: &Arc<dyn WatcherSink>,
    claim: Claim,
    start: Start,
    stop: &CancellationToken,
) -> Result<(), Stop> {
    let (mut live, announce) = match start {
        Start::Resume => (None, true),
        Start::Recover { live } => (Some(live), false),
        Start::CatchUp => (None, false),
    };
    let mut snapshot_sent = false;
    let stream_id = deps.log.stream_id();
    let from = match claim.resumable(stream_id) {
        // The store's own head (see `Claim::start`).
        Some(last) => claim.start(stream_id, Box::pin(read_retrying(|| deps.log.read_after(last, 0))).await.head),
        None => StartFrom::State,
    };
    let (mut cursor, mut sync) = match from {
        StartFrom::State => {
            snapshot_sent = true;
            (Box::pin(send_snapshot(deps, sink.as_ref())).await?, None)
        }
        StartFrom::After(last) => (last, announce.then_some(SyncProgress { from: last, replayed: 0 })),
    };
    loop {
        // Boxed: the reads and the snapshot are heap-allocated only while
        // they run, so a live watcher's task (which waits for the fan-out's
        // word for hours) stays small.
        let page = Box::pin(read_retrying(|| deps.log.read_after(cursor, PAGE))).await;
        tracing::debug!(
            after = cursor.0,
            events = page.events.len(),
            head = page.head.0,
            gap = page.gap,
            "replay page"
        );
        if page.gap {
            // Retention dropped events this watcher needs: start over from state.
            cursor = Box::pin(send_snapshot(deps, sink.as_ref())).await?;
            snapshot_sent = true;
            sync = None;
            continue;
        }
        let full_page = page.events.len() == PAGE;
        for ev in &page.events {
            write_paced(sink.as_ref(), ev).await?;
            cursor = ev.seq;
        }
        deps.metrics.events_out.fetch_add(page.events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = &mut sync {
            s.replayed += page.events.len() as u64;
        }
        if full_page {
            continue;
        }
        let (reply, joined) = oneshot::channel();
        let behind = {
            let (deps, sink, stop) = (Arc::clone(deps), Arc::clone(sink), stop.clone());
            Behind(Box::new(move |after: Seq| {
                let claim = Claim { last_seq: Some(after), stream_id: Some(deps.log.stream_id().to_string()) };
                spawn(&deps, sink, claim, Start::CatchUp, stop);
            }))
        };
        let join = Join { sink: Arc::clone(sink), stop: stop.clone(), after: cursor, sync, reply, behind };
        Box::pin(deps.fanout.send(Command::Join(join))).await.map_err(|_| Stop)?;
        match joined.await.map_err(|_| Stop)? {
            Joined::Live => {
                if let Some(live) = live.take() {
                    let _ = live.send(!snapshot_sent);
                }
                // Live: the fan-out holds it now, and this task ends. If it
                // falls behind, the fan-out starts its catch-up (`Behind`).
                return Ok(());
            }
            Joined::Behind { cursor: c, sent } => {
                cursor = c;
                if let Some(s) = &mut sync {
                    s.replayed += sent;
                }
            }
        }
    }
}

async fn send_snapshot(deps: &StreamDeps, sink: &dyn WatcherSink) -> Result<Seq, Stop> {
    let payload = read_retrying(|| deps.snapshots.get(deps.log.as_ref())).await;
    tracing::debug!(watcher = %sink.name(), seq = payload.seq.0, "sending snapshot");
    paced(|| sink.send(event::DRIVERS_SNAPSHOT, payload.raw())).await?;
    Ok(payload.seq)
}

async fn write_paced(sink: &dyn WatcherSink, ev: &SharedEvent) -> Result<(), Stop> {
    match write(sink, ev) {
        Write::Sent => Ok(()),
        Write::Gone => Err(Stop),
        // Boxed: only a full queue waits, and the wait's timer is on the
        // heap while it does (a live watcher's task stays small).
        Write::Full => Box::pin(paced(|| write(sink, ev))).await,
    }
}

/// Retries `write` while the queue is full, up to [`STALL_LIMIT`].
async fn paced(mut write: impl FnMut() -> Write) -> Result<(), Stop> {
    let mut waited = Duration::ZERO;
    loop {
        match write() {
            Write::Sent => return Ok(()),
            Write::Gone => return Err(Stop),
            Write::Full => {
                waited += DRAIN_POLL;
                if waited > STALL_LIMIT {
                    return Err(Stop);
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The watcher's life against a real store and the real fan-out, with a
    //! bounded buffer for a socket: what the watcher would read, in order.

    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    use std::time::Instant;

    use serde_json::Value;
    use serde_json::value::RawValue;
    use tokio::sync::{Notify, mpsc, watch};
    use tokio_util::task::TaskTracker;
    use wecare_proto::MessageId;

    use super::*;
    use crate::clock::now_ms;
    use crate::domain::event::{NewEvent, Sender};
    use crate::domain::validate::Fix;
    use crate::metrics::Metrics;
    use crate::storage::sqlite::SqliteLog;
    use crate::storage::{Appended, EventLog, NoSockets};
    use crate::stream::fanout;
    use crate::stream::snapshot::SnapshotCache;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A socket's send queue, bounded like the real one; the test reads it.
    #[derive(Debug)]
    struct Buffer {
        queue: Mutex<VecDeque<(&'static str, Value)>>,
        capacity: AtomicUsize,
        gone: AtomicBool,
        written: Notify,
    }

    impl Buffer {
        fn new(capacity: usize) -> Arc<Self> {
            Arc::new(Self {
                queue: Mutex::default(),
                capacity: AtomicUsize::new(capacity),
                gone: AtomicBool::new(false),
                written: Notify::new(),
            })
        }

        /// Reads `n` frames (draining the queue as a client reads its socket).
        async fn read(&self, n: usize) -> Vec<(&'static str, Value)> {
            let mut got = Vec::new();
            tokio::time::timeout(PATIENCE, async {
                while got.len() < n {
                    let written = self.written.notified();
                    {
                        let mut q = self.queue.lock().unwrap();
                        while got.len() < n
                            && let Some(f) = q.pop_front()
                        {
                            got.push(f);
                        }
                    }
                    if got.len() < n {
                        written.await;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{} of {n} frames arrived: {got:?}", got.len()));
            got
        }

        fn queued(&self) -> usize {
            self.queue.lock().unwrap().len()
        }
    }

    impl WatcherSink for Buffer {
        fn send(&self, event: &'static str, json: &RawValue) -> Write {
            if self.gone.load(Relaxed) {
                return Write::Gone;
            }
            let mut q = self.queue.lock().unwrap();
            if q.len() >= self.capacity.load(Relaxed) {
                return Write::Full;
            }
            q.push_back((event, serde_json::from_str(json.get()).unwrap()));
            drop(q);
            self.written.notify_waiters();
            Write::Sent
        }

        fn name(&self) -> String {
            "test".into()
        }
    }

    /// A store, the fan-out task, and a way to commit fixes the way the
    /// sequencer and tailer do (stored, then published).
    struct Stream {
        deps: Arc<StreamDeps>,
        _dir: tempfile::TempDir,
        next_fix: i64,
    }

    impl Stream {
        fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path(), Arc::new(NoSockets)).unwrap());
            let (fanout_tx, fanout_rx) = mpsc::channel(64);
            let (_head_tx, head) = watch::channel(log.head());
            let deps = Arc::new(StreamDeps {
                log,
                fanout: fanout_tx,
                head,
                metrics: Arc::new(Metrics::default()),
                tracker: TaskTracker::new(),
                stop: CancellationToken::new(),
                snapshots: SnapshotCache::default(),
            });
            deps.tracker.spawn(fanout::run(Arc::clone(&deps), fanout_rx));
            Self { deps, _dir: dir, next_fix: 0 }
        }

        /// Commits `n` fixes of driver `d1` and publishes them; their seqs.
        async fn commit(&mut self, n: usize) -> Vec<u64> {
            let now = now_ms();
            let batch = (0..n)
                .map(|_| {
                    self.next_fix += 1;
                    let fix = Fix {
                        id: Some(MessageId::parse(format!("fix-{:04}", self.next_fix)).unwrap()),
                        lat: 13.7,
                        lng: 100.5,
                        recorded_at: now - 60_000 + self.next_fix,
                        adjusted: false,
                        status: None,
                        accuracy: None,
                        heading: None,
                        speed: None,
                    };
                    NewEvent::location(Sender::bare("d1"), fix, now)
                })
                .collect();
            let events: Vec<SharedEvent> = self
                .deps
                .log
                .append(batch)
                .await
                .unwrap()
                .into_iter()
                .map(|a| match a {
                    Appended::Stored(e) => e,
                    other => panic!("not stored: {other:?}"),
                })
                .collect();
            let seqs = events.iter().map(|e| e.seq.0).collect();
            let cmd = Command::Publish { events, committed_at: Instant::now() };
            self.deps.fanout.send(cmd).await.unwrap();
            seqs
        }

        /// Returns once the fan-out delivered everything published before.
        async fn delivered(&self) {
            let (done, flushed) = oneshot::channel();
            self.deps.fanout.send(Command::Flush(done)).await.unwrap();
            flushed.await.unwrap();
        }

        fn watch(&self, claim: Claim, capacity: usize) -> (Arc<Buffer>, CancellationToken) {
            let buffer = Buffer::new(capacity);
            let stop = CancellationToken::new();
            spawn(&self.deps, Arc::clone(&buffer) as Arc<dyn WatcherSink>, claim, Start::Resume, stop.clone());
            (buffer, stop)
        }

        fn resume_after(&self, seq: u64) -> Claim {
            Claim { last_seq: Some(Seq(seq)), stream_id: Some(self.deps.log.stream_id().to_string()) }
        }
    }

    fn seqs_of(frames: &[(&'static str, Value)]) -> Vec<u64> {
        frames
            .iter()
            .map(|(name, v)| {
                assert_eq!(*name, event::LOCATION_UPDATED, "an event frame: {v}");
                v["seq"].as_u64().unwrap()
            })
            .collect()
    }

    /// Waits until `buffer` holds `n` frames (the watcher is waiting on it).
    async fn until_queued(buffer: &Buffer, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while buffer.queued() < n {
                buffer.written.notified().await;
            }
        })
        .await
        .expect("frames queued");
    }

    #[tokio::test]
    async fn a_new_watcher_gets_the_snapshot_then_every_live_event_in_order() {
        let mut stream = Stream::start();
        stream.commit(3).await;
        let (buffer, _stop) = stream.watch(Claim::default(), 64);
        let first = buffer.read(1).await;
        assert_eq!(first[0].0, event::DRIVERS_SNAPSHOT);
        assert_eq!(first[0].1["seq"], 3, "the snapshot is as of the head");
        assert_eq!(first[0].1["drivers"].as_array().unwrap().len(), 1);

        // Live: whether it joined before or after these were committed, it
        // gets each once, in order (storage or ring, then live).
        let live = stream.commit(5).await;
        assert_eq!(seqs_of(&buffer.read(5).await), live);
    }

    #[tokio::test]
    async fn a_resuming_watcher_gets_what_it_missed_then_sync_complete_then_live_events() {
        let mut stream = Stream::start();
        stream.commit(5).await;
        stream.delivered().await;
        let (buffer, _stop) = stream.watch(stream.resume_after(2), 64);
        let frames = buffer.read(4).await;
        assert_eq!(seqs_of(&frames[..3]), [3, 4, 5]);
        let (name, done) = &frames[3];
        assert_eq!(*name, event::SYNC_COMPLETE);
        assert_eq!(
            (done["fromSeq"].as_u64(), done["toSeq"].as_u64(), done["replayed"].as_u64()),
            (Some(2), Some(5), Some(3))
        );
        assert_eq!(done["streamId"], stream.deps.log.stream_id());

        let live = stream.commit(2).await;
        assert_eq!(seqs_of(&buffer.read(2).await), live);
        assert_eq!(buffer.queued(), 0, "no snapshot, nothing twice");
    }

    #[tokio::test]
    async fn a_position_from_another_stream_gets_the_snapshot() {
        let mut stream = Stream::start();
        stream.commit(2).await;
        let claim = Claim { last_seq: Some(Seq(1)), stream_id: Some("another-stream".into()) };
        let (buffer, _stop) = stream.watch(claim, 64);
        assert_eq!(buffer.read(1).await[0].0, event::DRIVERS_SNAPSHOT);
    }

    #[tokio::test]
    async fn a_live_watcher_whose_queue_fills_falls_behind_catches_up_from_storage_and_goes_live_again() {
        let mut stream = Stream::start();
        let (buffer, _stop) = stream.watch(Claim::default(), 4);
        buffer.read(1).await; // the snapshot (empty store)

        // Wait until it is live: a published event reaches it.
        let first = stream.commit(1).await;
        assert_eq!(seqs_of(&buffer.read(1).await), first);

        // A burst larger than its queue while it does not read: the fan-out
        // fills the queue, then signals the watcher it fell behind.
        let burst = stream.commit(20).await;
        stream.delivered().await;
        until_queued(&buffer, 4).await;
        assert_eq!(stream.deps.metrics.watchers_behind.load(Relaxed), 1, "it fell behind once");

        // It reads again: every event of the burst once, in order — the rest
        // from storage, paced against its queue.
        assert_eq!(seqs_of(&buffer.read(20).await), burst);

        // And it is live again: later events arrive, once.
        let later = stream.commit(3).await;
        assert_eq!(seqs_of(&buffer.read(3).await), later);
        stream.delivered().await;
        assert_eq!(buffer.queued(), 0, "nothing twice");
    }

    #[tokio::test]
    async fn a_resume_longer_than_the_queue_is_paced_not_dropped() {
        let mut stream = Stream::start();
        stream.commit(50).await;
        let (buffer, _stop) = stream.watch(stream.resume_after(0), 3);
        let frames = buffer.read(51).await;
        assert_eq!(seqs_of(&frames[..50]), (1..=50).collect::<Vec<_>>());
        assert_eq!(frames[50].0, event::SYNC_COMPLETE);
        assert_eq!(frames[50].1["replayed"], 50);
    }

    #[tokio::test]
    async fn a_watcher_whose_session_ended_gets_nothing_more() {
        let mut stream = Stream::start();
        let (buffer, stop) = stream.watch(Claim::default(), 64);
        buffer.read(1).await;
        let first = stream.commit(1).await;
        assert_eq!(seqs_of(&buffer.read(1).await), first);

        stop.cancel();
        stream.deps.fanout.send(Command::Forget).await.unwrap();
        stream.commit(5).await;
        stream.delivered().await;
        assert_eq!(buffer.queued(), 0, "a closed session is written to no more");
    }

    /// A sink that lets the test know when the stream let go of it.
    #[derive(Debug)]
    struct Tracked {
        buffer: Arc<Buffer>,
        _released: oneshot::Sender<()>,
    }

    impl WatcherSink for Tracked {
        fn send(&self, event: &'static str, json: &RawValue) -> Write {
            self.buffer.send(event, json)
        }

        fn name(&self) -> String {
            self.buffer.name()
        }
    }

    #[tokio::test]
    async fn a_watcher_that_is_gone_mid_replay_ends_its_task() {
        let mut stream = Stream::start();
        stream.commit(10).await;
        let buffer = Buffer::new(2);
        let (released, on_release) = oneshot::channel();
        let sink = Arc::new(Tracked { buffer: Arc::clone(&buffer), _released: released });
        spawn(&stream.deps, sink, stream.resume_after(0), Start::Resume, CancellationToken::new());
        until_queued(&buffer, 2).await;
        buffer.gone.store(true, Relaxed);
        buffer.read(2).await;
        // Its task ends by itself (dropping the sink) once the sink says the
        // watcher is gone, although its session was never cancelled.
        let ended = tokio::time::timeout(PATIENCE, on_release).await;
        assert!(ended.is_ok(), "the watcher's task ended");
    }
}

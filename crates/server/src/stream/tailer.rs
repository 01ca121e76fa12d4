//! The tailer: the one way committed events reach this node's live
//! watchers. It keeps a cursor (the last `seq` handed to the fan-out) and
//! hands on only the events right after it, in order. This node's own
//! commits arrive as hints carrying the events; when they follow the
//! cursor they are used as they are (one node: always), otherwise — other
//! nodes committed in between — the tailer reads the stream after its
//! cursor. It also reads when another node's commit is announced, and on a
//! timer, so a missed wake-up costs latency, never an event. Live delivery,
//! resume and catch-up therefore obey one ordering rule: `seq` order as
//! committed, read from the one stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use wecare_proto::Seq;

use super::fanout::Command;
use crate::domain::event::SharedEvent;
use crate::storage::EventLog;

/// Events read from storage at a time when catching up.
const PAGE: usize = 2048;

/// What the sequencer hands the tailer, in commit order.
#[derive(Debug)]
pub(crate) enum Input {
    /// This node committed these events (in `seq` order).
    Committed { events: Vec<SharedEvent>, committed_at: Instant },
    /// Answered (through the fan-out) once everything before is delivered.
    Flush(oneshot::Sender<()>),
}

/// The tailer's wiring.
#[derive(Debug)]
pub(crate) struct Tailer {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) fanout: mpsc::Sender<Command>,
    /// The last `seq` handed to the fan-out, for long-polls.
    pub(crate) head: watch::Sender<Seq>,
    /// Bumped when another node may have committed.
    pub(crate) commits: watch::Receiver<u64>,
    /// How often the stream is read without a wake-up.
    pub(crate) poll: Duration,
    pub(crate) stop: CancellationToken,
}

impl Tailer {
    /// Runs until `stop`, from the stream's head when it starts.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut cursor = self.log.head();
        self.head.send_replace(cursor);
        loop {
            tokio::select! {
                biased;
                input = rx.recv() => match input {
                    Some(Input::Committed { events, committed_at }) => {
                        if events.first().is_some_and(|e| e.seq == cursor.next()) {
                            cursor = self.publish(events, committed_at, cursor).await;
                        } else {
                            cursor = self.catch_up(cursor).await;
                        }
                    }
                    Some(Input::Flush(done)) => {
                        let _ = self.fanout.send(Command::Flush(done)).await;
                    }
                    None => break,
                },
                changed = self.commits.changed() => {
                    if changed.is_err() {
                        // No more wake-ups (one node): the timer remains.
                        self.commits = watch::channel(0).1;
                    }
                    cursor = self.catch_up(cursor).await;
                }
                () = tokio::time::sleep(self.poll) => cursor = self.catch_up(cursor).await,
                () = self.stop.cancelled() => break,
            }
        }
        tracing::debug!("tailer stopped");
    }

    async fn publish(&self, events: Vec<SharedEvent>, committed_at: Instant, cursor: Seq) -> Seq {
        let Some(last) = events.last().map(|e| e.seq) else {
            return cursor;
        };
        // Backpressure: if the fan-out is slow, the tailer (and so the sequencer) waits.
        let _ = self.fanout.send(Command::Publish { events, committed_at }).await;
        self.head.send_replace(last);
        last
    }

    /// Reads and hands on everything committed after `cursor`.
    async fn catch_up(&self, mut cursor: Seq) -> Seq {
        loop {
            let page = match self.log.read_after(cursor, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    // The next wake-up or tick tries again.
                    tracing::warn!(error = %e, after = cursor.0, "tailer read failed");
                    return cursor;
                }
            };
            if page.gap {
                tracing::warn!(after = cursor.0, "this node fell behind retention; live watchers will re-snapshot");
            }
            let full = page.events.len() == PAGE;
            cursor = self.publish(page.events, Instant::now(), cursor).await;
            if !full {
                return cursor;
            }
        }
    }
}

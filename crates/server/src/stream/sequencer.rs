//! The sequencer: every event accepted on this node passes through here. It
//! takes whatever is queued (up to [`MAX_GROUP`] events; under load, what
//! comes within [`GATHER`] too), appends it in one storage commit, answers
//! every waiting sender, then hands the new events to the tailer in `seq`
//! order. One writer per node; across nodes the
//! store orders the commits (see `storage`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::tailer::Input;
use crate::domain::event::{NewEvent, SharedEvent};
use crate::metrics::Metrics;
use crate::storage::{Appended, EventLog};

/// Most events in one group commit (one commit is delivered as one round:
/// see `fanout::SOCKET_QUEUE`).
pub(crate) const MAX_GROUP: usize = 1024;
/// Under load a commit waits up to this long for more events before it
/// starts. The stream's indexes are keyed by driver, so a commit writes about
/// a page per driver in it whatever the number of that driver's events, and
/// a commit of twice the events costs far less than two (docs/benchmarks.md:
/// at 15 000 fixes/s, a third less written and a fifth less server CPU).
const GATHER: Duration = Duration::from_millis(8);
/// "Under load": the commit before carried at least this many events. A
/// fleet at 1 Hz commits a few events at a time and never waits.
const GATHER_FROM: usize = 32;
/// Requests that may wait for the sequencer; beyond this senders wait.
const QUEUE: usize = 4096;
/// How long a sender waits for room in the queue before answering UNAVAILABLE.
const SUBMIT_WAIT: Duration = Duration::from_secs(3);

/// Storage could not take the events (retryable `UNAVAILABLE`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("storage unavailable")]
pub(crate) struct Unavailable;

/// Events waiting for a commit, and whom to answer. A single event (a
/// socket's fix or status, most of the traffic) goes without a list either
/// way: two allocations fewer per fix.
enum Request {
    One { event: NewEvent, reply: oneshot::Sender<Result<Appended, Unavailable>> },
    Many { events: Vec<NewEvent>, reply: oneshot::Sender<Result<Vec<Appended>, Unavailable>> },
}

impl Request {
    fn len(&self) -> usize {
        match self {
            Self::One { .. } => 1,
            Self::Many { events, .. } => events.len(),
        }
    }

    /// Moves the events into the commit's list; whom to answer.
    fn split(self, into: &mut Vec<NewEvent>) -> Reply {
        match self {
            Self::One { event, reply } => {
                into.push(event);
                Reply::One(reply)
            }
            Self::Many { mut events, reply } => {
                let n = events.len();
                into.append(&mut events);
                Reply::Many(reply, n)
            }
        }
    }
}

/// Whom a commit answers, and with how many outcomes.
enum Reply {
    One(oneshot::Sender<Result<Appended, Unavailable>>),
    Many(oneshot::Sender<Result<Vec<Appended>, Unavailable>>, usize),
}

impl Reply {
    fn answer(self, outcomes: &mut impl Iterator<Item = Appended>) {
        match self {
            Self::One(reply) => {
                let _ = reply.send(outcomes.next().ok_or(Unavailable));
            }
            Self::Many(reply, n) => {
                let _ = reply.send(Ok(outcomes.take(n).collect()));
            }
        }
    }

    fn fail(self) {
        match self {
            Self::One(reply) => _ = reply.send(Err(Unavailable)),
            Self::Many(reply, _) => _ = reply.send(Err(Unavailable)),
        }
    }
}

/// What the sequencer is asked to do, in order.
enum Job {
    Append(Request),
    /// Answered once every earlier commit has been delivered to the live
    /// watchers (shutdown, contract §9).
    Flush(oneshot::Sender<()>),
}

/// Handle to the sequencer task.
#[derive(Debug, Clone)]
pub(crate) struct Sequencer {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("events", &self.len()).finish()
    }
}

impl Sequencer {
    /// Starts the task; it stops when `stop` fires, after committing what
    /// was already queued.
    pub(crate) fn spawn(
        log: Arc<dyn EventLog>,
        tailer: mpsc::Sender<Input>,
        metrics: Arc<Metrics>,
        tracker: &tokio_util::task::TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(run(log, rx, tailer, metrics, stop));
        Self { tx }
    }

    /// Resolves once everything submitted before has been committed and
    /// handed to every live watcher.
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// Appends `events` durably; one outcome per event, in order.
    pub(crate) async fn submit(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, Unavailable> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Many { events, reply }).await?;
        rx.await.map_err(|_| Unavailable)?
    }

    /// Appends one event durably ([`Sequencer::submit`] without the lists).
    pub(crate) async fn submit_one(&self, event: NewEvent) -> Result<Appended, Unavailable> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::One { event, reply }).await?;
        rx.await.map_err(|_| Unavailable)?
    }

    async fn send(&self, request: Request) -> Result<(), Unavailable> {
        let send = self.tx.send(Job::Append(request));
        tokio::time::timeout(SUBMIT_WAIT, send).await.map_err(|_| Unavailable)?.map_err(|_| Unavailable)
    }
}

async fn run(
    log: Arc<dyn EventLog>,
    mut rx: mpsc::Receiver<Job>,
    tailer: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut next = None;
    let mut last_total = 0;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => tokio::select! {
                biased;
                r = rx.recv() => match r { Some(r) => r, None => break },
                () = stop.cancelled() => {
                    // Commit what senders already handed over, then stop taking more.
                    rx.close();
                    match rx.recv().await { Some(r) => r, None => break }
                }
            },
        };
        let first = match first {
            Job::Append(r) => r,
            Job::Flush(done) => {
                // Earlier commits were handed on before this point: the
                // fan-out answers once it has delivered them.
                let _ = tailer.send(Input::Flush(done)).await;
                continue;
            }
        };
        let mut total = first.len();
        let mut group = vec![first];
        let deadline = (last_total >= GATHER_FROM).then(|| tokio::time::Instant::now() + GATHER);
        while total < MAX_GROUP {
            let job = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(_) => match deadline {
                    Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten(),
                    None => None,
                },
            };
            match job {
                Some(Job::Append(r)) => {
                    total += r.len();
                    group.push(r);
                }
                Some(flush) => {
                    next = Some(flush);
                    break;
                }
                None => break,
            }
        }
        last_total = total;
        commit_group(log.as_ref(), group, total, &tailer, &metrics).await;
    }
    tracing::debug!("sequencer stopped");
}

async fn commit_group(
    log: &dyn EventLog,
    group: Vec<Request>,
    total: usize,
    tailer: &mpsc::Sender<Input>,
    metrics: &Metrics,
) {
    let mut events = Vec::with_capacity(total);
    let replies: Vec<Reply> = group.into_iter().map(|r| r.split(&mut events)).collect();
    match log.append(events).await {
        Ok(outcomes) => {
            let committed_at = Instant::now();
            metrics.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fresh: Vec<SharedEvent> = outcomes
                .iter()
                .filter_map(|o| match o {
                    Appended::Stored(ev) => Some(Arc::clone(ev)),
                    Appended::Duplicate(_) | Appended::Unchanged => None,
                })
                .collect();
            let mut outcomes = outcomes.into_iter();
            for reply in replies {
                reply.answer(&mut outcomes);
            }
            if !fresh.is_empty() {
                metrics.events_in.fetch_add(fresh.len() as u64, std::sync::atomic::Ordering::Relaxed);
                // Backpressure: if delivery is slow, the sequencer waits.
                let _ = tailer.send(Input::Committed { events: fresh, committed_at }).await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, events = total, "commit failed; answering UNAVAILABLE");
            for reply in replies {
                reply.fail();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::NoSockets;
    use crate::storage::sqlite::SqliteLog;
    use std::sync::atomic::Ordering::Relaxed;

    fn fix(id: String) -> NewEvent {
        let t = crate::clock::now_ms();
        crate::storage::testing::loc("d", &id, t, t)
    }

    /// Commits of two single fixes sent 2 ms apart, after a group of `before`.
    async fn commits_of_two_after(before: usize) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path(), Arc::new(NoSockets)).unwrap());
        let (tailer, _committed) = mpsc::channel(16);
        let metrics = Arc::new(Metrics::default());
        let tracker = tokio_util::task::TaskTracker::new();
        let seq = Sequencer::spawn(log, tailer, Arc::clone(&metrics), &tracker, CancellationToken::new());
        seq.submit((0..before).map(|i| fix(format!("first-{i}"))).collect()).await.unwrap();
        let commits = metrics.commits.load(Relaxed);
        let first = tokio::spawn({
            let seq = seq.clone();
            async move { seq.submit(vec![fix("a".into())]).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        seq.submit(vec![fix("b".into())]).await.unwrap();
        first.await.unwrap();
        metrics.commits.load(Relaxed) - commits
    }

    // Paused time: the clock moves only when every task waits, so "2 ms
    // apart" is exact however busy the machine is.
    #[tokio::test(start_paused = true)]
    async fn under_load_a_commit_waits_for_what_comes_soon_after() {
        assert_eq!(commits_of_two_after(GATHER_FROM).await, 1, "after a large commit: one commit for both");
        assert_eq!(commits_of_two_after(1).await, 2, "a light load never waits: a commit each");
    }
}

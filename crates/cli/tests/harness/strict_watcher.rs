//! A watcher that records what the server sends, verbatim, and checks it
//! against the contract (§4, §5): on the SDK's low-level `SocketClient`,
//! because the SDK `Watcher` drops events at or below its position and
//! re-snapshots on a gap — it would hide exactly what these tests look for.
//!
//! It keeps one position (`streamId`, `lastSeq`) across connections and
//! nodes: the first connection starts from a snapshot, every later one
//! resumes with `auth.lastSeq` + `auth.streamId`. [`StrictWatcher::move_to`]
//! moves it to another node; when its node goes away (or refuses) it moves
//! to the next one by itself. Anything against the contract — a duplicate,
//! a hole, a snapshot instead of a resume, another `streamId` — is kept in
//! [`Log::violations`] for the test to assert on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wecare_client::{ConnectOptions, ServerEvent, SocketClient};

use super::{PATIENCE, token};

/// One stream event as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub seq: u64,
    pub name: String,
    pub data: Value,
    /// The node it came from (index into the watcher's URLs).
    pub node: usize,
    pub at: tokio::time::Instant,
}

/// Everything the watcher received and found wrong.
#[derive(Debug, Default)]
pub struct Log {
    /// Stream events that followed the position (`seq` = last + 1), or that
    /// broke the rule (then also a violation), in arrival order.
    pub events: Vec<Seen>,
    pub violations: Vec<String>,
    /// `seq` of every `drivers:snapshot`.
    pub snapshots: Vec<u64>,
    /// `(node, fromSeq, toSeq)` of every `sync:complete`.
    pub syncs: Vec<(usize, u64, u64)>,
    /// The node of every connection made, in order.
    pub connections: Vec<usize>,
    pub stream_id: Option<String>,
    pub last: Option<u64>,
}

impl Log {
    fn stream_event(&mut self, node: usize, name: String, data: Value) {
        let Some(seq) = data["seq"].as_u64() else {
            self.violations.push(format!("{name} without seq: {data}"));
            return;
        };
        let seen = Seen { seq, name, data, node, at: tokio::time::Instant::now() };
        match self.last {
            None => self.violations.push(format!("seq {seq} from node {node} before any snapshot")),
            Some(last) if seq == last + 1 => {}
            Some(last) if seq <= last => {
                self.violations.push(format!("duplicate: seq {seq} from node {node} after {last}"));
                return;
            }
            Some(last) => self.violations.push(format!("hole: seq {seq} from node {node} after {last}")),
        }
        self.last = Some(seq);
        self.events.push(seen);
    }
}

pub struct StrictWatcher {
    log: Arc<Mutex<Log>>,
    /// Bumped on every change of the log.
    changes: watch::Receiver<u64>,
    target: watch::Sender<usize>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl StrictWatcher {
    /// Connects to `urls[node]` as an officer and keeps watching until dropped.
    pub fn start(urls: Vec<String>, node: usize, subject: &str) -> StrictWatcher {
        let log = Arc::new(Mutex::new(Log::default()));
        let (changed, changes) = watch::channel(0u64);
        let (target, target_rx) = watch::channel(node);
        let stop = CancellationToken::new();
        let worker = Worker {
            urls,
            token: token("officer", subject, 3600),
            log: Arc::clone(&log),
            changed,
            target: target.clone(),
            target_rx,
            stop: stop.clone(),
        };
        let task = tokio::spawn(worker.run());
        StrictWatcher { log, changes, target, stop, task }
    }

    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }

    /// The node it is on (or moving to).
    pub fn node(&self) -> usize {
        *self.target.borrow()
    }

    /// Moves the watcher to `urls[node]`, resuming there from its position.
    pub fn move_to(&self, node: usize) {
        self.target.send_replace(node);
    }

    /// Waits (bounded by [`PATIENCE`]) until `cond` holds for the log.
    pub async fn wait(&self, what: &str, cond: impl Fn(&Log) -> bool) {
        let mut changes = self.changes.clone();
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                if cond(&self.log()) {
                    return;
                }
                if changes.changed().await.is_err() {
                    panic!("the watcher task ended while waiting for {what}");
                }
            }
        })
        .await;
        if waited.is_err() {
            let log = self.log();
            panic!(
                "timed out waiting for {what}: last seq {:?}, {} events, connections {:?}, violations {:?}",
                log.last,
                log.events.len(),
                log.connections,
                log.violations
            );
        }
    }

    /// Waits until the watcher is connected and positioned (after a
    /// snapshot or a resume's `sync:complete`).
    pub async fn wait_ready(&self) {
        self.wait("the watcher's first snapshot", |l| l.last.is_some()).await;
    }

    /// Waits until it has processed `seq`.
    pub async fn wait_seq(&self, seq: u64) {
        self.wait(&format!("seq {seq}"), |l| l.last.is_some_and(|last| last >= seq)).await;
    }

    /// Waits for a stream event matching `pred` and returns it.
    pub async fn wait_event(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        self.wait(what, |l| l.events.iter().any(&pred)).await;
        self.log().events.iter().find(|e| pred(e)).cloned().unwrap()
    }
}

impl Drop for StrictWatcher {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

struct Worker {
    urls: Vec<String>,
    token: String,
    log: Arc<Mutex<Log>>,
    changed: watch::Sender<u64>,
    target: watch::Sender<usize>,
    target_rx: watch::Receiver<usize>,
    stop: CancellationToken,
}

impl Worker {
    fn update(&self, f: impl FnOnce(&mut Log)) {
        f(&mut self.log.lock().unwrap());
        self.changed.send_modify(|n| *n += 1);
    }

    /// The node is gone: go to the next one, unless the test moved us already.
    fn fail_over(&self, from: usize) {
        let n = self.urls.len();
        self.target.send_if_modified(|t| {
            let moved = *t == from;
            if moved {
                *t = (from + 1) % n;
            }
            moved
        });
    }

    async fn run(mut self) {
        while !self.stop.is_cancelled() {
            let node = *self.target_rx.borrow_and_update();
            let mut auth = json!({ "token": self.token });
            {
                let log = self.log.lock().unwrap();
                if let (Some(last), Some(stream_id)) = (log.last, &log.stream_id) {
                    auth["lastSeq"] = json!(last);
                    auth["streamId"] = json!(stream_id);
                }
            }
            let mut opts = ConnectOptions::locations(self.urls[node].clone(), auth);
            opts.connect_timeout = Duration::from_secs(2);
            let (client, mut events) = match SocketClient::connect(opts).await {
                Ok(c) => c,
                Err(_) => {
                    self.fail_over(node);
                    // Pacing of reconnect attempts, not a wait for an event.
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                        () = self.stop.cancelled() => return,
                    }
                    continue;
                }
            };
            self.update(|l| l.connections.push(node));
            loop {
                tokio::select! {
                    () = self.stop.cancelled() => {
                        client.close().await;
                        return;
                    }
                    moved = self.target_rx.changed() => {
                        if moved.is_ok() && *self.target_rx.borrow() != node {
                            client.close().await;
                            break;
                        }
                    }
                    ev = events.recv() => match ev {
                        Some(ServerEvent::Event { name, data }) => self.on_event(node, name, data),
                        Some(ServerEvent::Raw(_)) => {}
                        Some(ServerEvent::Disconnected { .. }) | None => {
                            self.fail_over(node);
                            break;
                        }
                    },
                }
            }
        }
    }

    fn on_event(&self, node: usize, name: String, data: Value) {
        self.update(|log| match name.as_str() {
            "drivers:snapshot" => {
                if let Some(last) = log.last {
                    log.violations.push(format!("snapshot instead of a resume from {last} on node {node}"));
                }
                log.stream_id = data["streamId"].as_str().map(str::to_owned);
                log.last = data["seq"].as_u64();
                log.snapshots.push(data["seq"].as_u64().unwrap_or(0));
            }
            "sync:complete" => {
                if data["streamId"].as_str() != log.stream_id.as_deref() {
                    log.violations.push(format!("sync:complete of another stream on node {node}: {data}"));
                }
                let (from, to) = (data["fromSeq"].as_u64().unwrap_or(0), data["toSeq"].as_u64().unwrap_or(0));
                log.syncs.push((node, from, to));
            }
            "location:updated" | "driver:status:updated" | "driver:presence" => log.stream_event(node, name, data),
            _ => {}
        });
    }
}

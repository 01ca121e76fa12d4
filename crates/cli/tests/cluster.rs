//! Several nodes on one PostgreSQL database (contract §11, issue 8), proven
//! with the real binary: `wecare-rt serve` processes with `DATABASE_URL`
//! (so a node can be SIGKILLed), real PostgreSQL (`pg_testing`: the server
//! of `WECARE_TEST_DATABASE_URL`, else a private `initdb` instance; a
//! private one where the test stops it), a database of each test's own.
//!
//! Drivers are SDK `Driver`s (SQLite outbox, acks, retries), so "nothing
//! acked is lost" is: every outbox drains, nothing is refused, and the
//! stream holds every recorded fix exactly once — a fix acked and then lost
//! would have left its outbox and be missing; every ack the drivers report
//! (`DriverState::last_ack`, sampled) is checked to be stored at its `seq`.
//! Watchers are [`StrictWatcher`]s that check every frame the server sends
//! (the SDK `Watcher` would mask a duplicate or a hole), plus one SDK
//! `Watcher` where a node dies. Where a node dies, SDK clients reach the
//! cluster through a round-robin [`Balancer`], as behind a load balancer:
//! the SDK takes one URL, and a dead node's clients reconnect through the
//! balancer to a live one, which is what production does.
#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::balancer::Balancer;
use harness::cluster::{Cluster, node_log, readiness};
use harness::strict_watcher::{Seen, StrictWatcher};
use harness::{PATIENCE, get, post, stored_events, token, wait_until};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wecare_client::{
    BackoffConfig, ConnectOptions, Driver, DriverConfig, Fix, ServerEvent, SocketClient, TokenError, Watcher,
    WatcherConfig, WatcherEvent,
};
use wecare_server::pg_testing::PgServer;

/// 10 Hz per driver.
const PERIOD: Duration = Duration::from_millis(100);
/// A rate limit these tests are not about (a backlog drains at once).
/// Heartbeats keep their defaults: a killed node's connections close at
/// once, and a short ping timeout would only add reconnects under load.
const BASE_ENV: [(&str, &str); 1] = [("RATE_LIMIT_PER_SEC", "1000")];
/// A node's lease (cluster/postgres.rs), renewed every second.
const LEASE: Duration = Duration::from_secs(5);
const NOTIFY_SECRET: &str = "cluster-notify-secret";

// ---------------------------------------------------------------------------
// The fleet: SDK drivers recording at 10 Hz.

struct Fleet {
    names: Vec<String>,
    drivers: Vec<Driver>,
    /// Acks the drivers reported (sampled from `last_ack`): id → seq.
    acked: Arc<Mutex<HashMap<String, u64>>>,
    /// An id reported acked at two different seqs.
    conflicts: Arc<Mutex<Vec<String>>>,
    samplers: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn driver_config(url: &str, path: std::path::PathBuf, name: &str) -> DriverConfig {
    let name = name.to_owned();
    let provider = move || {
        let t = token("driver", &name, 3600);
        async move { Ok::<_, TokenError>(t) }
    };
    let mut config = DriverConfig::new(url, path, provider);
    config.backoff = BackoffConfig { base: Duration::from_millis(50), cap: Duration::from_millis(500) };
    config.ack_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(2);
    config.http_timeout = Duration::from_secs(4);
    // These tests are about the socket path; the fallback has its own tests.
    config.http_fallback_after = Duration::from_secs(120);
    config
}

impl Fleet {
    /// `n` drivers named `{prefix}-{i}`, driver `i` on `urls[i % len]`.
    async fn start(prefix: &str, urls: &[String], n: usize) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let conflicts: Arc<Mutex<Vec<String>>> = Arc::default();
        let (mut names, mut drivers, mut samplers) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let name = format!("{prefix}-{i}");
            let path = dir.path().join(format!("{name}.sqlite3"));
            let driver = Driver::start(driver_config(&urls[i % urls.len()], path, &name)).await.unwrap();
            let mut state = driver.state();
            let (acked, conflicts) = (Arc::clone(&acked), Arc::clone(&conflicts));
            samplers.push(tokio::spawn(async move {
                loop {
                    let last = state.borrow_and_update().last_ack.clone();
                    if let Some((id, seq)) = last {
                        let prev = acked.lock().unwrap().insert(id.clone(), seq);
                        if prev.is_some_and(|p| p != seq) {
                            conflicts.lock().unwrap().push(format!("{id} acked at {prev:?} and {seq}"));
                        }
                    }
                    if state.changed().await.is_err() {
                        return;
                    }
                }
            }));
            names.push(name);
            drivers.push(driver);
        }
        Fleet { names, drivers, acked, conflicts, samplers, _dir: dir }
    }

    /// Records a fix per driver every [`PERIOD`] for `duration`; yields the
    /// ids each driver's `record` returned, in order.
    fn drive(&self, duration: Duration) -> JoinHandle<Vec<Vec<String>>> {
        let drivers = self.drivers.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let n = drivers.len();
            let tasks: Vec<_> = drivers
                .into_iter()
                .enumerate()
                .map(|(i, driver)| {
                    tokio::spawn(async move {
                        let first = started + PERIOD.mul_f64(i as f64 / n as f64);
                        let mut tick = tokio::time::interval_at(first, PERIOD);
                        let mut ids = Vec::new();
                        while tick.tick().await < started + duration {
                            let k = ids.len() as f64;
                            ids.push(
                                driver.record(Fix::new(13.7 + i as f64 * 0.01, 100.5 + k * 0.0001)).await.unwrap(),
                            );
                        }
                        ids
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    }

    fn last_acks(&self) -> Vec<Option<(String, u64)>> {
        self.drivers.iter().map(|d| d.state().borrow().last_ack.clone()).collect()
    }

    /// Waits until every driver has had an ack other than `before`'s.
    async fn wait_each_acked_since(&self, before: &[Option<(String, u64)>], what: &str) {
        for (i, d) in self.drivers.iter().enumerate() {
            let mut state = d.state();
            let acked =
                tokio::time::timeout(PATIENCE, state.wait_for(|s| s.last_ack.is_some() && s.last_ack != before[i]));
            assert!(acked.await.is_ok(), "{what}: {} got no ack: {:?}", self.names[i], *state.borrow());
        }
    }

    /// Waits until every outbox is empty; nothing may have been refused or dropped.
    async fn settle(&self) {
        for (i, d) in self.drivers.iter().enumerate() {
            let mut state = d.state();
            let drained = tokio::time::timeout(PATIENCE, state.wait_for(|s| s.pending == 0)).await.map(|_| ());
            assert!(drained.is_ok(), "the outbox of {} did not drain: {:?}", self.names[i], *state.borrow());
            assert_eq!(state.borrow().dead_letters, 0, "{}: nothing may be refused", self.names[i]);
            assert_eq!(state.borrow().dropped, 0, "{}: nothing may be dropped", self.names[i]);
        }
    }

    async fn shutdown(self) {
        for d in &self.drivers {
            d.shutdown().await;
        }
        for s in &self.samplers {
            s.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// What the stream must hold, and what watchers must have seen.

/// Checks the stream as stored (every event, `seq` order) against what the
/// fleet recorded: `seq` 1..=head without a hole, every fix once, the
/// fleet's recorded fixes (as their own drivers) and nothing else but
/// `others`' fixes, every reported ack at its `seq`. Returns the number of
/// acks checked.
fn check_stream(label: &str, stream: &[Value], fleet: &Fleet, recorded: &[Vec<String>], others: &[&str]) -> usize {
    let seqs: Vec<u64> = stream.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let head = seqs.last().copied().unwrap_or(0);
    assert!(seqs.iter().copied().eq(1..=head), "{label}: the stream's seqs have a hole or go back");

    let mut stored: HashMap<(String, String), Vec<u64>> = HashMap::new();
    for e in stream.iter().filter(|e| e["type"] == "location:updated") {
        let key = (e["driverId"].as_str().unwrap().to_owned(), e["id"].as_str().unwrap().to_owned());
        stored.entry(key).or_default().push(e["seq"].as_u64().unwrap());
    }
    let twice: Vec<_> = stored.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(twice.is_empty(), "{label}: stored more than once: {twice:?}");
    let recorded_keys: HashSet<(String, String)> = recorded
        .iter()
        .enumerate()
        .flat_map(|(i, ids)| ids.iter().map(move |id| (fleet.names[i].clone(), id.clone())))
        .collect();
    let stored_keys: HashSet<(String, String)> =
        stored.keys().filter(|(driver, _)| !others.contains(&driver.as_str())).cloned().collect();
    let missing: Vec<_> = recorded_keys.difference(&stored_keys).take(5).collect();
    let extra: Vec<_> = stored_keys.difference(&recorded_keys).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{label}: recorded != stored; missing {missing:?}, extra {extra:?}"
    );

    let by_id: HashMap<&str, u64> = stored.iter().map(|((_, id), s)| (id.as_str(), s[0])).collect();
    let conflicts = fleet.conflicts.lock().unwrap().clone();
    assert!(conflicts.is_empty(), "{label}: {conflicts:?}");
    let acked = fleet.acked.lock().unwrap().clone();
    for (id, seq) in &acked {
        assert_eq!(by_id.get(id.as_str()), Some(seq), "{label}: acked fix {id} is not stored at its acked seq");
    }
    acked.len()
}

/// The stream's events after `after`, as a watcher receives them (the REST
/// page adds `type`).
fn expected_after(stream: &[Value], after: u64) -> Vec<Handed> {
    stream
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() > after)
        .map(|e| {
            let mut data = e.clone();
            let name = data.as_object_mut().unwrap().remove("type").unwrap();
            (e["seq"].as_u64().unwrap(), name.as_str().unwrap().to_owned(), data)
        })
        .collect()
}

/// The watcher saw exactly the stream after its first snapshot, up to its
/// head, each event once, in order, payloads identical to the stored ones,
/// and it never broke a rule on the way.
async fn check_watcher(label: &str, w: &StrictWatcher, stream: &[Value]) {
    let head = stream.last().map_or(0, |e| e["seq"].as_u64().unwrap());
    w.wait_seq(head).await;
    let log = w.log();
    assert!(log.violations.is_empty(), "{label}: {:?}", log.violations);
    assert_eq!(log.snapshots.len(), 1, "{label}: one snapshot, at the start; resumes replay");
    let got: Vec<Handed> =
        log.events.iter().filter(|e| e.seq <= head).map(|e| (e.seq, e.name.clone(), e.data.clone())).collect();
    let expected = expected_after(stream, log.snapshots[0]);
    if got != expected {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "{label}: saw {} events, the stream holds {} after {}; first difference at {first:?}: {:?} vs {:?}",
            got.len(),
            expected.len(),
            log.snapshots[0],
            first.map(|i| &got[i]),
            first.map(|i| &expected[i])
        );
    }
}

/// A stream event as a watcher hands it over: `(seq, name, payload)`.
type Handed = (u64, String, Value);

/// What the SDK watcher handed over.
#[derive(Default)]
struct Handover {
    snapshots: usize,
    events: Vec<Handed>,
}

/// An SDK `Watcher` and what it handed over.
struct SdkWatcher {
    watcher: Watcher,
    seen: Arc<Mutex<Handover>>,
    progress: tokio::sync::watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl SdkWatcher {
    async fn start(url: &str) -> SdkWatcher {
        let provider = || {
            let t = token("officer", "sdk-watcher", 3600);
            async move { Ok::<_, TokenError>(t) }
        };
        let mut config = WatcherConfig::new(url, provider);
        config.backoff = BackoffConfig { base: Duration::from_millis(50), cap: Duration::from_millis(500) };
        config.connect_timeout = Duration::from_secs(2);
        let (watcher, mut events) = Watcher::start(config).await.unwrap();
        let seen: Arc<Mutex<Handover>> = Arc::default();
        let (tx, progress) = tokio::sync::watch::channel(0u64);
        let sink = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    WatcherEvent::Snapshot { seq, .. } => {
                        sink.lock().unwrap().snapshots += 1;
                        tx.send_replace(seq);
                    }
                    WatcherEvent::Event(event) => {
                        let (seq, name) = (event.seq().0, event.name().to_owned());
                        // The live payload, as the stream's other readers see it.
                        let mut data = serde_json::to_value(&event).unwrap();
                        data.as_object_mut().unwrap().remove("type");
                        sink.lock().unwrap().events.push((seq, name, data));
                        tx.send_replace(seq);
                    }
                    _ => {}
                }
            }
        });
        SdkWatcher { watcher, seen, progress, task }
    }

    /// It started from one snapshot and then handed over every event of the
    /// stream, in order (the SDK re-snapshots on a hole, so one snapshot
    /// means none).
    async fn check(&self, stream: &[Value]) {
        let head = stream.last().map_or(0, |e| e["seq"].as_u64().unwrap());
        let mut progress = self.progress.clone();
        let reached = tokio::time::timeout(PATIENCE, progress.wait_for(|s| *s >= head)).await.map(|_| ());
        assert!(reached.is_ok(), "the SDK watcher did not reach seq {head}: at {}", *progress.borrow());
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.snapshots, 1, "the SDK watcher re-snapshotted: it found a hole");
        let first = seen.events.first().map_or(head, |e| e.0);
        let got: Vec<_> = seen.events.iter().filter(|e| e.0 <= head).cloned().collect();
        assert_eq!(got, expected_after(stream, first - 1), "the SDK watcher's events");
    }

    async fn shutdown(self) {
        self.watcher.shutdown().await;
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Raw sockets.

/// A socket of `role`/`subject` on `url`, once the server has set it up (a
/// watcher's first frame, the snapshot, comes after its setup).
async fn socket(url: &str, role: &str, subject: &str) -> (SocketClient, tokio::sync::mpsc::Receiver<ServerEvent>) {
    let opts = ConnectOptions::locations(url, json!({ "token": token(role, subject, 3600) }));
    let (client, mut rx) = tokio::time::timeout(PATIENCE, SocketClient::connect(opts)).await.unwrap().unwrap();
    if role != "driver" {
        next_event(&mut rx, "drivers:snapshot").await;
    }
    (client, rx)
}

/// The next event named `name` on `rx` (others are skipped), bounded.
async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<ServerEvent>, name: &str) -> Value {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Some(ServerEvent::Event { name: n, data }) if n == name => return data,
                Some(ServerEvent::Disconnected { reason }) => panic!("disconnected ({reason}) waiting for {name}"),
                None => panic!("socket gone waiting for {name}"),
                Some(_) => {}
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {name} within {PATIENCE:?}"))
}

/// Waits (bounded) for the socket to be closed by the server; its reason.
async fn closed(rx: &mut tokio::sync::mpsc::Receiver<ServerEvent>) -> String {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Some(ServerEvent::Disconnected { reason }) => return reason,
                None => return "channel closed".to_owned(),
                Some(_) => {}
            }
        }
    })
    .await;
    found.expect("the socket was not closed")
}

fn presence(driver: &str, online: bool) -> impl Fn(&Seen) -> bool + '_ {
    move |e| e.name == "driver:presence" && e.data["driverId"] == driver && e.data["online"] == online
}

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_one_stream_to_every_watcher_and_a_watcher_resumes_on_another_node() {
    let cluster = Cluster::start(PgServer::shared(), "fanout", 3, &BASE_ENV).await;
    let urls = cluster.urls();
    let watchers: Vec<StrictWatcher> =
        (0..3).map(|i| StrictWatcher::start(urls.clone(), i, &format!("officer-{i}"))).collect();
    for w in &watchers {
        w.wait_ready().await;
    }
    // 9 drivers, 3 per node: every watcher gets the other nodes' fixes.
    let fleet = Fleet::start("fanout", &urls, 9).await;
    let drive = fleet.drive(Duration::from_secs(4));

    // Mid-stream, each watcher moves to the next node with its position.
    for w in &watchers {
        w.wait("the stream under way", |l| l.events.len() >= 120).await;
    }
    for (i, w) in watchers.iter().enumerate() {
        w.move_to((i + 1) % 3);
    }
    for (i, w) in watchers.iter().enumerate() {
        w.wait("a resume on the next node", |l| l.syncs.iter().any(|s| s.0 == (i + 1) % 3)).await;
    }

    let recorded = drive.await.unwrap();
    fleet.settle().await;
    let stream = stored_events(cluster.nodes[0].addr).await;
    for node in &cluster.nodes[1..] {
        assert_eq!(stored_events(node.addr).await, stream, "every node serves the same stream");
    }
    let acks = check_stream("three nodes", &stream, &fleet, &recorded, &[]);
    for (i, w) in watchers.iter().enumerate() {
        check_watcher(&format!("watcher {i}"), w, &stream).await;
        let log = w.log();
        assert_eq!(log.connections, vec![i, (i + 1) % 3], "watcher {i}: one move, no other reconnect");
        let moved_at = log.events.iter().position(|e| e.node != i).unwrap();
        assert!(moved_at > 0 && moved_at < log.events.len(), "watcher {i} received on both nodes");
    }
    let ids: HashSet<_> = watchers.iter().map(|w| w.log().stream_id.clone().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one streamId on every node");
    let fixes: usize = recorded.iter().map(Vec::len).sum();
    println!("three nodes: {fixes} fixes from 9 drivers, {} events, {acks} acks checked", stream.len());
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sigkilled_under_load_loses_no_acked_fix_and_its_clients_carry_on_through_the_others() {
    let mut cluster = Cluster::start(PgServer::shared(), "kill", 3, &BASE_ENV).await;
    let urls = cluster.urls();
    let balancer = Balancer::start(cluster.addrs()).await;
    let watchers: Vec<StrictWatcher> =
        (0..3).map(|i| StrictWatcher::start(urls.clone(), i, &format!("officer-{i}"))).collect();
    for w in &watchers {
        w.wait_ready().await;
    }
    let sdk_watcher = SdkWatcher::start(&balancer.url).await;
    let fleet = Fleet::start("kill", std::slice::from_ref(&balancer.url), 9).await;
    let drive = fleet.drive(Duration::from_secs(7));
    fleet.wait_each_acked_since(&vec![None; 9], "before the kill").await;
    watchers[1].wait("the stream under way", |l| l.events.len() >= 100).await;

    assert!(balancer.routed()[1] >= 3, "node 1 holds drivers: {:?}", balancer.routed());
    let before = fleet.last_acks();
    cluster.nodes[1].kill();
    let killed_at = Instant::now();
    let at_kill = watchers[1].log().last.unwrap();
    // While node 1 is down, every driver (those it had too) is acked
    // through another node, and its watcher goes on from another node.
    fleet.wait_each_acked_since(&before, "while node 1 is down").await;
    watchers[1]
        .wait("node 1's watcher on another node", |l| l.events.iter().any(|e| e.seq > at_kill && e.node != 1))
        .await;
    assert!(!cluster.nodes[1].is_running());
    // The fault schedule: node 1 stays down 2 s, then comes back.
    tokio::time::sleep_until(killed_at + Duration::from_secs(2)).await;
    cluster.nodes[1].start_again().await;

    let recorded = drive.await.unwrap();
    fleet.settle().await;
    let stream = stored_events(cluster.nodes[1].addr).await;
    let acks = check_stream("node SIGKILL", &stream, &fleet, &recorded, &[]);
    for (i, w) in watchers.iter().enumerate() {
        check_watcher(&format!("watcher {i}"), w, &stream).await;
    }
    assert!(watchers[1].log().connections.len() >= 2, "node 1's watcher reconnected");
    sdk_watcher.check(&stream).await;
    let fixes: usize = recorded.iter().map(Vec::len).sum();
    println!(
        "node SIGKILL: {fixes} fixes, {} events, {acks} acks checked; balancer routed {:?}; node 1's watcher: {:?}",
        stream.len(),
        balancer.routed(),
        watchers[1].log().connections
    );
    sdk_watcher.shutdown().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_for_ten_seconds_under_load_loses_nothing_and_every_node_recovers_by_itself() {
    let pg = PgServer::private();
    let log = node_log("off");
    let env = [BASE_ENV[0], ("RUST_LOG", &log)];
    let cluster = Cluster::start(pg, "pgstop", 3, &env).await;
    let urls = cluster.urls();
    let addrs = cluster.addrs();
    let watchers: Vec<StrictWatcher> =
        (0..3).map(|i| StrictWatcher::start(urls.clone(), i, &format!("officer-{i}"))).collect();
    for w in &watchers {
        w.wait_ready().await;
    }
    // Drivers on nodes 0 and 1; node 2 has only its watcher and, during the
    // outage, one refused fix: after that no client writes through it until
    // it says it is ready again (as a load balancer checking /readyz does).
    let fleet = Fleet::start("pgstop", &urls[..2], 6).await;
    let drive = fleet.drive(Duration::from_secs(15));
    fleet.wait_each_acked_since(&[None, None, None, None, None, None], "before the outage").await;
    for &addr in &addrs {
        assert_eq!(readiness(addr).await, 200, "ready before the outage");
    }

    tokio::task::block_in_place(|| cluster.pg.stop());
    let stopped_at = Instant::now();
    for &addr in &addrs {
        wait_until("/readyz 503 while PostgreSQL is down", Duration::from_secs(10), || async move {
            readiness(addr).await == 503
        })
        .await;
    }
    let (probe, _probe_rx) = socket(&urls[2], "driver", "pgstop-probe").await;
    let fix = json!({ "id": "probe-1", "lat": 13.7, "lng": 100.5 });
    let refused = probe.emit_with_ack("location:update", &fix, Duration::from_secs(10)).await.unwrap();
    assert_eq!(refused["status"], "error", "{refused}");
    assert_eq!(refused["code"], "UNAVAILABLE", "{refused}");
    assert_eq!(refused["retryable"], true, "{refused}");
    // The fleet keeps recording; nothing is acked, everything waits in the outboxes.
    let waiting = fleet.last_acks();
    for d in &fleet.drivers {
        let mut state = d.state();
        let queued = tokio::time::timeout(PATIENCE, state.wait_for(|s| s.pending >= 10)).await.map(|_| ());
        assert!(queued.is_ok(), "fixes queue up while PostgreSQL is down: {:?}", *state.borrow());
    }
    assert_eq!(fleet.last_acks(), waiting, "no ack while PostgreSQL is down");
    assert!(stopped_at.elapsed() < Duration::from_secs(10), "the checks took the whole outage");

    // The fault schedule: 10 s down.
    tokio::time::sleep_until(stopped_at + Duration::from_secs(10)).await;
    tokio::task::block_in_place(|| cluster.pg.start());
    let restarted_at = Instant::now();
    for (i, &addr) in addrs.iter().enumerate() {
        wait_until(&format!("node {i} ready again without a restart"), Duration::from_secs(15), || async move {
            readiness(addr).await == 200
        })
        .await;
    }
    let ready_after = restarted_at.elapsed();
    let stored = probe.emit_with_ack("location:update", &fix, Duration::from_secs(10)).await.unwrap();
    assert_eq!(stored["status"], "ok", "the retried fix is stored: {stored}");
    fleet.wait_each_acked_since(&waiting, "after the outage").await;

    let recorded = drive.await.unwrap();
    fleet.settle().await;
    let stream = stored_events(addrs[2]).await;
    let probe_stored: Vec<_> =
        stream.iter().filter(|e| e["driverId"] == "pgstop-probe" && e["id"] == "probe-1").collect();
    assert_eq!(probe_stored.len(), 1, "the probe's fix is stored once");
    assert_eq!(probe_stored[0]["seq"], stored["seq"], "at its acked seq");
    let acks = check_stream("PostgreSQL stopped", &stream, &fleet, &recorded, &["pgstop-probe"]);
    for (i, w) in watchers.iter().enumerate() {
        check_watcher(&format!("watcher {i}"), w, &stream).await;
        assert_eq!(w.log().connections, vec![i], "watcher {i} stayed connected through the outage");
    }
    let fixes: usize = recorded.iter().map(Vec::len).sum();
    println!(
        "PostgreSQL stopped 10 s: {fixes} fixes, {} events, {acks} acks checked; every node ready {:.1} s after it came back",
        stream.len(),
        ready_after.as_secs_f64()
    );
    drop(probe);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_holds_while_another_node_restarts_and_a_dead_nodes_drivers_go_offline_after_lease_and_grace() {
    let env = [("PRESENCE_GRACE_MS", "1000")];
    let grace = Duration::from_secs(1);
    let mut cluster = Cluster::start(PgServer::shared(), "presence", 2, &env).await;
    let urls = cluster.urls();
    let w = StrictWatcher::start(urls.clone(), 0, "presence-officer");
    w.wait_ready().await;
    let (steady, _steady_rx) = socket(&urls[0], "driver", "steady").await;
    w.wait_event("steady online", presence("steady", true)).await;

    // Node 2 SIGKILLed and started again: a driver it held (which does not
    // reconnect) goes offline once the dead process's lease and the grace
    // are over; the steady driver on node 1 stays online.
    let (gone, _gone_rx) = socket(&urls[1], "driver", "on-killed-node").await;
    w.wait_event("on-killed-node online", presence("on-killed-node", true)).await;
    cluster.nodes[1].kill();
    let killed_at = Instant::now();
    cluster.nodes[1].start_again().await;
    let offline = w.wait_event("on-killed-node offline", presence("on-killed-node", false)).await;
    let after = offline.at - killed_at;
    assert!(
        after >= LEASE - Duration::from_secs(1) && after <= LEASE + grace + Duration::from_secs(3),
        "a SIGKILLed node's driver goes offline after about lease + grace, not {after:?}"
    );
    drop(gone);

    // Node 2 stopped cleanly (SIGTERM) and started again: its lease ends as
    // it leaves, so its driver goes offline after the grace alone.
    let (left, _left_rx) = socket(&urls[1], "driver", "on-stopped-node").await;
    w.wait_event("on-stopped-node online", presence("on-stopped-node", true)).await;
    let stopping_at = Instant::now();
    cluster.nodes[1].terminate().await;
    cluster.nodes[1].start_again().await;
    let offline = w.wait_event("on-stopped-node offline", presence("on-stopped-node", false)).await;
    let after = offline.at - stopping_at;
    assert!(
        after >= grace && after < LEASE,
        "a stopped node's driver goes offline after the grace, before any lease runs out, not {after:?}"
    );
    drop(left);

    // Node 2 SIGKILLed for good: its driver goes offline after lease + grace.
    let (dead, _dead_rx) = socket(&urls[1], "driver", "on-dead-node").await;
    w.wait_event("on-dead-node online", presence("on-dead-node", true)).await;
    cluster.nodes[1].kill();
    let killed_at = Instant::now();
    let offline = w.wait_event("on-dead-node offline", presence("on-dead-node", false)).await;
    let after = offline.at - killed_at;
    assert!(
        after >= LEASE - Duration::from_secs(1) && after <= LEASE + grace + Duration::from_secs(3),
        "a dead node's driver goes offline after about lease + grace, not {after:?}"
    );
    drop(dead);

    // Through all of it (each restart was followed by more than the grace
    // plus a margin of watching), the steady driver never went offline.
    {
        let log = w.log();
        assert!(log.violations.is_empty(), "{:?}", log.violations);
        let flips: Vec<_> = log.events.iter().filter(|e| presence("steady", false)(e)).collect();
        assert!(flips.is_empty(), "the steady driver was announced offline: {flips:?}");
    }
    assert!(steady.is_connected(), "the steady driver's socket stayed up");
    let (status, latest) =
        get(cluster.nodes[0].addr, "/api/realtime/latest", &token("officer", "o", 600)).await.unwrap();
    assert_eq!(status, 200);
    let row = latest["drivers"].as_array().unwrap().iter().find(|d| d["driverId"] == "steady").cloned();
    assert_eq!(row.map(|r| r["online"].clone()), Some(json!(true)), "{latest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_spans_nodes_and_closes_the_oldest_socket_wherever_it_is() {
    let env = [("MAX_CONNECTIONS_PER_USER", "2"), ("NOTIFY_SECRET", NOTIFY_SECRET)];
    let cluster = Cluster::start(PgServer::shared(), "limit", 2, &env).await;
    let urls = cluster.urls();
    let (_a, mut a_rx) = socket(&urls[0], "officer", "ops-7").await;
    let (b, mut b_rx) = socket(&urls[1], "officer", "ops-7").await;
    // A third socket on node 2: the oldest, on node 1, is closed.
    let (c, mut c_rx) = socket(&urls[1], "officer", "ops-7").await;
    assert_eq!(closed(&mut a_rx).await, "io server disconnect", "the oldest socket, on the other node");
    // A fourth on node 1: the oldest now is on node 2.
    let (d, mut d_rx) = socket(&urls[0], "officer", "ops-7").await;
    assert_eq!(closed(&mut b_rx).await, "io server disconnect", "the oldest socket, on the other node");
    drop(b);

    // Exactly the two newest remain, one on each node.
    let body = json!({ "rooms": ["user:ops-7"], "event": "notification:new", "data": { "n": 1 } });
    let (status, reply) = post(cluster.nodes[0].addr, "/api/realtime/notify", NOTIFY_SECRET, &body).await.unwrap();
    assert_eq!((status, reply["delivered"].clone()), (200, json!(2)), "{reply}");
    assert_eq!(next_event(&mut c_rx, "notification:new").await, json!({ "n": 1 }));
    assert_eq!(next_event(&mut d_rx, "notification:new").await, json!({ "n": 1 }));
    assert!(c.is_connected() && d.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_posted_to_one_node_reaches_sockets_on_the_other_and_is_counted() {
    let env = [("NOTIFY_SECRET", NOTIFY_SECRET)];
    let cluster = Cluster::start(PgServer::shared(), "notify", 2, &env).await;
    let urls = cluster.urls();
    let node_a = cluster.nodes[0].addr;
    let (_x, mut x_rx) = socket(&urls[1], "officer", "42").await;
    let (_y, mut y_rx) = socket(&urls[0], "radio_center", "43").await;
    let (_z, mut z_rx) = socket(&urls[1], "radio_center", "44").await;

    // To a user whose only socket is on the other node.
    let data = json!({ "title": "ride 9 assigned", "rideId": 9 });
    let body = json!({ "rooms": ["user:42"], "event": "notification:new", "data": data });
    let (status, reply) = post(node_a, "/api/realtime/notify", NOTIFY_SECRET, &body).await.unwrap();
    assert_eq!((status, reply["delivered"].clone()), (200, json!(1)), "{reply}");
    assert_eq!(next_event(&mut x_rx, "notification:new").await, data);

    // To a role with a socket on each node.
    let data = json!({ "title": "driver amb-3 is BUSY" });
    let body = json!({ "rooms": ["role:radio_center"], "event": "notification:new", "data": data });
    let (status, reply) = post(node_a, "/api/realtime/notify", NOTIFY_SECRET, &body).await.unwrap();
    assert_eq!((status, reply["delivered"].clone()), (200, json!(2)), "{reply}");
    assert_eq!(next_event(&mut y_rx, "notification:new").await, data);
    assert_eq!(next_event(&mut z_rx, "notification:new").await, data);

    // To nobody.
    let body = json!({ "rooms": ["user:nobody"], "event": "notification:new", "data": {} });
    let (status, reply) = post(node_a, "/api/realtime/notify", NOTIFY_SECRET, &body).await.unwrap();
    assert_eq!((status, reply["delivered"].clone()), (200, json!(0)), "{reply}");
}

/// A driver's socket opened or closed while PostgreSQL is down is recorded
/// once it is back (presence retries its changes in order): the driver that
/// connected during the outage is announced online, the one that left is
/// announced offline after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_changes_made_while_postgresql_is_down_are_applied_once_it_is_back() {
    let pg = PgServer::private();
    let log = node_log("off");
    let env = [("PRESENCE_GRACE_MS", "1000"), ("RUST_LOG", &log)];
    let cluster = Cluster::start(pg, "pgpresence", 1, &env).await;
    let urls = cluster.urls();
    let addr = cluster.nodes[0].addr;
    let w = StrictWatcher::start(urls.clone(), 0, "presence-officer");
    w.wait_ready().await;
    let (leaving, _leaving_rx) = socket(&urls[0], "driver", "leaves-during-outage").await;
    w.wait_event("leaves-during-outage online", presence("leaves-during-outage", true)).await;

    tokio::task::block_in_place(|| cluster.pg.stop());
    wait_until("/readyz 503", Duration::from_secs(10), || async move { readiness(addr).await == 503 }).await;
    let (_joining, _joining_rx) = socket(&urls[0], "driver", "joins-during-outage").await;
    leaving.close().await;
    // A phone that keeps reconnecting through the outage and is connected at its end.
    for _ in 0..5 {
        let (flap, _flap_rx) = socket(&urls[0], "driver", "flaps-during-outage").await;
        flap.close().await;
    }
    let (_flapper, _flapper_rx) = socket(&urls[0], "driver", "flaps-during-outage").await;
    tokio::task::block_in_place(|| cluster.pg.start());
    wait_until("/readyz 200", Duration::from_secs(15), || async move { readiness(addr).await == 200 }).await;

    w.wait_event("joins-during-outage online", presence("joins-during-outage", true)).await;
    w.wait_event("flaps-during-outage online", presence("flaps-during-outage", true)).await;
    w.wait_event("leaves-during-outage offline", presence("leaves-during-outage", false)).await;
    // A driver that comes and goes after all that: its offline follows any
    // offline a wrongly counted flapper would have been announced with.
    let (marker, _marker_rx) = socket(&urls[0], "driver", "after-the-outage").await;
    w.wait_event("after-the-outage online", presence("after-the-outage", true)).await;
    marker.close().await;
    w.wait_event("after-the-outage offline", presence("after-the-outage", false)).await;
    let log = w.log();
    let flapper_offline = log.events.iter().any(|e| presence("flaps-during-outage", false)(e));
    assert!(!flapper_offline, "a driver connected at the end of the outage was announced offline");
}

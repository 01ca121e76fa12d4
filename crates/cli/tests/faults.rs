//! Zero loss under faults, proven with the real binary: a small fleet of SDK
//! `Driver`s (own SQLite outbox each) and one SDK `Watcher` run through a
//! fault-injecting proxy while connections are cut, the server is SIGKILLed,
//! tokens expire, websockets are refused, and drivers restart mid-outage.
//! Afterwards: the ids the drivers recorded == the ids the server stored ==
//! the ids the watcher saw; the watcher saw none twice; per driver its seqs
//! strictly increase and its current (not `outdated`) fixes keep the order
//! they were recorded in. Each run prints its counts (`--nocapture`).
#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{PATIENCE, Server, start_server, stored_locations, token};
use tokio::sync::watch;
use tokio::time::Instant;
use wecare_client::testing::FaultProxy;
use wecare_client::{
    BackoffConfig, Driver, DriverConfig, DriverConnection, Fix, TokenError, Watcher, WatcherConfig, WatcherConnection,
    WatcherEvent,
};
use wecare_proto::payload::StreamEvent;

const DRIVERS: usize = 10;
const PERIOD: Duration = Duration::from_millis(200); // 5 Hz

/// The server settings every scenario uses: quick dead-peer detection, and a
/// rate limit that is not what these tests are about.
const BASE_ENV: [(&str, &str); 3] =
    [("PING_INTERVAL_MS", "1000"), ("PING_TIMEOUT_MS", "1000"), ("RATE_LIMIT_PER_SEC", "1000")];

#[derive(Clone, Copy)]
struct Opts {
    /// How long the fleet records.
    drive: Duration,
    /// Lifetime of every token the providers mint, seconds.
    token_ttl: u64,
    /// The drivers' `http_fallback_after`.
    http_fallback_after: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { drive: Duration::from_secs(8), token_ttl: 3600, http_fallback_after: Duration::from_secs(60) }
    }
}

/// One delivered `location:updated`, as the watcher saw it.
#[derive(Debug, Clone)]
struct Seen {
    driver: String,
    id: String,
    seq: u64,
    outdated: bool,
}

/// What the scenario script can reach while the fleet drives.
struct Ctx {
    server: Server,
    proxy: FaultProxy,
    opts: Opts,
    outboxes: Vec<PathBuf>,
    /// The current `Driver` of each vehicle (replaced by a restart).
    slots: Vec<Arc<tokio::sync::Mutex<Driver>>>,
    watcher: Watcher,
    _dir: tempfile::TempDir,
}

fn driver_name(i: usize) -> String {
    format!("fleet-{i:02}")
}

fn driver_config(url: &str, path: &PathBuf, name: &str, opts: Opts) -> DriverConfig {
    let (name, ttl) = (name.to_owned(), opts.token_ttl);
    let provider = move || {
        let t = token("driver", &name, ttl);
        async move { Ok::<_, TokenError>(t) }
    };
    let mut config = DriverConfig::new(url, path, provider);
    config.backoff = BackoffConfig { base: Duration::from_millis(50), cap: Duration::from_millis(500) };
    config.ack_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(2);
    config.http_timeout = Duration::from_secs(4);
    config.http_fallback_after = opts.http_fallback_after;
    config
}

impl Ctx {
    /// Drops the driver of every vehicle and starts a new one on the same
    /// outbox file, as a phone app restarted by the OS would.
    async fn restart_drivers(&self) {
        for (i, slot) in self.slots.iter().enumerate() {
            let mut current = slot.lock().await;
            current.shutdown().await;
            let config = driver_config(&self.proxy.url(), &self.outboxes[i], &driver_name(i), self.opts);
            *current = Driver::start(config).await.unwrap();
        }
    }

    async fn drivers(&self) -> Vec<Driver> {
        let mut out = Vec::new();
        for slot in &self.slots {
            out.push(slot.lock().await.clone());
        }
        out
    }
}

/// Runs the fleet for `opts.drive` while `script` injects faults, heals
/// everything, waits for the outboxes and the watcher, checks the proof and
/// returns the context for scenario-specific checks.
async fn prove(name: &str, env: &[(&str, &str)], opts: Opts, script: impl AsyncFnOnce(&mut Ctx)) -> Ctx {
    let mut all_env: Vec<(&str, &str)> = BASE_ENV.to_vec();
    all_env.extend_from_slice(env);
    let server = start_server(&all_env).await;
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // The watcher, through the proxy too.
    let ttl = opts.token_ttl;
    let watcher_token = move || {
        let t = token("officer", "fleet-watcher", ttl);
        async move { Ok::<_, TokenError>(t) }
    };
    let mut wconfig = WatcherConfig::new(proxy.url(), watcher_token);
    wconfig.backoff = BackoffConfig { base: Duration::from_millis(50), cap: Duration::from_millis(500) };
    wconfig.connect_timeout = Duration::from_secs(2);
    wconfig.long_poll_after = Duration::from_secs(1);
    wconfig.long_poll_wait = Duration::from_secs(2);
    let (watcher, mut events) = Watcher::start(wconfig).await.unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (seen_count_tx, mut seen_count) = watch::channel(0usize);
    let snapshots = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let collector = {
        let (seen, snapshots) = (Arc::clone(&seen), Arc::clone(&snapshots));
        tokio::spawn(async move {
            let mut unique = HashSet::new();
            while let Some(ev) = events.recv().await {
                match ev {
                    WatcherEvent::Snapshot { .. } => {
                        snapshots.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    WatcherEvent::Event(StreamEvent::LocationUpdated(fix)) => {
                        unique.insert(fix.id.clone());
                        let (driver, id, seq, outdated) = (fix.driver_id, fix.id, fix.seq.0, fix.outdated);
                        seen.lock().unwrap().push(Seen { driver, id, seq, outdated });
                        seen_count_tx.send_replace(unique.len());
                    }
                    _ => {}
                }
            }
        })
    };
    let mut wconn = watcher.connection();
    tokio::time::timeout(PATIENCE, wconn.wait_for(|c| *c == WatcherConnection::Connected)).await.unwrap().unwrap();

    let mut outboxes = Vec::new();
    let mut slots = Vec::new();
    for i in 0..DRIVERS {
        let path = dir.path().join(format!("{}.sqlite3", driver_name(i)));
        let driver = Driver::start(driver_config(&proxy.url(), &path, &driver_name(i), opts)).await.unwrap();
        outboxes.push(path);
        slots.push(Arc::new(tokio::sync::Mutex::new(driver)));
    }
    let mut ctx = Ctx { server, proxy, opts, outboxes, slots, watcher, _dir: dir };

    // Record order per driver: (driver name, ids in the order `record` returned them).
    let started = Instant::now();
    let drive_end = started + opts.drive;
    let recorders: Vec<_> = ctx
        .slots
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let slot = Arc::clone(slot);
            tokio::spawn(async move {
                let first = started + PERIOD.mul_f64(i as f64 / DRIVERS as f64);
                let mut tick = tokio::time::interval_at(first, PERIOD);
                let mut ids = Vec::new();
                let mut k = 0.0;
                while tick.tick().await < drive_end {
                    k += 1.0;
                    let fix = Fix::new(13.75 + i as f64 * 0.01, 100.5 + k * 0.0001);
                    let driver = slot.lock().await;
                    ids.push(driver.record(fix).await.unwrap());
                }
                ids
            })
        })
        .collect();
    script(&mut ctx).await;
    let mut recorded: Vec<Vec<String>> = Vec::new();
    for r in recorders {
        recorded.push(r.await.unwrap());
    }
    ctx.proxy.heal();

    // Every outbox drains…
    let drain_start = Instant::now();
    for driver in ctx.drivers().await {
        let mut state = driver.state();
        let drained = tokio::time::timeout(PATIENCE, state.wait_for(|s| s.pending == 0)).await.map(|_| ());
        assert!(drained.is_ok(), "{name}: an outbox did not drain: {:?}", *state.borrow());
        assert_eq!(state.borrow().dead_letters, 0, "{name}: nothing may be refused");
        assert_eq!(state.borrow().dropped, 0, "{name}: nothing may be discarded");
    }
    let drain = drain_start.elapsed();

    // …the server stored each recorded fix once…
    let stored = stored_locations(ctx.server.addr).await;
    let stored_ids: Vec<String> = stored.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let stored_set: HashSet<&String> = stored_ids.iter().collect();
    let recorded_set: HashSet<&String> = recorded.iter().flatten().collect();
    let recorded_total: usize = recorded.iter().map(Vec::len).sum();

    // …and the watcher saw each of them once.
    let got = tokio::time::timeout(PATIENCE, seen_count.wait_for(|n| *n >= stored_set.len())).await;
    let seen = seen.lock().unwrap().clone();
    let seen_set: HashSet<&String> = seen.iter().map(|s| &s.id).collect();
    let duplicates = seen.len() - seen_set.len();
    println!(
        "{name}: drive {:.1} s, {DRIVERS} drivers at {:.0} Hz: recorded {recorded_total}, stored {} ({} distinct), \
         seen {} ({} distinct), duplicates {duplicates}, watcher snapshots {}, proxy: {} connections, {} cut, \
         {} upgrades refused; drained {:.1} s after the drive",
        opts.drive.as_secs_f64(),
        1.0 / PERIOD.as_secs_f64(),
        stored_ids.len(),
        stored_set.len(),
        seen.len(),
        seen_set.len(),
        snapshots.load(std::sync::atomic::Ordering::SeqCst),
        ctx.proxy.stats().accepted.load(std::sync::atomic::Ordering::Relaxed),
        ctx.proxy.stats().cut.load(std::sync::atomic::Ordering::Relaxed),
        ctx.proxy.stats().refused_upgrades.load(std::sync::atomic::Ordering::Relaxed),
        drain.as_secs_f64(),
    );
    assert!(got.is_ok(), "{name}: the watcher saw {} of {} stored fixes", seen_set.len(), stored_set.len());
    assert_eq!(recorded_set.len(), recorded_total, "{name}: record returned a fresh id each time");
    assert_eq!(stored_ids.len(), stored_set.len(), "{name}: the server stored a fix twice");
    assert_eq!(recorded_set, stored_set, "{name}: recorded != stored");
    assert_eq!(seen_set, stored_set, "{name}: seen != stored");
    assert_eq!(duplicates, 0, "{name}: the watcher was handed a fix twice");

    // Per driver: seqs strictly increase; current fixes keep record order.
    let index: HashMap<&String, (usize, usize)> = recorded
        .iter()
        .enumerate()
        .flat_map(|(d, ids)| ids.iter().enumerate().map(move |(k, id)| (id, (d, k))))
        .collect();
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    let mut last_current: HashMap<usize, usize> = HashMap::new();
    for s in &seen {
        let prev = last_seq.insert(&s.driver, s.seq);
        assert!(prev.is_none_or(|p| p < s.seq), "{name}: {} seq {} after {prev:?}", s.driver, s.seq);
        let (d, k) = index[&s.id];
        assert_eq!(s.driver, driver_name(d), "{name}: the fix carries its driver's identity");
        if !s.outdated {
            let prev = last_current.insert(d, k);
            assert!(prev.is_none_or(|p| p < k), "{name}: current fix #{k} of {} after #{prev:?}", s.driver);
        }
    }
    let outdated = seen.iter().filter(|s| s.outdated).count();
    println!("{name}: {outdated} fixes delivered late (outdated), {} current", seen.len() - outdated);

    for driver in ctx.drivers().await {
        driver.shutdown().await;
    }
    ctx.watcher.shutdown().await;
    collector.abort();
    ctx
}

/// Waits, bounded, until some driver's connection satisfies `cond`.
async fn until_any_driver(ctx: &Ctx, what: &str, cond: impl Fn(DriverConnection) -> bool + Clone) {
    let waits = ctx.drivers().await.into_iter().map(|d| {
        let cond = cond.clone();
        Box::pin(async move {
            let mut state = d.state();
            let _ = state.wait_for(|s| cond(s.connection)).await;
        })
    });
    let any = futures_util::future::select_all(waits);
    assert!(tokio::time::timeout(PATIENCE, any).await.is_ok(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fix_is_lost_or_duplicated_when_connections_are_cut_every_second() {
    // The 60 s drive: the longest scenario, run in parallel with the others.
    let opts = Opts { drive: Duration::from_secs(60), ..Opts::default() };
    let ctx = prove("connection cuts", &[], opts, async |ctx: &mut Ctx| {
        let mut tick = tokio::time::interval_at(Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        for n in 0..(opts.drive.as_secs() - 1) {
            tick.tick().await;
            if n % 2 == 0 {
                ctx.proxy.cut_all();
            } else {
                ctx.proxy.cut_mid_frame();
            }
        }
    })
    .await;
    assert!(ctx.proxy.stats().cut.load(std::sync::atomic::Ordering::Relaxed) >= DRIVERS as u64, "cuts happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fix_is_lost_or_duplicated_when_the_server_is_sigkilled_twice() {
    let opts = Opts { drive: Duration::from_secs(9), ..Opts::default() };
    prove("server SIGKILL x2", &[], opts, async |ctx: &mut Ctx| {
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ctx.server.restart().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fix_is_lost_or_duplicated_when_tokens_expire_every_few_seconds() {
    let opts = Opts { drive: Duration::from_secs(10), token_ttl: 3, ..Opts::default() };
    prove("tokens expiring every ~3 s", &[("AUTH_EXPIRY_WARNING_MS", "1000")], opts, async |_ctx: &mut Ctx| {
        tokio::time::sleep(opts.drive).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fix_is_lost_or_duplicated_while_websockets_are_refused() {
    let opts = Opts { drive: Duration::from_secs(9), http_fallback_after: Duration::from_secs(1), ..Opts::default() };
    let ctx = prove("websockets refused for 5 s", &[], opts, async |ctx: &mut Ctx| {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let blocked = Instant::now();
        ctx.proxy.refuse_websockets();
        ctx.proxy.cut_all();
        until_any_driver(ctx, "a driver on the HTTP fallback", |c| c == DriverConnection::HttpFallback).await;
        let mut w = ctx.watcher.connection();
        tokio::time::timeout(PATIENCE, w.wait_for(|c| *c == WatcherConnection::LongPolling)).await.unwrap().unwrap();
        tokio::time::sleep_until(blocked + Duration::from_secs(5)).await;
        ctx.proxy.heal();
        until_any_driver(ctx, "a driver back on the socket", |c| c == DriverConnection::Connected).await;
    })
    .await;
    assert!(ctx.proxy.stats().refused_upgrades.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fix_is_lost_or_duplicated_when_drivers_restart_during_an_outage() {
    let opts = Opts { drive: Duration::from_secs(8), ..Opts::default() };
    prove("drivers restarted mid-outage", &[], opts, async |ctx: &mut Ctx| {
        tokio::time::sleep(Duration::from_secs(2)).await;
        ctx.proxy.black_hole();
        tokio::time::sleep(Duration::from_secs(1)).await;
        ctx.restart_drivers().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ctx.proxy.heal();
    })
    .await;
}

//! The load run: connect watchers, then drivers; warm up; measure; drain
//! outstanding acks and deliveries (bounded); then report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use futures_util::{StreamExt, stream};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wecare_client::{EventMode, SocketClient};

use super::driver::{self, ACK_TIMEOUT, DriverPlan, DriverStats};
use super::process::{self, ProcessSample};
use super::report::{LoadReport, ProcessDelta};
use super::watcher::{self, WatchPlan, WatcherStats};
use super::{LoadConfig, Pace, explain_connect_error, mint_token, sink, spinner, update_id};

/// Sockets being connected at once.
const CONNECT_CONCURRENCY: usize = 32;
/// Event buffer of a watcher socket: room for bursts while its task is busy.
const WATCHER_EVENT_BUFFER: usize = 8192;
/// Longest wait for watchers' remaining deliveries after the last ack.
const DELIVERY_DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// A delivery drain that made no progress for this long is over.
const DELIVERY_STALL: Duration = Duration::from_secs(2);

/// Counters the progress display reads while the run goes on.
#[derive(Debug, Default)]
pub(super) struct Live {
    /// Acks `ok` (any time).
    pub(super) acked: AtomicU64,
    /// Refusals, timeouts and failures (any time).
    pub(super) errors: AtomicU64,
    /// `location:updated` of this run received, all watchers (any time).
    pub(super) delivered: AtomicU64,
    /// The same, for updates sent inside the window.
    pub(super) delivered_in_window: AtomicU64,
}

/// The measurement window, µs after the run's origin: updates *sent* inside
/// it are the ones counted, by drivers and watchers alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) start_us: u64,
    pub(super) end_us: u64,
}

impl Window {
    pub(super) fn contains(&self, sent_us: u64) -> bool {
        (self.start_us..self.end_us).contains(&sent_us)
    }
}

/// A latency histogram in µs, 1 µs to 1 min, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// A duration in whole µs (saturating).
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs the load bench and prints its report.
pub(super) async fn run(config: LoadConfig) -> anyhow::Result<()> {
    let ticks = process::clock_ticks_per_sec();
    let run: Arc<str> = update_id::run_tag(super::epoch_ms()).into();
    let valid_for = config.warmup + config.duration + Duration::from_secs(3600);
    let origin = Instant::now();
    let window_cell = Arc::new(OnceLock::new());
    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let bar = spinner();
    let sink = match &config.sink {
        Some(c) => Some(sink::Sink::start(c.clone(), stop.clone()).await?),
        None => None,
    };

    bar.set_message(format!("connecting {} watchers", config.watchers));
    let plan = WatchPlan { run: Arc::clone(&run), origin, window: Arc::clone(&window_cell) };
    let watchers = connect_watchers(&config, &plan, &live, &stop, valid_for).await?;

    bar.set_message(format!("connecting {} drivers", config.drivers));
    let driver_clients = connect_drivers(&config, &run, valid_for).await?;

    let traffic_start = Instant::now();
    let start_us = micros(traffic_start - origin + config.warmup);
    let window = Window { start_us, end_us: start_us + micros(config.duration) };
    // Set once, before any driver exists.
    let _ = window_cell.set(window);
    let window_start = origin + Duration::from_micros(window.start_us);
    let window_end = origin + Duration::from_micros(window.end_us);
    let drivers: Vec<JoinHandle<DriverStats>> = driver_clients
        .iter()
        .enumerate()
        .map(|(index, client)| {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let plan = DriverPlan {
                index,
                drivers: config.drivers,
                pace: config.pace,
                run: Arc::clone(&run),
                origin,
                start: traffic_start + start_offset(config.pace, index, config.drivers),
                window,
                end: window_end,
            };
            tokio::spawn(driver::drive(client.clone(), plan, Arc::clone(&live)))
        })
        .collect();

    progress_until(&bar, &live, window_start, "warming up").await;
    let before = sample(&config.server_pids, ticks)?;
    let threads_before = sample_threads(&config.server_pids, ticks);
    let sink_before = sink.as_ref().map(sink::Sink::requests);
    let self_before = ProcessSample::read_self(ticks).ok();
    progress_until(&bar, &live, window_end, "measuring").await;
    let after = sample(&config.server_pids, ticks)?;
    let threads_after = sample_threads(&config.server_pids, ticks);
    let sink_after = sink.as_ref().map(sink::Sink::requests);
    let self_after = ProcessSample::read_self(ticks).ok();

    bar.set_message("waiting for outstanding acks");
    let mut driver_stats = Vec::with_capacity(drivers.len());
    for handle in drivers {
        driver_stats.push(handle.await.context("driver task failed")?);
    }
    let connected_watchers = watchers.iter().filter(|w| w.client.is_connected()).count() as u64;
    let stored: u64 = driver_stats.iter().map(|d| d.stored.len() as u64).sum();
    bar.set_message("waiting for the last deliveries");
    drain_deliveries(&live, stored * connected_watchers).await;

    stop.cancel();
    let mut watcher_stats: Vec<WatcherStats> = Vec::with_capacity(watchers.len());
    let mut watcher_clients = Vec::with_capacity(watchers.len());
    for w in watchers {
        watcher_stats.push(w.task.await.context("watcher task failed")?);
        watcher_clients.push(w.client);
    }
    bar.set_message("closing sockets");
    close_all(driver_clients.iter().chain(watcher_clients.iter())).await;
    bar.finish_and_clear();

    let server = match (before, after) {
        (Some(before), Some(after)) => Some(ProcessDelta { before, after }),
        _ => None,
    };
    let bench = match (self_before, self_after) {
        (Some(before), Some(after)) => Some(ProcessDelta { before, after }),
        _ => None,
    };
    let forwards = sink_before.zip(sink_after).map(|(b, a)| a - b);
    let threads = threads_before.zip(threads_after).map(|(before, after)| {
        after
            .into_iter()
            .map(|(name, cpu)| {
                let was = before.get(&name).copied().unwrap_or_default();
                (name, cpu.saturating_sub(was))
            })
            .collect()
    });
    let report = LoadReport::compute(&config, &driver_stats, &mut watcher_stats, server, bench, forwards)
        .with_server_threads(threads);
    if config.json {
        println!("{}", report.to_json());
    } else {
        report.print_text(&config);
    }
    Ok(())
}

/// When driver `index` starts: spread evenly over one period in rate mode.
fn start_offset(pace: Pace, index: u32, drivers: u32) -> Duration {
    match pace {
        Pace::Rate(rate) => Duration::from_secs_f64(f64::from(index) / f64::from(drivers.max(1)) / rate),
        Pace::Max { .. } => Duration::ZERO,
    }
}

struct Watcher {
    client: SocketClient,
    task: JoinHandle<WatcherStats>,
}

async fn connect_watchers(
    config: &LoadConfig,
    plan: &WatchPlan,
    live: &Arc<Live>,
    stop: &CancellationToken,
    valid_for: Duration,
) -> anyhow::Result<Vec<Watcher>> {
    let results: Vec<_> = stream::iter(0..config.watchers)
        .map(|i| async move {
            let token = mint_token(&config.target.jwt_secret, &format!("bench-w{i}"), "officer", valid_for);
            // Another node than the driver of the same index: across nodes.
            let node = config.target.node(i as usize + 1);
            let (client, events) = super::connect(&config.target, node, &token, EventMode::Raw, WATCHER_EVENT_BUFFER)
                .await
                .map_err(|e| explain_connect_error(e, &format!("watcher {i}")))?;
            let (ready_tx, ready_rx) = oneshot::channel();
            let task = tokio::spawn(watcher::watch(events, ready_tx, plan.clone(), Arc::clone(live), stop.clone()));
            anyhow::Ok((Watcher { client, task }, ready_rx))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut watchers = Vec::with_capacity(results.len());
    let mut readies = Vec::with_capacity(results.len());
    let mut first_error = None;
    for result in results {
        match result {
            Ok((watcher, ready)) => {
                watchers.push(watcher);
                readies.push(ready);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        stop.cancel();
        close_all(watchers.iter().map(|w| &w.client)).await;
        return Err(e);
    }
    // Subscribed = snapshot received; only then can no update be missed.
    let all_ready = futures_util::future::join_all(readies);
    match tokio::time::timeout(Duration::from_secs(30), all_ready).await {
        Ok(results) if results.iter().all(Result::is_ok) => Ok(watchers),
        _ => {
            stop.cancel();
            close_all(watchers.iter().map(|w| &w.client)).await;
            anyhow::bail!("not every watcher received drivers:snapshot within 30 s")
        }
    }
}

async fn connect_drivers(config: &LoadConfig, run: &str, valid_for: Duration) -> anyhow::Result<Vec<SocketClient>> {
    let results: Vec<_> = stream::iter(0..config.drivers)
        .map(|i| async move {
            let token = mint_token(&config.target.jwt_secret, &format!("bench-drv-{i}"), "driver", valid_for);
            // Drivers get no stream events; a small buffer suffices.
            super::connect(&config.target, config.target.node(i as usize), &token, EventMode::Raw, 64)
                .await
                .map(|(client, _events)| (i, client))
                .map_err(|e| explain_connect_error(e, &format!("driver {i} ({run})")))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut clients = Vec::with_capacity(results.len());
    let mut first_error = None;
    for result in results {
        match result {
            Ok(pair) => clients.push(pair),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        close_all(clients.iter().map(|(_, c)| c)).await;
        return Err(e);
    }
    clients.sort_by_key(|(i, _)| *i);
    Ok(clients.into_iter().map(|(_, c)| c).collect())
}

/// Reads the server process, when a PID was given.
/// The server processes' CPU and memory, summed over the nodes.
fn sample(pids: &[u32], ticks: u64) -> anyhow::Result<Option<ProcessSample>> {
    let mut total: Option<ProcessSample> = None;
    for &pid in pids {
        let s = ProcessSample::read(pid, ticks).with_context(|| format!("--server-pid {pid}"))?;
        total = Some(match total {
            Some(t) => ProcessSample { cpu: t.cpu + s.cpu, rss_kib: t.rss_kib + s.rss_kib },
            None => s,
        });
    }
    Ok(total)
}

/// CPU time per thread name, summed over the server processes; `None`
/// when a `/proc/PID/task` cannot be read (the figure is then left out).
fn sample_threads(pids: &[u32], ticks: u64) -> Option<BTreeMap<String, Duration>> {
    let mut total = BTreeMap::<String, Duration>::new();
    for &pid in pids {
        for (name, cpu) in process::thread_cpu(pid, ticks).ok()? {
            *total.entry(name).or_default() += cpu;
        }
    }
    (!pids.is_empty()).then_some(total)
}

/// Updates the spinner with live rates until `deadline`.
async fn progress_until(bar: &ProgressBar, live: &Live, deadline: Instant, phase: &str) {
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut last = (Instant::now(), 0u64, 0u64);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return,
            _ = ticker.tick() => {
                let now = Instant::now();
                let acked = live.acked.load(Ordering::Relaxed);
                let delivered = live.delivered.load(Ordering::Relaxed);
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let left = deadline.saturating_duration_since(now).as_secs();
                bar.set_message(format!(
                    "{phase} ({left} s left): {:.0} acked/s, {:.0} deliveries/s, {} errors",
                    (acked - last.1) as f64 / secs,
                    (delivered - last.2) as f64 / secs,
                    live.errors.load(Ordering::Relaxed),
                ));
                last = (now, acked, delivered);
            }
        }
    }
}

/// Waits until watchers have `expected` in-window deliveries, the count
/// stalls for [`DELIVERY_STALL`], or [`DELIVERY_DRAIN_LIMIT`] passes.
async fn drain_deliveries(live: &Live, expected: u64) {
    let limit = Instant::now() + DELIVERY_DRAIN_LIMIT;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut last = (live.delivered_in_window.load(Ordering::Relaxed), Instant::now());
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let delivered = live.delivered_in_window.load(Ordering::Relaxed);
        if delivered >= expected || now >= limit {
            return;
        }
        if delivered != last.0 {
            last = (delivered, now);
        } else if now.duration_since(last.1) >= DELIVERY_STALL {
            return;
        }
    }
}

async fn close_all<'a>(clients: impl Iterator<Item = &'a SocketClient>) {
    let closing = futures_util::future::join_all(clients.map(SocketClient::close));
    // Every close is bounded by the client; this only guards the total.
    let _ = tokio::time::timeout(ACK_TIMEOUT, closing).await;
}

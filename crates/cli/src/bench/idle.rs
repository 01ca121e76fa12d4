//! The idle-connections run: open K authenticated sockets that send nothing,
//! let the server settle, and report its resident memory per connection,
//! how fast the sockets were opened, and the server's CPU while they idle
//! (its heartbeats and clocks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::{StreamExt, stream};
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;
use wecare_client::{EventMode, ServerEvent, SocketClient};

use super::process::{self, ProcessSample};
use super::{IdleConfig, IdleRole, explain_connect_error, mint_token, spinner};

/// Sockets being connected at once.
const CONNECT_CONCURRENCY: usize = 64;

/// Runs the idle bench and prints its report.
pub(super) async fn run(config: IdleConfig) -> anyhow::Result<()> {
    let ticks = process::clock_ticks_per_sec();
    let pid = config.server_pid;
    let read = || ProcessSample::read(pid, ticks).with_context(|| format!("--server-pid {pid}"));
    let before = read()?;
    let valid_for = config.settle + Duration::from_secs(3600);
    let (role, prefix) = match config.role {
        IdleRole::Driver => ("driver", "bench-idle-drv"),
        IdleRole::Watcher => ("officer", "bench-idle-w"),
    };

    let bar = spinner();
    let connected = Arc::new(AtomicU64::new(0));
    let disconnected = Arc::new(AtomicU64::new(0));
    // Each socket's events are drained so that no reader ever blocks (a
    // blocked reader stops answering pings and would be dropped).
    let mut drains = JoinSet::new();
    let mut clients = Vec::with_capacity(config.connections as usize);
    let mut first_error = None;
    let connect_started = Instant::now();
    let mut attempts = stream::iter(0..config.connections)
        .map(|i| {
            let token = mint_token(&config.target.jwt_secret, &format!("{prefix}-{i}"), role, valid_for);
            let target = config.target.clone();
            async move { super::connect(&target, &target.url, &token, EventMode::Raw, 16).await }
        })
        .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some(result) = attempts.next().await {
        match result {
            Ok((client, mut events)) => {
                let done = connected.fetch_add(1, Ordering::Relaxed) + 1;
                bar.set_message(format!("connected {done}/{}", config.connections));
                let disconnected = Arc::clone(&disconnected);
                drains.spawn(async move {
                    while let Some(event) = events.recv().await {
                        if matches!(event, ServerEvent::Disconnected { .. }) {
                            disconnected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                clients.push(client);
            }
            Err(e) => {
                first_error = Some(explain_connect_error(e, "an idle socket"));
                break;
            }
        }
    }
    drop(attempts);
    if let Some(e) = first_error {
        close_all(&clients).await;
        drains.shutdown().await;
        return Err(e);
    }

    let connect_time = connect_started.elapsed();
    let settle_start = read()?;
    let settle_end = Instant::now() + config.settle;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    while Instant::now() < settle_end {
        tokio::select! {
            () = tokio::time::sleep_until(settle_end) => {}
            _ = ticker.tick() => {
                let left = settle_end.saturating_duration_since(Instant::now()).as_secs();
                bar.set_message(format!("{} idle sockets open, settling ({left} s left)", clients.len()));
            }
        }
    }
    let after = read()?;
    let still_open = clients.iter().filter(|c| c.is_connected()).count() as u64;
    let dropped_while_settling = disconnected.load(Ordering::Relaxed);
    bar.set_message("closing sockets");
    close_all(&clients).await;
    drains.shutdown().await;
    bar.finish_and_clear();

    let grown_kib = after.rss_kib.saturating_sub(before.rss_kib);
    let opened = connected.load(Ordering::Relaxed);
    let connects_per_sec = opened as f64 / connect_time.as_secs_f64().max(1e-9);
    // CPU while idle, as a share of one core.
    let idle_cpu = after.cpu.saturating_sub(settle_start.cpu).as_secs_f64() / config.settle.as_secs_f64().max(1e-9);
    let per_connection_kib = (still_open > 0).then(|| grown_kib as f64 / still_open as f64);
    if config.json {
        println!(
            "{}",
            json!({
                "mode": "idle_connections",
                "role": role,
                "requested": config.connections,
                "open_at_measurement": still_open,
                "disconnected_during_settle": dropped_while_settling,
                "settle_secs": config.settle.as_secs(),
                "server_rss_before_kib": before.rss_kib,
                "server_rss_after_kib": after.rss_kib,
                "server_kib_per_connection": per_connection_kib,
                "connect_secs": connect_time.as_secs_f64(),
                "connects_per_sec": connects_per_sec,
                "server_idle_cpu_share": idle_cpu,
            })
        );
    } else {
        println!(
            "bench {}: {} idle {role} sockets, {} s settle",
            config.target.url,
            config.connections,
            config.settle.as_secs()
        );
        println!(
            "opened            {opened} in {:.2} s ({connects_per_sec:.0} sockets/s, {CONNECT_CONCURRENCY} at a time)",
            connect_time.as_secs_f64()
        );
        println!("open at measure   {still_open} ({dropped_while_settling} disconnected while settling)");
        println!(
            "server cpu idle   {:.2} % of a core ({:.2} µs/s per connection)",
            idle_cpu * 100.0,
            idle_cpu * 1e6 / still_open.max(1) as f64
        );
        println!(
            "server rss        {:.1} MiB → {:.1} MiB",
            before.rss_kib as f64 / 1024.0,
            after.rss_kib as f64 / 1024.0
        );
        match per_connection_kib {
            Some(kib) => println!("per connection    {kib:.1} KiB"),
            None => println!("per connection    n/a (no socket stayed open)"),
        }
    }
    Ok(())
}

async fn close_all(clients: &[SocketClient]) {
    let closing = futures_util::future::join_all(clients.iter().map(SocketClient::close));
    let _ = tokio::time::timeout(Duration::from_secs(30), closing).await;
}

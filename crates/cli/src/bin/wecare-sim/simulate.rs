//! `wecare-sim`: a fleet of drivers on plausible routes, each a real
//! SDK [`Driver`] with its own SQLite outbox, optionally through a
//! fault-injecting proxy; a live summary on stderr and a final report on
//! stdout. Loopback only unless told otherwise; stops by itself.

mod faults;
mod route;

use std::path::PathBuf;

use crate::progress::spinner;
use crate::target::{TlsArgs, check_tls, is_loopback, is_tls, url_host};
use crate::tokens::{self, Holder};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wecare_client::testing::FaultProxy;
use wecare_client::{BackoffConfig, Driver, DriverConfig, DriverConnection, DriverState, TlsConfig, TokenError};

use faults::Fault;
use route::{Area, Route};

/// A simulated fleet against a running server.
#[derive(clap::Args, Debug)]
pub(crate) struct SimulateArgs {
    /// Base URL of the server, http:// or https://. Only loopback hosts are
    /// accepted unless --allow-non-loopback is given.
    #[arg(long, env = "SIMULATE_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// HS256 key the server verifies tokens with (its JWT_SECRET).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Number of simulated drivers.
    #[arg(long, env = "SIMULATE_DRIVERS", default_value_t = 10)]
    drivers: u32,
    /// Fixes per second per driver.
    #[arg(long, env = "SIMULATE_RATE", default_value_t = 1.0)]
    rate: f64,
    /// Seconds of driving; then the outboxes drain (up to --drain-timeout)
    /// and the run ends. Default 30.
    #[arg(long, env = "SIMULATE_DURATION", default_value_t = 30.0)]
    duration: f64,
    /// Where the drivers drive: `bangkok` (13.7563,100.5018, 15 km) or
    /// `LAT,LNG,RADIUS_KM`.
    #[arg(long, env = "SIMULATE_AREA", default_value = "bangkok", value_parser = Area::parse)]
    area: Area,
    /// Folder of the drivers' outboxes (`<driver id>.sqlite3`), kept after
    /// the run. Default: a temporary folder, removed at the end.
    #[arg(long, env = "SIMULATE_OUTBOX_DIR")]
    outbox_dir: Option<PathBuf>,
    /// Comma-separated faults injected through a proxy: `drop:P` (cut every
    /// connection with probability P each second), `block-ws:SECS` (refuse
    /// websocket upgrades), `kill-link:SECS` (black hole), `delay:MS`.
    /// Windows run one after another from 1 s in. http:// URLs only (the
    /// proxy reads the plain requests).
    #[arg(long, env = "SIMULATE_FAULTS", value_delimiter = ',')]
    faults: Vec<Fault>,
    /// Driver ids are `<prefix>-001`, `<prefix>-002`, ...
    #[arg(long, env = "SIMULATE_DRIVER_PREFIX", default_value = "sim")]
    driver_prefix: String,
    /// Lifetime of each minted token, seconds (short ones exercise refresh).
    #[arg(long, env = "SIMULATE_TOKEN_TTL", default_value_t = 3600)]
    token_ttl: u64,
    /// Longest wait, seconds, for the outboxes to drain after the drive.
    #[arg(long, env = "SIMULATE_DRAIN_TIMEOUT", default_value_t = 30.0)]
    drain_timeout: f64,
    /// Seed of the routes and faults (default: from the clock).
    #[arg(long, env = "SIMULATE_SEED")]
    seed: Option<u64>,
    /// Allow a --url whose host is not a loopback address. Never point the
    /// simulator at a server you do not own.
    #[arg(long)]
    allow_non_loopback: bool,
}

/// Validated settings of a run.
#[derive(Debug)]
struct SimulateConfig {
    url: String,
    tls: TlsConfig,
    secret: String,
    drivers: u32,
    period: Duration,
    duration: Duration,
    area: Area,
    outbox_dir: Option<PathBuf>,
    faults: Vec<Fault>,
    prefix: String,
    token_ttl: u64,
    drain_timeout: Duration,
    seed: u64,
}

impl TryFrom<SimulateArgs> for SimulateConfig {
    type Error = anyhow::Error;

    fn try_from(args: SimulateArgs) -> anyhow::Result<Self> {
        let host = url_host(&args.url)?;
        ensure!(
            args.allow_non_loopback || is_loopback(host),
            "--url host {host:?} is not a loopback address; the simulator only drives servers on this \
             machine unless --allow-non-loopback is given"
        );
        ensure!(
            args.faults.is_empty() || !is_tls(&args.url),
            "--faults works with an http:// --url only: the fault proxy reads the plain requests"
        );
        ensure!(!args.jwt_secret.is_empty(), "--jwt-secret must not be empty");
        ensure!((1..=10_000).contains(&args.drivers), "--drivers must be in 1..=10000");
        ensure!(
            args.rate.is_finite() && args.rate > 0.0 && args.rate <= 100.0,
            "--rate must be a number of fixes per second in (0, 100]"
        );
        ensure!(args.duration.is_finite() && args.duration > 0.0, "--duration must be a positive number of seconds");
        ensure!(args.drain_timeout.is_finite() && args.drain_timeout >= 0.0, "--drain-timeout must be >= 0");
        ensure!(args.token_ttl >= 2, "--token-ttl must be at least 2 seconds");
        let seed = args.seed.unwrap_or_else(epoch_millis);
        Ok(SimulateConfig {
            url: args.url.trim_end_matches('/').to_owned(),
            tls: args.tls.to_config()?,
            secret: args.jwt_secret,
            drivers: args.drivers,
            period: Duration::from_secs_f64(1.0 / args.rate),
            duration: Duration::from_secs_f64(args.duration),
            area: args.area,
            outbox_dir: args.outbox_dir,
            faults: args.faults,
            prefix: args.driver_prefix,
            token_ttl: args.token_ttl,
            drain_timeout: Duration::from_secs_f64(args.drain_timeout),
            seed,
        })
    }
}

/// The counters of one run.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
}

/// Totals over the fleet, from the drivers' states.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    pending: u64,
    dead_letters: u64,
    dropped: u64,
    connected: u32,
    http: u32,
    down: u32,
}

fn totals(states: &[tokio::sync::watch::Receiver<DriverState>]) -> Totals {
    let mut t = Totals::default();
    for s in states {
        let s = s.borrow();
        t.pending += s.pending;
        t.dead_letters += s.dead_letters;
        t.dropped += s.dropped;
        match s.connection {
            DriverConnection::Connected => t.connected += 1,
            DriverConnection::HttpFallback => t.http += 1,
            _ => t.down += 1,
        }
    }
    t
}

/// The final report.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    drivers: u32,
    sent: u64,
    acked: u64,
    pending: u64,
    dead_letters: u64,
    dropped: u64,
    drive: Duration,
    total: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "drivers        {}", self.drivers)?;
        writeln!(f, "sent           {}", self.sent)?;
        writeln!(f, "acked          {}", self.acked)?;
        writeln!(f, "pending        {}", self.pending)?;
        writeln!(f, "dead-lettered  {}", self.dead_letters)?;
        writeln!(f, "dropped        {}", self.dropped)?;
        writeln!(f, "drive          {:.1} s", self.drive.as_secs_f64())?;
        write!(f, "duration       {:.1} s", self.total.as_secs_f64())
    }
}

/// Runs the simulation described by `args` and prints its report.
///
/// # Errors
/// Invalid arguments, an outbox that cannot be opened, or fixes still
/// pending after the drain timeout (the report is printed first).
pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = SimulateConfig::try_from(args)?;
    check_tls(&config.url, &config.tls).await?;
    let temp;
    let outbox_dir = match &config.outbox_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary outbox folder")?;
            temp.path().to_owned()
        }
    };
    let proxy = if config.faults.is_empty() {
        None
    } else {
        let upstream = upstream_addr(&config.url).await?;
        Some(FaultProxy::start(upstream).await.context("starting the fault proxy")?)
    };
    let url = proxy.as_ref().map_or_else(|| config.url.clone(), FaultProxy::url);

    let mut drivers = Vec::new();
    for i in 1..=config.drivers {
        let id = format!("{}-{i:03}", config.prefix);
        let path = outbox_dir.join(format!("{id}.sqlite3"));
        let (secret, ttl, subject) = (config.secret.clone(), config.token_ttl, id.clone());
        let provider = move || {
            let holder = Holder::new(&subject, "driver").with_email(format!("{subject}@simulate"));
            let token = tokens::mint(&secret, &holder, Duration::from_secs(ttl));
            async move { Ok::<_, TokenError>(token) }
        };
        let mut driver_config = DriverConfig::new(&url, &path, provider);
        driver_config.tls = config.tls.clone();
        // Quicker than the SDK defaults (1 s … 30 s): a short run should
        // show recovery, not waiting.
        driver_config.backoff = BackoffConfig { base: Duration::from_millis(200), cap: Duration::from_secs(3) };
        driver_config.http_fallback_after = Duration::from_secs(5);
        driver_config.ack_timeout = Duration::from_secs(5);
        driver_config.connect_timeout = Duration::from_secs(5);
        let driver = Driver::start(driver_config).await.with_context(|| format!("opening {}", path.display()))?;
        drivers.push(driver);
    }
    let states: Vec<_> = drivers.iter().map(Driver::state).collect();
    let before = totals(&states);

    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let bar = spinner();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, driver) in drivers.iter().enumerate() {
        let driver = driver.clone();
        let mut route = Route::new(config.area, config.seed.wrapping_add(i as u64 * 7919));
        let (period, counters, stop) = (config.period, Arc::clone(&counters), stop.clone());
        // Spread the drivers' ticks over one period.
        let first = started + period.mul_f64(i as f64 / f64::from(config.drivers));
        tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(first, period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return Ok::<_, anyhow::Error>(()),
                    _ = tick.tick() => {}
                }
                driver.record(route.advance(period.as_secs_f64())).await.context("recording a fix")?;
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let injector = proxy.as_ref().map(|p| faults::inject(p, &config.faults, config.seed, stop.clone()));
    let show = |phase: &str| {
        let t = totals(&states);
        let sent = counters.sent.load(Ordering::Relaxed);
        bar.set_message(format!(
            "{phase}: sent {sent}, acked {}, pending {}, dead-lettered {} | drivers {} connected, {} http, {} down",
            acked(sent, &before, &t),
            t.pending,
            t.dead_letters,
            t.connected,
            t.http,
            t.down
        ));
    };
    let drive = async {
        let mut refresh = tokio::time::interval(Duration::from_millis(250));
        let end = tokio::time::sleep_until(started + config.duration);
        tokio::pin!(end);
        loop {
            tokio::select! {
                () = &mut end => break,
                _ = refresh.tick() => show("driving"),
            }
        }
        stop.cancel();
    };
    match injector {
        Some(injector) => {
            tokio::join!(drive, injector);
        }
        None => drive.await,
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a driver task panicked")??;
    }
    let drive_time = started.elapsed();

    // Drain: every outbox empty, or the timeout.
    let drain_deadline = Instant::now() + config.drain_timeout;
    let mut refresh = tokio::time::interval(Duration::from_millis(250));
    let mut all = states.clone();
    let drained = async {
        for s in &mut all {
            let _ = s.wait_for(|s| s.pending == 0).await;
        }
    };
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = &mut drained => break,
            () = tokio::time::sleep_until(drain_deadline) => break,
            _ = refresh.tick() => show("draining"),
        }
    }
    bar.finish_and_clear();
    let after = totals(&states);
    for driver in &drivers {
        driver.shutdown().await;
    }
    if let Some(proxy) = &proxy {
        proxy.shutdown().await;
    }
    let sent = counters.sent.load(Ordering::Relaxed);
    let report = Report {
        drivers: config.drivers,
        sent,
        acked: acked(sent, &before, &after),
        pending: after.pending,
        dead_letters: after.dead_letters - before.dead_letters,
        dropped: after.dropped - before.dropped,
        drive: drive_time,
        total: started.elapsed(),
    };
    println!("{report}");
    if after.pending > 0 {
        bail!(
            "{} fixes still pending after the {:.0} s drain timeout",
            after.pending,
            config.drain_timeout.as_secs_f64()
        );
    }
    Ok(())
}

/// Fixes that left the outboxes with an `ok` ack: everything that was or
/// went in, minus what is still there, refused or discarded.
fn acked(sent: u64, before: &Totals, now: &Totals) -> u64 {
    (before.pending + sent)
        .saturating_sub(now.pending)
        .saturating_sub(now.dead_letters - before.dead_letters)
        .saturating_sub(now.dropped - before.dropped)
}

/// Milliseconds since the Unix epoch.
fn epoch_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The server's socket address, for the proxy to forward to.
async fn upstream_addr(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    tokio::net::lookup_host(&authority)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        simulate: SimulateArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<SimulateConfig> {
        let cli = Cli::try_parse_from(["simulate", "--jwt-secret", "s"].iter().chain(args.iter()))?;
        SimulateConfig::try_from(cli.simulate)
    }

    #[test]
    fn flags_become_a_config() {
        let c = config(&["--drivers", "3", "--rate", "5", "--duration", "2", "--faults", "drop:0.5,kill-link:2"])
            .expect("valid");
        assert_eq!((c.drivers, c.period, c.duration), (3, Duration::from_millis(200), Duration::from_secs(2)));
        assert_eq!(c.area, Area::BANGKOK);
        assert_eq!(c.faults, vec![Fault::Drop(0.5), Fault::KillLink(Duration::from_secs(2))]);
    }

    #[test]
    fn bad_flags_are_refused() {
        for bad in [
            &["--url", "http://10.1.2.3:3000"][..],
            &["--rate", "0"],
            &["--drivers", "0"],
            &["--duration", "-1"],
            &["--faults", "nap:1"],
            &["--area", "1,2"],
            &["--url", "https://127.0.0.1:3443", "--faults", "drop:0.1"],
            &["--url", "https://127.0.0.1:3443", "--ca-cert", "/nonexistent/ca.pem"],
        ] {
            assert!(config(bad).is_err(), "{bad:?}");
        }
        assert!(config(&["--url", "http://10.1.2.3:3000", "--allow-non-loopback"]).is_ok());
        assert!(config(&["--url", "https://localhost:3443/"]).is_ok_and(|c| c.url == "https://localhost:3443"));
    }

    #[test]
    fn acked_counts_what_left_the_outboxes() {
        let before = Totals { pending: 2, ..Totals::default() };
        let now = Totals { pending: 1, dead_letters: 1, ..Totals::default() };
        assert_eq!(acked(10, &before, &now), 10);
    }
}

//! `wecare-rt bench`: load a running server with simulated drivers and
//! watchers through the client SDK, and report throughput, latency,
//! delivery completeness and (with `--server-pid`) the server's CPU and
//! memory cost. `--idle-connections` measures memory per idle connection.
//!
//! The bench only ever connects to `--url`, refuses non-loopback hosts unless
//! told otherwise, and stops by itself after `--warmup + --duration` (plus a
//! bounded drain).

mod catchup;
mod driver;
mod idle;
mod load;
mod process;
mod report;
mod sink;
mod update_id;
mod watcher;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use crate::progress::spinner;
use crate::target::{TlsArgs, check_tls, is_loopback, url_host};

use anyhow::{bail, ensure};
use wecare_client::{CertificateProblem, ClientError, ConnectOptions, EventMode, ServerEvent, SocketClient, TlsConfig};

/// Simulated drivers and watchers against a running server.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Base URL of the server under test, http:// or https://; several
    /// nodes of one cluster as a comma-separated list (drivers and watchers
    /// are spread over them, a watcher on another node than the driver of
    /// the same index). Only loopback hosts are accepted unless
    /// --allow-non-loopback is given.
    #[arg(long, env = "BENCH_URL", default_value = "http://127.0.0.1:3000", value_delimiter = ',')]
    url: Vec<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// HS256 key the server verifies tokens with (its JWT_SECRET).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Number of simulated drivers (one socket each).
    #[arg(long, env = "BENCH_DRIVERS", default_value_t = 100)]
    drivers: u32,
    /// Number of watchers (officer sockets receiving the stream).
    #[arg(long, env = "BENCH_WATCHERS", default_value_t = 10)]
    watchers: u32,
    /// Updates per second per driver, sent on a fixed schedule whatever the
    /// ack latency (open loop); start times are spread evenly. Default 1.0.
    #[arg(long, env = "BENCH_RATE", default_value_t = 1.0)]
    rate: f64,
    /// Instead of --rate: every driver sends as fast as its acks allow, with
    /// --in-flight updates outstanding (closed loop). Note the server's
    /// RATE_LIMIT_PER_SEC (default 20 per driver) then applies.
    #[arg(long, env = "BENCH_MAX_RATE")]
    max_rate: bool,
    /// Outstanding updates per driver in --max-rate mode.
    #[arg(long, env = "BENCH_IN_FLIGHT", default_value_t = 8)]
    in_flight: u32,
    /// Seconds measured, after the warmup.
    #[arg(long, env = "BENCH_DURATION", default_value_t = 30)]
    duration: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, env = "BENCH_WARMUP", default_value_t = 3)]
    warmup: u64,
    /// PID of the server process: report its CPU time per acked update and
    /// per delivery, and its memory (reads /proc/PID/stat and status);
    /// several nodes' PIDs as a comma-separated list (summed).
    #[arg(long, env = "BENCH_SERVER_PID", value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Run a stand-in for the WeCare backend's forwarding route on this
    /// loopback address (e.g. 127.0.0.1:4999): it answers every request 200
    /// after --sink-delay-ms and reports forwards per second. Start the
    /// server with FORWARD_URL=http://ADDR/api/driver-locations/{driverId}.
    #[arg(long, env = "BENCH_SINK")]
    sink: Option<std::net::SocketAddr>,
    /// How long the sink takes to answer, ms.
    #[arg(long, env = "BENCH_SINK_DELAY_MS", default_value_t = 20)]
    sink_delay_ms: u64,
    /// Separate mode: open this many idle authenticated connections, wait
    /// --settle seconds, and report server memory per connection. Requires
    /// --server-pid.
    #[arg(long, env = "BENCH_IDLE_CONNECTIONS")]
    idle_connections: Option<u32>,
    /// Role of the idle connections.
    #[arg(long, env = "BENCH_IDLE_ROLE", value_enum, default_value_t = IdleRole::Driver)]
    idle_role: IdleRole,
    /// Seconds to wait with the idle connections open before measuring.
    #[arg(long, env = "BENCH_SETTLE", default_value_t = 30)]
    settle: u64,
    /// Separate mode: one watcher resumes with this `lastSeq` and the time
    /// until `sync:complete` is reported (fill the store first, e.g. with a
    /// --max-rate run).
    #[arg(long, env = "BENCH_CATCH_UP_FROM")]
    catch_up_from: Option<u64>,
    /// Print the results as one JSON object on stdout instead of text.
    #[arg(long, env = "BENCH_JSON")]
    json: bool,
    /// Allow a --url whose host is not a loopback address. Never point the
    /// bench at a server you do not own.
    #[arg(long)]
    allow_non_loopback: bool,
}

/// Who the idle connections authenticate as.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleRole {
    /// Driver tokens (no events are pushed to them).
    Driver,
    /// Officer tokens (each gets a snapshot, then the live stream).
    Watcher,
}

/// Runs the bench described by `args` and prints its report.
///
/// # Errors
/// Invalid arguments, a server that cannot be reached or refuses the
/// tokens, or an unreadable `/proc/PID`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::try_from(args)?;
    let target = match &plan {
        Plan::Load(config) => &config.target,
        Plan::Idle(config) => &config.target,
        Plan::CatchUp(config) => &config.target,
    };
    check_tls(&target.url, &target.tls).await?;
    match plan {
        Plan::Load(config) => load::run(config).await,
        Plan::Idle(config) => idle::run(config).await,
        Plan::CatchUp(config) => catchup::run(config).await,
    }
}

/// How updates are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pace {
    /// Open loop: this many updates per second per driver.
    Rate(f64),
    /// Closed loop: this many outstanding updates per driver.
    Max { in_flight: u32 },
}

/// Validated settings of a load run.
#[derive(Debug, Clone)]
struct LoadConfig {
    target: Target,
    drivers: u32,
    watchers: u32,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
    server_pids: Vec<u32>,
    sink: Option<sink::SinkConfig>,
    json: bool,
}

/// Validated settings of an idle-connections run.
#[derive(Debug, Clone)]
struct IdleConfig {
    target: Target,
    connections: u32,
    role: IdleRole,
    settle: Duration,
    server_pid: u32,
    json: bool,
}

/// The server under test and how to get in.
#[derive(Debug, Clone)]
struct Target {
    /// The first node (the only one for idle and catch-up runs).
    url: String,
    /// Every node; clients are spread over them.
    nodes: Vec<String>,
    jwt_secret: String,
    /// Trust for an https:// `url`.
    tls: TlsConfig,
}

#[derive(Debug)]
enum Plan {
    Load(LoadConfig),
    Idle(IdleConfig),
    CatchUp(CatchUpConfig),
}

/// Validated settings of a catch-up run.
#[derive(Debug, Clone)]
struct CatchUpConfig {
    target: Target,
    from: u64,
}

impl TryFrom<BenchArgs> for Plan {
    type Error = anyhow::Error;

    fn try_from(args: BenchArgs) -> anyhow::Result<Self> {
        ensure!(!args.url.is_empty(), "--url must name a server");
        for url in &args.url {
            let host = url_host(url)?;
            if !args.allow_non_loopback {
                ensure!(
                    is_loopback(host),
                    "--url host {host:?} is not a loopback address; the bench only loads \
                     servers on this machine unless --allow-non-loopback is given"
                );
            }
        }
        if let Some(sink) = args.sink {
            ensure!(sink.ip().is_loopback(), "--sink must be a loopback address");
        }
        ensure!(!args.jwt_secret.is_empty(), "--jwt-secret must not be empty");
        let target = Target {
            url: args.url[0].clone(),
            nodes: args.url.clone(),
            jwt_secret: args.jwt_secret,
            tls: args.tls.to_config()?,
        };
        if let Some(from) = args.catch_up_from {
            return Ok(Plan::CatchUp(CatchUpConfig { target, from }));
        }
        if let Some(connections) = args.idle_connections {
            let Some(&server_pid) = args.server_pid.first() else {
                bail!("--idle-connections measures server memory and needs --server-pid");
            };
            ensure!(connections > 0, "--idle-connections must be at least 1");
            return Ok(Plan::Idle(IdleConfig {
                target,
                connections,
                role: args.idle_role,
                settle: Duration::from_secs(args.settle),
                server_pid,
                json: args.json,
            }));
        }
        ensure!(args.drivers > 0, "--drivers must be at least 1");
        ensure!(args.duration > 0, "--duration must be at least 1 second");
        let pace = if args.max_rate {
            ensure!(args.in_flight > 0, "--in-flight must be at least 1");
            Pace::Max { in_flight: args.in_flight }
        } else {
            ensure!(
                args.rate.is_finite() && args.rate > 0.0 && args.rate <= 10_000.0,
                "--rate must be a number of updates per second in (0, 10000]"
            );
            Pace::Rate(args.rate)
        };
        Ok(Plan::Load(LoadConfig {
            target,
            drivers: args.drivers,
            watchers: args.watchers,
            pace,
            warmup: Duration::from_secs(args.warmup),
            duration: Duration::from_secs(args.duration),
            server_pids: args.server_pid,
            sink: args.sink.map(|addr| sink::SinkConfig { addr, delay: Duration::from_millis(args.sink_delay_ms) }),
            json: args.json,
        }))
    }
}

impl Target {
    /// The node client number `i` connects to.
    fn node(&self, i: usize) -> &str {
        &self.nodes[i % self.nodes.len()]
    }
}

/// Milliseconds since the Unix epoch.
fn epoch_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// An access token as the WeCare backend issues them (email `subject@bench`).
fn mint_token(secret: &str, subject: &str, role: &str, valid_for: Duration) -> String {
    crate::tokens::mint(
        secret,
        &crate::tokens::Holder::new(subject, role).with_email(format!("{subject}@bench")),
        valid_for,
    )
}

/// Connects one socket to `/locations` of `url` (a node of `target`) with `token`.
async fn connect(
    target: &Target,
    url: &str,
    token: &str,
    event_mode: EventMode,
    event_buffer: usize,
) -> Result<(SocketClient, tokio::sync::mpsc::Receiver<ServerEvent>), ClientError> {
    let mut opts = ConnectOptions::locations(url, serde_json::json!({ "token": token }));
    opts.tls = target.tls.clone();
    opts.event_mode = event_mode;
    opts.event_buffer = event_buffer;
    opts.connect_timeout = Duration::from_secs(30);
    SocketClient::connect(opts).await
}

/// Adds what a connect failure most likely means.
fn explain_connect_error(err: ClientError, who: &str) -> anyhow::Error {
    let hint = match &err {
        ClientError::ConnectRefused { .. } => " (does --jwt-secret match the server's JWT_SECRET?)",
        ClientError::Io(e) if e.raw_os_error() == Some(24) => " (out of file descriptors: raise `ulimit -n`)",
        ClientError::Io(_) => " (is the server running at --url?)",
        ClientError::Certificate { problem: CertificateProblem::UnknownIssuer, .. } => {
            " (if its CA is a private one, pass its certificate with --ca-cert)"
        }
        _ => "",
    };
    anyhow::Error::new(err).context(format!("connecting {who}{hint}"))
}

/// Microseconds as milliseconds with 2 decimals, for text reports.
fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(["bench", "--jwt-secret", "s"].iter().chain(args.iter()))?;
        Plan::try_from(cli.bench)
    }

    #[test]
    fn defaults_describe_a_rate_run_on_loopback() {
        let Plan::Load(config) = plan(&[]).expect("valid") else {
            panic!("not a load plan");
        };
        assert_eq!(config.target.url, "http://127.0.0.1:3000");
        assert_eq!((config.drivers, config.watchers), (100, 10));
        assert_eq!(config.pace, Pace::Rate(1.0));
        assert_eq!(config.duration, Duration::from_secs(30));
        assert_eq!(config.warmup, Duration::from_secs(3));
    }

    #[test]
    fn max_rate_uses_in_flight() {
        let Plan::Load(config) = plan(&["--max-rate", "--in-flight", "4"]).expect("valid") else {
            panic!("not a load plan");
        };
        assert_eq!(config.pace, Pace::Max { in_flight: 4 });
    }

    #[test]
    fn idle_mode_needs_a_server_pid() {
        assert!(plan(&["--idle-connections", "10"]).is_err());
        let Plan::Idle(config) = plan(&["--idle-connections", "10", "--server-pid", "1"]).expect("valid") else {
            panic!("not an idle plan");
        };
        assert_eq!((config.connections, config.server_pid), (10, 1));
        assert_eq!(config.role, IdleRole::Driver);
    }

    #[test]
    fn non_loopback_targets_are_refused_by_default() {
        for url in ["http://10.0.0.5:3000", "http://example.com", "http://192.168.1.1"] {
            assert!(plan(&["--url", url]).is_err(), "{url}");
        }
        for url in ["http://localhost:3000", "http://127.0.0.2:1", "http://[::1]:3000/"] {
            assert!(plan(&["--url", url]).is_ok(), "{url}");
        }
        assert!(plan(&["--url", "http://10.0.0.5:3000", "--allow-non-loopback"]).is_ok());
    }

    #[test]
    fn https_targets_are_accepted_and_the_ca_file_is_read() {
        assert!(plan(&["--url", "https://localhost:8443"]).is_ok());
        assert!(plan(&["--url", "ftp://localhost"]).is_err());
        let err = plan(&["--url", "https://localhost", "--ca-cert", "/nonexistent/ca.pem"]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/ca.pem"), "{err:#}");
    }

    #[test]
    fn nonsense_rates_are_refused() {
        for rate in ["0", "-1", "NaN", "inf"] {
            assert!(plan(&["--rate", rate]).is_err(), "{rate}");
        }
    }
}

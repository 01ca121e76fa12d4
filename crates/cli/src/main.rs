//! `wecare-rt`: run the WeCare Realtime server, mint dev tokens, watch,
//! benchmark, back up and migrate. (The fleet simulator is `wecare-sim`.)
//!
//! `main` → `run` → exit code: flags and the contract's environment
//! variables are parsed by clap, turned into a validated `ServerConfig` in
//! one function ([`serve_config`]), and only then is anything started.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wecare_server::defaults as d;
use wecare_server::{AuthCheckConfig, ForwardConfig, Method, ServerConfig, split_list};

mod bench;
mod bench_store;
mod watch;

use wecare_cli::{progress, target, tokens};

/// mimalloc rather than glibc's malloc: every event allocates and frees
/// buffers on one runtime thread that another frees or reuses, and glibc's
/// arenas spent a fifth of the runtime threads' time in `malloc`,
/// `free` and `malloc_consolidate` at 15 000 fixes/s (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// File in the data folder holding the generated development secret.
const DEV_SECRET_FILE: &str = "dev-jwt-secret";

#[derive(Debug, Parser)]
#[command(
    name = "wecare-rt",
    version,
    about = "WeCare Realtime: durable live vehicle locations over Socket.io and REST"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (Socket.io `/locations` + REST on one port).
    Serve(Box<ServeArgs>),
    /// Mint a development access token signed with the configured secret.
    Token(TokenArgs),
    /// Load a running server with simulated drivers and watchers and print
    /// throughput, latency, and the server's CPU and memory per event.
    Bench(bench::BenchArgs),
    /// Show the fleet live in the terminal, as a watcher sees it.
    Watch(watch::WatchArgs),
    /// Write a consistent copy of the embedded store while the server runs
    /// (it holds every event acked before the copy began).
    Backup(BackupArgs),
    /// Move the embedded store into an empty PostgreSQL database: the same
    /// stream, every event at its seq, the dedup ids, latest state, cursors
    /// and revocations. Stop the server first; run again after an interruption.
    Migrate(MigrateArgs),
    /// Store a fleet's fixes in a new store and print the bytes kept per fix.
    BenchStore(bench_store::BenchStoreArgs),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// The target: `postgres://…` of an empty database.
    #[arg(long)]
    to: String,
    /// Folder of the embedded store.
    #[arg(long, env = "DATA_DIR", default_value = d::DATA_DIR)]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// The copy to write (must not exist yet).
    #[arg(long)]
    to: PathBuf,
    /// Folder of the embedded store.
    #[arg(long, env = "DATA_DIR", default_value = d::DATA_DIR)]
    data_dir: PathBuf,
    /// Set when the nodes run on PostgreSQL: then this command refuses and
    /// says what to use instead.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TCP port of the HTTP listener.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Bind address.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    host: String,
    /// Folder of the embedded store (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = d::DATA_DIR)]
    data_dir: PathBuf,
    /// `postgres://user@host:port/db`: keep the stream in PostgreSQL, shared
    /// by any number of nodes, instead of the embedded store in DATA_DIR.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// HS256 key of access tokens. Required in production; elsewhere a
    /// random one is generated and kept in DATA_DIR/dev-jwt-secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Comma-separated allowed origins (CORS and websocket upgrades).
    /// Required in production; default elsewhere: the local dev servers.
    #[arg(long, env = "ALLOWED_ORIGINS")]
    allowed_origins: Option<String>,
    /// `production` turns on the production checks.
    #[arg(long, env = "APP_ENV")]
    app_env: Option<String>,
    /// `production` turns on the production checks (as the deployment sets it).
    #[arg(long, env = "NODE_ENV")]
    node_env: Option<String>,
    /// Comma-separated roles that receive the stream.
    #[arg(long, env = "WATCHER_ROLES", default_value = d::WATCHER_ROLES)]
    watcher_roles: String,
    /// Seconds of grace on token `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY_SECONDS", default_value_t = d::JWT_LEEWAY_SECONDS)]
    jwt_leeway_seconds: u64,
    /// Engine.IO ping interval, ms.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = d::PING_INTERVAL_MS)]
    ping_interval_ms: u64,
    /// Engine.IO ping timeout, ms.
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = d::PING_TIMEOUT_MS)]
    ping_timeout_ms: u64,
    /// Sustained fixes per second per driver (bursts allow a 1000-fix batch).
    #[arg(long, env = "RATE_LIMIT_PER_SEC", default_value_t = d::RATE_LIMIT_PER_SEC)]
    rate_limit_per_sec: u32,
    /// How long a driver's last socket must be gone before it is offline, ms.
    #[arg(long, env = "PRESENCE_GRACE_MS", default_value_t = d::PRESENCE_GRACE_MS)]
    presence_grace_ms: u64,
    /// How long before `exp` a socket is sent `auth:expiring`, ms.
    #[arg(long, env = "AUTH_EXPIRY_WARNING_MS", default_value_t = d::AUTH_EXPIRY_WARNING_MS)]
    auth_expiry_warning_ms: u64,
    /// Hours of events kept in the stream (fractions allowed, e.g. 0.001).
    #[arg(long, env = "RETENTION_HOURS", default_value_t = d::RETENTION_HOURS)]
    retention_hours: f64,
    /// Service secret of POST /api/realtime/notify (route off when unset).
    #[arg(long, env = "NOTIFY_SECRET", hide_env_values = true)]
    notify_secret: Option<String>,
    /// Folder of the built Map Command page, served at `/`.
    #[arg(long, env = "WEB_DIR", default_value = "web/dist")]
    web_dir: PathBuf,
    /// How long a new connection may take to join /locations, ms.
    #[arg(long, env = "HANDSHAKE_TIMEOUT_MS", default_value_t = d::HANDSHAKE_TIMEOUT_MS)]
    handshake_timeout_ms: u64,
    /// Sessions open at once that have not joined /locations yet; one more
    /// handshake is answered 503 with Retry-After.
    #[arg(long, env = "MAX_PENDING_SESSIONS", default_value_t = d::MAX_PENDING_SESSIONS)]
    max_pending_sessions: usize,
    /// Sockets one user may hold open; opening one more closes the oldest.
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER", default_value_t = d::MAX_CONNECTIONS_PER_USER)]
    max_connections_per_user: usize,
    /// On SIGTERM: how long finishing the accepted events and closing the
    /// sockets may take, ms.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = d::SHUTDOWN_GRACE_MS)]
    shutdown_grace_ms: u64,
    /// Forward each driver's newest position to the WeCare backend: a URL
    /// template, `{driverId}` replaced (URL-encoded), e.g.
    /// http://backend:4000/api/driver-locations/{driverId}. Off when unset.
    #[arg(long, env = "FORWARD_URL")]
    forward_url: Option<String>,
    /// HTTP method of forwarded positions.
    #[arg(long, env = "FORWARD_METHOD", default_value = d::FORWARD_METHOD)]
    forward_method: String,
    /// Bearer token of forwarded positions; unset: a short-lived service
    /// token signed with JWT_SECRET ({ id: "wecare-realtime", role: FORWARD_TOKEN_ROLE }).
    #[arg(long, env = "FORWARD_TOKEN", hide_env_values = true)]
    forward_token: Option<String>,
    /// Role of the minted service token: one the backend's driver-locations
    /// route admits (the WeCare backend: admin, DEVELOPER, OFFICER,
    /// radio_center, driver, EXECUTIVE).
    #[arg(long, env = "FORWARD_TOKEN_ROLE", default_value = d::FORWARD_TOKEN_ROLE)]
    forward_token_role: String,
    /// At most one forward per driver per this many ms.
    #[arg(long, env = "FORWARD_MIN_INTERVAL_MS", default_value_t = d::FORWARD_MIN_INTERVAL_MS)]
    forward_min_interval_ms: u64,
    /// Check tokens with the WeCare backend (e.g. its GET /api/auth/me):
    /// 401/403 means revoked. Off when unset.
    #[arg(long, env = "AUTH_CHECK_URL")]
    auth_check_url: Option<String>,
    /// How long a backend answer holds; live sockets are checked again after, ms.
    #[arg(long, env = "AUTH_CHECK_INTERVAL_MS", default_value_t = d::AUTH_CHECK_INTERVAL_MS)]
    auth_check_interval_ms: u64,
    /// When the backend cannot be reached: `open` judges tokens by signature
    /// and exp alone, `closed` refuses them.
    #[arg(long, env = "AUTH_CHECK_FAIL", default_value = d::AUTH_CHECK_FAIL, value_parser = ["open", "closed"])]
    auth_check_fail: String,
    /// Most calls a minute to the WeCare backend, forwards and token checks
    /// together (its limiter allows 100 a minute per client address).
    #[arg(long, env = "BACKEND_MAX_CALLS_PER_MIN", default_value_t = d::BACKEND_MAX_CALLS_PER_MIN)]
    backend_max_calls_per_min: u32,
    /// Most open TCP connections; one more is answered 503 and closed.
    /// 0: the file-descriptor limit (raised to its hard limit) less 256.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = d::MAX_CONNECTIONS)]
    max_connections: usize,
    /// How long a request head may take to arrive, and a keep-alive
    /// connection may sit idle between requests, ms.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = d::HEADER_READ_TIMEOUT_MS)]
    header_read_timeout_ms: u64,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// Role claim: driver, officer, admin, ...
    #[arg(long, default_value = "officer")]
    role: String,
    /// Subject (`id` claim).
    #[arg(long, default_value = "dev-user")]
    user_id: String,
    /// `driver_id` claim (drivers; defaults to the user id).
    #[arg(long)]
    driver_id: Option<String>,
    /// `email` claim.
    #[arg(long)]
    email: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 8 * 3600)]
    ttl: u64,
    /// Signing secret; defaults to the dev secret the server generated in DATA_DIR.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Data folder holding the generated dev secret.
    #[arg(long, env = "DATA_DIR", default_value = d::DATA_DIR)]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wecare-rt: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Token(args) => {
            println!("{}", token(&args)?);
            Ok(())
        }
        Command::Bench(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(bench::run(args))
        }
        Command::Watch(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(watch::run(args))
        }
        Command::Backup(args) => backup(&args),
        Command::Migrate(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(migrate(&args))
        }
        Command::BenchStore(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(bench_store::run(&args))
        }
    }
}

async fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} events {wide_bar} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let r = wecare_server::migrate_to_postgres(&args.data_dir, &args.to, &mut progress)
        .await
        .with_context(|| format!("moving the store in {} to PostgreSQL", args.data_dir.display()))?;
    bar.finish_and_clear();
    let rate = r.events as f64 / r.took.as_secs_f64().max(1e-3);
    println!(
        "migrated stream {} up to seq {}: {} of {} events in {:.1} s ({:.0} events/s){}",
        r.stream_id,
        r.head,
        r.events,
        r.total,
        r.took.as_secs_f64(),
        rate,
        if r.resumed { "; went on from an interrupted run" } else { "" }
    );
    println!("start the nodes with DATABASE_URL set to this database (docs/deploy.md \"Moving to PostgreSQL\")");
    Ok(())
}

fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    if non_empty(args.database_url.clone()).is_some() {
        bail!(
            "DATABASE_URL is set: back PostgreSQL up with its own tools (pg_dump, or pg_basebackup with WAL archiving); see docs/deploy.md \"Backups\""
        );
    }
    let r = wecare_server::backup(&args.data_dir, &args.to)
        .with_context(|| format!("backing up the store in {}", args.data_dir.display()))?;
    println!(
        "backup {}: {:.1} MiB, stream {} up to seq {}, in {:.1} s",
        r.path.display(),
        r.bytes as f64 / (1024.0 * 1024.0),
        r.stream_id,
        r.head,
        r.took.as_secs_f64()
    );
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("wecare=info,tower_http=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// The shortest `JWT_SECRET` production accepts (HS256's key is as long as its hash).
const MIN_SECRET_BYTES: usize = 32;

/// Flags → validated config, with the production rules (contract §1).
fn serve_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    // " production" or "Production" is production too: a stray space must
    // not switch the checks off.
    let production = [&args.app_env, &args.node_env]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| v.trim().eq_ignore_ascii_case("production")));
    let secret = non_empty(args.jwt_secret.clone());
    let origins = non_empty(args.allowed_origins.clone());
    if production && secret.is_none() {
        bail!("JWT_SECRET is required in production (APP_ENV/NODE_ENV=production)");
    }
    if production && secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET_BYTES) {
        bail!(
            "JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes in production: a short HS256 key can be guessed offline from any token"
        );
    }
    if production && origins.as_deref().is_none_or(|o| split_list(o).is_empty()) {
        bail!(
            "ALLOWED_ORIGINS is required in production (APP_ENV/NODE_ENV=production), and must name at least one origin"
        );
    }
    let jwt_secret = match secret {
        Some(s) => s.into_bytes(),
        None => dev_secret(&args.data_dir)?.into_bytes(),
    };
    if !(args.retention_hours.is_finite() && args.retention_hours > 0.0) {
        bail!("RETENTION_HOURS must be a positive number of hours");
    }
    let watcher_roles: Vec<String> = split_list(&args.watcher_roles).iter().map(|r| r.to_ascii_lowercase()).collect();
    let forward = forward_config(args)?;
    let auth_check = match non_empty(args.auth_check_url.clone()) {
        None => None,
        Some(url) if url.starts_with("http://") => Some(AuthCheckConfig {
            url,
            interval: Duration::from_millis(args.auth_check_interval_ms.max(1)),
            fail_open: args.auth_check_fail == "open",
        }),
        Some(_) => bail!("AUTH_CHECK_URL must be an http:// URL (terminate TLS in front of the backend)"),
    };
    let database_url = non_empty(args.database_url.clone());
    if let Some(url) = &database_url
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        bail!("DATABASE_URL must be a postgres:// URL");
    }
    Ok(ServerConfig {
        data_dir: args.data_dir.clone(),
        database_url,
        jwt_secret,
        allowed_origins: split_list(origins.as_deref().unwrap_or(d::DEV_ORIGINS)),
        watcher_roles,
        jwt_leeway_secs: args.jwt_leeway_seconds,
        ping_interval: Duration::from_millis(args.ping_interval_ms.max(1)),
        ping_timeout: Duration::from_millis(args.ping_timeout_ms.max(1)),
        rate_limit_per_sec: args.rate_limit_per_sec.max(1),
        presence_grace: Duration::from_millis(args.presence_grace_ms),
        auth_expiry_warning: Duration::from_millis(args.auth_expiry_warning_ms),
        retention: Duration::from_secs_f64(args.retention_hours * 3600.0),
        notify_secret: non_empty(args.notify_secret.clone()),
        max_connections_per_user: args.max_connections_per_user.max(1),
        handshake_timeout: Duration::from_millis(args.handshake_timeout_ms.max(100)),
        max_pending_sessions: args.max_pending_sessions.max(1),
        web_dir: Some(args.web_dir.clone()),
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        forward,
        auth_check,
        backend_max_calls_per_min: args.backend_max_calls_per_min.max(1),
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(100)),
        socket_queue: ServerConfig::default().socket_queue,
    })
}

/// The `FORWARD_*` settings, checked; `None` when forwarding is off.
fn forward_config(args: &ServeArgs) -> anyhow::Result<Option<ForwardConfig>> {
    let Some(url) = non_empty(args.forward_url.clone()) else {
        return Ok(None);
    };
    if !url.starts_with("http://") {
        bail!("FORWARD_URL must be an http:// URL (terminate TLS in front of the backend)");
    }
    let method: Method =
        args.forward_method.trim().to_ascii_uppercase().parse().context("FORWARD_METHOD is not an HTTP method")?;
    Ok(Some(ForwardConfig {
        url,
        method,
        token: non_empty(args.forward_token.clone()),
        token_role: non_empty(Some(args.forward_token_role.clone()))
            .context("FORWARD_TOKEN_ROLE must not be empty")?
            .trim()
            .to_string(),
        min_interval: Duration::from_millis(args.forward_min_interval_ms),
    }))
}

/// The development secret: generated once, kept in the data folder so that
/// `wecare-rt token` signs tokens this server accepts.
fn dev_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(DEV_SECRET_FILE);
    if let Ok(s) = std::fs::read_to_string(&path)
        && !s.trim().is_empty()
    {
        tracing::warn!(path = %path.display(), "JWT_SECRET is not set: using the development secret in the data folder (never do this in production)");
        return Ok(s.trim().to_string());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    getrandom_bytes(&mut bytes)?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(path = %path.display(), "JWT_SECRET is not set: generated a random development secret (never do this in production)");
    Ok(secret)
}

fn getrandom_bytes(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)).context("reading /dev/urandom")
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let config = serve_config(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        wecare_server::serve(listener, config, shutdown).await.context("server failed")
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

fn token(args: &TokenArgs) -> anyhow::Result<String> {
    let secret = match non_empty(args.jwt_secret.clone()) {
        Some(s) => s,
        None => std::fs::read_to_string(args.data_dir.join(DEV_SECRET_FILE))
            .map(|s| s.trim().to_string())
            .with_context(|| {
                format!("no JWT_SECRET and no dev secret in {} (start the server once first)", args.data_dir.display())
            })?,
    };
    let holder = tokens::Holder {
        id: &args.user_id,
        role: &args.role,
        email: args.email.clone(),
        driver_id: args.driver_id.as_deref(),
    };
    Ok(tokens::mint(&secret, &holder, Duration::from_secs(args.ttl)))
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["wecare-rt", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Serve(a) => *a,
            _ => unreachable!("parsed a serve command"),
        }
    }

    #[test]
    fn production_requires_secret_and_origins() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let e = serve_config(&args(&["--app-env", "production", "--allowed-origins", "https://x", "--data-dir", d]))
            .unwrap_err();
        assert!(e.to_string().contains("JWT_SECRET"));
        let long = "0123456789abcdef0123456789abcdef";
        let e = serve_config(&args(&["--node-env", "production", "--jwt-secret", long, "--data-dir", d])).unwrap_err();
        assert!(e.to_string().contains("ALLOWED_ORIGINS"));
        assert!(
            serve_config(&args(&["--node-env", "production", "--jwt-secret", long, "--allowed-origins", "https://x"]))
                .is_ok()
        );
    }

    #[test]
    fn production_refuses_a_short_secret_and_an_empty_origin_list_however_it_is_spelled() {
        let long = "0123456789abcdef0123456789abcdef";
        for env in [" production", "Production ", "PRODUCTION"] {
            let e = serve_config(&args(&["--app-env", env, "--jwt-secret", "a", "--allowed-origins", "https://x"]))
                .unwrap_err();
            assert!(e.to_string().contains("at least 32 bytes"), "{env:?}: {e}");
            for origins in [",", " , ", ""] {
                let e = serve_config(&args(&["--node-env", env, "--jwt-secret", long, "--allowed-origins", origins]))
                    .unwrap_err();
                assert!(e.to_string().contains("ALLOWED_ORIGINS"), "{env:?} {origins:?}: {e}");
            }
        }
    }

    #[test]
    fn dev_secret_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let a = serve_config(&args(&["--data-dir", d])).unwrap();
        let b = serve_config(&args(&["--data-dir", d])).unwrap();
        assert_eq!(a.jwt_secret, b.jwt_secret);
        assert_eq!(a.jwt_secret.len(), 64);
    }

    #[test]
    fn the_flags_defaults_are_the_librarys_defaults() {
        // clap's defaults alone: no flag but the secret, no environment.
        let command = ServeArgs::augment_args(clap::Command::new("serve")).mut_args(|a| a.env(None::<&str>));
        let matches = command.try_get_matches_from(["serve", "--jwt-secret", "s"]).expect("parses");
        let from_flags = serve_config(&ServeArgs::from_arg_matches(&matches).expect("serve args")).expect("valid");
        let library = ServerConfig { jwt_secret: b"s".to_vec(), ..ServerConfig::default() };
        // Debug shows every setting but the secret and the page folder.
        assert_eq!(format!("{from_flags:?}"), format!("{library:?}"));
        assert_eq!(from_flags.jwt_secret, library.jwt_secret);
    }

    #[test]
    fn fractional_retention_hours() {
        let c = serve_config(&args(&["--jwt-secret", "s", "--retention-hours", "0.001"])).unwrap();
        assert_eq!(c.retention, Duration::from_millis(3600));
        assert!(serve_config(&args(&["--jwt-secret", "s", "--retention-hours", "0"])).is_err());
    }
}

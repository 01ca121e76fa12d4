//! `wecare-rt watch`: the fleet in the terminal through the SDK
//! [`Watcher`] — a table of drivers (age of the last fix, status,
//! presence, position) and the connection state, redrawn about once a
//! second; `--once` prints one snapshot and exits.

mod fleet;

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use time::OffsetDateTime;
use wecare_client::{TokenError, Watcher, WatcherConfig, WatcherConnection, WatcherEvent};

use crate::target::{TlsArgs, check_tls, url_host};
use crate::tokens::{self, Holder};
use fleet::Fleet;

/// A live view of the fleet.
#[derive(clap::Args, Debug)]
pub(crate) struct WatchArgs {
    /// Base URL of the server, http:// or https://.
    #[arg(long, env = "WATCH_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// HS256 key the server verifies tokens with (its JWT_SECRET).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Role of the watcher token (one of the server's WATCHER_ROLES).
    #[arg(long, env = "WATCH_ROLE", default_value = "officer")]
    role: String,
    /// Print one snapshot table and exit.
    #[arg(long)]
    once: bool,
    /// Seconds to wait for the first snapshot with --once. Default 15.
    #[arg(long, env = "WATCH_TIMEOUT", default_value_t = 15.0)]
    timeout: f64,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long, env = "WATCH_DURATION")]
    duration: Option<f64>,
}

/// Runs the view until Ctrl-C, `--duration`, or after one table (`--once`).
///
/// # Errors
/// No snapshot within `--timeout` (with `--once`) or bad flags.
pub(crate) async fn run(args: WatchArgs) -> anyhow::Result<()> {
    url_host(&args.url)?;
    ensure!(!args.jwt_secret.is_empty(), "--jwt-secret must not be empty");
    ensure!(args.timeout.is_finite() && args.timeout > 0.0, "--timeout must be a positive number of seconds");
    let (secret, role) = (args.jwt_secret.clone(), args.role.clone());
    let provider = move || {
        // Valid for an hour: the provider mints a fresh one for every
        // connect, refresh and HTTP request.
        let token = tokens::mint(
            &secret,
            &Holder::new("wecare-rt-watch", &role).with_email("watch@wecare-rt"),
            Duration::from_secs(3600),
        );
        async move { Ok::<_, TokenError>(token) }
    };
    let url = args.url.trim_end_matches('/');
    let tls = args.tls.to_config()?;
    check_tls(url, &tls).await?;
    let mut config = WatcherConfig::new(url, provider);
    config.tls = tls;
    config.long_poll_after = Duration::from_secs(3);
    let (watcher, mut events) = Watcher::start(config).await.context("starting the watcher")?;
    let connection = watcher.connection();
    let mut fleet = Fleet::default();
    let result = if args.once {
        once(&mut fleet, &mut events, Duration::from_secs_f64(args.timeout)).await
    } else {
        live(&mut fleet, &mut events, &connection, args.duration.map(Duration::from_secs_f64)).await
    };
    watcher.shutdown().await;
    result
}

async fn once(
    fleet: &mut Fleet,
    events: &mut tokio::sync::mpsc::Receiver<WatcherEvent>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let first = tokio::time::timeout(timeout, async {
        while let Some(event) = events.recv().await {
            if let WatcherEvent::Snapshot { .. } = event {
                return Some(event);
            }
        }
        None
    })
    .await;
    match first {
        Ok(Some(snapshot)) => {
            fleet.apply(&snapshot);
            println!("{}", fleet.render(OffsetDateTime::now_utc()));
            Ok(())
        }
        Ok(None) => bail!("the watcher stopped before a snapshot arrived"),
        Err(_) => bail!("no snapshot within {:.0} s (is the server running at --url?)", timeout.as_secs_f64()),
    }
}

async fn live(
    fleet: &mut Fleet,
    events: &mut tokio::sync::mpsc::Receiver<WatcherEvent>,
    connection: &tokio::sync::watch::Receiver<WatcherConnection>,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let mut redraw = tokio::time::interval(Duration::from_secs(1));
    let end = tokio::time::sleep(duration.unwrap_or(Duration::from_secs(86_400 * 365)));
    tokio::pin!(end);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            () = &mut end => break,
            _ = &mut ctrl_c => break,
            event = events.recv() => match event {
                Some(event) => fleet.apply(&event),
                None => bail!("the watcher stopped"),
            },
            _ = redraw.tick() => {
                let state = *connection.borrow();
                let table = fleet.render(OffsetDateTime::now_utc());
                if terminal {
                    // Clear the screen and home the cursor, then redraw.
                    print!("\x1b[2J\x1b[H");
                }
                println!("connection: {}\n{table}\n", describe(state));
            }
        }
    }
    Ok(())
}

fn describe(state: WatcherConnection) -> String {
    match state {
        WatcherConnection::Disconnected => "disconnected".to_owned(),
        WatcherConnection::Connecting { attempt } => format!("connecting (attempt {attempt})"),
        WatcherConnection::Connected => "connected".to_owned(),
        WatcherConnection::LongPolling => "long polling (socket down)".to_owned(),
    }
}

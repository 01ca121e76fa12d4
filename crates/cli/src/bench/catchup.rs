//! The catch-up run: one watcher resumes with `lastSeq` far behind the head
//! and the time until it is live again (`sync:complete`) is measured, with
//! the number of events replayed and a check that they came in order.

use std::time::Duration;

use anyhow::{Context, bail};

use tokio::time::Instant;
use wecare_client::{ConnectOptions, EventMode, ServerEvent, SocketClient};
use wecare_proto::Seq;
use wecare_proto::event;
use wecare_proto::payload::{EventPlace, SyncComplete};

use super::{CatchUpConfig, mint_token, spinner};

/// Runs the catch-up bench and prints its report.
pub(super) async fn run(config: CatchUpConfig) -> anyhow::Result<()> {
    let token = mint_token(&config.target.jwt_secret, "bench-catch-up", "officer", Duration::from_secs(3600));
    let auth = serde_json::json!({ "token": token, "lastSeq": config.from });
    let mut opts = ConnectOptions::locations(&config.target.url, auth);
    opts.tls = config.target.tls.clone();
    opts.event_mode = EventMode::Raw;
    opts.event_buffer = 4096;
    let started = Instant::now();
    let (_client, mut events) = SocketClient::connect(opts).await.context("connecting the watcher")?;
    let bar = spinner();
    let mut last = config.from;
    let mut received = 0u64;
    let deadline = started + Duration::from_secs(600);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await.context("no sync:complete in 600 s")?;
        match event {
            Some(ServerEvent::Raw(raw)) if raw.name() == event::SYNC_COMPLETE => {
                let done: SyncComplete = raw.parse_data().context("sync:complete payload")?;
                let elapsed = started.elapsed();
                bar.finish_and_clear();
                let rate = received as f64 / elapsed.as_secs_f64().max(1e-9);
                println!(
                    "catch-up from seq {} to {}: {} events in {:.2} s ({rate:.0} events/s)",
                    config.from,
                    done.to_seq.0,
                    received,
                    elapsed.as_secs_f64()
                );
                println!(
                    "in order, no gap    {}",
                    if received == done.replayed && last == done.to_seq.0 { "yes" } else { "NO" }
                );
                return Ok(());
            }
            Some(ServerEvent::Raw(raw)) if raw.name() == event::DRIVERS_SNAPSHOT => {
                bail!("the server sent a snapshot: lastSeq {} is older than retention or beyond the head", config.from)
            }
            Some(ServerEvent::Raw(raw)) => {
                if let Ok(EventPlace { seq: Seq(seq), .. }) = raw.parse_data() {
                    if seq != last + 1 {
                        bail!("gap or duplicate: seq {seq} after {last}");
                    }
                    last = seq;
                    received += 1;
                    if received.is_multiple_of(10_000) {
                        bar.set_message(format!("replayed {received} (seq {seq})"));
                    }
                }
            }
            Some(ServerEvent::Disconnected { reason }) => bail!("disconnected during catch-up: {reason}"),
            Some(_) => {}
            None => bail!("socket closed during catch-up"),
        }
    }
}

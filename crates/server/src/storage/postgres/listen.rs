//! The `LISTEN` connection: wake-ups for the tailer (`wecare_stream`) and
//! messages between nodes (`wecare_bus`). NOTIFY is a hint, never the only
//! way anything arrives: after a reconnect the tailer is woken to read what
//! it may have missed, and it also reads on a timer.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Config, NoTls, Notification};
use tokio_util::sync::CancellationToken;

use crate::storage::StorageError;

/// Longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs until `stop`: keeps a connection that listens on `channels` and
/// hands every notification to `out`; `on_connect` runs after each
/// (re)connect, once the channels are listened to.
pub(crate) async fn run(
    config: Config,
    channels: &'static [&'static str],
    out: mpsc::Sender<Notification>,
    on_connect: impl Fn(),
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = listen_once(&config, channels, &out, &on_connect);
        tokio::select! {
            r = session => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "postgres LISTEN connection lost; reconnecting");
                }
            }
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn listen_once(
    config: &Config,
    channels: &[&str],
    out: &mpsc::Sender<Notification>,
    on_connect: &impl Fn(),
) -> Result<(), StorageError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::channel::<Result<AsyncMessage, tokio_postgres::Error>>(256);
    // The connection must be polled for the client to work at all; its
    // messages are the notifications.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            let end = m.is_err();
            if tx.send(m).await.is_err() || end {
                break;
            }
        }
    });
    let sql: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
    client.batch_execute(&sql).await?;
    on_connect();
    let result = loop {
        match rx.recv().await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if out.send(n).await.is_err() {
                    break Ok(());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(e.into()),
            None => break Err(StorageError::Database("LISTEN connection closed".into())),
        }
    };
    driver.abort();
    result
}

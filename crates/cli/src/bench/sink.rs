//! A stand-in for the WeCare backend's forwarding route, in the bench
//! process: every request is answered `200 {}` after a fixed delay (the
//! backend's latency), over keep-alive HTTP/1.1, and counted. It measures
//! what forwarding costs the server, not what the backend does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Where the sink listens and how slowly it answers.
#[derive(Debug, Clone)]
pub(crate) struct SinkConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) delay: Duration,
}

/// A running sink; it stops with the bench's stop token.
#[derive(Debug)]
pub(crate) struct Sink {
    requests: Arc<AtomicU64>,
}

impl Sink {
    pub(crate) async fn start(config: SinkConfig, stop: CancellationToken) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.addr).await.with_context(|| format!("--sink {}", config.addr))?;
        let requests = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    () = stop.cancelled() => return,
                };
                if let Ok((tcp, _)) = conn {
                    tokio::spawn(serve(tcp, config.delay, Arc::clone(&counted), stop.clone()));
                }
            }
        });
        Ok(Self { requests })
    }

    /// Requests answered so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Answers the requests of one connection, one after another.
async fn serve(tcp: TcpStream, delay: Duration, requests: Arc<AtomicU64>, stop: CancellationToken) {
    let _ = tcp.set_nodelay(true);
    let (read, mut write) = tcp.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        // Request line and headers, up to the empty line.
        loop {
            line.clear();
            let n = tokio::select! {
                n = read.read_line(&mut line) => n.unwrap_or(0),
                () = stop.cancelled() => 0,
            };
            if n == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length.min(1 << 20)];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        tokio::time::sleep(delay).await;
        requests.fetch_add(1, Ordering::Relaxed);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

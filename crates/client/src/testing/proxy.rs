//! [`FaultProxy`]: a loopback TCP proxy in front of the server that injects
//! faults on command — cut every connection, cut one mid-frame, black-hole,
//! delay, refuse websocket upgrades — and heals again.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Largest request head inspected for `Upgrade: websocket`.
const MAX_HEAD: usize = 16 * 1024;
const REFUSAL: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// The faults in force. Cuts are generations: a connection opened at
/// generation `g` ends when the counter passes `g`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Faults {
    cut: u64,
    cut_mid_frame: u64,
    black_hole: bool,
    refuse_websockets: bool,
    delay: Duration,
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub accepted: AtomicU64,
    /// Websocket upgrades answered with `403`.
    pub refused_upgrades: AtomicU64,
    /// Connections ended by a cut (either kind).
    pub cut: AtomicU64,
}

/// A fault-injecting TCP proxy on `127.0.0.1:0` forwarding to `upstream`.
/// Every control takes effect at once on all connections (open and future)
/// and lasts until [`heal`](Self::heal). Dropping the proxy closes its
/// listener and every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    stats: Arc<ProxyStats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and starts forwarding to `upstream`.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::default());
        let stats = Arc::new(ProxyStats::default());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            upstream,
            faults.clone(),
            Arc::clone(&stats),
            shutdown.clone(),
            tracker.clone(),
        ));
        Ok(FaultProxy { addr, faults, stats, shutdown, tracker })
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to give clients instead of the server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// Closes every open connection now (new ones are accepted).
    pub fn cut_all(&self) {
        self.faults.send_modify(|f| f.cut += 1);
    }

    /// Every open connection forwards only part (half) of its next read, in
    /// either direction, and is then closed: a frame torn in the middle.
    pub fn cut_mid_frame(&self) {
        self.faults.send_modify(|f| f.cut_mid_frame += 1);
    }

    /// Connections are still accepted, but nothing is forwarded in either
    /// direction (bytes wait in the socket buffers) until [`heal`](Self::heal).
    pub fn black_hole(&self) {
        self.faults.send_modify(|f| f.black_hole = true);
    }

    /// Holds every forwarded chunk back for `delay` (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        self.faults.send_modify(|f| f.delay = delay);
    }

    /// Answers `403` to requests carrying `Upgrade: websocket`; plain HTTP
    /// (polling, REST) still passes.
    pub fn refuse_websockets(&self) {
        self.faults.send_modify(|f| f.refuse_websockets = true);
    }

    /// Lifts the black hole, the delay and the upgrade refusal.
    pub fn heal(&self) {
        self.faults.send_modify(|f| {
            f.black_hole = false;
            f.refuse_websockets = false;
            f.delay = Duration::ZERO;
        });
    }

    /// Closes the listener and every connection and waits for them.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    stats: Arc<ProxyStats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else { continue };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let conn = Connection { faults: faults.subscribe(), stats: Arc::clone(&stats) };
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                r = conn.run(client, upstream) => if let Err(e) = r { debug!(error = %e, "proxy connection ended") },
            }
        });
    }
}

struct Connection {
    faults: watch::Receiver<Faults>,
    stats: Arc<ProxyStats>,
}

impl Connection {
    async fn run(self, mut client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
        let opened = self.faults.borrow().clone();
        let head = read_head(&mut client).await?;
        if self.faults.borrow().refuse_websockets && is_websocket_upgrade(&head) {
            self.stats.refused_upgrades.fetch_add(1, Ordering::Relaxed);
            client.write_all(REFUSAL).await?;
            return client.shutdown().await;
        }
        let server = TcpStream::connect(upstream).await?;
        let _ = server.set_nodelay(true);
        let _ = client.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let up = pump(client_read, server_write, head, self.faults.clone(), opened.cut_mid_frame);
        let down = pump(server_read, client_write, Vec::new(), self.faults.clone(), opened.cut_mid_frame);
        let mut faults = self.faults.clone();
        let cut = faults.wait_for(|f| f.cut != opened.cut);
        tokio::select! {
            r = up => r.map(|cut| self.count(cut)),
            r = down => r.map(|cut| self.count(cut)),
            _ = cut => {
                self.count(true);
                Ok(())
            }
        }
    }

    fn count(&self, cut: bool) {
        if cut {
            self.stats.cut.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads until the end of an HTTP request head (or EOF, or [`MAX_HEAD`]),
/// returning every byte read so far so it can be forwarded unchanged.
async fn read_head(client: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

fn is_websocket_upgrade(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| name.trim() == "upgrade" && value.contains("websocket"))
    })
}

/// Copies `from` → `to` under the faults; `Ok(true)` when a mid-frame cut
/// ended it, `Ok(false)` on EOF.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    first: Vec<u8>,
    mut faults: watch::Receiver<Faults>,
    mid_frame_generation: u64,
) -> io::Result<bool> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut chunk = first;
    loop {
        if !chunk.is_empty() {
            // A black hole holds the chunk (and stops reading) until healed.
            let _ = faults.wait_for(|f| !f.black_hole).await;
            let now = faults.borrow().clone();
            if now.cut_mid_frame != mid_frame_generation {
                let part = chunk.len().div_ceil(2).min(chunk.len().saturating_sub(1)).max(1);
                to.write_all(&chunk[..part]).await?;
                to.flush().await?;
                return Ok(true);
            }
            if !now.delay.is_zero() {
                tokio::time::sleep(now.delay).await;
            }
            to.write_all(&chunk).await?;
            to.flush().await?;
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(false);
        }
        chunk.clear();
        chunk.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(5);

    /// An echo server: writes back whatever it reads.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn read_some(s: &mut TcpStream) -> Vec<u8> {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf)).await.expect("read in time").unwrap();
        buf[..n].to_vec()
    }

    async fn connected(proxy: &FaultProxy) -> TcpStream {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(read_some(&mut s).await, b"GET / HTTP/1.1\r\n\r\n");
        s
    }

    #[tokio::test]
    async fn forwards_both_ways_until_cut() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = connected(&proxy).await;
        s.write_all(b"hello").await.unwrap();
        assert_eq!(read_some(&mut s).await, b"hello");
        proxy.cut_all();
        assert!(read_some(&mut s).await.is_empty(), "closed by the cut");
        let mut again = connected(&proxy).await;
        again.write_all(b"x").await.unwrap();
        assert_eq!(read_some(&mut again).await, b"x", "new connections pass after a cut");
        assert_eq!(proxy.stats().cut.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_mid_frame_cut_forwards_part_of_the_next_read_then_closes() {
        // An upstream that records everything it receives until EOF.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; b"GET / HTTP/1.1\r\n\r\n".len()];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(b"ready").await.unwrap();
            let _ = s.read_to_end(&mut got).await;
            let _ = tx.send(got);
        });
        let proxy = FaultProxy::start(upstream).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(read_some(&mut s).await, b"ready");
        proxy.cut_mid_frame();
        s.write_all(b"0123456789").await.unwrap();
        assert!(read_some(&mut s).await.is_empty(), "the client side is closed");
        let got = tokio::time::timeout(PATIENCE, rx).await.unwrap().unwrap();
        let head = b"GET / HTTP/1.1\r\n\r\n".len();
        assert!(got.len() > head && got.len() < head + 10, "a torn frame: {:?}", String::from_utf8_lossy(&got));
        assert_eq!(proxy.stats().cut.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_black_hole_holds_traffic_until_healed() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = connected(&proxy).await;
        proxy.black_hole();
        s.write_all(b"held").await.unwrap();
        let mut buf = [0u8; 16];
        let held = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(held.is_err(), "nothing may pass a black hole");
        // A connection opened during the black hole is accepted but mute too.
        let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
        late.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        proxy.heal();
        assert_eq!(read_some(&mut s).await, b"held");
        assert_eq!(read_some(&mut late).await, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn websocket_upgrades_are_refused_while_told_and_plain_http_passes() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        proxy.refuse_websockets();
        let upgrade = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(upgrade).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(PATIENCE, s.read_to_end(&mut reply)).await.unwrap().unwrap();
        assert!(reply.starts_with(b"HTTP/1.1 403"), "{}", String::from_utf8_lossy(&reply));
        connected(&proxy).await;
        proxy.heal();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(upgrade).await.unwrap();
        assert_eq!(read_some(&mut s).await, upgrade.to_vec(), "allowed again");
        assert_eq!(proxy.stats().refused_upgrades.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_delay_holds_each_chunk_back() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = connected(&proxy).await;
        proxy.set_delay(Duration::from_millis(200));
        let start = std::time::Instant::now();
        s.write_all(b"slow").await.unwrap();
        assert_eq!(read_some(&mut s).await, b"slow");
        assert!(start.elapsed() >= Duration::from_millis(400), "delayed both ways: {:?}", start.elapsed());
    }
}

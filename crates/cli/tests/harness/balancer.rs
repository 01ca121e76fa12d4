//! A round-robin TCP balancer on loopback: what a load balancer in front of
//! the cluster does for websocket-only clients. Each new connection goes to
//! the next node that accepts one (a dead node refuses, so it is skipped);
//! bytes are copied both ways until either side closes, so a node that dies
//! cuts its clients, who reconnect through the balancer to a live node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long one node may take to accept before the next is tried.
const CONNECT_LIMIT: Duration = Duration::from_millis(500);

/// The balancer; stops (and cuts every connection) when dropped.
pub struct Balancer {
    pub addr: SocketAddr,
    pub url: String,
    /// Connections handed to each backend so far.
    routed: Arc<Vec<AtomicUsize>>,
    task: JoinHandle<()>,
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routed: Arc<Vec<AtomicUsize>> = Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let task = tokio::spawn(accept(listener, backends, Arc::clone(&routed)));
        Balancer { addr, url: format!("http://{addr}"), routed, task }
    }

    /// Connections handed to each backend so far.
    pub fn routed(&self) -> Vec<usize> {
        self.routed.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every copy.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, backends: Vec<SocketAddr>, routed: Arc<Vec<AtomicUsize>>) {
    let mut next = 0usize;
    let mut copies = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let first = next;
                next = next.wrapping_add(1);
                copies.spawn(relay(client, backends.clone(), first, Arc::clone(&routed)));
            }
            Some(_) = copies.join_next(), if !copies.is_empty() => {}
        }
    }
}

async fn relay(mut client: TcpStream, backends: Vec<SocketAddr>, first: usize, routed: Arc<Vec<AtomicUsize>>) {
    let n = backends.len();
    for k in 0..n {
        let i = (first + k) % n;
        let Ok(Ok(mut upstream)) = tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(backends[i])).await else {
            continue;
        };
        routed[i].fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // No node accepts: the client sees its connection close and retries.
}

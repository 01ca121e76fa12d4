//! Several `wecare-rt serve` nodes on one PostgreSQL database of the
//! test's own (contract §11).

use std::net::SocketAddr;

use wecare_server::pg_testing::{PgServer, TestDb};

use super::{Server, get, start_server};

/// Nodes of one cluster. Fields drop in order: the nodes are killed
/// before their database is dropped, and that before a private PostgreSQL
/// instance stops.
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub db: TestDb,
    pub pg: PgServer,
}

/// The nodes' log filter: `WECARE_TEST_NODE_LOG` when set, else `default`
/// (errors only; `off` where the test makes errors on purpose — a stopped
/// database makes every node log several a second).
pub fn node_log(default: &str) -> String {
    std::env::var("WECARE_TEST_NODE_LOG").unwrap_or_else(|_| default.to_owned())
}

impl Cluster {
    /// Starts `n` nodes (in parallel) on a new database of `pg`, each with
    /// `env` on top of the harness's settings (a `RUST_LOG` there wins).
    pub async fn start(pg: PgServer, label: &str, n: usize, env: &[(&str, &str)]) -> Cluster {
        let db = pg.database(label);
        let log = node_log("error");
        let mut all: Vec<(&str, &str)> = vec![("DATABASE_URL", &db.url), ("RUST_LOG", &log)];
        all.extend_from_slice(env);
        // The first node creates the schema; the others would only wait for its lock.
        let first = start_server(&all).await;
        let rest = futures_util::future::join_all((1..n).map(|_| start_server(&all))).await;
        let nodes = std::iter::once(first).chain(rest).collect();
        Cluster { nodes, db, pg }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }
}

/// `GET /readyz` of the node at `addr`: its status, or 0 when it does not answer.
pub async fn readiness(addr: SocketAddr) -> u16 {
    get(addr, "/readyz", "-").await.map_or(0, |(status, _)| status)
}

//! [`PgCluster`]: cluster coordination in the shared database. Each node
//! holds a lease it renews every second; a node whose lease ran out is dead
//! and its sockets stop counting (presence, connection limits) once the
//! grace period after that has passed. Once-per-cluster jobs hold a
//! session-level advisory lock on a connection of their own, which
//! PostgreSQL releases when the node dies. Messages between nodes go
//! through `NOTIFY wecare_bus` (the id) and the `bus` table (the body).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, broadcast, mpsc, watch};
use tokio_postgres::{Client, Config, Notification};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wecare_proto::DriverId;

use super::{BusMessage, Cluster, Job, SocketKey};
use crate::clock::Millis;
use crate::storage::postgres::conn::{DB_NOW, Plain, Slot, connect};
use crate::storage::postgres::listen;
use crate::storage::{BoxFuture, StorageError};

/// How long a lease lasts; it is renewed every [`HEARTBEAT`].
const LEASE_MS: i64 = 5_000;
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Rows of dead nodes and old messages are removed after this long.
const KEEP_DEAD_MS: i64 = 10 * 60_000;
const KEEP_BUS_MS: i64 = 60_000;

/// A message as stored in `bus`: who sent it, so a node skips its own.
#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    msg: BusMessage,
}

/// Cluster coordination on PostgreSQL. See the module docs.
#[derive(Debug)]
pub(crate) struct PgCluster {
    node_id: String,
    config: Config,
    /// Where the lock session's connection runs (see `conn::connect`).
    runtime: tokio::runtime::Handle,
    plain: Slot<Plain>,
    /// The session holding this node's job locks, and the jobs it holds.
    locks: Mutex<Option<(Client, HashSet<Job>)>>,
    bus: broadcast::Sender<BusMessage>,
    commits: watch::Sender<u64>,
    rejoins: watch::Sender<u64>,
    wakeups: AtomicU64,
    healthy: AtomicBool,
    /// The log's [`PgLog::writable_flag`](super::PgLog::writable_flag): a
    /// renewed lease proves the node can write again.
    log_writable: Arc<AtomicBool>,
}

impl PgCluster {
    /// Registers this node (a new id per process) and starts its lease
    /// heartbeat and its `LISTEN` connection, both until `stop`.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub(crate) async fn start(
        config: &Config,
        log_writable: Arc<AtomicBool>,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, StorageError> {
        let node_id = format!("node-{}", crate::random::hex_id(6));
        let this = Arc::new(Self {
            node_id,
            config: config.clone(),
            runtime: tokio::runtime::Handle::current(),
            plain: Slot::new(config.clone()),
            locks: Mutex::new(None),
            bus: broadcast::channel(1024).0,
            commits: watch::channel(0).0,
            rejoins: watch::channel(0).0,
            wakeups: AtomicU64::new(0),
            healthy: AtomicBool::new(false),
            log_writable,
        });
        this.renew_lease().await?;
        this.healthy.store(true, Ordering::Relaxed);
        tracing::info!(node = %this.node_id, "joined the cluster");

        tracker.spawn(Arc::clone(&this).heartbeat(stop.clone()));
        let (tx, rx) = mpsc::channel(1024);
        let wake = Arc::clone(&this);
        tracker.spawn(listen::run(
            config.clone(),
            &["wecare_stream", "wecare_bus"],
            tx,
            move || wake.wake(),
            stop.clone(),
        ));
        tracker.spawn(Arc::clone(&this).receive(rx, stop));
        Ok(this)
    }

    fn wake(&self) {
        let n = self.wakeups.fetch_add(1, Ordering::Relaxed) + 1;
        self.commits.send_replace(n);
    }

    async fn renew_lease(&self) -> Result<(), StorageError> {
        let c = self.plain.get().await?;
        c.0.execute(
            &format!(
                "INSERT INTO nodes (node_id, started_at, lease_until) VALUES ($1, {DB_NOW}, {DB_NOW} + $2)
                 ON CONFLICT (node_id) DO UPDATE SET lease_until = excluded.lease_until"
            ),
            &[&self.node_id, &LEASE_MS],
        )
        .await?;
        Ok(())
    }

    async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let mut beats = 0u64;
        loop {
            tokio::select! {
                () = tokio::time::sleep(HEARTBEAT) => {}
                () = stop.cancelled() => break,
            }
            // A database that hangs instead of refusing must still turn /readyz 503.
            let renewed = match tokio::time::timeout(Duration::from_secs(3), self.renew_lease()).await {
                Ok(r) => r,
                Err(_) => Err(StorageError::Database("lease renewal timed out".into())),
            };
            if let Err(e) = &renewed {
                tracing::warn!(error = %e, "lease renewal failed");
            }
            // A lease renewal is a write: it says whether this node can write.
            let was_healthy = self.healthy.swap(renewed.is_ok(), Ordering::Relaxed);
            if renewed.is_ok() && !was_healthy {
                self.rejoins.send_modify(|n| *n += 1);
            }
            if renewed.is_ok() {
                self.log_writable.store(true, Ordering::Relaxed);
            }
            beats += 1;
            if renewed.is_ok()
                && beats.is_multiple_of(10)
                && let Err(e) = self.sweep().await
            {
                tracing::debug!(error = %e, "sweep failed");
            }
        }
        // Leaving: the lease ends now, so this node's sockets count as
        // closed from now (their drivers get the usual grace elsewhere).
        if let Ok(c) = self.plain.get().await {
            let sql = format!("UPDATE nodes SET lease_until = {DB_NOW} WHERE node_id = $1");
            let _ = tokio::time::timeout(Duration::from_secs(2), c.0.execute(&sql, &[&self.node_id])).await;
        }
    }

    /// Removes what dead nodes and old messages left behind.
    async fn sweep(&self) -> Result<(), StorageError> {
        let c = self.plain.get().await?;
        c.0.batch_execute(&format!(
            "DELETE FROM nodes WHERE lease_until < {DB_NOW} - {KEEP_DEAD_MS};
             DELETE FROM driver_sockets s WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = s.node_id);
             DELETE FROM user_sockets u WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = u.node_id);
             DELETE FROM driver_sockets WHERE sockets = 0 AND closed_at < {DB_NOW} - {KEEP_DEAD_MS};
             DELETE FROM bus WHERE created_at < {DB_NOW} - {KEEP_BUS_MS};"
        ))
        .await?;
        Ok(())
    }

    async fn receive(self: Arc<Self>, mut rx: mpsc::Receiver<Notification>, stop: CancellationToken) {
        loop {
            let n = tokio::select! {
                n = rx.recv() => match n { Some(n) => n, None => return },
                () = stop.cancelled() => return,
            };
            match n.channel() {
                "wecare_stream" => self.wake(),
                "wecare_bus" => {
                    if let Err(e) = self.deliver(n.payload()).await {
                        tracing::debug!(error = %e, "bus message not read");
                    }
                }
                _ => {}
            }
        }
    }

    async fn deliver(&self, id: &str) -> Result<(), StorageError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(());
        };
        let c = self.plain.get().await?;
        let Some(row) = c.0.query_opt("SELECT body FROM bus WHERE id = $1", &[&id]).await? else {
            return Ok(());
        };
        let body: String = row.get(0);
        match serde_json::from_str::<Envelope>(&body) {
            Ok(e) if e.from != self.node_id => {
                let _ = self.bus.send(e.msg);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable bus message"),
        }
        Ok(())
    }
}

impl Cluster for PgCluster {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn driver_socket_opened(&self, driver: &DriverId) -> BoxFuture<'_, Result<(), StorageError>> {
        let driver = driver.as_str().to_string();
        Box::pin(async move {
            let c = self.plain.get().await?;
            c.0.execute(
                "INSERT INTO driver_sockets (node_id, driver_id, sockets) VALUES ($1, $2, 1)
                 ON CONFLICT (node_id, driver_id) DO UPDATE SET sockets = driver_sockets.sockets + 1",
                &[&self.node_id, &driver],
            )
            .await?;
            Ok(())
        })
    }

    fn driver_socket_closed(&self, driver: &DriverId) -> BoxFuture<'_, Result<(), StorageError>> {
        let driver = driver.as_str().to_string();
        Box::pin(async move {
            let c = self.plain.get().await?;
            c.0.execute(
                &format!(
                    "UPDATE driver_sockets SET sockets = GREATEST(sockets - 1, 0), closed_at = {DB_NOW}
                     WHERE node_id = $1 AND driver_id = $2"
                ),
                &[&self.node_id, &driver],
            )
            .await?;
            Ok(())
        })
    }

    fn restored(&self, online: Vec<DriverId>) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let ids: Vec<&str> = online.iter().map(DriverId::as_str).collect();
            let c = self.plain.get().await?;
            c.0.execute(
                &format!(
                    "INSERT INTO driver_sockets (node_id, driver_id, sockets, closed_at)
                     SELECT $1, d, 0, {DB_NOW} FROM unnest($2::text[]) AS d
                     WHERE NOT EXISTS (SELECT 1 FROM driver_sockets s WHERE s.driver_id = d)
                     ON CONFLICT (node_id, driver_id) DO NOTHING"
                ),
                &[&self.node_id, &ids],
            )
            .await?;
            Ok(())
        })
    }

    fn gone_drivers(&self, online: Vec<DriverId>, grace: Millis) -> BoxFuture<'_, Result<Vec<DriverId>, StorageError>> {
        Box::pin(async move {
            if online.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<&str> = online.iter().map(DriverId::as_str).collect();
            let c = self.plain.get().await?;
            let rows =
                c.0.query(
                    &format!(
                        "SELECT d FROM unnest($1::text[]) AS d WHERE NOT EXISTS (
                             SELECT 1 FROM driver_sockets s JOIN nodes n ON n.node_id = s.node_id
                             WHERE s.driver_id = d
                               AND ((s.sockets > 0 AND (n.lease_until + $2 > {DB_NOW} OR s.node_id = $3))
                                    OR s.closed_at + $2 > {DB_NOW}))"
                    ),
                    // This node's own sockets are open whatever its lease says
                    // (it lapses when the database was away for a while).
                    &[&ids, &grace, &self.node_id],
                )
                .await?;
            Ok(rows.into_iter().map(|r| DriverId::new(r.get::<_, String>(0))).collect())
        })
    }

    fn user_socket_opened(
        &self,
        subject: &str,
        sid: &str,
        opened_at: i64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<SocketKey>, StorageError>> {
        let (subject, sid) = (subject.to_string(), sid.to_string());
        Box::pin(async move {
            let c = self.plain.get().await?;
            // `opened` is the handshake time, not the column's own serial
            // (the insert order of concurrent connect handlers): the oldest
            // socket is the one whose client connected first. Rows of a node
            // of an earlier release (serial numbers) count as older than all.
            c.0.execute(
                "INSERT INTO user_sockets (node_id, sid, subject, opened) VALUES ($1, $2, $3, $4)",
                &[&self.node_id, &sid, &subject, &opened_at],
            )
            .await?;
            let rows =
                c.0.query(
                    &format!(
                        "SELECT u.node_id, u.sid FROM user_sockets u JOIN nodes n ON n.node_id = u.node_id
                         WHERE u.subject = $1 AND n.lease_until > {DB_NOW}
                         ORDER BY u.opened DESC OFFSET $2"
                    ),
                    &[&subject, &(max.max(1) as i64)],
                )
                .await?;
            Ok(rows.into_iter().map(|r| SocketKey { node: r.get(0), sid: r.get(1) }).collect())
        })
    }

    fn user_socket_closed(&self, subject: &str, sid: &str) -> BoxFuture<'_, Result<(), StorageError>> {
        let (_, sid) = (subject, sid.to_string());
        Box::pin(async move {
            let c = self.plain.get().await?;
            c.0.execute("DELETE FROM user_sockets WHERE node_id = $1 AND sid = $2", &[&self.node_id, &sid]).await?;
            Ok(())
        })
    }

    fn leads(&self, job: Job) -> BoxFuture<'_, Result<bool, StorageError>> {
        Box::pin(async move {
            let mut locks = self.locks.lock().await;
            if locks.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                // A new session holds no lock: the jobs start over.
                *locks = Some((connect(&self.config, &self.runtime).await?, HashSet::new()));
            }
            let Some((client, held)) = locks.as_mut() else {
                return Ok(false);
            };
            if held.contains(&job) {
                return Ok(true);
            }
            let got: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&job.lock_key()]).await?.get(0);
            if got {
                tracing::info!(node = %self.node_id, ?job, "this node runs the job now");
                held.insert(job);
            }
            Ok(got)
        })
    }

    fn publish(&self, msg: BusMessage) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let body = serde_json::to_string(&Envelope { from: self.node_id.clone(), msg })
                .map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let c = self.plain.get().await?;
            c.0.execute(
                &format!(
                    "WITH m AS (INSERT INTO bus (body, created_at) VALUES ($1, {DB_NOW}) RETURNING id)
                     SELECT pg_notify('wecare_bus', (SELECT id FROM m)::text)"
                ),
                &[&body],
            )
            .await?;
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.bus.subscribe()
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    fn rejoins(&self) -> watch::Receiver<u64> {
        self.rejoins.subscribe()
    }

    fn live_nodes(&self) -> BoxFuture<'_, Result<usize, StorageError>> {
        Box::pin(async move {
            let c = self.plain.get().await?;
            let n: i64 =
                c.0.query_one(&format!("SELECT count(*) FROM nodes WHERE lease_until > {DB_NOW}"), &[]).await?.get(0);
            Ok(n.max(1) as usize)
        })
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg_testing::PgServer;
    use crate::storage::postgres::{PgLog, parse_url};

    #[tokio::test]
    async fn the_oldest_socket_is_the_first_handshake_whatever_order_the_sockets_are_counted_in() {
        let server = PgServer::shared();
        let db = server.database("sockets");
        let config = parse_url(&db.url).unwrap();
        let log = PgLog::open(&config).await.expect("creates the schema");
        let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
        let cluster = PgCluster::start(&config, log.writable_flag(), &tracker, stop.clone()).await.unwrap();
        let node = cluster.node_id().to_string();
        // The second socket's connect handler ran first.
        assert!(cluster.user_socket_opened("u", "second", 20, 2).await.unwrap().is_empty());
        assert!(cluster.user_socket_opened("u", "first", 10, 2).await.unwrap().is_empty());
        let evicted = cluster.user_socket_opened("u", "third", 30, 2).await.unwrap();
        assert_eq!(evicted, vec![SocketKey { node, sid: "first".into() }]);
        stop.cancel();
        tracker.close();
        tracker.wait().await;
    }
}

//! Acknowledged means durable, proven with the real binary: 50 drivers at
//! 10 Hz while the server is killed with SIGKILL three times and restarted on
//! the same data folder. Afterwards every acked fix is in the stream at its
//! acked `seq`, stored once, and a watcher that resumed with `lastSeq` after
//! every kill saw every event exactly once, in order.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use wecare_client::{ConnectOptions, ServerEvent, SocketClient};

const SECRET: &str = "durability-secret";
const DRIVERS: usize = 50;
const PERIOD: Duration = Duration::from_millis(100);

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Kills the server when the test ends, also when it fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(dir: &Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_wecare-rt"))
        .arg("serve")
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("DATA_DIR", dir)
        .env("JWT_SECRET", SECRET)
        .env("RATE_LIMIT_PER_SEC", "1000")
        .env("PING_INTERVAL_MS", "1000")
        .env("PING_TIMEOUT_MS", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server binary starts");
    Server(child)
}

async fn get(addr: SocketAddr, path: &str, bearer: &str) -> Option<(u16, Value)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, serde_json::from_str(body).unwrap_or(Value::Null)))
}

async fn wait_healthy(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some((200, _)) = get(addr, "/healthz", "-").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server did not become healthy");
}

/// Acked fixes: id → seq, as the drivers saw them.
type Acked = Arc<Mutex<HashMap<String, u64>>>;

/// A driver with an in-memory outbox: a fix is resent (same id) until acked.
async fn drive(url: String, n: usize, acked: Acked, mut stop: watch::Receiver<bool>) -> usize {
    let driver = format!("amb-{n}");
    let token = wecare_server::dev_token(
        SECRET,
        &json!({"id": driver, "role": "driver", "driver_id": driver, "exp": now_secs() + 3600}),
    );
    let mut pending: Vec<String> = Vec::new();
    let mut next = 0usize;
    let mut tick = tokio::time::interval(PERIOD);
    let mut client: Option<SocketClient> = None;
    loop {
        let stopping = *stop.borrow();
        if stopping && pending.is_empty() {
            return next;
        }
        if !stopping {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => {}
            }
            pending.push(format!("{driver}-{next}"));
            next += 1;
        }
        if client.as_ref().is_none_or(|c| !c.is_connected()) {
            let opts = ConnectOptions::locations(url.clone(), json!({ "token": token }));
            client = match tokio::time::timeout(Duration::from_secs(2), SocketClient::connect(opts)).await {
                Ok(Ok((c, _events))) => Some(c),
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    None
                }
            };
        }
        let Some(c) = client.as_ref() else { continue };
        let updates: Vec<Value> = pending.iter().map(|id| json!({"id": id, "lat": 13.7, "lng": 100.5})).collect();
        if let Ok(ack) = c.emit_with_ack("location:batch", &json!({ "updates": updates }), Duration::from_secs(2)).await
        {
            let results = ack["results"].as_array().cloned().unwrap_or_default();
            let mut still = Vec::new();
            for (id, r) in pending.drain(..).zip(results.iter().chain(std::iter::repeat(&Value::Null))) {
                match (r["status"].as_str(), r["seq"].as_u64()) {
                    (Some("ok"), Some(seq)) => {
                        let prev = acked.lock().unwrap().insert(id.clone(), seq);
                        assert!(prev.is_none_or(|p| p == seq), "{id} acked at two seqs");
                    }
                    _ => still.push(id),
                }
            }
            pending = still;
        }
    }
}

/// A watcher that resumes with `lastSeq` + `streamId` after every cut and
/// records every stream event it processes.
async fn watch_stream(url: String, seen: Arc<Mutex<Vec<(u64, String)>>>, mut stop: watch::Receiver<bool>) {
    let token = wecare_server::dev_token(SECRET, &json!({"id": "w", "role": "officer", "exp": now_secs() + 3600}));
    let mut last: Option<u64> = None;
    let mut stream_id: Option<String> = None;
    loop {
        let mut auth = json!({ "token": token });
        if let (Some(l), Some(s)) = (last, &stream_id) {
            auth["lastSeq"] = json!(l);
            auth["streamId"] = json!(s);
        }
        let connected = tokio::time::timeout(
            Duration::from_secs(2),
            SocketClient::connect(ConnectOptions::locations(url.clone(), auth)),
        )
        .await;
        let Ok(Ok((_c, mut rx))) = connected else {
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = stop.changed() => return,
            };
            match ev {
                Some(ServerEvent::Event { name, data }) => match name.as_str() {
                    "drivers:snapshot" => {
                        assert!(last.is_none(), "a resuming watcher of the same stream got a snapshot");
                        stream_id = data["streamId"].as_str().map(str::to_string);
                        last = data["seq"].as_u64();
                    }
                    "sync:complete" => assert_eq!(data["streamId"].as_str(), stream_id.as_deref()),
                    "location:updated" | "driver:presence" | "driver:status:updated" => {
                        let seq = data["seq"].as_u64().unwrap();
                        assert_eq!(Some(seq), last.map(|l| l + 1), "gap or duplicate at {seq} after {last:?}");
                        last = Some(seq);
                        seen.lock().unwrap().push((seq, data["id"].as_str().unwrap_or_default().to_string()));
                    }
                    _ => {}
                },
                Some(_) | None => break,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_fixes_survive_three_sigkills_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("http://{addr}");
    let mut server = spawn_server(dir.path(), port);
    wait_healthy(addr).await;

    let acked: Acked = Arc::default();
    let seen: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stop_watcher, watcher_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_stream(url.clone(), Arc::clone(&seen), watcher_rx));
    let drivers: Vec<_> =
        (0..DRIVERS).map(|n| tokio::spawn(drive(url.clone(), n, Arc::clone(&acked), stop_rx.clone()))).collect();

    for kill in 1..=3 {
        // Let acks accumulate, then kill mid-flight.
        let before = acked.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while acked.lock().unwrap().len() < before + 400 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.0.kill().expect("SIGKILL");
        server.0.wait().unwrap();
        println!("kill {kill}: {} fixes acked so far", acked.lock().unwrap().len());
        server = spawn_server(dir.path(), port);
        wait_healthy(addr).await;
    }
    let before = acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < before + 400 {
        assert!(Instant::now() < deadline, "drivers made no progress after the last restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    let mut sent = 0;
    for d in drivers {
        sent += tokio::time::timeout(Duration::from_secs(30), d).await.expect("drivers flush their outbox").unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), sent, "every fix a driver recorded was eventually acked");

    // The stream as stored: every acked fix once, at its acked seq.
    let officer = wecare_server::dev_token(SECRET, &json!({"id": "o", "role": "officer", "exp": now_secs() + 3600}));
    let mut stored: HashMap<String, u64> = HashMap::new();
    let mut since = 0u64;
    let mut seqs = Vec::new();
    loop {
        let (code, page) =
            get(addr, &format!("/api/realtime/events?since={since}&limit=1000"), &officer).await.unwrap();
        assert_eq!(code, 200);
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            let seq = e["seq"].as_u64().unwrap();
            seqs.push(seq);
            if e["type"] == "location:updated" {
                assert!(stored.insert(e["id"].as_str().unwrap().to_string(), seq).is_none(), "stored twice");
            }
            since = seq;
        }
    }
    assert_eq!(seqs, (1..=since).collect::<Vec<_>>(), "seq has no holes and never went back");
    for (id, seq) in &acked {
        assert_eq!(stored.get(id), Some(seq), "acked fix {id} missing or at another seq");
    }

    // The resuming watcher saw every event after its first snapshot exactly
    // once, in order.
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().last().is_none_or(|(s, _)| *s < since) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_watcher.send(true).ok();
    let finished = tokio::time::timeout(Duration::from_secs(5), watcher).await.expect("watcher stops");
    assert!(finished.is_ok(), "the watcher task failed: {finished:?}");
    let seen: Vec<(u64, String)> = seen.lock().unwrap().iter().filter(|(s, _)| *s <= since).cloned().collect();
    let seen_seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    let first = seen_seqs.first().copied().unwrap_or(1);
    let seqs: Vec<u64> = seqs.into_iter().filter(|s| *s >= first).collect();
    let first_diff = seen_seqs.iter().zip(&seqs).position(|(a, b)| a != b);
    assert!(
        seen_seqs == seqs,
        "the watcher saw {} events, the store has {}; first difference at index {first_diff:?}",
        seen_seqs.len(),
        seqs.len()
    );
    let unique: HashSet<&String> = seen.iter().filter(|(_, id)| !id.is_empty()).map(|(_, id)| id).collect();
    println!(
        "durability: {DRIVERS} drivers, 3 SIGKILLs, {} fixes acked, {} events stored, {} seen by the watcher ({} distinct ids)",
        acked.len(),
        seqs.len(),
        seen.len(),
        unique.len()
    );
    drop(server);
}

//! `wecare-sim` and `wecare-rt watch --once` against a real server:
//! exit codes, the report, and the snapshot table.
#![allow(clippy::unwrap_used)]

mod harness;

use std::process::Output;

use harness::{SECRET, start_server};

/// Runs a tool: `simulate …` is `wecare-sim …`, anything else `wecare-rt …`.
async fn wecare_rt(mut args: Vec<String>) -> Output {
    let bin = if args[0] == "simulate" {
        args.remove(0);
        env!("CARGO_BIN_EXE_wecare-sim")
    } else {
        env!("CARGO_BIN_EXE_wecare-rt")
    };
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(&args)
            .env("JWT_SECRET", SECRET)
            .env_remove("RUST_LOG")
            .output()
            .expect("run wecare-rt")
    })
    .await
    .unwrap()
}

fn report_value(stdout: &str, key: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("no {key:?} in the report:\n{stdout}"))
}

#[tokio::test]
async fn simulate_delivers_every_fix_and_watch_once_shows_the_drivers() {
    let server = start_server(&[]).await;
    let outboxes = tempfile::tempdir().unwrap();
    let sim = wecare_rt(
        [
            "simulate",
            "--url",
            &server.url,
            "--drivers",
            "3",
            "--rate",
            "5",
            "--duration",
            "3",
            "--outbox-dir",
            outboxes.path().to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&sim.stdout);
    println!("{stdout}");
    assert!(sim.status.success(), "exit {:?}; stderr: {}", sim.status, String::from_utf8_lossy(&sim.stderr));
    let (sent, acked) = (report_value(&stdout, "sent"), report_value(&stdout, "acked"));
    assert!(sent >= 3 * 5 * 3 - 3, "about 3 drivers x 5 Hz x 3 s: {sent}");
    assert_eq!(acked, sent);
    assert_eq!(report_value(&stdout, "pending"), 0);
    assert_eq!(report_value(&stdout, "dead-lettered"), 0);
    for i in 1..=3 {
        assert!(outboxes.path().join(format!("sim-{i:03}.sqlite3")).exists(), "outbox of driver {i}");
    }

    let watch = wecare_rt(["watch", "--url", &server.url, "--once"].map(str::to_owned).to_vec()).await;
    let table = String::from_utf8_lossy(&watch.stdout);
    println!("{table}");
    assert!(watch.status.success(), "exit {:?}; stderr: {}", watch.status, String::from_utf8_lossy(&watch.stderr));
    assert!(table.starts_with("DRIVER"), "{table}");
    for i in 1..=3 {
        let row = table.lines().find(|l| l.starts_with(&format!("sim-{i:03} "))).unwrap_or_else(|| panic!("{table}"));
        assert!(row.contains("13.") && row.contains("100."), "{row}");
        // The simulator, like the deployed driver app, reports no status: none is invented.
        assert_eq!(row.split_whitespace().nth(2), Some("-"), "{row}");
    }
    assert!(table.trim_end().lines().last().unwrap().starts_with("3 drivers"), "{table}");
}

#[tokio::test]
async fn simulate_refuses_a_non_loopback_url_and_watch_fails_without_a_server() {
    let sim =
        wecare_rt(["simulate", "--url", "http://10.9.8.7:3000", "--duration", "1"].map(str::to_owned).to_vec()).await;
    assert_eq!(sim.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&sim.stderr).contains("loopback"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let watch = wecare_rt(["watch", "--url", &url, "--once", "--timeout", "1"].map(str::to_owned).to_vec()).await;
    assert_eq!(watch.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&watch.stderr).contains("no snapshot"));
}

#[test]
fn the_binary_that_serves_carries_no_fault_proxy() {
    // A log line of the SDK's test proxies (`wecare_client::testing`).
    const PROXY_MARK: &[u8] = b"proxy connection ended";
    let carries = |bin: &str| std::fs::read(bin).unwrap().windows(PROXY_MARK.len()).any(|w| w == PROXY_MARK);
    assert!(carries(env!("CARGO_BIN_EXE_wecare-sim")), "the simulator drives through the fault proxy");
    assert!(!carries(env!("CARGO_BIN_EXE_wecare-rt")), "wecare-rt links the fault proxy");
}

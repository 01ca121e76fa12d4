//! `simulate`, `watch` and `bench` against an https:// URL: the real server
//! behind a TLS-terminating proxy with a certificate from a CA the test made,
//! trusted through `--ca-cert` (or `WECARE_CA_CERT`); without it the
//! commands stop at once and say what to do.
#![allow(clippy::unwrap_used)]

mod harness;
// The certificate maker of the SDK's own TLS tests (rcgen only).
#[path = "../../client/tests/common/certs.rs"]
mod certs;

use std::process::Output;

use certs::TestCa;
use harness::{SECRET, Server, start_server, stored_locations};
use wecare_client::testing::TlsProxy;

/// Runs a tool with `env` and waits for it: `simulate …` is `wecare-sim …`,
/// anything else `wecare-rt …`.
async fn wecare_rt(args: &[&str], env: &[(&str, &str)]) -> Output {
    let (bin, args) = match args {
        ["simulate", rest @ ..] => (env!("CARGO_BIN_EXE_wecare-sim"), rest),
        _ => (env!("CARGO_BIN_EXE_wecare-rt"), args),
    };
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(&args)
            .env("JWT_SECRET", SECRET)
            .env_remove("RUST_LOG")
            .env_remove("WECARE_CA_CERT")
            .envs(env)
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

fn assert_success(what: &str, out: &Output) {
    assert!(out.status.success(), "{what}: exit {:?}; stderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// The server behind a TLS proxy whose certificate (for `localhost` and
/// `127.0.0.1`) is signed by a fresh test CA, written to `dir/ca.pem`.
async fn tls_server(dir: &std::path::Path) -> (Server, TlsProxy, String) {
    let server = start_server(&[]).await;
    let ca = TestCa::new("wecare cli test CA");
    let cert = ca.server_cert(&["localhost", "127.0.0.1"]);
    let proxy = TlsProxy::start(server.addr, &cert.chain_pem, &cert.key_pem).await.unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    (server, proxy, ca_file.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn simulate_watch_and_bench_work_over_https_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let (server, proxy, ca_file) = tls_server(dir.path()).await;
    let url = format!("https://localhost:{}", proxy.port());

    let sim = wecare_rt(
        &["simulate", "--url", &url, "--ca-cert", &ca_file, "--drivers", "2", "--rate", "5", "--duration", "2"],
        &[],
    )
    .await;
    let stdout = String::from_utf8_lossy(&sim.stdout);
    println!("{stdout}");
    assert_success("simulate", &sim);
    let sent = report_value(&stdout, "sent");
    assert!(sent >= 2 * 5 * 2 - 2, "about 2 drivers x 5 Hz x 2 s: {sent}");
    assert_eq!(report_value(&stdout, "acked"), sent);
    assert_eq!(report_value(&stdout, "pending"), 0);
    assert_eq!(stored_locations(server.addr).await.len() as u64, sent, "all stored, through the TLS proxy");

    // The CA from the environment this time, and the IP address.
    let ip_url = format!("https://127.0.0.1:{}/", proxy.port());
    let watch = wecare_rt(&["watch", "--url", &ip_url, "--once"], &[("WECARE_CA_CERT", &ca_file)]).await;
    let table = String::from_utf8_lossy(&watch.stdout);
    println!("{table}");
    assert_success("watch", &watch);
    for i in 1..=2 {
        assert!(table.lines().any(|l| l.starts_with(&format!("sim-{i:03} "))), "{table}");
    }

    let bench = wecare_rt(
        &[
            "bench",
            "--url",
            &url,
            "--ca-cert",
            &ca_file,
            "--drivers",
            "2",
            "--watchers",
            "1",
            "--rate",
            "5",
            "--warmup",
            "0",
            "--duration",
            "1",
            "--json",
        ],
        &[],
    )
    .await;
    assert_success("bench", &bench);
    let report: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    println!("{report}");
    assert!(proxy.stats().failed_handshakes.load(std::sync::atomic::Ordering::Relaxed) == 0);
}

#[tokio::test]
async fn without_the_ca_simulate_and_watch_stop_at_once_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, proxy, _ca_file) = tls_server(dir.path()).await;
    let url = format!("https://localhost:{}", proxy.port());
    for args in [
        &["simulate", "--url", &url, "--drivers", "1", "--duration", "30"][..],
        &["watch", "--url", &url, "--once", "--timeout", "30"],
    ] {
        let started = std::time::Instant::now();
        let out = wecare_rt(args, &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("not issued by a trusted CA") && stderr.contains("--ca-cert"), "{args:?}: {stderr}");
        // Well before --duration / --timeout: the TLS check refused it.
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{args:?} took {:?}", started.elapsed());
    }
}

//! Test support (feature `test-util`): real PostgreSQL for the tests.
//!
//! [`PgServer::shared`] is the server named by `WECARE_TEST_DATABASE_URL`
//! (an admin URL; `scripts/test.sh` starts one), or else a private
//! instance made with `initdb` for the test. [`PgServer::private`] is
//! always a private instance, which a test may stop or kill (SIGKILL).
//! [`TestDb`] is a database of the test's own on a server, dropped at the
//! end. Private instances run as the `postgres` user when the tests run as
//! root (PostgreSQL refuses root) and live in a temporary folder.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Environment variable naming an admin URL of a PostgreSQL server for tests.
pub const TEST_DATABASE_URL: &str = "WECARE_TEST_DATABASE_URL";

/// A PostgreSQL server the tests may use.
#[derive(Debug)]
pub struct PgServer {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub admin_url: String,
    instance: Option<Instance>,
}

#[derive(Debug)]
struct Instance {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The folder of `initdb`/`pg_ctl`: on PATH, or Debian's newest version.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop().unwrap_or_else(|| PathBuf::from("/usr/bin"))
}

/// Runs a PostgreSQL program, as `postgres` when we are root.
fn pg_command(bin: &Path, program: &str) -> Command {
    let exe = bin.join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

fn run(mut c: Command, what: &str) {
    let out = c.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    /// The server of `WECARE_TEST_DATABASE_URL`, or a private instance.
    pub fn shared() -> Self {
        match std::env::var(TEST_DATABASE_URL) {
            Ok(url) if !url.trim().is_empty() => Self { admin_url: url, instance: None },
            _ => Self::private(),
        }
    }

    /// A private instance on a free port, stopped when this is dropped.
    ///
    /// # Panics
    /// When PostgreSQL's programs are missing or fail (the tests need them).
    pub fn private() -> Self {
        let dir = tempfile::Builder::new().prefix("wecare-pg-").tempdir().expect("a temporary folder");
        let bin = pg_bin();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres"]).arg(dir.path());
                    c
                },
                "chown the instance folder",
            );
        }
        let data = dir.path().join("data");
        let mut init = pg_command(&bin, "initdb");
        init.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"]);
        run(init, "initdb");
        let port = free_port();
        let instance = Instance { dir, bin, port };
        instance.start();
        Self { admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), instance: Some(instance) }
    }

    /// Starts a stopped private instance again (same data, same port).
    pub fn start(&self) {
        self.instance.as_ref().expect("a private instance").start();
    }

    /// Stops a private instance at once (`pg_ctl stop -m immediate`: like a
    /// crash, without a shutdown checkpoint).
    pub fn stop(&self) {
        self.instance.as_ref().expect("a private instance").stop();
    }

    /// Creates a database of the test's own.
    pub fn database(&self, label: &str) -> TestDb {
        let name = format!("wecare_{label}_{}", std::process::id()) + &format!("_{:x}", rand_u32());
        psql(&self.admin_url, &format!("CREATE DATABASE {name}"));
        let url = match self.admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("admin url {} has no database", self.admin_url),
        };
        TestDb { url, name, admin_url: self.admin_url.clone() }
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("random");
    u32::from_le_bytes(b)
}

fn psql(url: &str, sql: &str) {
    let mut c = Command::new("psql");
    c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]);
    run(c, &format!("psql {sql}"));
}

impl Instance {
    fn start(&self) {
        let mut c = pg_command(&self.bin, "pg_ctl");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        c.arg("-D").arg(self.dir.path().join("data")).args(["-o", &opts, "-l"]);
        c.arg(self.dir.path().join("log")).args(["-w", "-t", "30", "start"]);
        run(c, "pg_ctl start");
    }

    fn stop(&self) {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D").arg(self.dir.path().join("data")).args(["-m", "immediate", "-w", "stop"]);
        let _ = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A database of one test, dropped (connections and all) with this value.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL, for `DATABASE_URL`.
    pub url: String,
    name: String,
    admin_url: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut c = Command::new("psql");
        c.args([
            "-X",
            "-q",
            "-d",
            &self.admin_url,
            "-c",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ]);
        let _ = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

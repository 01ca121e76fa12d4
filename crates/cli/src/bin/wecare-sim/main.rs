//! `wecare-sim`: drive a simulated fleet through the client SDK against a
//! running server, optionally through injected network faults. A separate
//! binary from `wecare-rt` so that the fault-injecting proxy (a test tool)
//! is never part of the binary that serves.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use wecare_cli::{progress, target, tokens};

mod simulate;

/// Drive a simulated fleet through the client SDK (own outbox per driver),
/// optionally through injected network faults, and report what was sent,
/// acked, pending and dead-lettered.
#[derive(Debug, Parser)]
#[command(name = "wecare-sim", version)]
struct Cli {
    #[command(flatten)]
    args: simulate::SimulateArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = tokio::runtime::Runtime::new()
        .context("starting the runtime")
        .and_then(|runtime| runtime.block_on(simulate::run(cli.args)));
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wecare-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

//! `wecare-rt bench-store`: bytes on disk per stored fix (issue 17), on a
//! new embedded store or an empty PostgreSQL database.

use std::path::PathBuf;

use anyhow::{Context, bail};
use wecare_server::{FootprintTarget, measure_footprint};

/// Store a fleet's fixes and print the bytes kept per fix.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchStoreArgs {
    /// Fixes to store.
    #[arg(long, default_value_t = 1_000_000)]
    fixes: u64,
    /// Drivers sending them.
    #[arg(long, default_value_t = 1000)]
    drivers: u32,
    /// An empty folder for a new embedded store (default: a temporary one).
    #[arg(long, conflicts_with = "database_url")]
    data_dir: Option<PathBuf>,
    /// An empty PostgreSQL database instead of the embedded store.
    #[arg(long)]
    database_url: Option<String>,
}

pub(crate) async fn run(args: &BenchStoreArgs) -> anyhow::Result<()> {
    let temp;
    let target = match (&args.database_url, &args.data_dir) {
        (Some(url), _) => FootprintTarget::Postgres(url.clone()),
        (None, Some(dir)) => {
            if dir.exists() && dir.read_dir().context("reading --data-dir")?.next().is_some() {
                bail!("--data-dir {} is not empty", dir.display());
            }
            FootprintTarget::Embedded(dir.clone())
        }
        (None, None) => {
            temp = tempfile::tempdir().context("making a temporary folder")?;
            FootprintTarget::Embedded(temp.path().to_path_buf())
        }
    };
    let bar = indicatif::ProgressBar::new(args.fixes);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} fixes {wide_bar} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |done: u64| bar.set_position(done);
    let r = measure_footprint(&target, args.fixes, args.drivers, &mut progress).await.context("storing the fixes")?;
    bar.finish_and_clear();
    let store = match target {
        FootprintTarget::Embedded(_) => "embedded (SQLite)",
        FootprintTarget::Postgres(_) => "PostgreSQL",
    };
    println!(
        "{store}: {} fixes from {} drivers in {:.1} s ({:.0} fixes/s); {} bytes with indexes = {:.1} B per fix",
        r.fixes,
        args.drivers,
        r.took.as_secs_f64(),
        r.fixes as f64 / r.took.as_secs_f64().max(1e-3),
        r.bytes,
        r.per_fix()
    );
    Ok(())
}

//! Checkpoints off the ack path. SQLite's automatic checkpoint runs inside
//! the commit that crosses its threshold, so every ~1000 pages one group's
//! acks waited while the write-ahead log was copied into the database and
//! the file synced — a fifth of the writer thread's time at 30 000 fixes/s,
//! and its longest stalls. The writer's connection turns it off; this
//! thread, with a connection of its own, copies the log (`PASSIVE`: it never
//! blocks the writer or a reader) a short while after commits, so a page
//! written by many commits in that while is copied once.
//!
//! The log can only start over when a write transaction begins with every
//! frame copied. Under steady writes this thread is always a commit behind,
//! so once the log has grown past [`Policy::restart_frames`] it asks the
//! writer to copy the short rest itself between two transactions
//! ([`Checkpointer::restart_due`]); the writer's next transaction then
//! writes the log from its start again.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

use rusqlite::Connection;

use crate::storage::StorageError;

/// When to copy and when to start the log over.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// The wait after a commit before copying, so one copy takes many commits.
    pub(super) interval: Duration,
    /// Frames in the log past which the writer finishes the copy itself.
    pub(super) restart_frames: i64,
    /// The size the log file is cut back to when it starts over
    /// (`journal_size_limit`). A reader that holds an old snapshot (a long
    /// replay) keeps the log from starting over, so it can grow far past
    /// `restart_frames`; without a limit the file keeps that size, on the
    /// data folder's disk, until a clean stop.
    pub(super) file_limit_bytes: i64,
}

impl Policy {
    /// 250 ms of commits per copy; the log starts over past 16 MiB (4 KiB
    /// pages), and its file is cut back to 128 MiB when it does: above what
    /// a flood of commits reaches (about 75 MiB at 50 000 fixes/s), so only
    /// a log a reader held is cut, not one that would grow back at once.
    pub(super) const DEFAULT: Self =
        Self { interval: Duration::from_millis(250), restart_frames: 4096, file_limit_bytes: 128 << 20 };
}

/// The writer's handle to the checkpoint thread; the thread ends when the
/// handle is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    nudge: SyncSender<()>,
    restart: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Starts the thread on its own connection (`connect` opens it).
    pub(super) fn spawn(
        path: &Path,
        policy: Policy,
        connect: fn(&Path) -> Result<Connection, StorageError>,
    ) -> Result<Self, StorageError> {
        let conn = connect(path)?;
        // One pending nudge is enough: a copy takes everything committed before it.
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        let restart = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&restart);
        std::thread::Builder::new()
            .name("wecare-sqlite-ckpt".into())
            .spawn(move || {
                while nudged.recv().is_ok() {
                    std::thread::sleep(policy.interval);
                    let _ = nudged.try_recv();
                    match passive(&conn) {
                        Ok(frames) if frames >= policy.restart_frames => flag.store(true, Ordering::Release),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "checkpoint failed; the next commit retries it"),
                    }
                }
            })
            .map_err(|source| StorageError::Io { path: "wecare-sqlite-ckpt".into(), source })?;
        Ok(Self { nudge, restart })
    }

    /// Tells the thread that the writer committed.
    pub(super) fn committed(&self) {
        let _ = self.nudge.try_send(());
    }

    /// Whether the writer should copy the rest of the log before its next
    /// transaction (asked once per time the log grew past the limit).
    pub(super) fn restart_due(&self) -> bool {
        self.restart.swap(false, Ordering::AcqRel)
    }
}

/// Copies what it can of the log into the database; returns the frames in
/// the log.
pub(super) fn passive(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))?)
}

//! A consistent copy of the embedded store taken while the server runs
//! (`wecare-rt backup`): `VACUUM INTO` reads the database in one read
//! transaction — in WAL mode a snapshot of the last commit, which writers do
//! not wait for — and writes it, compacted, to a new file. The copy holds
//! every event committed (so every event acked) before the copy began.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::FILE_NAME;
use crate::storage::StorageError;

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The copy.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The last `seq` in it.
    pub head: u64,
    /// The stream it is a copy of.
    pub stream_id: String,
    /// How long the copy took.
    pub took: Duration,
}

/// Copies the store in `data_dir` to `to`, a file that must not exist yet,
/// while a server may be running on it.
///
/// # Errors
/// There is no store in `data_dir`, `to` exists, or SQLite fails.
pub fn backup(data_dir: &Path, to: &Path) -> Result<BackupReport, StorageError> {
    let source = data_dir.join(FILE_NAME);
    if !source.exists() {
        return Err(StorageError::Corrupt(format!("no store at {}", source.display())));
    }
    if to.exists() {
        return Err(StorageError::Io {
            path: to.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the backup file exists; choose another"),
        });
    }
    let started = Instant::now();
    // Read-only: the backup never writes the live store (not even a WAL
    // checkpoint), and waits a little for a commit in progress.
    let conn =
        Connection::open_with_flags(&source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let to_text = to.to_str().ok_or_else(|| StorageError::Corrupt(format!("{} is not UTF-8", to.display())))?;
    conn.execute("VACUUM INTO ?1", [to_text])?;
    drop(conn);
    // Read back from the copy: what it holds, and that it opens.
    let copy = Connection::open_with_flags(to, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let meta = |key: &str| -> Result<String, StorageError> {
        Ok(copy.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?)
    };
    let head = meta("head")?.parse().map_err(|_| StorageError::Corrupt("head".into()))?;
    let stream_id = meta("stream_id")?;
    let bytes = std::fs::metadata(to).map_err(|source| StorageError::Io { path: to_text.to_string(), source })?.len();
    Ok(BackupReport { path: to.to_path_buf(), bytes, head, stream_id, took: started.elapsed() })
}

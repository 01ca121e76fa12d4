//! A dedicated OS thread that owns a value (a SQLite connection) and runs
//! closures sent to it, so no runtime thread ever blocks on SQLite
//! (the tokio-rusqlite design).

use tokio::sync::{mpsc, oneshot};

use crate::storage::StorageError;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Handle to the thread; dropping every handle lets the thread finish the
/// jobs already queued, run its `on_close`, and exit.
#[derive(Debug)]
pub(super) struct Worker<S> {
    tx: mpsc::Sender<Job<S>>,
}

impl<S: Send + 'static> Worker<S> {
    /// Queue depth: callers wait (backpressure) when it is full.
    const QUEUE: usize = 64;

    pub(super) fn spawn(
        name: &str,
        mut state: S,
        on_close: impl FnOnce(&mut S) + Send + 'static,
    ) -> Result<Self, StorageError> {
        let (tx, mut rx) = mpsc::channel::<Job<S>>(Self::QUEUE);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(&mut state);
                }
                on_close(&mut state);
            })
            .map_err(|source| StorageError::Io { path: name.to_string(), source })?;
        Ok(Self { tx })
    }

    /// Runs `f` on the thread and returns its result.
    pub(super) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, StorageError> {
        let (done, result) = oneshot::channel();
        let job: Job<S> = Box::new(move |state| {
            let _ = done.send(f(state));
        });
        self.tx.send(job).await.map_err(|_| StorageError::Closed)?;
        result.await.map_err(|_| StorageError::Closed)
    }
}

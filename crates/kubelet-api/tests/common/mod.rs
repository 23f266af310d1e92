//! What the integration tests share.

use std::future::Future;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A component's run loop on a task of its own, stopped through its cancellation token.
pub struct Task {
    pub cancel: CancellationToken,
    pub handle: JoinHandle<()>,
}

impl Task {
    /// Spawns `run` with a fresh token.
    pub fn spawn<F>(run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(run(cancel.clone()));
        Task { cancel, handle }
    }

    /// Cancels the loop and waits for it to end (a panic in it fails the test).
    pub async fn stop(self) {
        self.cancel.cancel();
        self.handle.await.unwrap();
    }
}

//! The kubelet's long-running tasks, owned and named. None of them ends before shutdown: one
//! that returns or panics early would leave a half-alive kubelet (a node whose lease lapses
//! while its process lives on), so the first to end stops the kubelet with its name.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::task::{Id, JoinSet};
use tracing::warn;

#[derive(Debug, Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

/// A task that ended before shutdown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {name} task {how}")]
pub struct TaskExit {
    pub name: &'static str,
    /// "ended", "panicked: <message>" or "was cancelled".
    pub how: String,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let h = self.set.spawn(task);
        self.names.insert(h.id(), name);
    }

    /// Runs `tick` at once and then every `period` (a slow tick delays the next one rather
    /// than bunching them up) until `stop`.
    pub fn spawn_every<F, Fut>(
        &mut self,
        name: &'static str,
        period: Duration,
        stop: tokio_util::sync::CancellationToken,
        mut tick: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.spawn(name, async move {
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => {}
                }
                tick().await;
            }
        });
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Waits for the first task to end (forever when there are none).
    pub async fn first_exit(&mut self) -> TaskExit {
        let Some(done) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, how) = match done {
            Ok((id, ())) => (id, "ended".to_string()),
            Err(e) if e.is_panic() => {
                let id = e.id();
                let p = e.into_panic();
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                (id, format!("panicked: {msg}"))
            }
            Err(e) => (e.id(), "was cancelled".to_string()),
        };
        TaskExit {
            name: self.names.remove(&id).unwrap_or("unnamed"),
            how,
        }
    }

    /// Gives the tasks (already told to stop) `grace` to finish what they are sending, then
    /// aborts the rest.
    pub async fn shutdown(mut self, grace: Duration) {
        let finished = tokio::time::timeout(grace, async {
            while self.set.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            warn!(
                left = self.set.len(),
                "tasks still running at shutdown; aborting them"
            );
        }
        self.set.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_task_to_end_is_named() {
        let mut t = Tasks::new();
        t.spawn("forever", std::future::pending());
        t.spawn("lease", async {
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let exit = t.first_exit().await;
        assert_eq!(exit.to_string(), "the lease task ended");
        assert_eq!(t.len(), 1);
        t.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_is_reported_with_its_message() {
        let mut t = Tasks::new();
        t.spawn("forever", std::future::pending());
        t.spawn("node status", async {
            tokio::task::yield_now().await;
            panic!("boom");
        });
        let exit = t.first_exit().await;
        assert_eq!(exit.to_string(), "the node status task panicked: boom");
        t.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_tasks_tick_until_stopped() {
        let mut t = Tasks::new();
        let stop = tokio_util::sync::CancellationToken::new();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let n = ticks.clone();
        t.spawn_every("tick", Duration::from_secs(10), stop.clone(), move || {
            let n = n.clone();
            async move {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(
            ticks.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "at 0, 10, 20, 30 s"
        );
        stop.cancel();
        let exit = t.first_exit().await;
        assert_eq!(exit.to_string(), "the tick task ended");
    }

    #[tokio::test(start_paused = true)]
    async fn no_tasks_never_exit() {
        let mut t = Tasks::new();
        let r = tokio::time::timeout(Duration::from_secs(3600), t.first_exit()).await;
        assert!(r.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_aborts_what_does_not_finish() {
        let mut t = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        t.spawn("stuck", async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        t.shutdown(Duration::from_secs(1)).await;
        // The task was dropped, and with it the sender.
        assert!(rx.await.is_err());
    }
}

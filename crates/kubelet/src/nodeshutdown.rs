//! Graceful node shutdown (upstream `nodeshutdown_manager_linux.go`): with
//! `shutdownGracePeriod` set, the kubelet holds a logind delay lock; when logind announces a
//! shutdown, the node reports NotReady, every running pod is killed (critical pods last)
//! and failed with reason `Shutdown`, and the lock is let go once their statuses are out or
//! the grace period is over.

use crate::settings::KubeletError;
use futures::StreamExt;
use kubelet_api::status_manager::StatusManager;
use kubelet_config::KubeletConfiguration;
use kubelet_core::nodeshutdown::{ShutdownKill, plan};
use kubelet_host::logind::{InhibitLock, Logind};
use kubelet_pod::pod_workers::PodWorkers;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often a pod being ended is looked at.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub(crate) struct ShutdownManager {
    grace: Duration,
    critical: Duration,
    workers: PodWorkers,
    status: StatusManager,
    /// Read by the node status: Ready=False while set; `node_status` reports it at once.
    shutting_down: Arc<AtomicBool>,
    node_status: Arc<tokio::sync::Notify>,
}

impl ShutdownManager {
    pub(crate) fn new(
        cfg: &KubeletConfiguration,
        workers: PodWorkers,
        status: StatusManager,
        shutting_down: Arc<AtomicBool>,
        node_status: Arc<tokio::sync::Notify>,
    ) -> Self {
        ShutdownManager {
            grace: cfg.shutdown_grace_period,
            critical: cfg.shutdown_grace_period_critical_pods,
            workers,
            status,
            shutting_down,
            node_status,
        }
    }

    /// Takes the lock and subscribes; a setting that cannot be honoured stops the start.
    /// `None` when graceful shutdown is off.
    pub(crate) async fn start(
        self,
        cancel: CancellationToken,
    ) -> Result<Option<impl std::future::Future<Output = ()> + Send + 'static>, KubeletError> {
        if self.grace.is_zero() {
            return Ok(None);
        }
        let err = |e: kubelet_host::logind::LogindError| KubeletError::NodeShutdown(e.to_string());
        let logind = Logind::connect().await.map_err(err)?;
        logind.ensure_inhibit_delay(self.grace).await.map_err(err)?;
        let lock = logind.inhibit_shutdown().await.map_err(err)?;
        let events = logind.shutdown_events().await.map_err(err)?;
        info!(grace = ?self.grace, critical = ?self.critical, "holding a logind delay lock for graceful node shutdown");
        Ok(Some(self.run(logind, lock, events, cancel)))
    }

    async fn run(
        self,
        logind: Logind,
        lock: InhibitLock,
        events: impl futures::Stream<Item = bool> + Send + 'static,
        cancel: CancellationToken,
    ) {
        let mut lock = Some(lock);
        let mut events = std::pin::pin!(events);
        loop {
            let start = tokio::select! {
                e = events.next() => e,
                _ = cancel.cancelled() => return,
            };
            match start {
                Some(true) => {
                    info!("node shutdown: ending pods");
                    self.shutting_down.store(true, Ordering::Relaxed);
                    self.node_status.notify_one();
                    tokio::select! {
                        _ = self.end_pods() => {}
                        _ = cancel.cancelled() => return,
                    }
                    info!("node shutdown: pods ended; releasing the delay lock");
                    lock = None;
                }
                Some(false) => {
                    info!("node shutdown cancelled");
                    self.shutting_down.store(false, Ordering::Relaxed);
                    self.node_status.notify_one();
                    if lock.is_none() {
                        match logind.inhibit_shutdown().await {
                            Ok(l) => lock = Some(l),
                            Err(e) => warn!(error = %e, "taking the delay lock again failed"),
                        }
                    }
                }
                None => {
                    warn!("logind's shutdown signals ended");
                    return;
                }
            }
        }
    }

    /// Ends every pod still running as the plan says, within the grace period.
    async fn end_pods(&self) {
        let kills = plan(&self.workers.active_pods(), self.grace, self.critical);
        let all = futures::future::join_all(kills.into_iter().map(|k| self.end_pod(k)));
        if tokio::time::timeout(self.grace, all).await.is_err() {
            warn!(grace = ?self.grace, "node shutdown: pods not all ended within the grace period");
        }
    }

    async fn end_pod(&self, k: ShutdownKill) {
        tokio::time::sleep(k.delay).await;
        info!(uid = %k.uid, grace = ?k.failure.grace_override, "node shutdown: killing pod");
        self.workers.fail(&k.uid, k.failure);
        // Done when its Failed status reached the API server: the worker reports Failed only
        // once the kill has returned, and a pod fails on its own only when nothing runs.
        loop {
            let failed = self
                .status
                .cached(&k.uid)
                .and_then(|s| s.phase)
                .is_some_and(|p| p == "Failed");
            if failed && self.status.sent(&k.uid) {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

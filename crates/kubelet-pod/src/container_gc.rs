//! The container garbage collector (upstream `container/container_gc.go`): every minute,
//! node-wide, the runtime manager removes the dead containers and sandboxes the policy lets
//! go; the eviction manager also asks it to delete every unused one under disk pressure.

use crate::kuberuntime::RuntimeManager;
use crate::pod_workers::PodWorkers;
use kubelet_core::gc::GcPolicy;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{debug, warn};

/// Upstream's `ContainerGCPeriod`.
pub const CONTAINER_GC_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ContainerGc {
    pub runtime: Arc<RuntimeManager>,
    pub workers: PodWorkers,
    pub policy: GcPolicy,
    /// Every pod source has been seen: unknown pods are really gone.
    pub sources_ready: Arc<AtomicBool>,
    /// Standalone: pods the kubelet does not know may be another kubelet's; left alone.
    pub own_only: bool,
}

impl ContainerGc {
    async fn run(&self, evict_terminated: bool) -> usize {
        let (workers, own_only) = (self.workers.clone(), self.own_only);
        let state = move |uid: &str| workers.gc_state(uid, own_only);
        match self
            .runtime
            .garbage_collect(
                self.policy,
                self.sources_ready.load(Ordering::Acquire),
                evict_terminated,
                &state,
            )
            .await
        {
            Ok(n) => {
                debug!(removed = n, "container GC");
                n
            }
            Err(e) => {
                warn!(error = %e, "container garbage collection failed");
                0
            }
        }
    }

    /// One periodic pass (upstream `GarbageCollect`).
    pub async fn garbage_collect(&self) -> usize {
        self.run(false).await
    }

    /// The eviction manager's reclaim (upstream `DeleteAllUnusedContainers`): terminated
    /// pods' containers go too.
    pub async fn delete_all_unused(&self) -> usize {
        self.run(true).await
    }
}

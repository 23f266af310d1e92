//! Removal of dead containers and sandboxes that newer ones replaced (upstream
//! `kuberuntime_gc.go`, per pod).

use super::*;

impl RuntimeManager {
    /// Removes exited containers beyond the newest one per name: that one gives `lastState`
    /// and the termination message; older runs only cost disk (upstream's container GC keeps
    /// one dead container per container, too). Restart counts live on the containers' labels.
    pub(super) async fn prune_dead_containers(&self, r: &PodRef, status: &PodStatus) {
        let mut kept = std::collections::HashSet::new();
        for c in status
            .containers
            .iter()
            .filter(|c| c.state == ContainerState::Exited)
        {
            if kept.insert(c.name.as_str()) {
                continue;
            }
            match self.rt.remove_container(&c.id).await {
                Err(e) if !e.is_not_found() => {
                    warn!(container = %c.name, id = %c.id, error = %e, "removing dead container failed");
                    continue;
                }
                _ => {}
            }
            self.exited
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&c.id);
            let link = self
                .cfg
                .container_logs_root
                .join(legacy_log_name(r, &c.name, &c.id));
            let _ = tokio::fs::remove_file(link).await;
            if !c.log_path.is_empty() {
                let _ = tokio::fs::remove_file(&c.log_path).await;
            }
        }
    }

    /// Removes sandboxes that are dead, not the newest, and whose every container has a newer
    /// run elsewhere: nothing of them is needed for status or restart counts any more. This is
    /// also what clears a sandbox left behind by a runtime call that timed out.
    pub(super) async fn prune_dead_sandboxes(&self, status: &PodStatus) {
        let Some(newest) = status.sandboxes.first() else {
            return;
        };
        for sb in status
            .sandboxes
            .iter()
            .skip(1)
            .filter(|s| !s.ready && s.id != newest.id)
        {
            let superseded = status
                .containers
                .iter()
                .filter(|c| c.sandbox_id == sb.id)
                .all(|c| {
                    c.state == ContainerState::Exited
                        && status.containers.iter().any(|n| {
                            n.name == c.name && n.sandbox_id != sb.id && n.created_at > c.created_at
                        })
                });
            if !superseded {
                continue;
            }
            for res in [
                self.rt.stop_pod_sandbox(&sb.id).await,
                self.rt.remove_pod_sandbox(&sb.id).await,
            ] {
                if let Err(e) = res
                    && !e.is_not_found()
                {
                    warn!(sandbox = %sb.id, error = %e, "removing dead sandbox failed");
                }
            }
        }
    }
}

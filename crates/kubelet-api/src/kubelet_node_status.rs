//! Registers the Node and keeps its status current (upstream `kubelet_node_status.go`):
//! a patch when the status changed, and at least every `nodeStatusUpdateFrequency`.

use crate::api::NodeClient;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerImage, Node, NodeStatus};
use kubelet_core::clock::SharedClock;
use kubelet_core::nodestatus::{self, NodeInputs, RuntimeState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What the node status is computed from, read afresh at each update (host, runtime, the
/// kubelet's own health).
#[async_trait]
pub trait NodeFacts: Send + Sync {
    /// The images to list, largest first.
    async fn images(&self) -> Vec<ContainerImage>;
    fn inputs(&self, images: &[ContainerImage]) -> NodeInputs;
}

pub struct NodeStatusManager {
    pub api: Arc<dyn NodeClient>,
    pub node_name: String,
    pub facts: Arc<dyn NodeFacts>,
    /// Changes of the runtime's state, which are reported at once.
    pub runtime_state: watch::Receiver<RuntimeState>,
    pub clock: SharedClock,
    pub labels: BTreeMap<String, String>,
    pub update_frequency: Duration,
    pub register: bool,
    /// Taints, schedulability and provider ID, set when the Node is created.
    pub registration: nodestatus::Registration,
    /// Set once the Node exists (at once when not registering): part of readiness.
    pub registered: watch::Sender<bool>,
    /// Woken when a fact changed that must be reported at once (node shutdown).
    pub kick: Arc<tokio::sync::Notify>,
    /// Condition changes are recorded as events on the Node, as upstream's setters do.
    pub recorder: crate::events::Recorder,
}

impl std::fmt::Debug for NodeStatusManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStatusManager")
            .field("node_name", &self.node_name)
            .finish()
    }
}

const IMAGE_REFRESH: Duration = Duration::from_secs(30);

impl NodeStatusManager {
    fn record_condition_events(&self, old: Option<&NodeStatus>, new: &NodeStatus) {
        for e in nodestatus::condition_events(old, new) {
            self.recorder.emit(
                crate::events::node_ref(&self.node_name),
                crate::events::NORMAL,
                e,
                format!("Node {} status is now: {e}", self.node_name),
            );
        }
    }

    /// Creates the Node, or reconciles the labels and annotation of an existing one.
    async fn register(
        &self,
        images: &[ContainerImage],
        cancel: &CancellationToken,
    ) -> Option<Node> {
        let mut delay = Duration::from_millis(100);
        loop {
            let status =
                nodestatus::node_status(&self.facts.inputs(images), None, self.clock.now());
            // Upstream records these for its initial node at every start.
            self.record_condition_events(None, &status);
            let node = nodestatus::initial_node(
                &self.node_name,
                self.labels.clone(),
                status,
                &self.registration,
            );
            match self.api.create_node(&node).await {
                Ok(n) => {
                    info!(node = %self.node_name, "node registered");
                    return Some(n);
                }
                Err(e) if e.is_status(409) => {
                    let patch = serde_json::json!({
                        "metadata": {
                            "labels": self.labels,
                            "annotations": { nodestatus::ATTACH_DETACH_ANNOTATION: "true" },
                        }
                    });
                    match self.api.patch_node(&self.node_name, &patch).await {
                        Ok(n) => {
                            info!(node = %self.node_name, "node already registered; reconciled");
                            return Some(n);
                        }
                        Err(e) => warn!(error = %e, "reconciling existing node failed"),
                    }
                }
                Err(e) => warn!(error = %e, "registering node failed; retrying"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(7));
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut images = self.facts.images().await;
        let mut images_at = Instant::now();
        let mut last: Option<NodeStatus> = None;
        if self.register {
            match self.register(&images, &cancel).await {
                Some(n) => last = n.status,
                None => return,
            }
        }
        self.registered.send_replace(true);
        let mut last_patch = Instant::now();
        let mut failures = 0u32;
        loop {
            if images_at.elapsed() >= IMAGE_REFRESH {
                images = self.facts.images().await;
                images_at = Instant::now();
            }
            let status = nodestatus::node_status(
                &self.facts.inputs(&images),
                last.as_ref(),
                self.clock.now(),
            );
            let changed = last
                .as_ref()
                .is_none_or(|l| nodestatus::status_changed(l, &status));
            if changed || last_patch.elapsed() >= self.update_frequency || failures > 0 {
                self.record_condition_events(last.as_ref(), &status);
                let patch = serde_json::json!({ "status": status });
                match self.api.patch_node_status(&self.node_name, &patch).await {
                    Ok(n) => {
                        last = n.status.or(Some(status));
                        last_patch = Instant::now();
                        failures = 0;
                    }
                    Err(e) => {
                        failures += 1;
                        warn!(error = %e, failures, "updating node status failed");
                    }
                }
            }
            let retry = if failures > 0 {
                Duration::from_secs(1)
            } else {
                self.update_frequency
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
                r = self.runtime_state.changed() => if r.is_err() { return },
                _ = self.kick.notified() => {}
            }
        }
    }
}

//! Registers the Node and keeps its status current (upstream `kubelet_node_status.go`),
//! and watches the runtime's health (upstream `updateRuntimeUp`).

use crate::client::{ApiClient, is_status};
use crate::clock::SharedClock;
use crate::nodestatus::{self, NodeInputs, RuntimeCondition, RuntimeState};
use k8s_openapi::api::core::v1::{ContainerImage, Node, NodeAddress, NodeStatus};
use kube::api::{Patch, PatchParams, PostParams};
use kubelet_cri::RuntimeService;
use kubelet_host::Host;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Polls CRI `Status` (and `Version` once) and publishes changes.
pub async fn watch_runtime(
    rt: Arc<dyn RuntimeService>,
    tx: watch::Sender<RuntimeState>,
    period: Duration,
    cancel: CancellationToken,
) {
    let mut version = String::new();
    loop {
        if version.is_empty()
            && let Ok(v) = rt.version().await
        {
            version = format!("{}://{}", v.runtime_name, v.runtime_version);
        }
        let next = match rt.status().await {
            Ok(s) => RuntimeState {
                synced: Some(true),
                version: version.clone(),
                conditions: s
                    .status
                    .map(|st| {
                        st.conditions
                            .into_iter()
                            .map(|c| RuntimeCondition {
                                kind: c.r#type,
                                status: c.status,
                                reason: c.reason,
                                message: c.message,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                error: None,
            },
            Err(e) => {
                let prev = tx.borrow().clone();
                RuntimeState {
                    synced: prev.synced.map(|_| false),
                    error: Some(e.to_string()),
                    ..prev
                }
            }
        };
        tx.send_if_modified(|cur| {
            if *cur != next {
                *cur = next;
                true
            } else {
                false
            }
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

pub type HealthCheck = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

pub struct NodeStatusManager {
    pub api: ApiClient,
    pub node_name: String,
    pub host: Arc<dyn Host>,
    pub rt: Arc<dyn RuntimeService>,
    pub runtime_state: watch::Receiver<RuntimeState>,
    pub clock: SharedClock,
    pub root_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub addresses: Vec<NodeAddress>,
    pub port: u16,
    pub max_pods: u32,
    pub eviction_hard: BTreeMap<String, String>,
    pub max_images: i32,
    pub update_frequency: Duration,
    pub register: bool,
    pub health: HealthCheck,
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
    async fn inputs(&self, images: &[ContainerImage]) -> NodeInputs {
        let machine = self.host.machine_info().unwrap_or_else(|e| {
            warn!(error = %e, "reading machine info failed");
            Default::default()
        });
        NodeInputs {
            machine,
            root_fs: self.host.fs_stats(&self.root_dir).unwrap_or_default(),
            memory_available: self.host.memory_available().ok(),
            runtime: self.runtime_state.borrow().clone(),
            images: images.to_vec(),
            addresses: self.addresses.clone(),
            port: self.port,
            max_pods: self.max_pods,
            eviction_hard: self.eviction_hard.clone(),
            health_errors: (self.health)(),
        }
    }

    async fn images(&self) -> Vec<ContainerImage> {
        match self.rt.list_images().await {
            Ok(i) => nodestatus::node_images(&i, self.max_images),
            Err(e) => {
                warn!(error = %e, "listing images failed");
                vec![]
            }
        }
    }

    /// Creates the Node, or reconciles the labels and annotation of an existing one.
    async fn register(
        &self,
        images: &[ContainerImage],
        cancel: &CancellationToken,
    ) -> Option<Node> {
        let nodes: kube::Api<Node> = self.api.cluster_api();
        let mut delay = Duration::from_millis(100);
        loop {
            let status =
                nodestatus::node_status(&self.inputs(images).await, None, self.clock.now());
            let node = nodestatus::initial_node(&self.node_name, self.labels.clone(), status);
            self.api.limiter.acquire().await;
            match nodes.create(&PostParams::default(), &node).await {
                Ok(n) => {
                    info!(node = %self.node_name, "node registered");
                    return Some(n);
                }
                Err(e) if is_status(&e, 409) => {
                    self.api.limiter.acquire().await;
                    let patch = serde_json::json!({
                        "metadata": {
                            "labels": self.labels,
                            "annotations": { nodestatus::ATTACH_DETACH_ANNOTATION: "true" },
                        }
                    });
                    match nodes
                        .patch(
                            &self.node_name,
                            &PatchParams::default(),
                            &Patch::Strategic(&patch),
                        )
                        .await
                    {
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
        let mut images = self.images().await;
        let mut images_at = Instant::now();
        let mut last: Option<NodeStatus> = None;
        if self.register {
            match self.register(&images, &cancel).await {
                Some(n) => last = n.status,
                None => return,
            }
        }
        let nodes: kube::Api<Node> = self.api.cluster_api();
        let mut last_patch = Instant::now();
        let mut failures = 0u32;
        loop {
            if images_at.elapsed() >= IMAGE_REFRESH {
                images = self.images().await;
                images_at = Instant::now();
            }
            let status = nodestatus::node_status(
                &self.inputs(&images).await,
                last.as_ref(),
                self.clock.now(),
            );
            let changed = last
                .as_ref()
                .is_none_or(|l| nodestatus::status_changed(l, &status));
            if changed || last_patch.elapsed() >= self.update_frequency || failures > 0 {
                self.api.limiter.acquire().await;
                let patch = serde_json::json!({ "status": status });
                match nodes
                    .patch_status(
                        &self.node_name,
                        &PatchParams::default(),
                        &Patch::Strategic(&patch),
                    )
                    .await
                {
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
            }
        }
    }
}

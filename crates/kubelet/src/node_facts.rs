//! What the node status is computed from: the host, the runtime and the kubelet's health
//! (the inputs of upstream's `nodestatus` setters).

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerImage, NodeAddress};
use kubelet_api::kubelet_node_status::NodeFacts;
use kubelet_core::machine::ImageSummary;
use kubelet_core::nodestatus::{self, NodeInputs, RuntimeCondition, RuntimeState};
use kubelet_cri::RuntimeService;
use kubelet_host::Host;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub type HealthCheck = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

pub struct HostFacts {
    pub host: Arc<dyn Host>,
    pub rt: Arc<dyn RuntimeService>,
    pub runtime_state: watch::Receiver<RuntimeState>,
    pub root_dir: PathBuf,
    pub addresses: Vec<NodeAddress>,
    pub port: u16,
    pub max_pods: u32,
    pub eviction_hard: BTreeMap<String, String>,
    pub reserved: kubelet_core::nodestatus::Reserved,
    pub max_images: i32,
    pub health: HealthCheck,
    /// The eviction manager's pressure conditions.
    pub pressure: watch::Receiver<Vec<String>>,
}

impl std::fmt::Debug for HostFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostFacts")
            .field("root_dir", &self.root_dir)
            .finish()
    }
}

#[async_trait]
impl NodeFacts for HostFacts {
    async fn images(&self) -> Vec<ContainerImage> {
        match self.rt.list_images().await {
            Ok(i) => {
                let summaries: Vec<ImageSummary> = i
                    .into_iter()
                    .map(|i| ImageSummary {
                        id: i.id,
                        repo_tags: i.repo_tags,
                        repo_digests: i.repo_digests,
                        size: i.size,
                    })
                    .collect();
                nodestatus::node_images(&summaries, self.max_images)
            }
            Err(e) => {
                warn!(error = %e, "listing images failed");
                vec![]
            }
        }
    }

    fn inputs(&self, images: &[ContainerImage]) -> NodeInputs {
        let machine = self.host.machine_info().unwrap_or_else(|e| {
            warn!(error = %e, "reading machine info failed");
            Default::default()
        });
        NodeInputs {
            machine,
            root_fs: self.host.fs_stats(&self.root_dir).unwrap_or_default(),
            pressure: self.pressure.borrow().clone(),
            runtime: self.runtime_state.borrow().clone(),
            images: images.to_vec(),
            addresses: self.addresses.clone(),
            port: self.port,
            max_pods: self.max_pods,
            eviction_hard: self.eviction_hard.clone(),
            reserved: self.reserved,
            health_errors: (self.health)(),
        }
    }
}

impl HostFacts {
    /// The Node as this kubelet would register it, from the host's facts now: what admission
    /// judges against until the API server has returned one (and always standalone).
    pub fn local_node(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        registration: &nodestatus::Registration,
        now: k8s_openapi::jiff::Timestamp,
    ) -> k8s_openapi::api::core::v1::Node {
        let status = nodestatus::node_status(&self.inputs(&[]), None, now);
        nodestatus::initial_node(name, labels.clone(), status, registration)
    }
}

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
            version = format!(
                "{}://{}",
                v.runtime_name,
                kubelet_core::nodestatus::generic_version(&v.runtime_version)
            );
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

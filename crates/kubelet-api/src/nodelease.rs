//! The node's heartbeat Lease in `kube-node-lease` (upstream component-helpers lease
//! controller): renewed every quarter of its duration with a full update, re-read on conflict.

use crate::api::NodeClient;
use crate::error::ApiError;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kubelet_core::clock::SharedClock;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub const NAMESPACE: &str = "kube-node-lease";

#[derive(Debug)]
pub struct LeaseController {
    pub api: Arc<dyn NodeClient>,
    pub node_name: String,
    pub duration_seconds: u32,
    pub clock: SharedClock,
}

impl LeaseController {
    pub fn renew_interval(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.duration_seconds) * 0.25)
    }

    fn desired(&self, base: Option<Lease>, owner_uid: Option<String>) -> Lease {
        let mut l = base.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.node_name.clone()),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            spec: None,
        });
        let spec = l.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.node_name.clone());
        spec.lease_duration_seconds = Some(self.duration_seconds as i32);
        spec.renew_time = Some(MicroTime(self.clock.now()));
        if l.metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty())
            && let Some(uid) = owner_uid
        {
            l.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: self.node_name.clone(),
                uid,
                ..Default::default()
            }]);
        }
        l
    }

    async fn node_uid(&self) -> Option<String> {
        self.api
            .get_node(&self.node_name)
            .await
            .ok()
            .and_then(|n| n.metadata.uid)
    }

    /// Writes `l` back with a fresh renewTime (and the Node as owner, if it has none yet).
    async fn renew(&self, l: Lease) -> Result<Lease, ApiError> {
        let ownerless = l
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty());
        let owner = if ownerless {
            self.node_uid().await
        } else {
            None
        };
        self.api.replace_lease(&self.desired(Some(l), owner)).await
    }

    /// One renewal; returns the lease as stored, for the next update.
    async fn sync(&self, cached: Option<Lease>) -> Result<Lease, ApiError> {
        if let Some(l) = cached {
            match self.renew(l).await {
                Ok(l) => return Ok(l),
                Err(e) => debug!(error = %e, "lease update failed; re-reading"),
            }
        }
        match self.api.get_lease(NAMESPACE, &self.node_name).await {
            Ok(l) => self.renew(l).await,
            Err(e) if e.is_not_found() => {
                // Upstream creates the lease only once it can name the Node as its owner.
                let Some(uid) = self.node_uid().await else {
                    return Err(e);
                };
                self.api.create_lease(&self.desired(None, Some(uid))).await
            }
            Err(e) => Err(e),
        }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let mut cached: Option<Lease> = None;
        let mut delay = Duration::from_millis(200);
        loop {
            let wait = match self.sync(cached.take()).await {
                Ok(l) => {
                    cached = Some(l);
                    delay = Duration::from_millis(200);
                    self.renew_interval()
                }
                Err(e) => {
                    // Before the Node exists there is nothing to own the lease yet.
                    if e.is_not_found() {
                        debug!(error = %e, "node lease not created yet");
                    } else {
                        warn!(error = %e, "renewing node lease failed");
                    }
                    let d = delay;
                    delay = (delay * 2).min(Duration::from_secs(7));
                    d
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

//! Pod admission as the workers meet a new pod (upstream `HandlePodAdditions`,
//! `canAdmitPod`, `rejectPod`): the pure verdict is `kubelet_core::admission::admit`; this
//! module gathers what it judges against.

use k8s_openapi::api::core::v1::Node;
use std::sync::Arc;
use tokio::sync::watch;

/// The Node a new pod is judged against (upstream `getNodeAnyWay`): the API server's copy
/// once the node status manager has one, else the node as it would be registered.
#[derive(Clone)]
pub struct NodeSource {
    pub api: watch::Receiver<Option<Arc<Node>>>,
    pub local: Arc<dyn Fn() -> Node + Send + Sync>,
}

impl std::fmt::Debug for NodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSource").finish_non_exhaustive()
    }
}

impl NodeSource {
    pub fn get(&self) -> Arc<Node> {
        // Not holding the watch while the local node is made (it reads the host).
        let api = self.api.borrow().clone();
        api.unwrap_or_else(|| Arc::new((self.local)()))
    }

    /// A fixed node, for tests and tools.
    pub fn fixed(node: Node) -> Self {
        let (_tx, api) = watch::channel(Some(Arc::new(node.clone())));
        NodeSource {
            api,
            local: Arc::new(move || node.clone()),
        }
    }
}

/// What admission needs besides the pods.
#[derive(Debug, Clone)]
pub struct Admitter {
    pub node: NodeSource,
    /// The eviction manager's pressure conditions (empty when there is none).
    pub pressure: watch::Receiver<Vec<String>>,
    /// allowedUnsafeSysctls.
    pub allowed_unsafe_sysctls: Vec<String>,
}

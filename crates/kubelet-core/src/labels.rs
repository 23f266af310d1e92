//! The `io.kubernetes.*` labels and annotations upstream puts on sandboxes and containers.
//! They let a restarted kubelet recognise its own pods and containers in the runtime.

use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashMap;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
pub const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
/// The kubelet's root directory, on each sandbox it starts: a standalone kubelet only
/// cleans up sandboxes that carry its own.
pub const KUBELET_ROOT_DIR: &str = "io.kubelet-rs.root-dir";
pub const POD_DELETION_GRACE_PERIOD: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";

/// The pod's identity as recorded on runtime objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    pub fn of(pod: &Pod) -> Self {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        Some(PodRef {
            namespace: labels.get(POD_NAMESPACE)?.clone(),
            name: labels.get(POD_NAME)?.clone(),
            uid: labels.get(POD_UID)?.clone(),
        })
    }

    /// `ns/name` for logs and events.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

pub fn sandbox_labels(pod: &Pod) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let r = PodRef::of(pod);
    l.insert(POD_NAME.into(), r.name);
    l.insert(POD_NAMESPACE.into(), r.namespace);
    l.insert(POD_UID.into(), r.uid);
    l
}

pub fn sandbox_annotations(pod: &Pod) -> HashMap<String, String> {
    pod.metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

pub fn container_labels(pod: &Pod, c: &Container) -> HashMap<String, String> {
    let r = PodRef::of(pod);
    HashMap::from([
        (POD_NAME.into(), r.name),
        (POD_NAMESPACE.into(), r.namespace),
        (POD_UID.into(), r.uid),
        (CONTAINER_NAME.into(), c.name.clone()),
    ])
}

pub fn container_annotations(
    pod: &Pod,
    c: &Container,
    hash: u64,
    restart_count: u32,
) -> HashMap<String, String> {
    let mut a = HashMap::from([
        (CONTAINER_HASH.into(), format!("{hash:x}")),
        (CONTAINER_RESTART_COUNT.into(), restart_count.to_string()),
        (
            TERMINATION_MESSAGE_PATH.into(),
            c.termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            TERMINATION_MESSAGE_POLICY.into(),
            c.termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
    ]);
    if let Some(g) = pod.metadata.deletion_grace_period_seconds {
        a.insert(POD_DELETION_GRACE_PERIOD.into(), g.to_string());
    }
    let tg = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    a.insert(POD_TERMINATION_GRACE_PERIOD.into(), tg.to_string());
    if let Some(pre_stop) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        && let Ok(j) = serde_json::to_string(pre_stop)
    {
        a.insert(PRE_STOP_HANDLER.into(), j);
    }
    if let Some(ports) = c.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(j) = serde_json::to_string(ports)
    {
        a.insert(CONTAINER_PORTS.into(), j);
    }
    a
}

/// Parses the hash annotation written by [`container_annotations`].
pub fn parse_hash(annotations: &HashMap<String, String>) -> Option<u64> {
    u64::from_str_radix(annotations.get(CONTAINER_HASH)?, 16).ok()
}

pub fn parse_restart_count(annotations: &HashMap<String, String>) -> u32 {
    annotations
        .get(CONTAINER_RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

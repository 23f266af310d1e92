//! Graceful node shutdown (upstream `pkg/kubelet/nodeshutdown`): when logind announces a
//! shutdown, every running pod is killed within `shutdownGracePeriod`, critical pods last,
//! and failed with reason `Shutdown`.

use crate::qos::is_critical_pod;
use crate::sync::Failure;
use k8s_openapi::api::core::v1::Pod;
use std::time::Duration;

pub const SHUTDOWN_REASON: &str = "Shutdown";
pub const SHUTDOWN_MESSAGE: &str = "Node is shutting, evicting pods";
/// The node's Ready condition while it shuts down.
pub const NODE_SHUTTING_DOWN: &str = "node is shutting down";

/// One pod's part of the shutdown: wait `delay`, then end it as `failure` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownKill {
    pub uid: String,
    pub delay: Duration,
    pub failure: Failure,
}

/// Upstream's `processShutdownEvent`: ordinary pods get the grace period less the critical
/// pods' share, at once; critical pods wait that long, then get their share. A pod's own
/// shorter `terminationGracePeriodSeconds` wins.
pub fn plan(pods: &[Pod], grace: Duration, critical: Duration) -> Vec<ShutdownKill> {
    let ordinary = grace.saturating_sub(critical);
    pods.iter()
        .map(|p| {
            let (delay, mut seconds) = if is_critical_pod(p) {
                (ordinary, secs(critical))
            } else {
                (Duration::ZERO, secs(ordinary))
            };
            if let Some(own) = p
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .filter(|own| *own <= seconds)
            {
                seconds = own;
            }
            ShutdownKill {
                uid: p.metadata.uid.clone().unwrap_or_default(),
                delay,
                failure: Failure {
                    reason: SHUTDOWN_REASON.into(),
                    message: SHUTDOWN_MESSAGE.into(),
                    grace_override: Some(seconds),
                    event: false,
                },
            }
        })
        .collect()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, extra: serde_json::Value) -> Pod {
        let mut v = serde_json::json!({"metadata": {"uid": uid}, "spec": {"containers": []}});
        if let Some(g) = extra.get("grace") {
            v["spec"]["terminationGracePeriodSeconds"] = g.clone();
        }
        if let Some(p) = extra.get("priority") {
            v["spec"]["priority"] = p.clone();
        }
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn critical_pods_go_last_with_their_share() {
        let pods = [
            pod("a", serde_json::json!({})),
            pod("b", serde_json::json!({"grace": 3})),
            pod("c", serde_json::json!({"priority": 2_000_001_000})),
            pod(
                "d",
                serde_json::json!({"priority": 2_000_001_000, "grace": 60}),
            ),
        ];
        let got: Vec<(String, u64, Option<i64>)> =
            plan(&pods, Duration::from_secs(30), Duration::from_secs(10))
                .into_iter()
                .map(|k| (k.uid, k.delay.as_secs(), k.failure.grace_override))
                .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), 0, Some(20)),
                ("b".to_string(), 0, Some(3)),
                ("c".to_string(), 20, Some(10)),
                ("d".to_string(), 20, Some(10)),
            ]
        );
        let k = &plan(&pods[..1], Duration::from_secs(30), Duration::ZERO)[0];
        assert_eq!(k.failure.reason, "Shutdown");
        assert_eq!(k.failure.message, "Node is shutting, evicting pods");
        assert!(!k.failure.event, "upstream records no event at shutdown");
        assert_eq!(k.failure.grace_override, Some(30));
    }
}

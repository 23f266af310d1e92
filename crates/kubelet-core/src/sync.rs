//! What a pod worker does with a pod at one sync (the branches of upstream's `syncPod` and
//! `syncTerminatingPod`), decided from facts alone; `kubelet_pod::pod_workers` acts on it.

use crate::actions::running_container_ids;
use crate::eviction::EVICTED;
use crate::runtime::PodStatus;
use crate::status::{DEADLINE_EXCEEDED, active_deadline_left};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// What the worker knows at the start of a sync.
#[derive(Debug, Clone, Copy)]
pub struct SyncFacts<'a> {
    pub pod: &'a Pod,
    /// The runtime's view of the pod.
    pub runtime: &'a PodStatus,
    /// Gone from the API server (or an orphan found in the runtime).
    pub removed: bool,
    /// The phase last reported.
    pub phase: Option<&'a str>,
    /// When the pod started, as last reported.
    pub start_time: Option<&'a Time>,
    pub now: Timestamp,
    /// Admission's refusal, when the pod was refused (upstream `rejectPod`).
    pub rejection: Option<&'a crate::admission::Rejection>,
    /// The kubelet's own verdict, once made (the eviction manager, node shutdown).
    pub failure: Option<&'a Failure>,
}

/// The kubelet ends a running pod of its own accord: its worker kills it (with
/// `grace_override` in place of the pod's grace period) and fails it with these words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
    pub grace_override: Option<i64>,
    /// A Warning event with the reason and message (upstream emits none at node shutdown).
    pub event: bool,
}

impl Failure {
    /// Upstream's eviction manager kills with a zero grace period override.
    pub fn evicted(message: impl Into<String>) -> Self {
        Self::evicted_with_grace(message, 0)
    }

    /// A soft threshold's eviction kills with `evictionMaxPodGracePeriod`.
    pub fn evicted_with_grace(message: impl Into<String>, grace: i64) -> Self {
        Failure {
            reason: EVICTED.into(),
            message: message.into(),
            grace_override: Some(grace),
            event: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncDecision {
    /// Deleted or removed: stop what runs (`kill`), report the last states unless `removed`,
    /// clean up, then forget the pod (`removed`) or delete its object.
    Terminate { kill: bool, removed: bool },
    /// Never started and never will be (admission, upstream `rejectPod`): fail it without a
    /// runtime call. `message` is the event's; the status says `Pod <message>`.
    Reject { reason: String, message: String },
    /// Kill it and fail it (active deadline, eviction, node shutdown).
    Fail(Failure),
    /// Finished (Succeeded or Failed): stop what still runs and release its volumes.
    Finish { kill: bool },
    /// Run it: volumes, then `compute_pod_actions`' plan. The worker wakes when the active
    /// deadline runs out, if there is one.
    Sync { deadline_left: Option<Duration> },
}

/// Whether anything of the pod still runs.
pub fn active(runtime: &PodStatus) -> bool {
    !running_container_ids(runtime).is_empty() || runtime.sandboxes.iter().any(|s| s.ready)
}

pub fn decide(f: &SyncFacts<'_>) -> SyncDecision {
    if f.removed || f.pod.metadata.deletion_timestamp.is_some() {
        return SyncDecision::Terminate {
            kill: active(f.runtime),
            removed: f.removed,
        };
    }
    if crate::status::is_terminal_phase(f.phase) {
        return SyncDecision::Finish {
            kill: active(f.runtime),
        };
    }
    // Admission judged the pod when the workers first met it.
    if let Some(r) = f.rejection {
        return SyncDecision::Reject {
            reason: r.reason.clone(),
            message: r.message.clone(),
        };
    }
    let deadline_left = active_deadline_left(f.pod, f.start_time, f.now);
    if deadline_left.is_some_and(|d| d.is_zero()) {
        let (reason, message) = DEADLINE_EXCEEDED;
        return SyncDecision::Fail(Failure {
            reason: reason.into(),
            message: message.into(),
            grace_override: None,
            event: true,
        });
    }
    if let Some(failure) = f.failure {
        return SyncDecision::Fail(failure.clone());
    }
    SyncDecision::Sync { deadline_left }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerState, ContainerStatus, SandboxStatus};

    fn pod(extra: serde_json::Value) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                match (o.get_mut(k), val) {
                    (Some(serde_json::Value::Object(a)), serde_json::Value::Object(b)) => {
                        a.extend(b.clone());
                    }
                    _ => {
                        o.insert(k.clone(), val.clone());
                    }
                }
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn running() -> PodStatus {
        PodStatus {
            sandboxes: vec![SandboxStatus {
                id: "s".into(),
                ready: true,
                ..Default::default()
            }],
            containers: vec![ContainerStatus {
                id: "c1".into(),
                name: "c".into(),
                state: ContainerState::Running,
                ..Default::default()
            }],
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap()
    }

    fn facts<'a>(pod: &'a Pod, rt: &'a PodStatus) -> SyncFacts<'a> {
        SyncFacts {
            pod,
            runtime: rt,
            removed: false,
            phase: None,
            start_time: None,
            now: t(0),
            rejection: None,
            failure: None,
        }
    }

    #[test]
    fn a_plain_pod_is_synced() {
        let (p, rt) = (pod(serde_json::json!({})), PodStatus::default());
        assert_eq!(
            decide(&facts(&p, &rt)),
            SyncDecision::Sync {
                deadline_left: None
            }
        );
    }

    #[test]
    fn a_deleted_pod_is_terminated_and_killed_while_anything_runs() {
        let p = pod(serde_json::json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        let rt = running();
        assert_eq!(
            decide(&facts(&p, &rt)),
            SyncDecision::Terminate {
                kill: true,
                removed: false
            }
        );
        let empty = PodStatus::default();
        assert_eq!(
            decide(&facts(&p, &empty)),
            SyncDecision::Terminate {
                kill: false,
                removed: false
            }
        );
    }

    #[test]
    fn a_removed_pod_is_terminated_and_forgotten() {
        let (p, rt) = (pod(serde_json::json!({})), running());
        let f = SyncFacts {
            removed: true,
            ..facts(&p, &rt)
        };
        assert_eq!(
            decide(&f),
            SyncDecision::Terminate {
                kill: true,
                removed: true
            }
        );
    }

    #[test]
    fn a_finished_pod_only_stops_what_is_left() {
        let (p, rt) = (pod(serde_json::json!({})), running());
        let evicted = Failure::evicted("evict me");
        for phase in ["Succeeded", "Failed"] {
            let f = SyncFacts {
                phase: Some(phase),
                failure: Some(&evicted),
                ..facts(&p, &rt)
            };
            assert_eq!(decide(&f), SyncDecision::Finish { kill: true });
        }
    }

    #[test]
    fn a_rejected_pod_is_reported_failed_until_it_is_deleted() {
        let p = pod(serde_json::json!({}));
        let empty = PodStatus::default();
        let r = crate::admission::Rejection {
            reason: "OutOfcpu".into(),
            message: "Node didn't have enough resource: cpu".into(),
        };
        let f = SyncFacts {
            rejection: Some(&r),
            ..facts(&p, &empty)
        };
        assert_eq!(
            decide(&f),
            SyncDecision::Reject {
                reason: "OutOfcpu".into(),
                message: "Node didn't have enough resource: cpu".into()
            }
        );
        // Once reported Failed, what may still run is stopped.
        let rt = running();
        let f = SyncFacts {
            rejection: Some(&r),
            phase: Some("Failed"),
            ..facts(&p, &rt)
        };
        assert_eq!(decide(&f), SyncDecision::Finish { kill: true });
        assert!(matches!(
            decide(&facts(&p, &empty)),
            SyncDecision::Sync { .. }
        ));
    }

    #[test]
    fn the_active_deadline_fails_the_pod_when_it_runs_out() {
        let p = pod(serde_json::json!({"spec": {"activeDeadlineSeconds": 30}}));
        let rt = running();
        let start = Time(t(0));
        let at = |s| SyncFacts {
            start_time: Some(&start),
            now: t(s),
            ..facts(&p, &rt)
        };
        assert_eq!(
            decide(&at(10)),
            SyncDecision::Sync {
                deadline_left: Some(Duration::from_secs(20))
            }
        );
        assert_eq!(
            decide(&at(30)),
            SyncDecision::Fail(Failure {
                reason: "DeadlineExceeded".into(),
                message: "Pod was active on the node longer than the specified deadline".into(),
                grace_override: None,
                event: true,
            })
        );
        // Without a start time the deadline cannot run.
        assert!(matches!(
            decide(&facts(&p, &rt)),
            SyncDecision::Sync {
                deadline_left: None
            }
        ));
    }

    #[test]
    fn an_evicted_pod_is_failed_with_no_grace() {
        let (p, rt) = (pod(serde_json::json!({})), running());
        let evicted = Failure::evicted("over its limit");
        let f = SyncFacts {
            failure: Some(&evicted),
            ..facts(&p, &rt)
        };
        assert_eq!(
            decide(&f),
            SyncDecision::Fail(Failure {
                reason: "Evicted".into(),
                message: "over its limit".into(),
                grace_override: Some(0),
                event: true,
            })
        );
    }

    #[test]
    fn deletion_wins_over_every_other_verdict() {
        let p = pod(serde_json::json!({
            "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"activeDeadlineSeconds": 1, "securityContext": {
                "sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}}));
        let rt = PodStatus::default();
        let start = Time(t(0));
        let evicted = Failure::evicted("x");
        let f = SyncFacts {
            phase: Some("Failed"),
            start_time: Some(&start),
            now: t(100),
            failure: Some(&evicted),
            ..facts(&p, &rt)
        };
        assert_eq!(
            decide(&f),
            SyncDecision::Terminate {
                kill: false,
                removed: false
            }
        );
    }
}

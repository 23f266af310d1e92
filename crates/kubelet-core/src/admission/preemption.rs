//! Room for a critical pod (upstream `pkg/kubelet/preemption`): when a critical pod does not
//! fit only for lack of resources, the kubelet picks pods to evict for it, lowest QoS class
//! first and, within a class, those whose requests come closest to what is missing.

use super::resources::{CPU, Insufficient, MEMORY, resource_request};
use crate::qos::{QosClass, is_critical_pod, pod_qos};
use k8s_openapi::api::core::v1::Pod;

/// The reason and event reason of a pod preempted for a critical pod.
pub const PREEMPTING: &str = "Preempting";
/// Its status message and event message.
pub const PREEMPTED_MESSAGE: &str = "Preempted in order to admit critical pod";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    resource: String,
    quantity: i64,
}

/// What is still missing once `pods` are gone.
fn subtract(reqs: &[Requirement], pods: &[&Pod]) -> Vec<Requirement> {
    reqs.iter()
        .filter_map(|r| {
            let mut q = r.quantity;
            for p in pods {
                q = q.saturating_sub(resource_request(p, &r.resource));
                if q <= 0 {
                    break;
                }
            }
            (q > 0).then(|| Requirement {
                resource: r.resource.clone(),
                quantity: q,
            })
        })
        .collect()
}

/// How far a pod's requests fall short of the requirements (0: it covers them all).
fn distance(reqs: &[Requirement], pod: &Pod) -> f64 {
    reqs.iter()
        .map(|r| {
            let left = r
                .quantity
                .saturating_sub(resource_request(pod, &r.resource));
            if left > 0 {
                (left as f64 / r.quantity as f64).powi(2)
            } else {
                0.0
            }
        })
        .sum()
}

/// Memory first, then cpu: is `a`'s request no larger than `b`'s.
fn smaller_request(a: &Pod, b: &Pod) -> bool {
    for r in [MEMORY, CPU] {
        let (x, y) = (resource_request(a, r), resource_request(b, r));
        if x != y {
            return x < y;
        }
    }
    true
}

fn to_string(reqs: &[Requirement]) -> String {
    let mut s = String::from("[");
    for r in reqs {
        s.push_str(&format!("(res: {}, q: {}), ", r.resource, r.quantity));
    }
    s + "]"
}

fn by_distance(mut pods: Vec<&Pod>, reqs: Vec<Requirement>) -> Result<Vec<&Pod>, String> {
    let mut reqs = reqs;
    let mut out = vec![];
    while !reqs.is_empty() {
        if pods.is_empty() {
            return Err(format!(
                "no set of running pods found to reclaim resources: {}",
                to_string(&reqs)
            ));
        }
        let mut best = 0;
        let mut best_d = (reqs.len() + 1) as f64;
        for (i, p) in pods.iter().enumerate() {
            let d = distance(&reqs, p);
            if d < best_d || (d == best_d && smaller_request(p, pods[best])) {
                best_d = d;
                best = i;
            }
        }
        let p = pods.swap_remove(best);
        reqs = subtract(&reqs, &[p]);
        out.push(p);
    }
    Ok(out)
}

/// A critical pod may take a non-critical pod's place, and a higher priority a lower one's
/// (upstream `Preemptable`).
pub fn preemptable(preemptor: &Pod, preemptee: &Pod) -> bool {
    if is_critical_pod(preemptor) && !is_critical_pod(preemptee) {
        return true;
    }
    let prio = |p: &Pod| p.spec.as_ref().and_then(|s| s.priority);
    matches!((prio(preemptor), prio(preemptee)), (Some(a), Some(b)) if a > b)
}

/// The pods to evict so that `pod` fits (upstream `getPodsToPreempt`), or why none will do.
pub fn pods_to_preempt<'a>(
    pod: &Pod,
    active: &[&'a Pod],
    insufficient: &[Insufficient],
) -> Result<Vec<&'a Pod>, String> {
    let reqs: Vec<Requirement> = insufficient
        .iter()
        .map(|i| Requirement {
            resource: i.resource.clone(),
            quantity: i.amount(),
        })
        .collect();
    let (mut best_effort, mut burstable, mut guaranteed) = (vec![], vec![], vec![]);
    for p in active.iter().copied().filter(|p| preemptable(pod, p)) {
        match p.spec.as_ref().map(pod_qos) {
            Some(QosClass::BestEffort) => best_effort.push(p),
            Some(QosClass::Burstable) => burstable.push(p),
            Some(QosClass::Guaranteed) => guaranteed.push(p),
            None => {}
        }
    }
    let all: Vec<&Pod> = best_effort
        .iter()
        .chain(&burstable)
        .chain(&guaranteed)
        .copied()
        .collect();
    let unmet = subtract(&reqs, &all);
    if !unmet.is_empty() {
        return Err(format!(
            "no set of running pods found to reclaim resources: {}",
            to_string(&unmet)
        ));
    }
    let lower: Vec<&Pod> = best_effort.iter().chain(&burstable).copied().collect();
    let g = by_distance(guaranteed, subtract(&reqs, &lower))?;
    let not_burstable: Vec<&Pod> = best_effort.iter().chain(&g).copied().collect();
    let b = by_distance(burstable, subtract(&reqs, &not_burstable))?;
    let not_best_effort: Vec<&Pod> = b.iter().chain(&g).copied().collect();
    let be = by_distance(best_effort, subtract(&reqs, &not_best_effort))?;
    Ok(be.into_iter().chain(b).chain(g).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, requests: serde_json::Value, limits: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "uid": name},
            "spec": {"containers": [{"name": "c", "resources": {"requests": requests, "limits": limits}}]}}))
        .unwrap()
    }

    fn critical() -> Pod {
        let mut p = pod(
            "crit",
            serde_json::json!({"cpu": "1"}),
            serde_json::json!({}),
        );
        if let Some(s) = p.spec.as_mut() {
            s.priority = Some(2_000_000_000);
        }
        p
    }

    fn names(v: &[&Pod]) -> Vec<String> {
        v.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn best_effort_and_burstable_go_before_guaranteed_and_the_closest_fit_is_chosen() {
        let be = pod("be", serde_json::json!({}), serde_json::json!({}));
        let small = pod(
            "small",
            serde_json::json!({"cpu": "200m"}),
            serde_json::json!({}),
        );
        let fit = pod(
            "fit",
            serde_json::json!({"cpu": "600m"}),
            serde_json::json!({}),
        );
        let g = pod(
            "g",
            serde_json::json!({"cpu": "2", "memory": "1Gi"}),
            serde_json::json!({"cpu": "2", "memory": "1Gi"}),
        );
        let missing = [Insufficient {
            resource: "cpu".into(),
            requested: 1000,
            used: 1500,
            capacity: 2000,
        }];
        let c = critical();
        let v = pods_to_preempt(&c, &[&g, &small, &fit, &be], &missing).unwrap();
        assert_eq!(names(&v), ["fit"]);
        // More than the burstable pods hold: a guaranteed one goes, and nothing else.
        let missing = [Insufficient {
            resource: "cpu".into(),
            requested: 1000,
            used: 1900,
            capacity: 2000,
        }];
        let v = pods_to_preempt(&c, &[&g, &small, &be], &missing).unwrap();
        assert_eq!(names(&v), ["g"]);
        // Critical pods are never preempted: nothing can make room.
        let e = pods_to_preempt(&c, &[&c], &missing).unwrap_err();
        assert_eq!(
            e,
            "no set of running pods found to reclaim resources: [(res: cpu, q: 900), ]"
        );
    }

    #[test]
    fn preemptable_follows_criticality_then_priority() {
        let c = critical();
        let mut low = pod("low", serde_json::json!({}), serde_json::json!({}));
        assert!(preemptable(&c, &low));
        assert!(!preemptable(&low, &c));
        assert!(!preemptable(&low, &low));
        let mut high = low.clone();
        if let (Some(a), Some(b)) = (low.spec.as_mut(), high.spec.as_mut()) {
            a.priority = Some(1);
            b.priority = Some(10);
        }
        assert!(preemptable(&high, &low));
        assert!(!preemptable(&low, &high));
    }
}

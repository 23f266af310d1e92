//! QoS class of a pod (upstream `pkg/apis/core/v1/helper/qos.GetPodQOS`).

use crate::quantity::parse_milli;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

const COMPUTE: [&str; 2] = ["cpu", "memory"];

fn quantities(
    m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> impl Iterator<Item = (&str, i128)> {
    m.into_iter().flatten().filter_map(|(k, q)| {
        if !COMPUTE.contains(&k.as_str()) {
            return None;
        }
        // An unparsable value was rejected by the API server's validation; treat it as absent.
        parse_milli(&q.0)
            .ok()
            .filter(|v| *v > 0)
            .map(|v| (k.as_str(), v))
    })
}

pub fn pod_qos(spec: &PodSpec) -> QosClass {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    for c in all {
        let res = c.resources.as_ref();
        for (k, v) in quantities(res.and_then(|r| r.requests.as_ref())) {
            *requests.entry(k).or_default() += v;
        }
        let mut have = 0;
        for (k, v) in quantities(res.and_then(|r| r.limits.as_ref())) {
            have += 1;
            *limits.entry(k).or_default() += v;
        }
        if have != COMPUTE.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed {
        for (k, req) in &requests {
            if limits.get(k) != Some(req) {
                guaranteed = false;
            }
        }
    }
    if guaranteed && limits.len() == COMPUTE.len() {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn c(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, q)| (k.to_string(), Quantity(q.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec(cs: Vec<Container>) -> PodSpec {
        PodSpec {
            containers: cs,
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        assert_eq!(pod_qos(&spec(vec![c(&[], &[])])), QosClass::BestEffort);
        assert_eq!(
            pod_qos(&spec(vec![c(&[("cpu", "100m")], &[])])),
            QosClass::Burstable
        );
        let g = c(
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "1000m"), ("memory", "1Gi")],
        );
        assert_eq!(pod_qos(&spec(vec![g.clone()])), QosClass::Guaranteed);
        // limits only imply equal requests (API defaulting), still guaranteed
        let l = c(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(pod_qos(&spec(vec![l])), QosClass::Guaranteed);
        let b = c(
            &[("cpu", "500m"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")],
        );
        assert_eq!(pod_qos(&spec(vec![g, b])), QosClass::Burstable);
        // ephemeral-storage is not a compute resource for QoS
        assert_eq!(
            pod_qos(&spec(vec![c(&[("ephemeral-storage", "1Gi")], &[])])),
            QosClass::BestEffort
        );
    }
}

/// Upstream's fixed OOM score adjustments (`pkg/kubelet/qos/policy.go`).
pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
pub const BESTEFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// What the kubelet's own process gets by default (`oomScoreAdj`).
pub const KUBELET_OOM_SCORE_ADJ: i64 = -999;

/// The priority from which a pod is critical (`scheduling.SystemCriticalPriority`).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Static, mirror and system-critical-priority pods (upstream `IsCriticalPod`). The pod
/// config stamps `config.source` on every pod, API ones as `api`, so a source a user wrote
/// on an API pod is not believed.
pub fn is_critical_pod(pod: &Pod) -> bool {
    let priority = pod.spec.as_ref().and_then(|s| s.priority);
    crate::config::is_static_pod(pod)
        || crate::config::is_mirror_pod(pod)
        || priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// A container's `oom_score_adj` (upstream `GetContainerOOMScoreAdjust`): critical and
/// Guaranteed pods -997, BestEffort 1000; Burstable containers by their share of the
/// node's memory, kept within 3..=999 so they sort between the two.
pub fn container_oom_score_adj(pod: &Pod, c: &Container, memory_capacity: u64) -> i64 {
    if is_critical_pod(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return BESTEFFORT_OOM_SCORE_ADJ;
    };
    match pod_qos(spec) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BESTEFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let r = c.resources.as_ref();
    let request = r
        .and_then(|r| {
            r.requests
                .as_ref()
                .and_then(|m| m.get("memory"))
                .or_else(|| r.limits.as_ref()?.get("memory"))
        })
        .and_then(|q| parse_milli(&q.0).ok())
        .map_or(0, |m| i128::from(crate::cm::milli_to_units(m.max(0))));
    let capacity = i128::from(memory_capacity.max(1));
    let adj = (1000 - (1000 * request) / capacity) as i64;
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        1000 + GUARANTEED_OOM_SCORE_ADJ
    } else if adj == BESTEFFORT_OOM_SCORE_ADJ {
        adj - 1
    } else {
        adj
    }
}

#[cfg(test)]
mod oom_tests {
    use super::*;

    fn pod(containers: serde_json::Value, extra: serde_json::Value) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": containers}
        });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    const GI: u64 = 1 << 30;

    #[test]
    fn scores_by_qos_class() {
        let best = pod(serde_json::json!([{"name": "c"}]), serde_json::json!({}));
        let c = &best.spec.as_ref().unwrap().containers[0];
        assert_eq!(container_oom_score_adj(&best, c, 4 * GI), 1000);
        let g = pod(
            serde_json::json!([{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]),
            serde_json::json!({}),
        );
        let c = &g.spec.as_ref().unwrap().containers[0];
        assert_eq!(container_oom_score_adj(&g, c, 4 * GI), -997);
        let b = pod(
            serde_json::json!([{"name": "c", "resources": {"requests": {"memory": "1Gi"}}},
                               {"name": "d", "resources": {"requests": {"cpu": "100m"}}},
                               {"name": "e", "resources": {"requests": {"memory": "4Gi"}}}]),
            serde_json::json!({}),
        );
        let cs = &b.spec.as_ref().unwrap().containers;
        assert_eq!(container_oom_score_adj(&b, &cs[0], 4 * GI), 750);
        assert_eq!(
            container_oom_score_adj(&b, &cs[1], 4 * GI),
            999,
            "no memory request"
        );
        assert_eq!(
            container_oom_score_adj(&b, &cs[2], 4 * GI),
            3,
            "floor above Guaranteed"
        );
        let critical = pod(
            serde_json::json!([{"name": "c"}]),
            serde_json::json!({"priority": 2_000_001_000}),
        );
        let c = &critical.spec.as_ref().unwrap().containers[0];
        assert_eq!(container_oom_score_adj(&critical, c, 4 * GI), -997);
        let mut p = best.clone();
        p.metadata.annotations = Some(
            [(
                "kubernetes.io/config.source".to_string(),
                "file".to_string(),
            )]
            .into(),
        );
        assert!(is_critical_pod(&p), "static pods are critical");
        crate::config::stamp(&mut p, crate::config::Source::Api, "t");
        assert!(!is_critical_pod(&p), "an API pod cannot claim to be static");
        p.metadata.annotations =
            Some([("kubernetes.io/config.mirror".to_string(), "h".to_string())].into());
        assert!(is_critical_pod(&p));
    }

    proptest::proptest! {
        /// A Burstable container's score stays strictly between Guaranteed's and BestEffort's,
        /// and a larger request never scores higher.
        #[test]
        fn burstable_scores_are_bounded_and_ordered(a in 1u64..8 * GI, b in 1u64..8 * GI, cap in 1u64..16 * GI) {
            let p = pod(
                serde_json::json!([{"name": "a", "resources": {"requests": {"memory": a.to_string()}}},
                                   {"name": "b", "resources": {"requests": {"memory": b.to_string()}}}]),
                serde_json::json!({}),
            );
            let cs = &p.spec.as_ref().unwrap().containers;
            let (sa, sb) = (container_oom_score_adj(&p, &cs[0], cap), container_oom_score_adj(&p, &cs[1], cap));
            proptest::prop_assert!((3..=999).contains(&sa));
            if a <= b {
                proptest::prop_assert!(sa >= sb);
            }
        }
    }
}

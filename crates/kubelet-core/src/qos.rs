//! QoS class of a pod (upstream `pkg/apis/core/v1/helper/qos.GetPodQOS`).

use crate::quantity::parse_milli;
use k8s_openapi::api::core::v1::{Container, PodSpec};
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

/// The pod's cgroup (upstream `cgroupsPerQOS` layout under "kubepods").
pub fn pod_cgroup(qos: QosClass, uid: &str, systemd: bool) -> String {
    if systemd {
        let uid = uid.replace('-', "_");
        return match qos {
            QosClass::Guaranteed => format!("kubepods-pod{uid}.slice"),
            QosClass::Burstable => format!("kubepods-burstable-pod{uid}.slice"),
            QosClass::BestEffort => format!("kubepods-besteffort-pod{uid}.slice"),
        };
    }
    match qos {
        QosClass::Guaranteed => format!("/kubepods/pod{uid}"),
        QosClass::Burstable => format!("/kubepods/burstable/pod{uid}"),
        QosClass::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// The pod cgroup's CPU shares, CFS quota (per 100 ms period) and memory limit, as upstream's
/// `ResourceConfigForPod`: requests and limits summed over the containers (or the largest
/// init container, if more); quota and memory only when every container has that limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_shares: u64,
    pub cpu_quota: Option<i64>,
    pub memory_limit: Option<i64>,
}

pub const CFS_PERIOD_US: u64 = 100_000;

pub fn pod_resources(spec: &PodSpec) -> PodResources {
    let get = |c: &Container, limits: bool, k: &str| -> Option<i128> {
        let r = c.resources.as_ref()?;
        let m = if limits {
            r.limits.as_ref()
        } else {
            r.requests.as_ref().or(r.limits.as_ref())
        }?;
        m.get(k).and_then(|q| parse_milli(&q.0).ok())
    };
    let total = |limits: bool, k: &str| -> (i128, bool) {
        let mut sum = 0i128;
        let mut all = !spec.containers.is_empty();
        for c in &spec.containers {
            match get(c, limits, k) {
                Some(v) => sum += v,
                None => all = false,
            }
        }
        for c in spec.init_containers.iter().flatten() {
            match get(c, limits, k) {
                Some(v) => sum = sum.max(v),
                None => all = false,
            }
        }
        (sum, all)
    };
    let (cpu_req, _) = total(false, "cpu");
    let (cpu_lim, all_cpu) = total(true, "cpu");
    let (mem_lim, all_mem) = total(true, "memory");
    let shares = ((cpu_req * 1024) / 1000).max(2) as u64;
    PodResources {
        cpu_shares: if pod_qos(spec) == QosClass::BestEffort {
            2
        } else {
            shares
        },
        cpu_quota: all_cpu.then(|| ((cpu_lim * CFS_PERIOD_US as i128) / 1000).max(1000) as i64),
        memory_limit: all_mem.then_some((mem_lim / 1000) as i64),
    }
}

#[cfg(test)]
mod cgroup_tests {
    use super::*;

    #[test]
    fn names_and_limits() {
        assert_eq!(
            pod_cgroup(QosClass::Burstable, "a-b", false),
            "/kubepods/burstable/poda-b"
        );
        assert_eq!(
            pod_cgroup(QosClass::Guaranteed, "a-b", false),
            "/kubepods/poda-b"
        );
        assert_eq!(
            pod_cgroup(QosClass::BestEffort, "a-b", true),
            "kubepods-besteffort-poda_b.slice"
        );
        let spec: PodSpec = serde_json::from_value(serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "32Mi"}}}
        ]}))
        .unwrap();
        let r = pod_resources(&spec);
        // b's request defaults to its limit.
        assert_eq!(r.cpu_shares, (1250 * 1024 / 1000) as u64);
        assert_eq!(r.cpu_quota, Some(150_000));
        assert_eq!(r.memory_limit, Some(96 << 20));
        let best: PodSpec =
            serde_json::from_value(serde_json::json!({"containers": [{"name": "a"}]})).unwrap();
        assert_eq!(
            pod_resources(&best),
            PodResources {
                cpu_shares: 2,
                cpu_quota: None,
                memory_limit: None
            }
        );
    }
}

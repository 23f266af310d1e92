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

//! Eviction decisions (upstream `pkg/kubelet/eviction`): which pod goes, and the words used.

use k8s_openapi::api::core::v1::Pod;

/// The pod status reason and the event reason of an eviction.
pub const EVICTED: &str = "Evicted";

/// Upstream's message for an emptyDir over its `sizeLimit` (trailing space included).
pub fn empty_dir_message(volume: &str, limit: &str) -> String {
    format!("Usage of EmptyDir volume {volume:?} exceeds the limit {limit:?}. ")
}

/// The emptyDir volumes with a positive `sizeLimit`: (name, limit as written, limit in bytes).
pub fn empty_dir_limits(pod: &Pod) -> Vec<(&str, &str, u64)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let q = v.empty_dir.as_ref()?.size_limit.as_ref()?;
            let milli = crate::quantity::parse_milli(&q.0).ok()?;
            let bytes = u64::try_from((milli + 999) / 1000).ok()?;
            (bytes > 0).then_some((v.name.as_str(), q.0.as_str(), bytes))
        })
        .collect()
}

/// The eviction message when an emptyDir uses more than its limit (upstream
/// `emptyDirLimitEviction`). `usage` gives a volume's used bytes, `None` when unmeasured.
pub fn empty_dir_over_limit(pod: &Pod, usage: &dyn Fn(&str) -> Option<u64>) -> Option<String> {
    empty_dir_limits(pod)
        .into_iter()
        .find(|(name, _, limit)| usage(name).is_some_and(|u| u > *limit))
        .map(|(name, q, _)| empty_dir_message(name, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": v}
        }))
        .unwrap()
    }

    #[test]
    fn over_limit_is_strictly_more() {
        let p = pod(serde_json::json!([
            {"name": "none", "emptyDir": {}},
            {"name": "zero", "emptyDir": {"sizeLimit": "0"}},
            {"name": "small", "emptyDir": {"sizeLimit": "1Mi"}},
        ]));
        assert_eq!(empty_dir_limits(&p), vec![("small", "1Mi", 1 << 20)]);
        let at = |n: u64| move |v: &str| (v == "small").then_some(n);
        assert_eq!(empty_dir_over_limit(&p, &at(1 << 20)), None);
        assert_eq!(
            empty_dir_over_limit(&p, &at((1 << 20) + 1)).as_deref(),
            Some("Usage of EmptyDir volume \"small\" exceeds the limit \"1Mi\". ")
        );
        assert_eq!(empty_dir_over_limit(&p, &|_| None), None);
    }
}

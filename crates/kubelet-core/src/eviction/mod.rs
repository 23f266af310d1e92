//! Eviction decisions (upstream `pkg/kubelet/eviction`): which pod goes, and the words used.

pub mod rank;
pub mod thresholds;

use crate::stats::PodStats;
use k8s_openapi::api::core::v1::{Container, Pod};

/// The pod status reason and the event reason of an eviction.
pub const EVICTED: &str = "Evicted";

/// Upstream's Linux default hard eviction thresholds (`evictionHard` when unset).
pub const DEFAULT_EVICTION_HARD: [(&str, &str); 4] = [
    ("memory.available", "100Mi"),
    ("nodefs.available", "10%"),
    ("nodefs.inodesFree", "5%"),
    ("imagefs.available", "15%"),
];

/// [`DEFAULT_EVICTION_HARD`] as the config's map.
pub fn default_eviction_hard() -> std::collections::BTreeMap<String, String> {
    DEFAULT_EVICTION_HARD
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

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

/// Upstream's message for a pod whose ephemeral storage outgrows its containers' summed limits.
pub fn pod_ephemeral_message(limit: &str) -> String {
    format!("Pod ephemeral local storage usage exceeds the total limit of containers {limit}. ")
}

/// Upstream's message for a container whose rootfs and logs outgrow its own limit.
pub fn container_ephemeral_message(container: &str, limit: &str) -> String {
    format!("Container {container} exceeded its local ephemeral storage limit {limit:?}. ")
}

/// A byte quantity printed as `resource.Quantity.String()` would: binary suffixes when it was
/// written with one, else decimal SI ("1000000" -> "1M").
fn canonical(bytes: u64, binary: bool) -> String {
    if binary {
        return crate::quantity::format_binary_si(bytes);
    }
    if bytes == 0 {
        return "0".into();
    }
    let mut v = bytes;
    let mut i = 0;
    let units = ["", "k", "M", "G", "T", "P", "E"];
    while v.is_multiple_of(1000) && i + 1 < units.len() {
        v /= 1000;
        i += 1;
    }
    format!("{v}{}", units[i])
}

/// A container's ephemeral-storage limit: bytes, and whether written with a binary suffix.
fn ephemeral_limit(c: &Container) -> Option<(u64, bool)> {
    let q = c
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("ephemeral-storage")?;
    let milli = crate::quantity::parse_milli(&q.0).ok()?;
    let bytes = u64::try_from((milli + 999) / 1000).ok()?;
    Some((bytes, q.0.ends_with('i')))
}

/// Whether any container of the pod limits its ephemeral storage.
pub fn has_ephemeral_limits(pod: &Pod) -> bool {
    pod.spec.iter().any(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| ephemeral_limit(c).is_some())
    })
}

/// The pod's ephemeral-storage limit as upstream's `PodRequestsAndLimits`: the sum over the
/// containers that set one, raised to any larger init container's; printed in the format of
/// the first quantity, as Go's `Quantity.Add` keeps it.
pub fn pod_ephemeral_limit(pod: &Pod) -> Option<(u64, String)> {
    let spec = pod.spec.as_ref()?;
    let mut total: Option<(u64, bool)> = None;
    for (b, bin) in spec.containers.iter().filter_map(ephemeral_limit) {
        total = Some(match total {
            None => (b, bin),
            Some((t, tb)) => (t.saturating_add(b), tb),
        });
    }
    for (b, bin) in spec
        .init_containers
        .iter()
        .flatten()
        .filter_map(ephemeral_limit)
    {
        total = Some(match total {
            Some((t, tb)) if t >= b => (t, tb),
            _ => (b, bin),
        });
    }
    total.map(|(b, bin)| (b, canonical(b, bin)))
}

/// Upstream's pod- and container-level local-storage eviction checks, in its order, on the
/// pod's summary stats: the pod's ephemeral-storage use against the summed limit, then each
/// container's rootfs plus logs against its own (this node has no separate image filesystem).
/// `pod_files` is what the pod's own files on the node take that the stats leave out: its
/// etc-hosts and termination-log files, which its containers can write (CVE-2020-8557).
pub fn ephemeral_storage_over_limit(pod: &Pod, stats: &PodStats, pod_files: u64) -> Option<String> {
    if let Some((limit, text)) = pod_ephemeral_limit(pod) {
        let used = stats
            .ephemeral_storage
            .as_ref()
            .and_then(|f| f.used_bytes)
            .unwrap_or(0)
            .saturating_add(pod_files);
        if used > limit {
            return Some(pod_ephemeral_message(&text));
        }
    }
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice())?;
    for cs in &stats.containers {
        let Some((limit, bin)) = containers
            .iter()
            .find(|c| c.name == cs.name)
            .and_then(ephemeral_limit)
            .filter(|(b, _)| *b > 0)
        else {
            continue;
        };
        let used =
            |f: &Option<crate::stats::FsStats>| f.as_ref().and_then(|f| f.used_bytes).unwrap_or(0);
        if used(&cs.logs).saturating_add(used(&cs.rootfs)) > limit {
            return Some(container_ephemeral_message(
                &cs.name,
                &canonical(limit, bin),
            ));
        }
    }
    None
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

    fn limited(limits: &[(&str, &str)], inits: &[(&str, &str)]) -> Pod {
        let c = |(n, l): &(&str, &str)| {
            let mut c = serde_json::json!({"name": n});
            if !l.is_empty() {
                c["resources"] = serde_json::json!({"limits": {"ephemeral-storage": l}});
            }
            c
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": limits.iter().map(c).collect::<Vec<_>>(),
                "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    fn usage(pod: Option<u64>, containers: &[(&str, u64, u64)]) -> PodStats {
        let fs = |b: u64| {
            Some(crate::stats::FsStats {
                used_bytes: Some(b),
                ..Default::default()
            })
        };
        PodStats {
            ephemeral_storage: pod.and_then(fs),
            containers: containers
                .iter()
                .map(|(n, root, logs)| crate::stats::ContainerStats {
                    name: n.to_string(),
                    rootfs: fs(*root),
                    logs: fs(*logs),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn pod_limit_is_the_sum_raised_to_init_containers() {
        let p = limited(&[("a", "1Mi"), ("b", ""), ("c", "1024Ki")], &[]);
        assert_eq!(pod_ephemeral_limit(&p), Some((2 << 20, "2Mi".into())));
        let p = limited(&[("a", "1M")], &[("i", "500k")]);
        assert_eq!(pod_ephemeral_limit(&p), Some((1_000_000, "1M".into())));
        let p = limited(&[("a", "1M")], &[("i", "3Mi")]);
        assert_eq!(pod_ephemeral_limit(&p), Some((3 << 20, "3Mi".into())));
        let p = limited(&[("a", "")], &[]);
        assert_eq!(pod_ephemeral_limit(&p), None);
        assert!(!has_ephemeral_limits(&p));
        assert!(has_ephemeral_limits(&limited(&[("a", "")], &[("i", "1")])));
    }

    #[test]
    fn pod_then_container_checks_with_upstreams_words() {
        let p = limited(&[("a", "1Mi"), ("b", "2Mi")], &[]);
        // the pod total (emptyDirs included) over the 3Mi sum
        let s = usage(Some((3 << 20) + 1), &[("a", 0, 0), ("b", 0, 0)]);
        assert_eq!(
            ephemeral_storage_over_limit(&p, &s, 0).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 3Mi. ")
        );
        // a container's rootfs plus logs over its own limit, the pod still under
        let s = usage(Some(2 << 20), &[("a", 1 << 20, 1), ("b", 0, 0)]);
        assert_eq!(
            ephemeral_storage_over_limit(&p, &s, 0).as_deref(),
            Some("Container a exceeded its local ephemeral storage limit \"1Mi\". ")
        );
        // exactly at the limits: nothing
        let s = usage(Some(3 << 20), &[("a", 1 << 20, 0), ("b", 1 << 20, 1 << 20)]);
        assert_eq!(ephemeral_storage_over_limit(&p, &s, 0), None);
        // unmeasured: nothing
        assert_eq!(ephemeral_storage_over_limit(&p, &usage(None, &[]), 0), None);
        // the pod's etc-hosts and termination logs count toward its total
        let s = usage(Some(3 << 20), &[("a", 0, 0), ("b", 0, 0)]);
        assert_eq!(
            ephemeral_storage_over_limit(&p, &s, 1).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 3Mi. ")
        );
        assert_eq!(
            ephemeral_storage_over_limit(&p, &usage(None, &[]), (3 << 20) + 1).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 3Mi. ")
        );
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

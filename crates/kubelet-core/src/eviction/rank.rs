//! Which pod goes first under node pressure, and what its eviction says (the ranking half of
//! upstream `eviction/helpers.go`): memory by usage over requests, then priority, then usage
//! above requests; disk the same with local storage; PIDs by priority, then processes.

use super::thresholds::Signal;
use crate::quantity::format_binary_si;
use crate::stats::PodStats;
use k8s_openapi::api::core::v1::Pod;
use std::cmp::Ordering;

/// Which parts of a pod's local storage count.
#[derive(Debug, Clone, Copy)]
struct Measure {
    rootfs: bool,
    logs: bool,
    volumes: bool,
}

/// This node has no dedicated image filesystem: every disk signal measures everything.
const ALL: Measure = Measure {
    rootfs: true,
    logs: true,
    volumes: true,
};

fn priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A request as upstream's `GetResourceRequestQuantity`, in units (0 when none).
fn request(p: &Pod, resource: &str) -> i64 {
    crate::admission::resources::resource_request(p, resource)
}

fn working_set(s: &PodStats) -> Option<i64> {
    s.memory
        .as_ref()?
        .working_set_bytes
        .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Volumes whose bytes land on the node's disk (upstream `localVolumeNames`).
fn local_volumes(p: &Pod) -> Vec<&str> {
    p.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| {
            v.host_path.is_some()
                || v.empty_dir
                    .as_ref()
                    .is_some_and(|e| e.medium.as_deref() != Some("Memory"))
                || v.config_map.is_some()
                || v.git_repo.is_some()
        })
        .map(|v| v.name.as_str())
        .collect()
}

/// (bytes, inodes) of the pod's local storage (upstream `podDiskUsage`).
fn disk_usage(p: &Pod, s: &PodStats, m: Measure) -> (i64, i64) {
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut add = |f: &Option<crate::stats::FsStats>| {
        if let Some(f) = f {
            bytes = bytes.saturating_add(f.used_bytes.unwrap_or(0));
            inodes = inodes.saturating_add(f.inodes_used.unwrap_or(0));
        }
    };
    for c in &s.containers {
        if m.rootfs {
            add(&c.rootfs);
        }
        if m.logs {
            add(&c.logs);
        }
    }
    if m.volumes {
        for name in local_volumes(p) {
            if let Some(v) = s.volume_stats.iter().find(|v| v.name == name) {
                add(&Some(v.fs.clone()));
            }
        }
    }
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    (i(bytes), i(inodes))
}

/// Upstream's `cmpBool`: `true` sorts first.
fn first_if(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

/// Orders pods for eviction under `signal`, the first to go first. `stats` gives a pod's
/// summary stats; pods without any go first, as upstream.
pub fn rank<'a>(
    signal: Signal,
    pods: &mut [&'a Pod],
    stats: &dyn Fn(&Pod) -> Option<&'a PodStats>,
) {
    let by_priority = |a: &Pod, b: &Pod| priority(a).cmp(&priority(b));
    match signal {
        Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => pods.sort_by(|a, b| {
            // Stats without memory figures count as no use (upstream `memoryUsage`).
            let ws = |p: &Pod| stats(p).map(|s| working_set(s).unwrap_or(0));
            let (sa, sb) = (ws(a), ws(b));
            let (Some(ua), Some(ub)) = (sa, sb) else {
                // Without stats first; two without, by priority (upstream's next comparator).
                return first_if(sa.is_none(), sb.is_none()).then_with(|| by_priority(a, b));
            };
            let (ra, rb) = (request(a, "memory"), request(b, "memory"));
            first_if(ua > ra, ub > rb)
                .then_with(|| by_priority(a, b))
                .then_with(|| (ub - rb).cmp(&(ua - ra)))
        }),
        Signal::PidAvailable => pods.sort_by(|a, b| {
            let procs = |p: &Pod| {
                stats(p).map(|s| {
                    s.process_stats
                        .as_ref()
                        .and_then(|p| p.process_count)
                        .unwrap_or(0)
                })
            };
            by_priority(a, b).then_with(|| match (procs(a), procs(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                (x, y) => first_if(x.is_none(), y.is_none()),
            })
        }),
        _ => {
            let inodes = matches!(signal, Signal::NodeFsInodesFree | Signal::ImageFsInodesFree);
            let usage = |p: &Pod| {
                stats(p).map(|s| {
                    let (b, i) = disk_usage(p, s, ALL);
                    if inodes { i } else { b }
                })
            };
            let resource = if inodes {
                "inodes"
            } else {
                "ephemeral-storage"
            };
            pods.sort_by(|a, b| {
                let (Some(ua), Some(ub)) = (usage(a), usage(b)) else {
                    return first_if(usage(a).is_none(), usage(b).is_none())
                        .then_with(|| by_priority(a, b));
                };
                let exceeds = |p: &Pod, u: i64| u > request(p, resource);
                // Upstream subtracts the ephemeral-storage request whatever the resource.
                let above = |p: &Pod, u: i64| u - request(p, "ephemeral-storage");
                first_if(exceeds(a, ua), exceeds(b, ub))
                    .then_with(|| by_priority(a, b))
                    .then_with(|| above(b, ub).cmp(&above(a, ua)))
            });
        }
    }
}

/// A spec container's request as `Quantity.String()` prints it: as written, "0" when there
/// is none; `None` for a container the spec does not have.
fn request_text(p: &Pod, container: &str, resource: &str) -> Option<(i64, String)> {
    let c = p
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .find(|c| c.name == container)?;
    let q = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref()?.get(resource).cloned());
    Some(match q {
        Some(q) => {
            let m = crate::quantity::parse_milli(&q.0).unwrap_or(0);
            (i64::try_from((m + 999) / 1000).unwrap_or(i64::MAX), q.0)
        }
        None => (0, "0".into()),
    })
}

/// Upstream `evictionMessage`: the starved resource, then each container using more of it
/// than it requested.
pub fn eviction_message(resource: &str, pod: &Pod, stats: Option<&PodStats>) -> String {
    let mut m = format!("The node was low on resource: {resource}. ");
    let Some(s) = stats else {
        return m;
    };
    for cs in &s.containers {
        let usage = match resource {
            "ephemeral-storage" => match (&cs.rootfs, &cs.logs) {
                (Some(r), Some(l)) => r
                    .used_bytes
                    .zip(l.used_bytes)
                    .map(|(a, b)| a.saturating_add(b)),
                _ => None,
            },
            "memory" => cs.memory.as_ref().and_then(|m| m.working_set_bytes),
            _ => None,
        };
        let Some(usage) = usage else { continue };
        let Some((req, text)) = request_text(pod, &cs.name, resource) else {
            continue;
        };
        if i64::try_from(usage).unwrap_or(i64::MAX) > req {
            m.push_str(&format!(
                "Container {} was using {}, which exceeds its request of {}. ",
                cs.name,
                format_binary_si(usage),
                text
            ));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, memory_request: Option<&str>, priority: i32) -> Pod {
        let mut c = serde_json::json!({"name": "c"});
        if let Some(r) = memory_request {
            c["resources"] = serde_json::json!({"requests": {"memory": r}});
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "uid": name},
            "spec": {"containers": [c], "priority": priority}}))
        .unwrap()
    }

    fn stats(name: &str, ws: u64, procs: u64) -> PodStats {
        serde_json::from_value(serde_json::json!({
            "podRef": {"name": name, "namespace": "ns", "uid": name},
            "memory": {"workingSetBytes": ws},
            "containers": [{"name": "c", "memory": {"workingSetBytes": ws}}],
            "process_stats": {"process_count": procs}}))
        .unwrap()
    }

    fn names(v: &[&Pod]) -> Vec<String> {
        v.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn memory_ranks_over_requests_then_priority_then_usage() {
        let be_small = pod("be-small", None, 0);
        let be_big = pod("be-big", None, 0);
        let within = pod("within", Some("1Gi"), 0);
        let important = pod("important", None, 1000);
        let all = [
            stats("be-small", 10 << 20, 1),
            stats("be-big", 500 << 20, 1),
            stats("within", 600 << 20, 1),
            stats("important", 900 << 20, 1),
        ];
        let lookup = |p: &Pod| {
            all.iter()
                .find(|s| Some(&s.pod_ref.name) == p.metadata.name.as_ref())
        };
        let mut v = vec![&within, &important, &be_small, &be_big];
        rank(Signal::MemoryAvailable, &mut v, &lookup);
        assert_eq!(names(&v), ["be-big", "be-small", "important", "within"]);
    }

    #[test]
    fn pids_rank_by_priority_then_processes() {
        let a = pod("a", None, 0);
        let b = pod("b", None, 0);
        let c = pod("c", None, -5);
        let all = [stats("a", 0, 3), stats("b", 0, 30), stats("c", 0, 1)];
        let lookup = |p: &Pod| {
            all.iter()
                .find(|s| Some(&s.pod_ref.name) == p.metadata.name.as_ref())
        };
        let mut v = vec![&a, &b, &c];
        rank(Signal::PidAvailable, &mut v, &lookup);
        assert_eq!(names(&v), ["c", "b", "a"]);
    }

    #[test]
    fn the_message_names_the_containers_over_their_requests() {
        let p = pod("p", Some("64Mi"), 0);
        let s = stats("p", 100 << 20, 1);
        assert_eq!(
            eviction_message("memory", &p, Some(&s)),
            "The node was low on resource: memory. Container c was using 100Mi, which exceeds its request of 64Mi. "
        );
        let q = pod("q", None, 0);
        assert_eq!(
            eviction_message("memory", &q, Some(&stats("q", 123_456, 1))),
            "The node was low on resource: memory. Container c was using 123456, which exceeds its request of 0. "
        );
        assert_eq!(
            eviction_message("pids", &q, None),
            "The node was low on resource: pids. "
        );
    }
}

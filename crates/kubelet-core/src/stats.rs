//! The summary API (`/stats/summary`, upstream `k8s.io/kubelet/pkg/apis/stats/v1alpha1`):
//! its types, with upstream's JSON names, and the pure parts of filling them in.

use k8s_openapi::api::core::v1::Volume;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_containers: Vec<ContainerStats>,
    #[serialize_always]
    pub start_time: Option<Time>,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub network: Option<NetworkStats>,
    pub fs: Option<FsStats>,
    pub runtime: Option<RuntimeStats>,
    pub rlimit: Option<RlimitStats>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RlimitStats {
    #[serialize_always]
    pub time: Option<Time>,
    #[serde(rename = "maxpid")]
    pub max_pid: Option<i64>,
    #[serde(rename = "curproc")]
    pub num_of_running_processes: Option<i64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    pub image_fs: Option<FsStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    #[serialize_always]
    pub start_time: Option<Time>,
    pub containers: Vec<ContainerStats>,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub network: Option<NetworkStats>,
    #[serde(rename = "volume", default, skip_serializing_if = "Vec::is_empty")]
    pub volume_stats: Vec<VolumeStats>,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<FsStats>,
    #[serde(rename = "process_stats")]
    pub process_stats: Option<ProcessStats>,
}

/// The pod's processes (upstream's v1alpha1 spells these in snake case).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub process_count: Option<u64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serialize_always]
    pub start_time: Option<Time>,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub rootfs: Option<FsStats>,
    pub logs: Option<FsStats>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: Option<u64>,
    pub rx_errors: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub tx_errors: Option<u64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    #[serialize_always]
    pub time: Option<Time>,
    /// The default interface, inline as upstream.
    #[serde(flatten)]
    pub default: InterfaceStats,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceStats>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    #[serialize_always]
    pub time: Option<Time>,
    pub usage_nano_cores: Option<u64>,
    pub usage_core_nano_seconds: Option<u64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    #[serialize_always]
    pub time: Option<Time>,
    pub available_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
    pub working_set_bytes: Option<u64>,
    #[serde(rename = "rssBytes")]
    pub rss_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    #[serialize_always]
    pub time: Option<Time>,
    pub available_bytes: Option<u64>,
    pub capacity_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub inodes_free: Option<u64>,
    pub inodes: Option<u64>,
    pub inodes_used: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeStats {
    #[serde(flatten)]
    pub fs: FsStats,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub name: String,
}

/// Volumes whose contents count against the pod's ephemeral storage (upstream
/// `IsLocalEphemeralVolume`): disk-backed emptyDir, configMap, downwardAPI, gitRepo.
pub fn is_local_ephemeral_volume(v: &Volume) -> bool {
    v.git_repo.is_some()
        || v.empty_dir
            .as_ref()
            .is_some_and(|e| e.medium.as_deref() != Some("Memory"))
        || v.config_map.is_some()
        || v.downward_api.is_some()
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

fn later(a: Option<Time>, b: &Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) if b.0 > a.0 => Some(b.clone()),
        (None, b) => b.clone(),
        (a, _) => a,
    }
}

/// The pod's ephemeral-storage use (upstream `calcEphemeralStorage`): the containers'
/// writable layers and logs, the ephemeral volumes and the pod-level logs, on the root
/// filesystem's capacity.
pub fn ephemeral_storage(
    containers: &[ContainerStats],
    ephemeral_volumes: &[VolumeStats],
    root_fs: &FsStats,
    pod_logs: Option<&FsStats>,
) -> FsStats {
    let mut r = FsStats {
        time: root_fs.time.clone(),
        available_bytes: root_fs.available_bytes,
        capacity_bytes: root_fs.capacity_bytes,
        inodes_free: root_fs.inodes_free,
        inodes: root_fs.inodes,
        used_bytes: None,
        inodes_used: None,
    };
    for c in containers {
        if let Some(rootfs) = &c.rootfs {
            r.time = later(r.time, &rootfs.time);
            r.inodes_used = add(r.inodes_used, rootfs.inodes_used);
            r.used_bytes = add(r.used_bytes, rootfs.used_bytes);
            if let Some(logs) = &c.logs {
                r.used_bytes = add(r.used_bytes, logs.used_bytes);
                r.inodes_used = add(r.inodes_used, logs.inodes_used);
                r.time = later(r.time, &logs.time);
            }
        }
    }
    for v in ephemeral_volumes {
        r.used_bytes = add(r.used_bytes, v.fs.used_bytes);
        r.inodes_used = add(r.inodes_used, v.fs.inodes_used);
        r.time = later(r.time, &v.fs.time);
    }
    if let Some(l) = pod_logs {
        r.used_bytes = add(r.used_bytes, l.used_bytes);
        r.inodes_used = add(r.inodes_used, l.inodes_used);
        r.time = later(r.time, &l.time);
    }
    r
}

/// Average CPU use between two samples of cumulative CPU time, in nanocores (upstream
/// `getAndUpdateContainerUsageNanoCores`). `None` when the counter went back or no time passed.
pub fn usage_nano_cores(prev: (i64, u64), cur: (i64, u64)) -> Option<u64> {
    let (t0, u0) = prev;
    let (t1, u1) = cur;
    let dt = t1.checked_sub(t0).filter(|d| *d > 0)?;
    let du = u1.checked_sub(u0)?;
    Some((du as f64 / dt as f64 * 1e9) as u64)
}

/// Sums container CPU and memory into pod totals (upstream's fallback when the pod cgroup
/// cannot be read).
pub fn sum_cpu_memory(containers: &[ContainerStats]) -> (Option<CpuStats>, Option<MemoryStats>) {
    let mut cpu: Option<CpuStats> = None;
    let mut mem: Option<MemoryStats> = None;
    for c in containers {
        if let Some(cc) = &c.cpu {
            let p = cpu.get_or_insert_with(CpuStats::default);
            p.time = cc.time.clone();
            p.usage_core_nano_seconds = Some(
                p.usage_core_nano_seconds
                    .unwrap_or(0)
                    .saturating_add(cc.usage_core_nano_seconds.unwrap_or(0)),
            );
            p.usage_nano_cores = Some(
                p.usage_nano_cores
                    .unwrap_or(0)
                    .saturating_add(cc.usage_nano_cores.unwrap_or(0)),
            );
        }
        if let Some(cm) = &c.memory {
            let p = mem.get_or_insert_with(MemoryStats::default);
            p.time = cm.time.clone();
            let s = |a: Option<u64>, b: Option<u64>| {
                Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0)))
            };
            p.available_bytes = s(p.available_bytes, cm.available_bytes);
            p.usage_bytes = s(p.usage_bytes, cm.usage_bytes);
            p.working_set_bytes = s(p.working_set_bytes, cm.working_set_bytes);
            p.rss_bytes = s(p.rss_bytes, cm.rss_bytes);
            p.page_faults = s(p.page_faults, cm.page_faults);
            p.major_page_faults = s(p.major_page_faults, cm.major_page_faults);
        }
    }
    (cpu, mem)
}

/// Escapes a label value for the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn millis(t: &Option<Time>) -> String {
    t.as_ref()
        .map(|t| format!(" {}", t.0.as_millisecond()))
        .unwrap_or_default()
}

/// `/metrics/resource` (upstream `collectors/resource_metrics.go`): CPU and memory of the
/// node, pods and containers, in the Prometheus text format, each sample stamped with the
/// time it was measured. `error` is the scrape_error gauge.
pub fn resource_metrics(s: Option<&Summary>) -> String {
    use std::fmt::Write;
    let mut fams: std::collections::BTreeMap<&str, (&str, &str, Vec<String>)> = [
        (
            "container_cpu_usage_seconds_total",
            (
                "counter",
                "Cumulative cpu time consumed by the container in core-seconds",
            ),
        ),
        (
            "container_memory_working_set_bytes",
            ("gauge", "Current working set of the container in bytes"),
        ),
        (
            "node_cpu_usage_seconds_total",
            (
                "counter",
                "Cumulative cpu time consumed by the node in core-seconds",
            ),
        ),
        (
            "node_memory_working_set_bytes",
            ("gauge", "Current working set of the node in bytes"),
        ),
        (
            "pod_cpu_usage_seconds_total",
            (
                "counter",
                "Cumulative cpu time consumed by the pod in core-seconds",
            ),
        ),
        (
            "pod_memory_working_set_bytes",
            ("gauge", "Current working set of the pod in bytes"),
        ),
        (
            "scrape_error",
            (
                "gauge",
                "1 if there was an error while getting container metrics, 0 otherwise",
            ),
        ),
    ]
    .into_iter()
    .map(|(n, (t, h))| (n, (t, h, vec![])))
    .collect();
    let mut push = |name: &str, labels: String, v: f64, t: &Option<Time>| {
        if let Some(f) = fams.get_mut(name) {
            f.2.push(format!("{name}{labels} {v}{}", millis(t)));
        }
    };
    let secs = |c: &CpuStats| c.usage_core_nano_seconds.map(|n| n as f64 / 1e9);
    match s {
        None => push("scrape_error", String::new(), 1.0, &None),
        Some(s) => {
            if let Some(c) = &s.node.cpu
                && let Some(v) = secs(c)
            {
                push("node_cpu_usage_seconds_total", String::new(), v, &c.time);
            }
            if let Some(m) = &s.node.memory
                && let Some(v) = m.working_set_bytes
            {
                push(
                    "node_memory_working_set_bytes",
                    String::new(),
                    v as f64,
                    &m.time,
                );
            }
            for p in &s.pods {
                let (pn, ns) = (label(&p.pod_ref.name), label(&p.pod_ref.namespace));
                for c in &p.containers {
                    let l = format!(
                        "{{container=\"{}\",namespace=\"{ns}\",pod=\"{pn}\"}}",
                        label(&c.name)
                    );
                    if let Some(cpu) = &c.cpu
                        && let Some(v) = secs(cpu)
                    {
                        push("container_cpu_usage_seconds_total", l.clone(), v, &cpu.time);
                    }
                    if let Some(m) = &c.memory
                        && let Some(v) = m.working_set_bytes
                    {
                        push("container_memory_working_set_bytes", l, v as f64, &m.time);
                    }
                }
                let l = format!("{{namespace=\"{ns}\",pod=\"{pn}\"}}");
                if let Some(cpu) = &p.cpu
                    && let Some(v) = secs(cpu)
                {
                    push("pod_cpu_usage_seconds_total", l.clone(), v, &cpu.time);
                }
                if let Some(m) = &p.memory
                    && let Some(v) = m.working_set_bytes
                {
                    push("pod_memory_working_set_bytes", l, v as f64, &m.time);
                }
            }
            push("scrape_error", String::new(), 0.0, &None);
        }
    }
    let mut out = String::new();
    for (name, (kind, help, mut samples)) in fams {
        if samples.is_empty() {
            continue;
        }
        samples.sort();
        let _ = writeln!(out, "# HELP {name} [ALPHA] {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in samples {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(used: u64, inodes: u64) -> FsStats {
        FsStats {
            used_bytes: Some(used),
            inodes_used: Some(inodes),
            ..Default::default()
        }
    }

    #[test]
    fn json_names_match_upstream() {
        let s = Summary {
            node: NodeStats {
                node_name: "n".into(),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "p".into(),
                    namespace: "ns".into(),
                    uid: "u".into(),
                },
                volume_stats: vec![VolumeStats {
                    fs: fs(1, 2),
                    name: "v".into(),
                }],
                ephemeral_storage: Some(fs(3, 4)),
                network: Some(NetworkStats {
                    default: InterfaceStats {
                        name: "eth0".into(),
                        rx_bytes: Some(5),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                memory: Some(MemoryStats {
                    rss_bytes: Some(6),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["node"]["nodeName"], "n");
        let p = &v["pods"][0];
        assert_eq!(p["podRef"]["uid"], "u");
        assert_eq!(p["volume"][0]["name"], "v");
        assert_eq!(p["volume"][0]["usedBytes"], 1);
        assert_eq!(p["volume"][0]["inodesUsed"], 2);
        assert_eq!(p["ephemeral-storage"]["usedBytes"], 3);
        assert_eq!(p["network"]["name"], "eth0");
        assert_eq!(p["network"]["rxBytes"], 5);
        assert_eq!(p["memory"]["rssBytes"], 6);
        assert!(p.get("cpu").is_none());
        assert_eq!(p["containers"], serde_json::json!([]));
    }

    #[test]
    fn ephemeral_storage_sums_layers_logs_and_volumes() {
        let c = ContainerStats {
            rootfs: Some(fs(100, 1)),
            logs: Some(fs(10, 1)),
            ..Default::default()
        };
        // A container without rootfs stats adds nothing, not even its logs (as upstream).
        let bare = ContainerStats {
            logs: Some(fs(1000, 1)),
            ..Default::default()
        };
        let root = FsStats {
            capacity_bytes: Some(1 << 30),
            ..Default::default()
        };
        let e = ephemeral_storage(
            &[c, bare],
            &[VolumeStats {
                fs: fs(5, 2),
                name: "v".into(),
            }],
            &root,
            Some(&fs(1, 1)),
        );
        assert_eq!(e.used_bytes, Some(116));
        assert_eq!(e.inodes_used, Some(5));
        assert_eq!(e.capacity_bytes, Some(1 << 30));
    }

    #[test]
    fn resource_metrics_text() {
        let t = Some(crate::status::time_of(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
        ));
        let s = Summary {
            node: NodeStats {
                cpu: Some(CpuStats {
                    time: t.clone(),
                    usage_core_nano_seconds: Some(2_500_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "p".into(),
                    namespace: "ns".into(),
                    uid: "u".into(),
                },
                containers: vec![ContainerStats {
                    name: "c\"1".into(),
                    memory: Some(MemoryStats {
                        time: t,
                        working_set_bytes: Some(4096),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let text = resource_metrics(Some(&s));
        assert!(text.contains("# TYPE node_cpu_usage_seconds_total counter\nnode_cpu_usage_seconds_total 2.5 1700000000000\n"), "{text}");
        assert!(text.contains("container_memory_working_set_bytes{container=\"c\\\"1\",namespace=\"ns\",pod=\"p\"} 4096 1700000000000\n"), "{text}");
        assert!(
            text.contains("# HELP scrape_error [ALPHA] 1 if there was an error"),
            "{text}"
        );
        assert!(text.ends_with("scrape_error 0\n"), "{text}");
        assert!(
            !text.contains("pod_cpu_usage_seconds_total"),
            "no sample, no family: {text}"
        );
        assert!(resource_metrics(None).ends_with("scrape_error 1\n"));
    }

    #[test]
    fn nano_cores() {
        assert_eq!(
            usage_nano_cores((0, 0), (1_000_000_000, 500_000_000)),
            Some(500_000_000)
        );
        assert_eq!(usage_nano_cores((5, 10), (5, 20)), None);
        assert_eq!(usage_nano_cores((0, 10), (5, 5)), None);
    }

    #[test]
    fn ephemeral_volumes() {
        let v = |j: serde_json::Value| -> Volume { serde_json::from_value(j).unwrap() };
        assert!(is_local_ephemeral_volume(&v(
            serde_json::json!({"name": "a", "emptyDir": {}})
        )));
        assert!(!is_local_ephemeral_volume(&v(
            serde_json::json!({"name": "a", "emptyDir": {"medium": "Memory"}})
        )));
        assert!(is_local_ephemeral_volume(&v(
            serde_json::json!({"name": "a", "configMap": {"name": "x"}})
        )));
        assert!(!is_local_ephemeral_volume(&v(
            serde_json::json!({"name": "a", "secret": {"secretName": "x"}})
        )));
    }
}

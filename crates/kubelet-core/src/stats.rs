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

type Push<'a> = dyn FnMut(&'static str, &str, f64, &Option<Time>) + 'a;

/// cAdvisor's labels of one series; an extra one (`cpu`, `device`, `interface`) goes where
/// client_golang's sorting puts it.
struct Lbl<'a>([&'a str; 6]);

impl Lbl<'_> {
    const KEYS: [&'static str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

    fn with(&self, extra: Option<(&str, &str)>) -> String {
        let mut pairs: Vec<(&str, &str)> = Self::KEYS.iter().copied().zip(self.0).collect();
        pairs.extend(extra);
        pairs.sort_by_key(|(k, _)| *k);
        pairs
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `/metrics/cadvisor`'s families that Prometheus' kubelet scrape and `kubectl top`-style tools
/// read (cAdvisor's names and labels: `container`, `id` (the cgroup), `image`, `name`,
/// `namespace`, `pod`), from the summary: per container, per pod cgroup (empty `container`,
/// `image`, `name`), and the node's root cgroup (`id="/"`). `pods` gives the cgroup ids and
/// images (status), `layout` and `driver` the cgroup paths.
pub fn cadvisor_metrics(
    s: &Summary,
    pods: &[k8s_openapi::api::core::v1::Pod],
    layout: &crate::cm::CgroupLayout,
    driver: crate::cm::Driver,
) -> String {
    use std::fmt::Write;
    // cAdvisor's HELP texts.
    let fams: [(&str, &str, &str); 13] = [
        (
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed in seconds.",
        ),
        (
            "container_fs_usage_bytes",
            "gauge",
            "Number of bytes that are consumed by the container on this filesystem.",
        ),
        (
            "container_last_seen",
            "gauge",
            "Last time a container was seen by the exporter",
        ),
        ("container_memory_rss", "gauge", "Size of RSS in bytes."),
        (
            "container_memory_usage_bytes",
            "gauge",
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
        ),
        (
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set in bytes.",
        ),
        (
            "container_network_receive_bytes_total",
            "counter",
            "Cumulative count of bytes received",
        ),
        (
            "container_network_receive_errors_total",
            "counter",
            "Cumulative count of errors encountered while receiving",
        ),
        (
            "container_network_transmit_bytes_total",
            "counter",
            "Cumulative count of bytes transmitted",
        ),
        (
            "container_network_transmit_errors_total",
            "counter",
            "Cumulative count of errors encountered while transmitting",
        ),
        (
            "container_processes",
            "gauge",
            "Number of processes running inside the container.",
        ),
        (
            "container_spec_memory_limit_bytes",
            "gauge",
            "Memory limit for the container.",
        ),
        (
            "container_start_time_seconds",
            "gauge",
            "Start time of the container since unix epoch in seconds.",
        ),
    ];
    let mut samples: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    let mut push = |name: &'static str, labels: &str, v: f64, t: &Option<Time>| {
        samples
            .entry(name)
            .or_default()
            .push(format!("{name}{{{labels}}} {v}{}", millis(t)));
    };
    let cpu_mem =
        |push: &mut Push<'_>, lb: &Lbl<'_>, cpu: &Option<CpuStats>, mem: &Option<MemoryStats>| {
            let l = &lb.with(None);
            if let Some(c) = cpu
                && let Some(n) = c.usage_core_nano_seconds
            {
                push(
                    "container_cpu_usage_seconds_total",
                    &lb.with(Some(("cpu", "total"))),
                    n as f64 / 1e9,
                    &c.time,
                );
            }
            if let Some(m) = mem {
                if let Some(v) = m.working_set_bytes {
                    push("container_memory_working_set_bytes", l, v as f64, &m.time);
                }
                if let Some(v) = m.usage_bytes {
                    push("container_memory_usage_bytes", l, v as f64, &m.time);
                }
                if let Some(v) = m.rss_bytes {
                    push("container_memory_rss", l, v as f64, &m.time);
                }
            }
        };
    // The node's root cgroup.
    cpu_mem(
        &mut push,
        &Lbl(["", "/", "", "", "", ""]),
        &s.node.cpu,
        &s.node.memory,
    );
    for p in &s.pods {
        let (pn, ns, uid) = (&p.pod_ref.name, &p.pod_ref.namespace, &p.pod_ref.uid);
        let pod = pods
            .iter()
            .find(|x| x.metadata.uid.as_deref() == Some(uid.as_str()));
        let qos = pod
            .and_then(|x| x.spec.as_ref())
            .map(crate::qos::pod_qos)
            .unwrap_or(crate::qos::QosClass::BestEffort);
        let pod_id = layout.pod(qos, uid).path(driver);
        let lb = Lbl(["", &pod_id, "", "", ns, pn]);
        let l = lb.with(None);
        cpu_mem(&mut push, &lb, &p.cpu, &p.memory);
        if let Some(n) = &p.network {
            // `interfaces` lists them all (the default among them); older summaries only it.
            let all: Vec<&InterfaceStats> = if n.interfaces.is_empty() {
                vec![&n.default]
            } else {
                n.interfaces.iter().collect()
            };
            for i in all {
                if i.name.is_empty() {
                    continue;
                }
                let li = lb.with(Some(("interface", &i.name)));
                for (fam, v) in [
                    ("container_network_receive_bytes_total", i.rx_bytes),
                    ("container_network_receive_errors_total", i.rx_errors),
                    ("container_network_transmit_bytes_total", i.tx_bytes),
                    ("container_network_transmit_errors_total", i.tx_errors),
                ] {
                    if let Some(v) = v {
                        push(fam, &li, v as f64, &n.time);
                    }
                }
            }
        }
        if let Some(ps) = &p.process_stats
            && let Some(v) = ps.process_count
        {
            push("container_processes", &l, v as f64, &None);
        }
        let statuses: Vec<&k8s_openapi::api::core::v1::ContainerStatus> = pod
            .and_then(|x| x.status.as_ref())
            .and_then(|st| st.container_statuses.as_ref())
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        for c in &p.containers {
            let st = statuses.iter().find(|st| st.name == c.name);
            let cid = st
                .and_then(|st| st.container_id.as_deref())
                .and_then(|id| id.rsplit("://").next())
                .unwrap_or_default();
            let image = st.map(|st| st.image.as_str()).unwrap_or_default();
            let id = match driver {
                crate::cm::Driver::Cgroupfs => format!("{pod_id}/{cid}"),
                crate::cm::Driver::Systemd => format!("{pod_id}/cri-containerd-{cid}.scope"),
            };
            let lb = Lbl([&c.name, &id, image, cid, ns, pn]);
            let l = lb.with(None);
            cpu_mem(&mut push, &lb, &c.cpu, &c.memory);
            if let Some(fs) = &c.rootfs
                && let Some(v) = fs.used_bytes
            {
                push(
                    "container_fs_usage_bytes",
                    &lb.with(Some(("device", ""))),
                    v as f64,
                    &fs.time,
                );
            }
            if let Some(t) = &c.start_time {
                push(
                    "container_start_time_seconds",
                    &l,
                    t.0.as_second() as f64,
                    &None,
                );
            }
            let limit = pod
                .and_then(|x| x.spec.as_ref())
                .and_then(|sp| sp.containers.iter().find(|x| x.name == c.name))
                .and_then(|x| x.resources.as_ref())
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory"))
                .and_then(|q| crate::quantity::parse_milli(&q.0).ok())
                .map_or(0, |m| m / 1000);
            push("container_spec_memory_limit_bytes", &l, limit as f64, &None);
            if let Some(m) = &c.memory
                && let Some(t) = &m.time
            {
                push("container_last_seen", &l, t.0.as_second() as f64, &None);
            }
        }
    }
    let mut out = String::new();
    for (name, kind, help) in fams {
        let Some(mut v) = samples.remove(name) else {
            continue;
        };
        v.sort();
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in v {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

#[cfg(test)]
mod cadvisor_tests {
    use super::*;

    #[test]
    fn cadvisor_series_carry_cadvisors_labels() {
        let t = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap_or_default(),
        ));
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}]},
            "status": {"containerStatuses": [{"name": "c", "image": "docker.io/library/busybox:latest",
                "imageID": "", "ready": true, "restartCount": 0,
                "containerID": "containerd://abc"}]}
        }))
        .unwrap_or_default();
        let s = Summary {
            node: NodeStats {
                cpu: Some(CpuStats {
                    time: t.clone(),
                    usage_core_nano_seconds: Some(5_000_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "ns".into(),
                    uid: "u1".into(),
                },
                containers: vec![ContainerStats {
                    name: "c".into(),
                    start_time: t.clone(),
                    memory: Some(MemoryStats {
                        time: t.clone(),
                        working_set_bytes: Some(1000),
                        rss_bytes: Some(800),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                network: Some(NetworkStats {
                    time: t.clone(),
                    default: InterfaceStats {
                        name: "eth0".into(),
                        rx_bytes: Some(42),
                        ..Default::default()
                    },
                    interfaces: vec![InterfaceStats {
                        name: "eth0".into(),
                        rx_bytes: Some(42),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }],
        };
        let layout = crate::cm::CgroupLayout::new("/").unwrap_or_default();
        let text = cadvisor_metrics(&s, &[pod], &layout, crate::cm::Driver::Cgroupfs);
        for want in [
            "container_cpu_usage_seconds_total{container=\"\",cpu=\"total\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 5 1700000000000",
            "container_memory_working_set_bytes{container=\"c\",id=\"/kubepods/podu1/abc\",image=\"docker.io/library/busybox:latest\",name=\"abc\",namespace=\"ns\",pod=\"web\"} 1000 1700000000000",
            "container_memory_rss{container=\"c\",",
            "container_network_receive_bytes_total{container=\"\",id=\"/kubepods/podu1\",image=\"\",interface=\"eth0\",name=\"\",namespace=\"ns\",pod=\"web\"} 42",
            "container_spec_memory_limit_bytes{container=\"c\",id=\"/kubepods/podu1/abc\",image=\"docker.io/library/busybox:latest\",name=\"abc\",namespace=\"ns\",pod=\"web\"} 67108864",
            "container_start_time_seconds{container=\"c\",",
            "# TYPE container_cpu_usage_seconds_total counter",
        ] {
            assert!(text.contains(want), "no {want} in:\n{text}");
        }
        assert_eq!(
            text.matches("container_network_receive_bytes_total{")
                .count(),
            1,
            "one series per interface:\n{text}"
        );
    }
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

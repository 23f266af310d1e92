//! The Node object and its status as pure functions of what the host and runtime report
//! (upstream `pkg/kubelet/nodestatus/setters.go`).

use crate::machine::{FsStats, ImageSummary, MachineInfo};
use crate::quantity::{format_binary_si, format_decimal, format_milli, parse_milli};
use crate::status::time_of;
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// The version we report as kubeletVersion: the API level we implement, marked as ours.
pub const KUBELET_VERSION: &str = concat!("v1.20.2-kubelet-rs.", env!("CARGO_PKG_VERSION"));

/// A CRI runtime condition as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCondition {
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for RuntimeCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={} reason:{} message:{}",
            self.kind, self.status, self.reason, self.message
        )
    }
}

/// What the runtime told us at the last status check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeState {
    /// `None` until the first successful check.
    pub synced: Option<bool>,
    /// "containerd://1.6.20"
    pub version: String,
    pub conditions: Vec<RuntimeCondition>,
    /// Set when the last check failed (the runtime is unreachable).
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NodeInputs {
    pub machine: MachineInfo,
    pub root_fs: FsStats,
    /// The eviction manager's pressure conditions (`MemoryPressure`, `DiskPressure`,
    /// `PIDPressure`).
    pub pressure: Vec<String>,
    pub runtime: RuntimeState,
    pub images: Vec<ContainerImage>,
    pub addresses: Vec<NodeAddress>,
    pub port: u16,
    pub max_pods: u32,
    pub eviction_hard: BTreeMap<String, String>,
    /// `kubeReserved` + `systemReserved`.
    pub reserved: Reserved,
    /// Extra conditions reported by the kubelet's own health (e.g. a stuck PLEG).
    pub health_errors: Vec<String>,
}

fn q(s: String) -> Quantity {
    Quantity(s)
}

/// The threshold in bytes for a `LessThan` eviction signal given as "100Mi" or "10%".
fn threshold_bytes(value: &str, capacity: u64) -> u64 {
    if let Some(p) = value.strip_suffix('%') {
        let pct: f64 = p.trim().parse().unwrap_or(0.0);
        (capacity as f64 * pct / 100.0) as u64
    } else {
        parse_milli(value)
            .map(|m| (m / 1000).max(0) as u64)
            .unwrap_or(0)
    }
}

pub fn capacity(i: &NodeInputs) -> BTreeMap<String, Quantity> {
    let mut c = BTreeMap::from([
        ("cpu".into(), q(format_decimal(i.machine.num_cpus))),
        ("memory".into(), q(format_binary_si(i.machine.memory_bytes))),
        ("pods".into(), q(format_decimal(u64::from(i.max_pods)))),
        (
            "ephemeral-storage".into(),
            q(format_binary_si(i.root_fs.capacity_bytes)),
        ),
    ]);
    for (size, pages) in &i.machine.hugepages {
        c.insert(
            format!("hugepages-{}", format_binary_si(*size)),
            q(format_binary_si(size.saturating_mul(*pages))),
        );
    }
    c
}

/// The memory held in huge page pools, which pods cannot use as ordinary memory.
fn hugepages_bytes(m: &MachineInfo) -> u64 {
    m.hugepages
        .iter()
        .map(|(size, pages)| size.saturating_mul(*pages))
        .sum()
}

/// What `kubeReserved` and `systemReserved` hold back from pods, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_milli: u64,
    pub memory: u64,
    pub ephemeral_storage: u64,
}

impl Reserved {
    /// The node's CPU in thousandths once the reservations are taken out.
    pub fn cpu_left(&self, machine: &MachineInfo) -> u64 {
        (machine.num_cpus * 1000).saturating_sub(self.cpu_milli)
    }

    /// The node's memory once the reservations are taken out: what kubepods may use
    /// (upstream's `getNodeAllocatableInternalAbsolute`, no eviction thresholds).
    pub fn memory_left(&self, machine: &MachineInfo) -> u64 {
        machine.memory_bytes.saturating_sub(self.memory)
    }
}

pub fn allocatable(i: &NodeInputs) -> BTreeMap<String, Quantity> {
    let mut a = capacity(i);
    let (memory, storage) =
        allocatable_bytes(&i.machine, &i.root_fs, &i.eviction_hard, &i.reserved);
    a.insert(
        "cpu".into(),
        q(format_milli(i.reserved.cpu_left(&i.machine))),
    );
    a.insert("memory".into(), q(format_binary_si(memory)));
    a.insert("ephemeral-storage".into(), q(format_binary_si(storage)));
    a
}

/// Allocatable memory and ephemeral storage: capacity less the reservations and the hard
/// eviction thresholds.
fn allocatable_bytes(
    machine: &MachineInfo,
    root_fs: &FsStats,
    eviction_hard: &BTreeMap<String, String>,
    reserved: &Reserved,
) -> (u64, u64) {
    let threshold = |signal: &str, capacity: u64| {
        eviction_hard
            .get(signal)
            .map_or(0, |v| threshold_bytes(v, capacity))
    };
    let mem = machine.memory_bytes;
    let fs = root_fs.capacity_bytes;
    (
        // Huge pages come off too (upstream's MachineInfo setter).
        mem.saturating_sub(reserved.memory)
            .saturating_sub(threshold("memory.available", mem))
            .saturating_sub(hugepages_bytes(machine)),
        fs.saturating_sub(reserved.ephemeral_storage)
            .saturating_sub(threshold("nodefs.available", fs)),
    )
}

/// The events upstream's condition setters record (`Node <name> status is now: <event>`,
/// Normal): a pressure condition when it first appears or changes, Ready only when it
/// changes.
pub fn condition_events(old: Option<&NodeStatus>, new: &NodeStatus) -> Vec<&'static str> {
    let find = |s: Option<&NodeStatus>, kind: &str| {
        s.and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .map(|c| c.status.clone())
    };
    let mut out = vec![];
    for (kind, on, off) in [
        (
            "MemoryPressure",
            "NodeHasInsufficientMemory",
            "NodeHasSufficientMemory",
        ),
        (
            "DiskPressure",
            "NodeHasDiskPressure",
            "NodeHasNoDiskPressure",
        ),
        (
            "PIDPressure",
            "NodeHasInsufficientPID",
            "NodeHasSufficientPID",
        ),
        ("Ready", "NodeReady", "NodeNotReady"),
    ] {
        let (was, now) = (find(old, kind), find(Some(new), kind));
        let Some(now) = now else { continue };
        let changed = match &was {
            Some(w) => *w != now,
            None => kind != "Ready",
        };
        if changed {
            out.push(if now == "True" { on } else { off });
        }
    }
    out
}

/// Node allocatable as plain quantities, the downward API's default for unset cpu, memory
/// and ephemeral-storage limits (upstream reads the node's status.allocatable).
pub fn downward_allocatable(
    machine: &MachineInfo,
    root_fs: &FsStats,
    eviction_hard: &BTreeMap<String, String>,
    reserved: &Reserved,
) -> BTreeMap<String, String> {
    let (memory, storage) = allocatable_bytes(machine, root_fs, eviction_hard, reserved);
    BTreeMap::from([
        ("cpu".to_string(), format_milli(reserved.cpu_left(machine))),
        ("memory".to_string(), format_binary_si(memory)),
        ("ephemeral-storage".to_string(), format_binary_si(storage)),
    ])
}

fn aggregate(errors: &[String]) -> String {
    let mut uniq: Vec<&String> = vec![];
    for e in errors {
        if !uniq.contains(&e) {
            uniq.push(e);
        }
    }
    match uniq.as_slice() {
        [one] => (*one).clone(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Why the node is not ready, empty when it is.
pub fn not_ready_errors(i: &NodeInputs) -> Vec<String> {
    let mut errs = vec![];
    match (&i.runtime.synced, &i.runtime.error) {
        (None, _) => {
            errs.push("container runtime status check may not have completed yet".to_string())
        }
        (Some(_), Some(_)) => errs.push("container runtime is down".to_string()),
        _ => {}
    }
    errs.extend(i.health_errors.iter().cloned());
    let cond = |k: &str| i.runtime.conditions.iter().find(|c| c.kind == k);
    if i.runtime.synced.is_some() && i.runtime.error.is_none() {
        match cond("RuntimeReady") {
            Some(c) if c.status => {}
            Some(c) => errs.push(format!("Container runtime not ready: {c}")),
            None => errs.push("Container runtime not ready: <nil>".into()),
        }
        match cond("NetworkReady") {
            Some(c) if c.status => {}
            Some(c) => errs.push(format!("runtime network not ready: {c}")),
            None => errs.push("runtime network not ready: <nil>".into()),
        }
    } else if i.runtime.synced.is_none() {
        errs.push("network state unknown".into());
    }
    errs
}

fn set_condition(
    old: &[NodeCondition],
    kind: &str,
    status: bool,
    reasons: (&str, &str),
    now: &Time,
) -> NodeCondition {
    let s = if status { "True" } else { "False" };
    let prev = old.iter().find(|c| c.type_ == kind);
    let transition = match prev {
        Some(p) if p.status == s => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    NodeCondition {
        type_: kind.into(),
        status: s.into(),
        reason: Some(reasons.0.into()),
        message: Some(reasons.1.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: transition,
    }
}

pub fn conditions(i: &NodeInputs, old: &[NodeCondition], now: &Time) -> Vec<NodeCondition> {
    let under = |c: &str| i.pressure.iter().any(|p| p == c);
    let (mem_pressure, disk_pressure, pid_pressure) = (
        under("MemoryPressure"),
        under("DiskPressure"),
        under("PIDPressure"),
    );
    let errs = not_ready_errors(i);
    let ready = errs.is_empty();
    let ready_msg = if ready {
        "kubelet is posting ready status".to_string()
    } else {
        aggregate(&errs)
    };
    vec![
        set_condition(
            old,
            "MemoryPressure",
            mem_pressure,
            if mem_pressure {
                (
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available",
                )
            } else {
                (
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                )
            },
            now,
        ),
        set_condition(
            old,
            "DiskPressure",
            disk_pressure,
            if disk_pressure {
                ("KubeletHasDiskPressure", "kubelet has disk pressure")
            } else {
                ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
            },
            now,
        ),
        set_condition(
            old,
            "PIDPressure",
            pid_pressure,
            if pid_pressure {
                (
                    "KubeletHasInsufficientPID",
                    "kubelet has insufficient PID available",
                )
            } else {
                (
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                )
            },
            now,
        ),
        set_condition(
            old,
            "Ready",
            ready,
            (
                if ready {
                    "KubeletReady"
                } else {
                    "KubeletNotReady"
                },
                ready_msg.as_str(),
            ),
            now,
        ),
    ]
}

pub fn node_status(i: &NodeInputs, old: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
    let now = time_of(now);
    let old_conditions = old.and_then(|o| o.conditions.clone()).unwrap_or_default();
    let m = &i.machine;
    NodeStatus {
        capacity: Some(capacity(i)),
        allocatable: Some(allocatable(i)),
        conditions: Some(conditions(i, &old_conditions, &now)),
        addresses: Some(i.addresses.clone()),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(i.port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: m.machine_id.clone(),
            system_uuid: m.system_uuid.clone(),
            boot_id: m.boot_id.clone(),
            kernel_version: m.kernel_version.clone(),
            os_image: m.os_image.clone(),
            container_runtime_version: if i.runtime.version.is_empty() {
                "Unknown".into()
            } else {
                i.runtime.version.clone()
            },
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: KUBELET_VERSION.into(),
            operating_system: "linux".into(),
            architecture: m.architecture.clone(),
            ..Default::default()
        }),
        images: Some(i.images.clone()),
        // Fields the kubelet does not own are left to whoever owns them.
        ..Default::default()
    }
}

/// Default labels, then `--node-labels` (which win).
pub fn node_labels(
    name: &str,
    hostname: &str,
    arch: &str,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let _ = name;
    let mut l = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), hostname.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch.to_string()),
    ]);
    l.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    l
}

pub const ATTACH_DETACH_ANNOTATION: &str = "volumes.kubernetes.io/controller-managed-attach-detach";

/// A version as upstream's `ParseGeneric(...).String()` prints it: the dotted numbers, with
/// a leading `v` and anything after them dropped (`1.6.20~ds1` → `1.6.20`). A version that
/// does not start with a number is kept as it is.
pub fn generic_version(v: &str) -> String {
    let t = v.trim();
    let t = t.strip_prefix('v').unwrap_or(t);
    let end = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(t.len(), |(i, _)| i);
    let num = t[..end].trim_end_matches('.');
    if num.is_empty() || num.split('.').any(str::is_empty) {
        v.to_string()
    } else {
        num.to_string()
    }
}

/// What the Node is created with and never changed by the kubelet afterwards (upstream
/// `initialNode`): NodeRestriction forbids a node to change its own taints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registration {
    /// `--register-with-taints`.
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// `--register-schedulable=false`.
    pub unschedulable: bool,
    /// `providerID`.
    pub provider_id: String,
}

/// The taint an unschedulable node registers with (upstream `TaintNodeUnschedulable`).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

impl Registration {
    pub fn spec(&self) -> NodeSpec {
        let mut taints = self.taints.clone();
        if self.unschedulable
            && !taints
                .iter()
                .any(|t| t.key == TAINT_UNSCHEDULABLE && t.effect == "NoSchedule")
        {
            taints.push(k8s_openapi::api::core::v1::Taint {
                key: TAINT_UNSCHEDULABLE.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
        NodeSpec {
            taints: Some(taints).filter(|t| !t.is_empty()),
            unschedulable: self.unschedulable.then_some(true),
            provider_id: Some(self.provider_id.clone()).filter(|p| !p.is_empty()),
            ..Default::default()
        }
    }
}

pub fn initial_node(
    name: &str,
    labels: BTreeMap<String, String>,
    status: NodeStatus,
    registration: &Registration,
) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                ATTACH_DETACH_ANNOTATION.into(),
                "true".into(),
            )])),
            ..Default::default()
        },
        spec: Some(registration.spec()),
        status: Some(status),
    }
}

/// Up to `max` images, largest first, each with at most 5 names (digests, then tags).
pub fn node_images(images: &[ImageSummary], max: i32) -> Vec<ContainerImage> {
    let mut imgs: Vec<&ImageSummary> = images.iter().collect();
    imgs.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| b.id.cmp(&a.id)));
    if max >= 0 {
        imgs.truncate(max as usize);
    }
    imgs.into_iter()
        .map(|i| {
            let mut names: Vec<String> = i
                .repo_digests
                .iter()
                .chain(i.repo_tags.iter())
                .cloned()
                .collect();
            names.truncate(5);
            ContainerImage {
                names: Some(names),
                size_bytes: Some(i.size as i64),
            }
        })
        .collect()
}

/// Whether two statuses differ in anything but heartbeat times.
pub fn status_changed(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        if let Some(cs) = s.conditions.as_mut() {
            for c in cs.iter_mut() {
                c.last_heartbeat_time = None;
            }
            cs.sort_by(|x, y| x.type_.cmp(&y.type_));
        }
        s
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_versions_print_as_upstream_parses_them() {
        assert_eq!(generic_version("1.6.20~ds1"), "1.6.20");
        assert_eq!(generic_version("v1.7.0"), "1.7.0");
        assert_eq!(generic_version("1.6.20"), "1.6.20");
        assert_eq!(generic_version("1.6.20-rc.1+git"), "1.6.20");
        assert_eq!(generic_version("devel"), "devel");
        assert_eq!(generic_version(""), "");
    }

    fn inputs() -> NodeInputs {
        NodeInputs {
            machine: MachineInfo {
                num_cpus: 2,
                memory_bytes: 4 * 1024 * 1024 * 1024,
                architecture: "amd64".into(),
                ..Default::default()
            },
            root_fs: FsStats {
                capacity_bytes: 100 * 1024 * 1024 * 1024,
                available_bytes: 50 * 1024 * 1024 * 1024,
                ..Default::default()
            },
            pressure: vec![],
            runtime: RuntimeState {
                synced: Some(true),
                version: "containerd://1.6.20".into(),
                conditions: vec![
                    RuntimeCondition {
                        kind: "RuntimeReady".into(),
                        status: true,
                        reason: String::new(),
                        message: String::new(),
                    },
                    RuntimeCondition {
                        kind: "NetworkReady".into(),
                        status: true,
                        reason: String::new(),
                        message: String::new(),
                    },
                ],
                error: None,
            },
            images: vec![],
            addresses: vec![],
            port: 10250,
            max_pods: 110,
            eviction_hard: crate::eviction::default_eviction_hard(),
            reserved: Reserved::default(),
            health_errors: vec![],
        }
    }

    fn ready(s: &NodeStatus) -> NodeCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .clone()
    }

    #[test]
    fn capacity_and_allocatable() {
        let s = node_status(&inputs(), None, Timestamp::UNIX_EPOCH);
        let cap = s.capacity.clone().unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4Gi");
        assert_eq!(cap["pods"].0, "110");
        let alloc = s.allocatable.clone().unwrap();
        assert_eq!(alloc["memory"].0, "3996Mi");
        assert_eq!(alloc["ephemeral-storage"].0, "90Gi");
        assert_eq!(alloc["cpu"].0, "2");
        // kubeReserved + systemReserved come off before the eviction thresholds.
        let mut i = inputs();
        i.reserved = Reserved {
            cpu_milli: 100,
            memory: 256 << 20,
            ephemeral_storage: 10 << 30,
        };
        let a = allocatable(&i);
        assert_eq!(
            (a["cpu"].0.as_str(), a["memory"].0.as_str()),
            ("1900m", "3740Mi")
        );
        assert_eq!(a["ephemeral-storage"].0, "80Gi");
        assert_eq!(
            downward_allocatable(&i.machine, &i.root_fs, &i.eviction_hard, &i.reserved)["cpu"],
            "1900m"
        );
        assert_eq!(i.reserved.memory_left(&i.machine), (4 << 30) - (256 << 20));
        let r = ready(&s);
        assert_eq!(
            (r.status.as_str(), r.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        let types: Vec<_> = s
            .conditions
            .unwrap()
            .iter()
            .map(|c| c.type_.clone())
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
    }

    #[test]
    fn condition_events_follow_upstreams_setters() {
        let t = Timestamp::from_second(1000).unwrap();
        let first = node_status(&inputs(), None, t);
        assert_eq!(
            condition_events(None, &first),
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID"
            ],
            "a new node: the pressure conditions, not Ready"
        );
        assert!(condition_events(Some(&first), &first).is_empty());
        let mut i = inputs();
        i.pressure = vec!["MemoryPressure".into()];
        i.runtime.error = Some("down".into());
        let next = node_status(&i, Some(&first), t);
        assert_eq!(
            condition_events(Some(&first), &next),
            ["NodeHasInsufficientMemory", "NodeNotReady"]
        );
    }

    #[test]
    fn huge_pages_are_capacity_and_leave_ordinary_memory() {
        let mut i = inputs();
        i.machine.hugepages = vec![(2 << 20, 64), (1 << 30, 0)];
        let c = capacity(&i);
        assert_eq!(c["hugepages-2Mi"].0, "128Mi");
        assert_eq!(c["hugepages-1Gi"].0, "0");
        let a = allocatable(&i);
        assert_eq!(a["hugepages-2Mi"].0, "128Mi");
        // 4Gi less the 100Mi eviction threshold less 128Mi of huge pages.
        assert_eq!(
            a["memory"].0,
            format_binary_si((4 << 30) - (100 << 20) - (128 << 20))
        );
        assert!(
            !capacity(&inputs()).contains_key("hugepages-2Mi"),
            "none on a host without pools"
        );
    }

    #[test]
    fn not_ready_messages() {
        let mut i = inputs();
        i.runtime = RuntimeState::default();
        let r = ready(&node_status(&i, None, Timestamp::UNIX_EPOCH));
        assert_eq!(r.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            r.message.as_deref(),
            Some(
                "[container runtime status check may not have completed yet, network state unknown]"
            )
        );
        let mut i = inputs();
        i.runtime.conditions[1] = RuntimeCondition {
            kind: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: "cni plugin not initialized".into(),
        };
        let r = ready(&node_status(&i, None, Timestamp::UNIX_EPOCH));
        assert_eq!(
            r.message.as_deref(),
            Some(
                "runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni plugin not initialized"
            )
        );
    }

    #[test]
    fn transition_time_kept_while_unchanged() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let t1 = Timestamp::from_second(2000).unwrap();
        let s0 = node_status(&inputs(), None, t0);
        let s1 = node_status(&inputs(), Some(&s0), t1);
        let r = ready(&s1);
        assert_eq!(r.last_transition_time, Some(time_of(t0)));
        assert_eq!(r.last_heartbeat_time, Some(time_of(t1)));
        assert!(!status_changed(&s0, &s1));
        let mut i = inputs();
        i.pressure = vec!["MemoryPressure".into()];
        let s2 = node_status(&i, Some(&s1), t1);
        assert!(status_changed(&s1, &s2));
        let mp = s2
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(mp.reason.as_deref(), Some("KubeletHasInsufficientMemory"));
    }

    #[test]
    fn labels_and_images() {
        let extra =
            BTreeMap::from([("kubernetes.io/hostname".to_string(), "override".to_string())]);
        let l = node_labels("n", "h", "amd64", &extra);
        assert_eq!(l["kubernetes.io/hostname"], "override");
        assert_eq!(l["beta.kubernetes.io/arch"], "amd64");
        let imgs = vec![
            ImageSummary {
                id: "a".into(),
                repo_tags: vec!["small".into()],
                size: 1,
                ..Default::default()
            },
            ImageSummary {
                id: "b".into(),
                repo_tags: vec!["big".into()],
                repo_digests: vec!["big@sha256:1".into()],
                size: 9,
            },
        ];
        let n = node_images(&imgs, 50);
        assert_eq!(
            n[0].names.as_ref().unwrap(),
            &vec!["big@sha256:1".to_string(), "big".to_string()]
        );
        assert_eq!(node_images(&imgs, 1).len(), 1);
    }
}

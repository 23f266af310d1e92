//! Pod admission on the node (upstream `lifecycle` admit handlers): pods the node must not
//! run are failed with a reason, not started. The handlers run in upstream's order: the
//! eviction manager's (node pressure), sysctls, then the scheduler's general predicates
//! (resources, node selector and affinity, node name, host ports), where a critical pod short
//! only of resources may preempt others.

pub mod affinity;
pub mod preemption;
pub mod resources;

use k8s_openapi::api::core::v1::{Node, Pod, Toleration};

/// The pressure conditions a node reports, and the taint that stands for memory pressure.
pub const MEMORY_PRESSURE: &str = "MemoryPressure";
pub const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";

/// A pod the node will not run: its status reason, and the event's message (the status
/// message is `Pod <message>`, as upstream's `rejectPod` writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

impl Rejection {
    fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The verdict on a new pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// A critical pod, admitted once these pods (UIDs) are preempted
    /// ([`preemption::PREEMPTING`]); `resource` is the first one short (the metric's label).
    Preempt {
        victims: Vec<String>,
        resource: String,
    },
    Reject(Rejection),
}

/// What admission looks at.
#[derive(Debug, Clone, Copy)]
pub struct AdmitInput<'a> {
    pub pod: &'a Pod,
    /// The admitted pods still alive (upstream `filterOutTerminatedPods`).
    pub others: &'a [&'a Pod],
    /// The Node as the API server has it (labels, allocatable), or as it would be registered.
    pub node: &'a Node,
    /// The eviction manager's pressure conditions now (`MemoryPressure`, `DiskPressure`,
    /// `PIDPressure`).
    pub pressure: &'a [String],
    pub allowed_unsafe_sysctls: &'a [String],
}

/// Upstream's admit handlers in order; the first refusal wins.
pub fn admit(i: &AdmitInput<'_>) -> Admission {
    if let Err(r) = admit_pressure(i.pod, i.pressure) {
        return Admission::Reject(r);
    }
    if let Err((reason, message)) = admit_sysctls(i.pod, i.allowed_unsafe_sysctls) {
        return Admission::Reject(Rejection { reason, message });
    }
    admit_predicates(i.pod, i.others, i.node)
}

/// The eviction manager's handler: under memory pressure alone a BestEffort pod is refused
/// (unless it tolerates the memory-pressure taint); under any other pressure every pod is;
/// critical pods always pass.
pub fn admit_pressure(pod: &Pod, pressure: &[String]) -> Result<(), Rejection> {
    if pressure.is_empty() || crate::qos::is_critical_pod(pod) {
        return Ok(());
    }
    if let [only] = pressure
        && only == MEMORY_PRESSURE
    {
        let best_effort = pod
            .spec
            .as_ref()
            .is_some_and(|s| crate::qos::pod_qos(s) == crate::qos::QosClass::BestEffort);
        let tolerates = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|t| tolerates_no_schedule(t, MEMORY_PRESSURE_TAINT));
        if !best_effort || tolerates {
            return Ok(());
        }
    }
    Err(Rejection::new(
        crate::eviction::EVICTED,
        format!("The node had condition: [{}]. ", pressure.join(" ")),
    ))
}

/// Whether a toleration tolerates a NoSchedule taint with this key and no value.
fn tolerates_no_schedule(t: &Toleration, key: &str) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == "NoSchedule");
    let key_ok = match t.key.as_deref().unwrap_or_default() {
        "" => t.operator.as_deref() == Some("Exists"),
        k => k == key,
    };
    let value_ok = match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or_default().is_empty(),
        _ => false,
    };
    effect_ok && key_ok && value_ok
}

/// Host ports a pod's containers ask for: (host IP, protocol, port), sanitised as upstream.
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            let proto = p
                .protocol
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "TCP".into());
            Some((ip, proto, port))
        })
        .collect()
}

/// Upstream `nodeports.Fits`: a wildcard address conflicts with any use of the port and
/// protocol; a specific address with the same address or the wildcard.
fn ports_fit(pod: &Pod, others: &[&Pod]) -> bool {
    let used: Vec<(String, String, i32)> = others.iter().flat_map(|o| host_ports(o)).collect();
    host_ports(pod).iter().all(|(ip, proto, port)| {
        !used.iter().any(|(uip, uproto, uport)| {
            uproto == proto && uport == port && (ip == "0.0.0.0" || uip == "0.0.0.0" || uip == ip)
        })
    })
}

fn predicate(name: &str) -> Rejection {
    Rejection::new(name, format!("Predicate {name} failed"))
}

/// The kubelet's general predicates (upstream `predicateAdmitHandler`): the first failure is
/// the reason (`OutOf<resource>` or the predicate's name). A critical pod that only lacks
/// resources preempts instead.
pub fn admit_predicates(pod: &Pod, others: &[&Pod], node: &Node) -> Admission {
    let insufficient = resources::fits(pod, others, node);
    let mut failed: Vec<Rejection> = vec![];
    if !affinity::matches(pod, node) {
        failed.push(predicate("NodeAffinity"));
    }
    let want = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    if !want.is_empty() && Some(want) != node.metadata.name.as_deref() {
        failed.push(predicate("NodeName"));
    }
    if !ports_fit(pod, others) {
        failed.push(predicate("NodePorts"));
    }
    if insufficient.is_empty() && failed.is_empty() {
        return Admission::Admit;
    }
    if crate::qos::is_critical_pod(pod) {
        if let Some(first) = failed.into_iter().next() {
            return Admission::Reject(first);
        }
        return match preemption::pods_to_preempt(pod, others, &insufficient) {
            Ok(victims) => Admission::Preempt {
                victims: victims
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone())
                    .collect(),
                resource: insufficient
                    .first()
                    .map(|r| r.resource.clone())
                    .unwrap_or_default(),
            },
            Err(e) => Admission::Reject(Rejection::new(
                "UnexpectedAdmissionError",
                format!(
                    "Unexpected error while attempting to recover from admission failure: preemption: error finding a set of pods to preempt: {e}"
                ),
            )),
        };
    }
    if let Some(r) = insufficient.first() {
        return Admission::Reject(Rejection::new(
            format!("OutOf{}", r.resource),
            format!(
                "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
                r.resource, r.requested, r.used, r.capacity
            ),
        ));
    }
    match failed.into_iter().next() {
        Some(r) => Admission::Reject(r),
        None => Admission::Admit,
    }
}

/// Sysctls upstream (1.20) considers safe: namespaced and unable to affect other pods.
pub const SAFE_SYSCTLS: [&str; 4] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
];

/// The kernel namespace a sysctl belongs to (upstream `sysctl.NamespacedBy`).
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    if ["kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."]
        .iter()
        .any(|p| name.starts_with(p))
    {
        Some("ipc")
    } else if name.starts_with("net.") {
        Some("net")
    } else {
        None
    }
}

fn allowed(name: &str, allowlist: &[String]) -> bool {
    SAFE_SYSCTLS.contains(&name)
        || allowlist.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
}

/// `Err((reason, message))` when the pod asks for a sysctl that is neither safe nor allowed
/// by `allowedUnsafeSysctls`.
pub fn admit_sysctls(pod: &Pod, allowlist: &[String]) -> Result<(), (String, String)> {
    let sysctls = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_deref())
        .unwrap_or_default();
    let spec = pod.spec.as_ref();
    let host_net = spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
    for s in sysctls {
        let why = if !allowed(&s.name, allowlist) {
            "not whitelisted"
        } else {
            // A namespaced sysctl would change the host's own namespace.
            match sysctl_namespace(&s.name) {
                Some("net") if host_net => "not allowed with host net enabled",
                Some("ipc") if host_ipc => "not allowed with host ipc enabled",
                _ => continue,
            }
        };
        return Err((
            "SysctlForbidden".into(),
            format!("forbidden sysctl: \"{}\" {why}", s.name),
        ));
    }
    Ok(())
}

/// A `setHostnameAsFQDN` name longer than a hostname may be (upstream's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long (64 characters is the max, {} characters requested)",
    fqdn.len()
)]
pub struct FqdnTooLong {
    pub fqdn: String,
}

/// The FQDN hostname of `setHostnameAsFQDN`, or an error when it is longer than a hostname may be.
pub fn fqdn_hostname(
    pod: &Pod,
    hostname: &str,
    cluster_domain: &str,
) -> Result<Option<String>, FqdnTooLong> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.set_hostname_as_fqdn) != Some(true) {
        return Ok(None);
    }
    let Some(sub) = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let fqdn = format!("{hostname}.{sub}.{ns}.svc.{cluster_domain}");
    if fqdn.len() > 64 {
        return Err(FqdnTooLong { fqdn });
    }
    Ok(Some(fqdn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": v}),
        )
        .unwrap()
    }

    #[test]
    fn sysctls() {
        let p = pod(
            serde_json::json!({"containers": [], "securityContext": {"sysctls": [
            {"name": "net.ipv4.tcp_syncookies", "value": "1"}, {"name": "net.core.somaxconn", "value": "1024"}]}}),
        );
        let (reason, msg) = admit_sysctls(&p, &[]).unwrap_err();
        assert_eq!(reason, "SysctlForbidden");
        assert_eq!(
            msg,
            "forbidden sysctl: \"net.core.somaxconn\" not whitelisted"
        );
        assert!(admit_sysctls(&p, &["net.core.*".into()]).is_ok());
        assert!(admit_sysctls(&p, &["net.core.somaxconn".into()]).is_ok());
        assert!(admit_sysctls(&pod(serde_json::json!({"containers": []})), &[]).is_ok());
        let host = pod(
            serde_json::json!({"containers": [], "hostNetwork": true, "securityContext": {
            "sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}}),
        );
        assert_eq!(
            admit_sysctls(&host, &[]).unwrap_err().1,
            "forbidden sysctl: \"net.ipv4.tcp_syncookies\" not allowed with host net enabled"
        );
        let ipc = pod(
            serde_json::json!({"containers": [], "hostIPC": true, "securityContext": {
            "sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]}}),
        );
        assert_eq!(
            admit_sysctls(&ipc, &[]).unwrap_err().1,
            "forbidden sysctl: \"kernel.shm_rmid_forced\" not allowed with host ipc enabled"
        );
    }

    #[test]
    fn fqdn() {
        let p = pod(
            serde_json::json!({"containers": [], "setHostnameAsFQDN": true, "subdomain": "sub"}),
        );
        assert_eq!(
            fqdn_hostname(&p, "web", "cluster.local")
                .unwrap()
                .as_deref(),
            Some("web.sub.ns.svc.cluster.local")
        );
        assert!(fqdn_hostname(&p, &"a".repeat(60), "cluster.local").is_err());
        let q = pod(serde_json::json!({"containers": [], "subdomain": "sub"}));
        assert_eq!(fqdn_hostname(&q, "web", "cluster.local").unwrap(), None);
    }

    fn node() -> Node {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "n1", "labels": {"disk": "ssd"}},
            "status": {"allocatable": {"cpu": "2", "memory": "2Gi", "pods": "3"}}}),
        )
        .unwrap()
    }

    fn input<'a>(
        p: &'a Pod,
        others: &'a [&'a Pod],
        n: &'a Node,
        pressure: &'a [String],
    ) -> AdmitInput<'a> {
        AdmitInput {
            pod: p,
            others,
            node: n,
            pressure,
            allowed_unsafe_sysctls: &[],
        }
    }

    fn reject(reason: &str, message: &str) -> Admission {
        Admission::Reject(Rejection::new(reason, message))
    }

    #[test]
    fn predicates_give_upstreams_reasons_and_messages() {
        let n = node();
        let fits = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        assert_eq!(admit(&input(&fits, &[], &n, &[])), Admission::Admit);
        let cpu = pod(serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "100"}}}]}));
        assert_eq!(
            admit(&input(&cpu, &[], &n, &[])),
            reject(
                "OutOfcpu",
                "Node didn't have enough resource: cpu, requested: 100000, used: 0, capacity: 2000"
            )
        );
        assert_eq!(
            admit(&input(&fits, &[&fits, &fits, &fits], &n, &[])),
            reject(
                "OutOfpods",
                "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3"
            )
        );
        let sel = pod(
            serde_json::json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "hdd"}}),
        );
        assert_eq!(
            admit(&input(&sel, &[], &n, &[])),
            reject("NodeAffinity", "Predicate NodeAffinity failed")
        );
        let other_node = pod(serde_json::json!({"containers": [{"name": "c"}], "nodeName": "n2"}));
        assert_eq!(
            admit(&input(&other_node, &[], &n, &[])),
            reject("NodeName", "Predicate NodeName failed")
        );
        let port = |ip: &str| {
            pod(serde_json::json!({"containers": [{"name": "c",
            "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": ip}]}]}))
        };
        let (any, one, two) = (port(""), port("10.0.0.1"), port("10.0.0.2"));
        assert_eq!(
            admit(&input(&any, &[&one], &n, &[])),
            reject("NodePorts", "Predicate NodePorts failed")
        );
        assert_eq!(
            admit(&input(&one, &[&any], &n, &[])),
            reject("NodePorts", "Predicate NodePorts failed")
        );
        assert_eq!(admit(&input(&two, &[&one], &n, &[])), Admission::Admit);
        let udp = pod(serde_json::json!({"containers": [{"name": "c",
            "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]}));
        assert_eq!(admit(&input(&udp, &[&any], &n, &[])), Admission::Admit);
        // Resources come first, then the predicates in upstream's order.
        let both = pod(serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"memory": "3Gi"}}}], "nodeSelector": {"disk": "hdd"}}));
        assert!(
            matches!(admit(&input(&both, &[], &n, &[])), Admission::Reject(r) if r.reason == "OutOfmemory")
        );
    }

    #[test]
    fn pressure_refuses_best_effort_under_memory_pressure_and_all_under_disk_pressure() {
        let n = node();
        let be = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        let burstable = pod(serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"memory": "1Mi"}}}]}));
        let mem = ["MemoryPressure".to_string()];
        assert_eq!(
            admit(&input(&be, &[], &n, &mem)),
            reject("Evicted", "The node had condition: [MemoryPressure]. ")
        );
        assert_eq!(admit(&input(&burstable, &[], &n, &mem)), Admission::Admit);
        let tolerant = pod(
            serde_json::json!({"containers": [{"name": "c"}], "tolerations": [
            {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(admit(&input(&tolerant, &[], &n, &mem)), Admission::Admit);
        let disk = ["MemoryPressure".to_string(), "DiskPressure".to_string()];
        assert_eq!(
            admit(&input(&burstable, &[], &n, &disk)),
            reject(
                "Evicted",
                "The node had condition: [MemoryPressure DiskPressure]. "
            )
        );
        let mut critical = be.clone();
        if let Some(s) = critical.spec.as_mut() {
            s.priority = Some(crate::qos::SYSTEM_CRITICAL_PRIORITY);
        }
        assert_eq!(admit(&input(&critical, &[], &n, &disk)), Admission::Admit);
    }

    #[test]
    fn a_critical_pod_short_of_resources_preempts() {
        let n = node();
        let hog: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "hog", "uid": "u-hog"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m"}}}]}}),
        )
        .unwrap();
        let mut crit = pod(serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "1"}}}]}));
        if let Some(s) = crit.spec.as_mut() {
            s.priority = Some(crate::qos::SYSTEM_CRITICAL_PRIORITY);
        }
        assert_eq!(
            admit(&input(&crit, &[&hog], &n, &[])),
            Admission::Preempt {
                victims: vec!["u-hog".into()],
                resource: "cpu".into()
            }
        );
        let too_big = {
            let mut p = crit.clone();
            if let Some(r) = p
                .spec
                .as_mut()
                .and_then(|s| s.containers[0].resources.as_mut())
            {
                r.requests = Some(
                    [(
                        "cpu".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("5".into()),
                    )]
                    .into(),
                );
            }
            p
        };
        assert!(matches!(admit(&input(&too_big, &[&hog], &n, &[])),
            Admission::Reject(r) if r.reason == "UnexpectedAdmissionError"
                && r.message.ends_with("no set of running pods found to reclaim resources: [(res: cpu, q: 3000), ]")));
    }
}

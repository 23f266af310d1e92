//! The node our kubelet registered: Ready, with real status values, and a renewed lease.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kubelet_e2e::{client, node_name};
use std::time::Duration;

#[tokio::test]
async fn node_is_ready_with_real_status() {
    let c = client().await;
    let nodes: Api<Node> = Api::all(c);
    let name = node_name();
    let node = kube::runtime::wait::await_condition(nodes.clone(), &name, |n: Option<&Node>| {
        n.and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .expect("node Ready within 30 s")
        .unwrap();
    let n = nodes.get(&node_name()).await.unwrap();
    let labels = n.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], node_name());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(!labels["kubernetes.io/arch"].is_empty());
    assert_eq!(
        n.metadata.annotations.as_ref().unwrap()["volumes.kubernetes.io/controller-managed-attach-detach"],
        "true"
    );
    let s = n.status.unwrap();
    let cap = s.capacity.unwrap();
    let alloc = s.allocatable.unwrap();
    for k in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(cap.contains_key(k) && alloc.contains_key(k), "{k} missing");
    }
    assert_eq!(cap["pods"].0, "110");
    assert_ne!(
        cap["memory"].0, alloc["memory"].0,
        "allocatable memory leaves the eviction reserve"
    );
    let info = s.node_info.unwrap();
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{}",
        info.container_runtime_version
    );
    assert!(
        !info.boot_id.is_empty() && !info.machine_id.is_empty() && !info.kernel_version.is_empty()
    );
    assert_eq!(info.operating_system, "linux");
    assert!(info.kubelet_version.starts_with("v1.20."));
    let addrs = s.addresses.unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a.type_ == "Hostname" && a.address == node_name())
    );
    assert!(addrs.iter().any(|a| a.type_ == "InternalIP"));
    assert_eq!(
        s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
        10250
    );
    let conds = s.conditions.unwrap();
    let want = [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
        ("Ready", "KubeletReady"),
    ];
    for (kind, reason) in want {
        let c = conds
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("{kind} missing"));
        assert_eq!(c.reason.as_deref(), Some(reason));
        assert!(c.last_heartbeat_time.is_some() && c.last_transition_time.is_some());
    }
    let images = s.images.unwrap();
    assert!(
        images
            .iter()
            .flat_map(|i| i.names.iter().flatten())
            .any(|n| n.contains("busybox"))
    );
}

/// When a process started: its start time in clock ticks after boot (/proc/PID/stat, field
/// 22, at the usual 100 ticks a second) plus the boot time (/proc/stat `btime`).
fn process_start(pid: i32) -> k8s_openapi::jiff::Timestamp {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let ticks: i64 = rest.split(' ').nth(19).unwrap().parse().unwrap();
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    k8s_openapi::jiff::Timestamp::from_second(btime + ticks / 100).unwrap()
}

/// The events upstream's kubelet sends about its Node at start: the birth cry, the pods'
/// allocatable enforced, and the pressure conditions as its setters record them.
#[tokio::test]
async fn node_events_at_start() {
    let c = client().await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c, "default");
    let lp = kube::api::ListParams::default().fields(&format!(
        "involvedObject.kind=Node,involvedObject.name={}",
        node_name()
    ));
    let name = node_name();
    // Sent by this kubelet: since it started (the node's events outlive earlier runs).
    let pid = kubelet_e2e::kubelet_pid().expect("the kubelet runs");
    let started = process_start(pid) - k8s_openapi::jiff::SignedDuration::from_secs(2);
    let want = [
        ("Starting", "Starting kubelet.".to_string()),
        (
            "NodeAllocatableEnforced",
            "Updated Node Allocatable limit across pods".to_string(),
        ),
        (
            "NodeHasSufficientMemory",
            format!("Node {name} status is now: NodeHasSufficientMemory"),
        ),
        (
            "NodeHasNoDiskPressure",
            format!("Node {name} status is now: NodeHasNoDiskPressure"),
        ),
        (
            "NodeHasSufficientPID",
            format!("Node {name} status is now: NodeHasSufficientPID"),
        ),
    ];
    kubelet_e2e::eventually(
        Duration::from_secs(30),
        "the node's start events",
        || async {
            let l = events.list(&lp).await.ok()?;
            want.iter()
                .all(|(reason, message)| {
                    l.items.iter().any(|e| {
                        e.reason.as_deref() == Some(*reason)
                            && e.message.as_deref() == Some(message.as_str())
                            && e.type_.as_deref() == Some("Normal")
                            && e.last_timestamp.as_ref().is_some_and(|t| t.0 >= started)
                            && e.source.as_ref().and_then(|s| s.component.as_deref())
                                == Some("kubelet")
                    })
                })
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn lease_is_renewed() {
    let c = client().await;
    let leases: Api<Lease> = Api::namespaced(c, "kube-node-lease");
    let first = tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(leases.clone(), &node_name(), |l: Option<&Lease>| {
            l.is_some()
        }),
    )
    .await
    .expect("lease within 30 s")
    .unwrap()
    .unwrap();
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(node_name().as_str()));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owner = &first.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", node_name().as_str())
    );
    let t0 = spec.renew_time.unwrap().0;
    // Renewed every 10 s: a newer renewTime must show up within 15 s.
    let name = node_name();
    let renewed = kube::runtime::wait::await_condition(leases, &name, move |l: Option<&Lease>| {
        l.and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .is_some_and(|t| t.0 > t0)
    });
    tokio::time::timeout(Duration::from_secs(15), renewed)
        .await
        .expect("lease renewed within 15 s")
        .unwrap();
}

//! A node on systemd and cgroup v2: our kubelet installed as `kubelet.service` (Type=notify,
//! kubeadm's drop-in) with `cgroupDriver: systemd`, containerd with `SystemdCgroup = true`,
//! in the project's qemu VM. The control plane is the host's, reached through an SSH tunnel.
//! `scripts/vm-test.sh` provisions the VM (scripts/vm/node-up.sh) and runs these with
//! `--ignored`; they need, besides the usual `KRS_KUBECONFIG` and `KRS_NODE` (the VM's node):
//! - `KRS_VM_SSH`: the ssh command line that runs a command in the guest as root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kubelet_e2e::{
    TestNs, condition, container_state, container_status, eventually, node_name, phase,
};
use std::time::Duration;

/// Runs `script` in the guest with bash; its exit status and stdout.
fn guest(script: &str) -> (bool, String) {
    let cmd = kubelet_e2e::env("KRS_VM_SSH");
    let mut argv = cmd.split_whitespace();
    let out = std::process::Command::new(argv.next().expect("KRS_VM_SSH is empty"))
        .args(argv)
        .arg(script)
        .output()
        .expect("ssh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// `guest`, which must succeed.
fn guest_ok(script: &str) -> String {
    let (ok, out) = guest(script);
    assert!(ok, "in the VM, {script:?} failed: {out}");
    out
}

/// The pod's slice directory under the cgroup mount, by QoS class as upstream names it.
fn slice_dir(p: &Pod) -> String {
    let uid = p.metadata.uid.clone().unwrap().replace('-', "_");
    let qos = p
        .status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .unwrap()
        .to_lowercase();
    match qos.as_str() {
        "guaranteed" => format!("/sys/fs/cgroup/kubepods.slice/kubepods-pod{uid}.slice"),
        q => {
            format!("/sys/fs/cgroup/kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{uid}.slice")
        }
    }
}

fn unit_of(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap()
}

/// A busybox container that prints what it sees of its own cgroup and OOM score, then
/// waits.
fn reporter(resources: serde_json::Value) -> serde_json::Value {
    serde_json::json!([{
        "name": "c", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "echo mem=$(cat /sys/fs/cgroup/memory.max) cpu=$(cat /sys/fs/cgroup/cpu.max | tr ' ' /) oom=$(cat /proc/self/oom_score_adj); exec sleep 3600"],
        "resources": resources,
    }])
}

async fn logs(ns: &TestNs, pod: &str) -> String {
    ns.pods()
        .logs(pod, &Default::default())
        .await
        .unwrap_or_default()
}

/// Waits for the container's report line and returns it.
async fn report(ns: &TestNs, pod: &str) -> String {
    eventually(
        Duration::from_secs(30),
        "the container's report",
        || async {
            let l = logs(ns, pod).await;
            l.contains("oom=").then_some(l.trim().to_string())
        },
    )
    .await
}

async fn running(ns: &TestNs, name: &str) -> Pod {
    ns.wait_pod(name, Duration::from_secs(120), |p| {
        condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await
}

/// The Node's capacity and allocatable.
async fn node_resources(
    ns: &TestNs,
) -> (
    std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) {
    let n = Api::<Node>::all(ns.client.clone())
        .get(&node_name())
        .await
        .unwrap();
    let s = n.status.unwrap();
    (s.capacity.unwrap(), s.allocatable.unwrap())
}

fn bytes(q: &str) -> u64 {
    let kib: u64 = q.trim_end_matches("Ki").parse().unwrap();
    assert!(q.ends_with("Ki"), "{q}");
    kib * 1024
}

/// `systemctl start` returns only once the kubelet said READY=1, which it does after the
/// Node is registered: the Node, deleted before the start, exists when it returns.
#[tokio::test]
#[ignore = "needs the systemd + cgroup v2 VM node: scripts/vm-test.sh"]
async fn start_is_ready_only_once_the_node_is_registered() {
    let client = kubelet_e2e::client().await;
    let nodes = Api::<Node>::all(client);
    guest_ok("systemctl stop kubelet");
    let _ = nodes.delete(&node_name(), &Default::default()).await;
    assert!(nodes.get_opt(&node_name()).await.unwrap().is_none());
    guest_ok("systemctl start kubelet");
    assert!(
        nodes.get_opt(&node_name()).await.unwrap().is_some(),
        "the unit was active before the Node was registered"
    );
    assert_eq!(
        guest_ok("systemctl show -p Type,ActiveState --value kubelet"),
        "notify\nactive"
    );
    // kubeadm's drop-in put the flags together.
    let cmdline =
        guest_ok("tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value kubelet)/cmdline");
    assert!(
        cmdline.contains("--config=/var/lib/kubelet/config.yaml")
            && cmdline.contains("--hostname-override=krs-vm"),
        "{cmdline}"
    );
}

/// A Guaranteed pod gets its own slice under kubepods.slice with the pod's limits as unit
/// properties; the container sees them, runs with OOM score -997 and is held to the pod's
/// pids limit. The slice goes with the pod.
#[tokio::test]
#[ignore = "needs the systemd + cgroup v2 VM node: scripts/vm-test.sh"]
async fn guaranteed_pod_slice_limits_and_pids() {
    let ns = TestNs::new("vm-limits").await;
    let res = serde_json::json!({"limits": {"cpu": "500m", "memory": "64Mi"}});
    ns.create(&ns.pod("g", "Always", reporter(res))).await;
    let p = running(&ns, "g").await;
    assert_eq!(
        report(&ns, "g").await,
        "mem=67108864 cpu=50000/100000 oom=-997"
    );
    let dir = slice_dir(&p);
    assert_eq!(
        guest_ok(&format!(
            "cat {dir}/memory.max {dir}/cpu.max {dir}/pids.max; systemctl is-active {}",
            unit_of(&dir)
        )),
        "67108864\n50000 100000\n64\nactive"
    );
    // The container sits in containerd's scope inside the pod's slice.
    let scopes = guest_ok(&format!("ls -d {dir}/cri-containerd-*.scope | wc -l"));
    assert_eq!(scopes, "2", "pause and the container");
    // podPidsLimit 64: the 65th process cannot be made.
    ns.create(&ns.pod(
        "forks",
        "Never",
        serde_json::json!([{"name": "c", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "for i in $(seq 100); do sleep 600 & done; echo started"]}]),
    ))
    .await;
    let l = eventually(Duration::from_secs(60), "the fork loop to end", || async {
        let l = logs(&ns, "forks").await;
        (l.contains("can't fork") || l.contains("started")).then_some(l)
    })
    .await;
    assert!(l.contains("can't fork"), "{l}");

    ns.pods().delete("g", &Default::default()).await.unwrap();
    ns.wait_gone("g", Duration::from_secs(60)).await;
    eventually(Duration::from_secs(30), "the pod's slice to go", || async {
        let (active, _) = guest(&format!("systemctl is-active --quiet {}", unit_of(&dir)));
        let (exists, _) = guest(&format!("test -e {dir}"));
        (!active && !exists).then_some(())
    })
    .await;
    ns.cleanup().await;
}

/// The QoS slices, held to the node (kubepods to its memory less kubeReserved 100Mi and
/// systemReserved 28Mi, best-effort to the least weight, burstable to its pods' CPU
/// requests), allocatable less the reservations, and each class's OOM score through CRI.
#[tokio::test]
#[ignore = "needs the systemd + cgroup v2 VM node: scripts/vm-test.sh"]
async fn qos_slices_and_oom_scores() {
    let ns = TestNs::new("vm-qos").await;
    let (capacity, allocatable) = node_resources(&ns).await;
    let mem = bytes(&capacity["memory"].0);
    let cpus: u64 = capacity["cpu"].0.parse().unwrap();
    assert_eq!(
        allocatable["cpu"].0,
        format!("{}m", cpus * 1000 - 100),
        "the CPUs less kubeReserved 100m"
    );
    let reserved = 128u64 << 20;
    assert_eq!(
        guest_ok(
            "cd /sys/fs/cgroup/kubepods.slice && cat memory.max kubepods-besteffort.slice/cpu.weight && systemctl is-active kubepods.slice kubepods-burstable.slice kubepods-besteffort.slice"
        ),
        format!("{}\n1\nactive\nactive\nactive", mem - reserved)
    );
    ns.create(&ns.pod("be", "Always", reporter(serde_json::json!({}))))
        .await;
    let req = 64u64 << 20;
    ns.create(&ns.pod(
        "bu",
        "Always",
        reporter(serde_json::json!({"requests": {"cpu": "200m", "memory": "64Mi"}})),
    ))
    .await;
    let be = running(&ns, "be").await;
    let bu = running(&ns, "bu").await;
    assert!(report(&ns, "be").await.ends_with("oom=1000"));
    // Upstream's Burstable formula: 1000 - 1000 * request / capacity, within [3, 999].
    let want = (1000 - (1000 * req / mem) as i64).clamp(3, 999);
    let got = report(&ns, "bu").await;
    assert!(got.ends_with(&format!("oom={want}")), "{got}, want {want}");
    for (p, parent) in [
        (&be, "kubepods-besteffort.slice"),
        (&bu, "kubepods-burstable.slice"),
    ] {
        let dir = slice_dir(p);
        assert!(dir.contains(parent), "{dir}");
        guest_ok(&format!("test -d {dir}"));
    }
    // The Burstable tier weighs its pods' CPU requests (200m: 204 shares, cpu.weight 8).
    eventually(
        Duration::from_secs(30),
        "the burstable tier's weight",
        || async {
            let w =
                guest_ok("cat /sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/cpu.weight");
            (w == "8").then_some(())
        },
    )
    .await;
    ns.cleanup().await;
}

/// A container over its memory limit is killed by the kernel in its v2 cgroup and reported
/// as OOMKilled.
#[tokio::test]
#[ignore = "needs the systemd + cgroup v2 VM node: scripts/vm-test.sh"]
async fn oom_kill_is_reported() {
    let ns = TestNs::new("vm-oom").await;
    ns.create(&ns.pod(
        "hog",
        "Never",
        serde_json::json!([{"name": "c", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "tail /dev/zero"],
            "resources": {"limits": {"memory": "16Mi"}}}]),
    ))
    .await;
    let p = ns
        .wait_pod("hog", Duration::from_secs(120), |p| phase(p) == "Failed")
        .await;
    let t = &container_state(&p, 0)["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137, "{t}");
    ns.cleanup().await;
}

/// `/stats/summary` and `/metrics/resource` through the API server, from v2 files: the node
/// (the root's cpu.stat and /proc/meminfo), the pod (its slice) and the container (its scope).
#[tokio::test]
#[ignore = "needs the systemd + cgroup v2 VM node: scripts/vm-test.sh"]
async fn stats_from_cgroup_v2() {
    let ns = TestNs::new("vm-stats").await;
    let res = serde_json::json!({"limits": {"cpu": "200m", "memory": "64Mi"}});
    ns.create(&ns.pod("s", "Always", reporter(res))).await;
    let p = running(&ns, "s").await;
    let uid = p.metadata.uid.clone().unwrap();
    let get = |path: String| {
        let client = ns.client.clone();
        async move {
            client
                .request_text(http::Request::get(path).body(vec![]).unwrap())
                .await
                .ok()
        }
    };
    let summary_path = format!("/api/v1/nodes/{}/proxy/stats/summary", node_name());
    let (node, pod) = eventually(Duration::from_secs(60), "pod stats", || async {
        let s: serde_json::Value = serde_json::from_str(&get(summary_path.clone()).await?).ok()?;
        let pod = s["pods"]
            .as_array()?
            .iter()
            .find(|p| p["podRef"]["uid"] == uid.as_str())?
            .clone();
        pod["containers"][0]["memory"]["workingSetBytes"].as_u64()?;
        Some((s["node"].clone(), pod))
    })
    .await;
    assert!(
        node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{node}"
    );
    assert!(
        node["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{node}"
    );
    assert!(
        pod["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{pod}"
    );
    assert!(
        pod["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{pod}"
    );
    let c = &pod["containers"][0];
    assert!(c["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{c}");
    let metrics = get(format!(
        "/api/v1/nodes/{}/proxy/metrics/resource",
        node_name()
    ))
    .await
    .unwrap();
    for want in [
        "node_memory_working_set_bytes ",
        &format!(
            "pod_memory_working_set_bytes{{namespace=\"{}\",pod=\"s\"}}",
            ns.name
        ),
    ] {
        assert!(metrics.contains(want), "no {want} in:\n{metrics}");
    }
    ns.cleanup().await;
}

/// `systemctl restart kubelet` adopts the running pods: no container is restarted and the
/// pod's slice and the container's scope stay.
#[tokio::test]
#[ignore = "needs the systemd + cgroup v2 VM node: scripts/vm-test.sh"]
async fn restart_keeps_the_pods() {
    let ns = TestNs::new("vm-restart").await;
    let res = serde_json::json!({"limits": {"cpu": "100m", "memory": "32Mi"}});
    ns.create(&ns.pod("r", "Always", reporter(res))).await;
    let before = running(&ns, "r").await;
    let id = container_state(&before, 0);
    let cid = container_status(&before, 0).container_id.unwrap();
    let scope = format!(
        "cri-containerd-{}.scope",
        cid.trim_start_matches("containerd://")
    );
    let pid_before = guest_ok("systemctl show -p MainPID --value kubelet");
    guest_ok("systemctl restart kubelet");
    let pid_after = guest_ok("systemctl show -p MainPID --value kubelet");
    assert_ne!(pid_before, pid_after, "the kubelet was not restarted");
    // Once the new kubelet has heartbeated (by the guest's clock, as the kubelet stamps
    // it), it has long synced the pod.
    let restarted: i64 = guest_ok("date +%s").parse().unwrap();
    let nodes = Api::<Node>::all(ns.client.clone());
    eventually(
        Duration::from_secs(60),
        "a heartbeat after the restart",
        || async {
            let n = nodes.get(&node_name()).await.ok()?;
            let ready = n
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            let beat = ready.last_heartbeat_time?.0;
            (ready.status == "True" && beat.as_second() >= restarted).then_some(())
        },
    )
    .await;
    let after = ns.pods().get("r").await.unwrap();
    let cs = container_status(&after, 0);
    assert_eq!(cs.restart_count, 0);
    assert_eq!(cs.container_id.as_deref(), Some(cid.as_str()));
    assert_eq!(container_state(&after, 0), id);
    assert_eq!(
        guest_ok(&format!(
            "systemctl is-active {scope} {}",
            unit_of(&slice_dir(&after))
        )),
        "active\nactive"
    );
    ns.cleanup().await;
}

/// `systemctl poweroff` with `shutdownGracePeriod: 20s` (10 s of it for critical pods):
/// logind waits on the kubelet's delay lock while the node reports NotReady and the pods
/// are killed, ordinary ones first and a critical one 10 s later, each failed with reason
/// Shutdown. Last of the suite: the VM is gone afterwards (vm-test.sh runs it on its own).
#[tokio::test]
#[ignore = "needs the systemd + cgroup v2 VM node: scripts/vm-test.sh"]
async fn poweroff_ends_pods_critical_last() {
    let ns = TestNs::new("vm-shutdown").await;
    let waits = serde_json::json!([{
        "name": "c", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
    }]);
    let mut ordinary = ns.pod("ordinary", "Always", waits.clone());
    ordinary
        .spec
        .as_mut()
        .unwrap()
        .termination_grace_period_seconds = Some(30);
    ns.create(&ordinary).await;
    // system-node-critical is only admitted in kube-system.
    let mut critical = ns.pod("critical", "Always", waits);
    critical.metadata.namespace = Some("kube-system".into());
    critical.metadata.name = Some(format!("{}-critical", ns.name));
    critical.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
    let system = TestNs {
        client: ns.client.clone(),
        name: "kube-system".into(),
    };
    let critical_name = critical.metadata.name.clone().unwrap();
    system.create(&critical).await;
    running(&ns, "ordinary").await;
    running(&system, &critical_name).await;

    // The node's NotReady is watched from before the poweroff.
    let nodes = Api::<Node>::all(ns.client.clone());
    let not_ready = tokio::spawn(async move {
        let name = node_name();
        kube::runtime::wait::await_condition(nodes, &name, |n: Option<&Node>| {
            n.and_then(|n| n.status.as_ref()?.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| {
                    c.status == "False"
                        && c.message
                            .as_deref()
                            .unwrap_or_default()
                            .contains("node is shutting down")
                })
        })
        .await
    });
    // ssh may lose the connection as the guest goes down.
    let _ = guest("systemctl poweroff");
    let shut = |p: &Pod| {
        phase(p) == "Failed"
            && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Shutdown")
    };
    let o = ns.wait_pod("ordinary", Duration::from_secs(90), shut).await;
    let c = system
        .wait_pod(&critical_name, Duration::from_secs(90), shut)
        .await;
    assert_eq!(
        o.status.as_ref().unwrap().message.as_deref(),
        Some("Node is shutting, evicting pods")
    );
    tokio::time::timeout(Duration::from_secs(30), not_ready)
        .await
        .expect("the node never reported that it was shutting down")
        .unwrap()
        .unwrap();
    let finished = |p: &Pod| {
        let t = container_state(p, 0)["terminated"]["finishedAt"]
            .as_str()
            .unwrap_or_else(|| panic!("not terminated: {}", container_state(p, 0)))
            .to_string();
        t.parse::<jiff::Timestamp>().unwrap()
    };
    let gap = finished(&c).as_second() - finished(&o).as_second();
    // Critical pods wait for shutdownGracePeriod - shutdownGracePeriodCriticalPods.
    assert!(
        (8..=15).contains(&gap),
        "critical pod ended {gap} s after the other"
    );
    // The node is gone, so nothing would confirm a graceful deletion.
    let force = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let _ = system.pods().delete(&critical_name, &force).await;
    let _ = ns.pods().delete("ordinary", &force).await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(ns.client.clone())
        .delete(&ns.name, &Default::default())
        .await;
}

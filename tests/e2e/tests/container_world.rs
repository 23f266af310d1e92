//! What a process inside the container sees: environment, /etc/hosts, /etc/resolv.conf,
//! its identity and privileges. Each container reports through its termination message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::PostParams;
use kubelet_e2e::{TestNs, container_state, phase};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

fn sh(script: &str) -> serde_json::Value {
    json!({"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never", "command": ["sh", "-c", script]})
}

async fn report(ns: &TestNs, name: &str) -> String {
    let p = ns
        .wait_pod(name, Duration::from_secs(20), |p| {
            phase(p) == "Succeeded" || phase(p) == "Failed"
        })
        .await;
    assert_eq!(phase(&p), "Succeeded", "{:?}", p.status);
    container_state(&p, 0)["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn config_map(ns: &TestNs, name: &str, data: serde_json::Value) {
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap();
    Api::<ConfigMap>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

#[tokio::test]
async fn environment_from_every_source() {
    let ns = TestNs::new("env").await;
    config_map(&ns, "cfg", json!({"MODE": "prod", "LEVEL": "3"})).await;
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "sec"}, "stringData": {"token": "t0p"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let mut c = sh("env > /dev/termination-log; echo \"CMD=$1\" >> /dev/termination-log");
    c["args"] = json!(["x", "$(POD_NAME)-$$(LITERAL)"]);
    c["command"] = json!([
        "sh",
        "-c",
        "env > /dev/termination-log; echo \"CMD=$1\" >> /dev/termination-log"
    ]);
    c["envFrom"] = json!([{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}]);
    c["env"] = json!([
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}},
        {"name": "COMBINED", "value": "$(CFG_MODE)/$(LEVEL)/$(NOPE)"},
    ]);
    c["resources"] = json!({"limits": {"memory": "64Mi"}});
    ns.create(&ns.pod("p", "Never", json!([c]))).await;
    let out = report(&ns, "p").await;
    let env: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(env["CFG_MODE"], "prod");
    assert_eq!(env["POD_NAME"], "p");
    assert_eq!(env["POD_NS"], ns.name);
    assert!(env["POD_IP"].starts_with("10.88."));
    assert_eq!(env["NODE"], kubelet_e2e::node_name());
    assert_eq!(env["MEM_MI"], "64");
    assert_eq!(env["TOKEN"], "t0p");
    assert_eq!(env["LEVEL"], "3");
    assert_eq!(env["COMBINED"], "prod/3/$(NOPE)");
    assert_eq!(env["CMD"], "p-$(LITERAL)");
    assert_eq!(
        env["KUBERNETES_SERVICE_HOST"], "10.0.0.1",
        "the master service's link variables"
    );
    assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
    ns.cleanup().await;
}

/// Go clients send a divisor they left unset as "0"; upstream reads it as 1. Unset limits are
/// the node's allocatable, in env and in downwardAPI volume files alike.
#[tokio::test]
async fn zero_divisors_and_allocatable_defaults() {
    let ns = TestNs::new("divisor").await;
    let mut c = sh(
        "env > /dev/termination-log; for f in /info/*; do echo \"$(basename $f)=$(cat $f)\" >> /dev/termination-log; done",
    );
    let field = |r: &str, d: &str| json!({"resourceFieldRef": {"resource": r, "divisor": d}});
    c["env"] = json!([
        {"name": "CPU_LIMIT", "valueFrom": field("limits.cpu", "0")},
        {"name": "CPU_LIMIT_MILLI", "valueFrom": field("limits.cpu", "1m")},
        {"name": "CPU_REQUEST", "valueFrom": field("requests.cpu", "0")},
        {"name": "MEM_REQUEST", "valueFrom": field("requests.memory", "0")},
        {"name": "MEM_LIMIT", "valueFrom": field("limits.memory", "0")},
        {"name": "STORAGE_LIMIT", "valueFrom": field("limits.ephemeral-storage", "0")},
    ]);
    c["resources"] = json!({"requests": {"cpu": "250m", "memory": "32Mi"}});
    c["volumeMounts"] = json!([{"name": "info", "mountPath": "/info"}]);
    let item = |path: &str, r: &str, d: &str| json!({"path": path, "resourceFieldRef": {"containerName": "main", "resource": r, "divisor": d}});
    let mut pod = ns.pod("p", "Never", json!([c]));
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes = Some(
        serde_json::from_value(json!([{"name": "info", "downwardAPI": {"items": [
            item("cpu_request_milli", "requests.cpu", "1m"),
            item("mem_request", "requests.memory", "0"),
            item("mem_limit_mi", "limits.memory", "1Mi"),
            item("cpu_limit", "limits.cpu", "0"),
        ]}}]))
        .unwrap(),
    );
    ns.create(&pod).await;
    let out = report(&ns, "p").await;
    let got: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let node = Api::<k8s_openapi::api::core::v1::Node>::all(ns.client.clone())
        .get(&kubelet_e2e::node_name())
        .await
        .unwrap();
    let alloc = node.status.unwrap().allocatable.unwrap();
    let cpus: u64 = alloc["cpu"].0.parse().unwrap();
    let bytes = |q: &str| -> u64 {
        for (suffix, shift) in [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40)] {
            if let Some(n) = q.strip_suffix(suffix) {
                return n.parse::<u64>().unwrap() << shift;
            }
        }
        q.parse().unwrap()
    };
    let mem = bytes(&alloc["memory"].0);
    let storage = bytes(&alloc["ephemeral-storage"].0);
    assert_eq!(got["CPU_LIMIT"], cpus.to_string());
    assert_eq!(got["CPU_LIMIT_MILLI"], (cpus * 1000).to_string());
    assert_eq!(got["CPU_REQUEST"], "1", "250m rounds up to a whole cpu");
    assert_eq!(got["MEM_REQUEST"], (32u64 << 20).to_string());
    assert_eq!(
        got["MEM_LIMIT"],
        mem.to_string(),
        "allocatable, not capacity"
    );
    assert_eq!(got["STORAGE_LIMIT"], storage.to_string());
    assert_eq!(got["cpu_request_milli"], "250");
    assert_eq!(got["mem_request"], (32u64 << 20).to_string());
    assert_eq!(got["mem_limit_mi"], (mem.div_ceil(1 << 20)).to_string());
    assert_eq!(got["cpu_limit"], cpus.to_string());
    ns.cleanup().await;
}

#[tokio::test]
async fn missing_config_map_waits_then_starts() {
    let ns = TestNs::new("envwait").await;
    let mut c = sh("echo -n $A > /dev/termination-log");
    c["env"] =
        json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "a"}}}]);
    ns.create(&ns.pod("p", "Never", json!([c]))).await;
    ns.create(&ns.pod("neighbour", "Never", json!([sh("true")])))
        .await;
    let msg = ns
        .wait_waiting("p", "CreateContainerConfigError", Duration::from_secs(15))
        .await;
    assert_eq!(msg, "configmaps \"later\" not found");
    ns.wait_pod("neighbour", Duration::from_secs(15), |p| {
        phase(p) == "Succeeded"
    })
    .await;
    config_map(&ns, "later", json!({"a": "here"})).await;
    assert_eq!(report(&ns, "p").await, "here");
    ns.cleanup().await;
}

#[tokio::test]
async fn hosts_and_resolv_conf() {
    let ns = TestNs::new("names").await;
    let mut pod = ns.pod(
        "web",
        "Never",
        json!([sh("cat /etc/hosts /etc/resolv.conf > /dev/termination-log")]),
    );
    let spec = pod.spec.as_mut().unwrap();
    spec.hostname = Some("myhost".into());
    spec.subdomain = Some("sub".into());
    spec.host_aliases = Some(
        serde_json::from_value(json!([{"ip": "1.2.3.4", "hostnames": ["foo.example"]}])).unwrap(),
    );
    ns.create(&pod).await;
    let out = report(&ns, "web").await;
    assert!(
        out.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
        "{out}"
    );
    let want = format!("\tmyhost.sub.{}.svc.cluster.local\tmyhost\n", ns.name);
    assert!(out.contains(&want), "{out}");
    assert!(
        out.contains("# Entries added by HostAliases.\n1.2.3.4\tfoo.example\n"),
        "{out}"
    );
    assert!(out.contains("nameserver 10.0.0.10"), "{out}");
    let search = format!(
        "search {}.svc.cluster.local svc.cluster.local cluster.local",
        ns.name
    );
    assert!(out.contains(&search), "{out}");
    assert!(out.contains("options ndots:5"), "{out}");
    ns.cleanup().await;
}

#[tokio::test]
async fn identity_and_privileges() {
    let ns = TestNs::new("secctx").await;
    let script = "id > /dev/termination-log; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status >> /dev/termination-log; \
                  touch /rootfs-write 2>> /dev/termination-log || echo ro-denied >> /dev/termination-log";
    let mut c = sh(script);
    c["securityContext"] = json!({"runAsUser": 1000, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                  "capabilities": {"drop": ["ALL"]}});
    let mut pod = ns.pod("p", "Never", json!([c]));
    pod.spec.as_mut().unwrap().security_context = Some(
        serde_json::from_value(
            json!({"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]}),
        )
        .unwrap(),
    );
    ns.create(&pod).await;
    let out = report(&ns, "p").await;
    assert!(
        out.starts_with("uid=1000 gid=3000 groups=2000,3000,4000")
            || out.starts_with("uid=1000 gid=3000 groups=2000,4000"),
        "{out}"
    );
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("ro-denied"), "{out}");
    ns.cleanup().await;
}

#[tokio::test]
async fn run_as_non_root_refuses_a_root_image() {
    let ns = TestNs::new("nonroot").await;
    let mut c = sh("true");
    c["securityContext"] = json!({"runAsNonRoot": true});
    ns.create(&ns.pod("p", "Never", json!([c]))).await;
    let msg = ns
        .wait_waiting("p", "CreateContainerConfigError", Duration::from_secs(15))
        .await;
    assert!(
        msg.starts_with("container has runAsNonRoot and image will run as root (pod: \"p_"),
        "{msg}"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn cgroup_limits_inside_and_on_the_host() {
    let ns = TestNs::new("cgroups").await;
    let mut c = sh(
        "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes > /dev/termination-log; sleep 3600",
    );
    c["resources"] =
        json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}});
    ns.create(&ns.pod("p", "Always", json!([c]))).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(15), |p| phase(p) == "Running")
        .await;
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(
        p.status.as_ref().unwrap().qos_class.as_deref(),
        Some("Burstable")
    );
    // kubepods is held to the node's allocatable (enforceNodeAllocatable: [pods]).
    let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_string();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        read("/sys/fs/cgroup/cpu/kubepods/cpu.shares"),
        (cpus * 1024).to_string()
    );
    let limit: u64 = read("/sys/fs/cgroup/memory/kubepods/memory.limit_in_bytes")
        .parse()
        .unwrap();
    let total: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        * 1024;
    assert!(
        total.abs_diff(limit) < 4096,
        "kubepods memory limit {limit}, capacity {total}"
    );
    let pod_cg = format!("/sys/fs/cgroup/cpu/kubepods/burstable/pod{uid}");
    assert_eq!(
        std::fs::read_to_string(format!("{pod_cg}/cpu.shares"))
            .unwrap()
            .trim(),
        "256"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{pod_cg}/cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "50000"
    );
    let mem = format!("/sys/fs/cgroup/memory/kubepods/burstable/pod{uid}/memory.limit_in_bytes");
    assert_eq!(
        std::fs::read_to_string(mem).unwrap().trim(),
        (64u64 << 20).to_string()
    );
    // What the container itself sees, through a restart-free kill: delete and read the message.
    ns.pods()
        .delete(
            "p",
            &kube::api::DeleteParams {
                grace_period_seconds: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ns.wait_gone("p", Duration::from_secs(15)).await;
    assert!(
        !std::path::Path::new(&pod_cg).exists(),
        "pod cgroup {pod_cg} left behind"
    );

    let mut c = sh(
        "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes > /dev/termination-log",
    );
    c["resources"] =
        json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}});
    ns.create(&ns.pod("q", "Never", json!([c]))).await;
    let out = report(&ns, "q").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["256", "50000", &(64u64 << 20).to_string()], "{out}");
    ns.cleanup().await;
}

/// Each QoS class's OOM score reaches the container (upstream's policy through CRI
/// `oom_score_adj`). This host's containerd runs with `restrict_oom_score_adj` (no
/// CAP_SYS_RESOURCE here), which raises a score below its own to its own.
#[tokio::test]
async fn oom_scores_follow_the_qos_class() {
    let ns = TestNs::new("oomscore").await;
    let read = "cat /proc/self/oom_score_adj > /dev/termination-log";
    let mut classes = vec![];
    for (name, resources) in [
        ("best", json!({})),
        ("burst", json!({"requests": {"memory": "64Mi"}})),
        ("guar", json!({"limits": {"cpu": "100m", "memory": "64Mi"}})),
    ] {
        let mut c = sh(read);
        c["resources"] = resources;
        ns.create(&ns.pod(name, "Never", json!([c]))).await;
        classes.push(name);
    }
    let mut score = HashMap::new();
    for name in classes {
        let out = report(&ns, name).await;
        let v: i64 = out
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {out:?}"));
        score.insert(name, v);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: i64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let burstable = (1000 - (1000 * (64 << 20)) / (total_kb * 1024)).clamp(3, 999);
    assert_eq!(score["best"], 1000, "{score:?}");
    assert_eq!(score["burst"], burstable, "{score:?}");
    let containerd = std::process::Command::new("pgrep")
        .args(["-x", "containerd"])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&containerd.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let floor: i64 = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        score["guar"],
        (-997i64).max(floor),
        "{score:?}, containerd {floor}"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn oom_killed() {
    let ns = TestNs::new("oom").await;
    let mut c = sh("head -c 200m /dev/zero | tail");
    c["resources"] = json!({"limits": {"memory": "16Mi"}});
    ns.create(&ns.pod("p", "Never", json!([c]))).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(30), |p| phase(p) == "Failed")
        .await;
    let t = &container_state(&p, 0)["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137);
    ns.cleanup().await;
}

#[tokio::test]
async fn unsafe_sysctl_is_refused_and_fqdn_hostname() {
    let ns = TestNs::new("admit").await;
    let mut pod = ns.pod("sysctl", "Never", json!([sh("true")]));
    pod.spec.as_mut().unwrap().security_context = Some(
        serde_json::from_value(
            json!({"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}),
        )
        .unwrap(),
    );
    ns.create(&pod).await;
    let p = ns
        .wait_pod("sysctl", Duration::from_secs(15), |p| phase(p) == "Failed")
        .await;
    let s = p.status.unwrap();
    assert_eq!(s.reason.as_deref(), Some("SysctlForbidden"));
    assert_eq!(
        s.message.as_deref(),
        Some("Pod forbidden sysctl: \"net.core.somaxconn\" not whitelisted")
    );

    let mut pod = ns.pod(
        "fqdn",
        "Never",
        json!([sh("hostname > /dev/termination-log")]),
    );
    let spec = pod.spec.as_mut().unwrap();
    spec.subdomain = Some("sub".into());
    spec.set_hostname_as_fqdn = Some(true);
    ns.create(&pod).await;
    let out = report(&ns, "fqdn").await;
    assert_eq!(
        out.trim(),
        format!("fqdn.sub.{}.svc.cluster.local", ns.name)
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn dns_limits_are_applied_with_an_event() {
    let ns = TestNs::new("dnslimits").await;
    let mut p = ns.pod(
        "p",
        "Never",
        json!([sh("cat /etc/resolv.conf > /dev/termination-log")]),
    );
    // The cluster's nameserver and three more; the cluster's three searches and six more.
    p.spec.as_mut().unwrap().dns_config = Some(
        serde_json::from_value(json!({
            "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"],
            "searches": ["a.example", "b.example", "c.example", "d.example", "e.example", "f.example"],
        }))
        .unwrap(),
    );
    ns.create(&p).await;
    let resolv = report(&ns, "p").await;
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(servers, vec!["10.0.0.10", "1.1.1.1", "2.2.2.2"], "{resolv}");
    let search = resolv
        .lines()
        .find_map(|l| l.strip_prefix("search "))
        .unwrap();
    assert_eq!(search.split(' ').count(), 6, "{resolv}");
    let ev = ns
        .wait_event("p", "DNSConfigForming", Duration::from_secs(10))
        .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    let msg = ev.message.unwrap_or_default();
    assert!(
        msg == "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.0.0.10 1.1.1.1 2.2.2.2"
            || msg.starts_with("Search Line limits were exceeded, some search paths have been omitted, the applied search line is: "),
        "{msg}"
    );
    ns.cleanup().await;
}

/// The namespaces a container shares with the host are the host's own: same inode links.
#[tokio::test]
async fn host_network_pid_and_ipc_namespaces() {
    let ns = TestNs::new("hostns").await;
    let script = "echo $(readlink /proc/self/ns/net) $(readlink /proc/self/ns/pid) $(readlink /proc/self/ns/ipc) > /dev/termination-log";
    let mut shared = ns.pod("shared", "Never", json!([sh(script)]));
    {
        let s = shared.spec.as_mut().unwrap();
        s.host_network = Some(true);
        s.host_pid = Some(true);
        s.host_ipc = Some(true);
    }
    ns.create(&shared).await;
    ns.create(&ns.pod("own", "Never", json!([sh(script)])))
        .await;
    let host: Vec<String> = ["net", "pid", "ipc"]
        .iter()
        .map(|n| {
            std::fs::read_link(format!("/proc/self/ns/{n}"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    let seen = report(&ns, "shared").await;
    assert_eq!(seen.split_whitespace().collect::<Vec<_>>(), host, "{seen}");
    let own = report(&ns, "own").await;
    for (mine, theirs) in own.split_whitespace().zip(&host) {
        assert_ne!(mine, theirs, "a default pod shares the host's {theirs}");
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn runtime_class_handler_reaches_the_runtime() {
    use k8s_openapi::api::node::v1::RuntimeClass;
    let ns = TestNs::new("rtclass").await;
    let classes: Api<RuntimeClass> = Api::all(ns.client.clone());
    let (good, bad) = (format!("{}-runc", ns.name), format!("{}-nope", ns.name));
    for (name, handler) in [(&good, "runc"), (&bad, "nope")] {
        let rc: RuntimeClass =
            serde_json::from_value(json!({"metadata": {"name": name}, "handler": handler}))
                .unwrap();
        classes.create(&PostParams::default(), &rc).await.unwrap();
    }
    let mut p = ns.pod(
        "good",
        "Never",
        json!([sh("echo ran > /dev/termination-log")]),
    );
    p.spec.as_mut().unwrap().runtime_class_name = Some(good.clone());
    ns.create(&p).await;
    let mut p = ns.pod("bad", "Never", json!([sh("true")]));
    p.spec.as_mut().unwrap().runtime_class_name = Some(bad.clone());
    ns.create(&p).await;
    assert_eq!(report(&ns, "good").await, "ran\n");
    // The handler went to RunPodSandbox: the runtime records it on the sandbox.
    let uid = ns.pods().get("good").await.unwrap().metadata.uid.unwrap();
    use kubelet_cri::RuntimeService;
    let rt = kubelet_e2e::runtime();
    let sandboxes = rt.list_pod_sandbox(None).await.unwrap();
    let sb = sandboxes
        .iter()
        .find(|s| s.metadata.as_ref().is_some_and(|m| m.uid == uid))
        .unwrap();
    assert_eq!(sb.runtime_handler, "runc");
    // An unknown handler: the runtime's refusal, as upstream words the event.
    let ev = ns
        .wait_event("bad", "FailedCreatePodSandBox", Duration::from_secs(20))
        .await;
    let msg = ev.message.unwrap_or_default();
    assert!(
        msg.starts_with("Failed to create pod sandbox: ") && msg.contains("nope"),
        "{msg}"
    );
    ns.cleanup().await;
    for name in [&good, &bad] {
        let _ = classes.delete(name, &Default::default()).await;
    }
}

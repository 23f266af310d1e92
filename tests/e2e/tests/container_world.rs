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

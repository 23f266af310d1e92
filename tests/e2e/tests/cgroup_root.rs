//! `cgroupRoot` under the cgroupfs driver (cgroup v1, as the suite's host runs): kubepods,
//! the QoS tiers and the pods' cgroups hang under the root, the runtime puts the containers
//! there, the summary reads the pods' usage from there, and a deleted pod's cgroup goes. One
//! test in its own binary: it restarts the node's kubelet with another configuration, then
//! restores it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_e2e::{
    ONE_RESTART, Restore, TestNs, config_with, eventually, kubelet_get, phase, restart_kubelet,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROOT: &str = "krs-e2e-root";
const MOUNT: &str = "/sys/fs/cgroup";

/// Every v1 controller hierarchy under the mount, once each (`cpu` and `cpuacct` are often
/// links to `cpu,cpuacct`); not the unified one.
fn hierarchies() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = vec![];
    for e in std::fs::read_dir(MOUNT).unwrap().flatten() {
        let name = e.file_name();
        if name == "unified" || !e.path().is_dir() {
            continue;
        }
        let real = std::fs::canonicalize(e.path()).unwrap();
        if !out.contains(&real) {
            out.push(real);
        }
    }
    out
}

/// The root the operator makes (the kubelet refuses to start without it): a cgroup in every
/// hierarchy, cpuset given its parent's CPUs and memory nodes so tasks may join below it.
fn make_root() {
    for h in hierarchies() {
        let dir = h.join(ROOT);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(h.join(f)) {
                std::fs::write(dir.join(f), v.trim()).unwrap();
            }
        }
    }
}

/// Removes what is left under the root, leaves first; a cgroup still in use (a pod another
/// test made while the root was set) is reported, not fatal.
fn remove_root() {
    fn rm(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        if let Err(e) = std::fs::remove_dir(dir) {
            eprintln!("leaving {}: {e}", dir.display());
        }
    }
    for h in hierarchies() {
        rm(&h.join(ROOT));
    }
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn pods_hang_under_the_cgroup_root() {
    let _one = ONE_RESTART.lock().await;
    make_root();
    let config = config_with(&format!("cgroupRoot: /{ROOT}"), "cgroot");
    let restore = Restore;
    restart_kubelet(Some(&config));

    // kubepods under the root, held to the node's allocatable; the QoS tiers below it.
    let kubepods = format!("{MOUNT}/cpu/{ROOT}/kubepods");
    eventually(
        Duration::from_secs(30),
        "kubepods under the root",
        || async { Path::new(&kubepods).is_dir().then_some(()) },
    )
    .await;
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        read(&format!("{kubepods}/cpu.shares")),
        (cpus * 1024).to_string()
    );
    for tier in ["burstable", "besteffort"] {
        for ctrl in ["cpu", "memory", "pids"] {
            let d = format!("{MOUNT}/{ctrl}/{ROOT}/kubepods/{tier}");
            assert!(Path::new(&d).is_dir(), "{d}");
        }
    }
    assert_eq!(
        read(&format!("{kubepods}/besteffort/cpu.shares")),
        "2",
        "best-effort pods share the least weight"
    );

    let ns = TestNs::new("cgroot").await;
    let c = json!({"name": "c", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "Never", "command": ["sh", "-c", "sleep 3600"],
        "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}});
    ns.create(&ns.pod("p", "Always", json!([c]))).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(30), |p| phase(p) == "Running")
        .await;
    let uid = p.metadata.uid.clone().unwrap();
    let pod_cg = format!("{kubepods}/burstable/pod{uid}");
    assert_eq!(read(&format!("{pod_cg}/cpu.shares")), "256");
    assert_eq!(read(&format!("{pod_cg}/cpu.cfs_quota_us")), "50000");
    assert_eq!(
        read(&format!(
            "{MOUNT}/memory/{ROOT}/kubepods/burstable/pod{uid}/memory.limit_in_bytes"
        )),
        (64u64 << 20).to_string()
    );
    // The runtime was given the pod's cgroup: the sandbox and the container are in it.
    let procs = |dir: &Path| -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| {
                read(&e.path().join("cgroup.procs").to_string_lossy())
                    .lines()
                    .count()
            })
            .sum()
    };
    assert!(
        procs(Path::new(&pod_cg)) >= 2,
        "the pause and the container's processes under {pod_cg}"
    );
    // Nothing of this pod at the host's root kubepods.
    assert!(!Path::new(&format!("{MOUNT}/cpu/kubepods/burstable/pod{uid}")).exists());

    // The summary reads the pods' usage from under the root.
    let (body, code) = kubelet_get("/stats/summary");
    assert_eq!(code, "200", "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sys = s["node"]["systemContainers"].as_array().unwrap();
    let pods = sys.iter().find(|c| c["name"] == "pods").unwrap();
    assert!(
        pods["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{pods}"
    );
    let ps = s["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["podRef"]["uid"] == uid.as_str())
        .unwrap();
    assert!(
        ps["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{ps}"
    );
    assert!(
        ps["process_stats"]["process_count"].as_u64().unwrap() >= 2,
        "{ps}"
    );

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
    ns.wait_gone("p", Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(15),
        "the pod cgroup removed",
        || async { (!Path::new(&pod_cg).exists()).then_some(()) },
    )
    .await;
    ns.cleanup().await;

    drop(restore);
    remove_root();
    let _ = std::fs::remove_file(&config);
}

//! Pod cgroups against a real cgroup v2 kernel and a real systemd. This host has neither
//! (cgroup v1, no systemd), so the tests are ignored here; `scripts/vm-test.sh` runs them
//! inside the systemd + cgroup v2 VM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_host::cgroups::{
    CGROUP_ROOT, CgroupVersion, Cgroups, PodLimits, SystemdCgroups, detect, manager,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Removes the cgroups the test made, deepest first, also when an assertion fails.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Kills and reaps the child, also when an assertion fails (else the cgroup stays busy).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (with a deadline) until `ok` holds.
fn eventually(what: &str, ok: impl Fn() -> bool) {
    #[allow(clippy::disallowed_methods)] // a test deadline on a plain thread, no runtime
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !ok() {
        #[allow(clippy::disallowed_methods)]
        let now = std::time::Instant::now();
        assert!(now < deadline, "never: {what}");
        std::thread::yield_now();
    }
}

/// Stops the test's slices (deepest first), also when an assertion fails.
struct StopUnits(Vec<String>);

impl Drop for StopUnits {
    fn drop(&mut self) {
        for unit in &self.0 {
            let _ = std::process::Command::new("systemctl")
                .args(["stop", unit])
                .status();
        }
    }
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f))
        .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
        .trim()
        .to_string()
}

#[tokio::test]
#[ignore = "needs a cgroup v2 host: scripts/vm-test.sh runs it in the VM"]
async fn pod_cgroups_on_a_real_v2_kernel() {
    let root = Path::new(CGROUP_ROOT);
    assert_eq!(detect(root).unwrap(), CgroupVersion::V2);
    let cg = manager(CgroupVersion::V2, root);
    let base = format!("/krs-test-{}", std::process::id());
    let qos = format!("{base}/burstable");
    let pod = format!("{qos}/podu1");
    let dir = root.join(pod.trim_start_matches('/'));
    let _cleanup = Cleanup(
        [&pod, &qos, &base]
            .iter()
            .map(|p| root.join(p.trim_start_matches('/')))
            .collect(),
    );
    let limits = PodLimits {
        cpu_shares: Some(1024),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit: Some(64 << 20),
        pids_max: Some(100),
    };
    cg.ensure(&pod, &limits).await.unwrap();
    assert_eq!(read(&dir, "cpu.weight"), "39");
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");
    assert_eq!(read(&dir, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(read(&dir, "pids.max"), "100");
    // Ensuring again is idempotent (pods are re-synced).
    cg.ensure(&pod, &limits).await.unwrap();
    assert!(cg.exists(&pod));

    // A process inside is accounted for: the shell moves itself in, then execs, so what it
    // maps from then on is charged to the pod (v2 does not move earlier charges).
    let script = format!("echo $$ > {}/cgroup.procs && exec sleep 60", dir.display());
    let child = Child(
        std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap(),
    );
    eventually("the pod cgroup charges the child's memory", || {
        cg.usage(&pod).is_some_and(|u| u.memory_usage > 0)
    });
    let u = cg.usage(&pod).expect("usage of a populated pod cgroup");
    assert!(u.working_set <= u.memory_usage, "{u:?}");
    let node = cg.usage("/").expect("node usage");
    assert!(node.cpu_ns > 0 && node.memory_usage > 0, "{node:?}");
    assert!(node.working_set <= node.memory_usage, "{node:?}");
    drop(child);

    // Once empty, it goes.
    eventually("the pod cgroup is empty", || {
        read(&dir, "cgroup.events").contains("populated 0")
    });
    cg.remove(&pod).await.unwrap();
    assert!(!cg.exists(&pod));
    cg.remove(&pod).await.unwrap();
}

#[tokio::test]
#[ignore = "needs systemd on cgroup v2: scripts/vm-test.sh runs it in the VM"]
async fn pod_slices_through_systemd() {
    let root = Path::new(CGROUP_ROOT);
    let version = detect(root).unwrap();
    assert_eq!(version, CgroupVersion::V2);
    let cg = SystemdCgroups::connect(version, root).await.unwrap();
    // One top-level name of the test's own stands in for kubepods.
    let top = format!("krstest{}", std::process::id());
    let (base, qos) = (format!("/{top}"), format!("/{top}/burstable"));
    let pod = format!("{qos}/podu-1");
    let _cleanup = StopUnits(vec![
        format!("{top}-burstable-podu_1.slice"),
        format!("{top}-burstable.slice"),
        format!("{top}.slice"),
    ]);
    cg.ensure(&base, &PodLimits::default()).await.unwrap();
    cg.ensure(&qos, &PodLimits::default()).await.unwrap();
    let limits = PodLimits {
        cpu_shares: Some(1024),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit: Some(64 << 20),
        pids_max: Some(100),
    };
    cg.ensure(&pod, &limits).await.unwrap();
    // The uid's '-' is systemd's separator, so it becomes '_' in the unit name.
    let dir = root.join(format!(
        "{top}.slice/{top}-burstable.slice/{top}-burstable-podu_1.slice"
    ));
    assert_eq!(read(&dir, "cpu.weight"), "39");
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");
    assert_eq!(read(&dir, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(read(&dir, "pids.max"), "100");
    assert!(cg.exists(&pod));
    let state = std::process::Command::new("systemctl")
        .args(["is-active", &format!("{top}-burstable-podu_1.slice")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "active");

    // An existing slice takes new limits (a restart, a QoS tier's new share).
    let more = PodLimits {
        memory_limit: Some(128 << 20),
        ..limits
    };
    cg.ensure(&pod, &more).await.unwrap();
    assert_eq!(read(&dir, "memory.max"), (128u64 << 20).to_string());

    // Gone when removed; removing again is fine.
    cg.remove(&pod).await.unwrap();
    assert!(!cg.exists(&pod));
    cg.remove(&pod).await.unwrap();
    cg.remove(&qos).await.unwrap();
    cg.remove(&base).await.unwrap();
    assert!(!cg.exists(&base));
}

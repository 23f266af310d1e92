//! The kernel's memcg threshold notification, on this host's cgroup v1 memory controller:
//! a process in a test cgroup allocates past the armed threshold and the notifier fires.
//! Needs root and cgroup v1 (CI's host); elsewhere it says why and checks that the notifiers
//! are not offered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_host::memcg::{MEMCG_ROOT, MemcgNotifiers};
use std::path::Path;
use std::time::Duration;

struct Cgroup(std::path::PathBuf);
impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn usage(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("memory.usage_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn crossing_the_threshold_notifies() {
    let root = Path::new(MEMCG_ROOT);
    let name = format!("krs-memcg-test-{}", std::process::id());
    let Some(n) = MemcgNotifiers::new(root, &name) else {
        assert!(
            !root.join("cgroup.event_control").exists(),
            "a v1 memory controller is there, yet no notifiers"
        );
        eprintln!(
            "no cgroup v1 memory controller at {MEMCG_ROOT}: memcg notifications do not exist here"
        );
        return;
    };
    let dir = root.join(&name);
    if std::fs::create_dir(&dir).is_err() {
        eprintln!("cannot make a memory cgroup (not root?)");
        return;
    }
    let _cg = Cgroup(dir.clone());
    let threshold = usage(&dir) + (16 << 20);
    n.arm(0, true, threshold).unwrap();
    // Re-arming at the same value keeps the registration.
    n.arm(0, true, threshold).unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec python3 -c 'x = bytearray(64 << 20); import sys; sys.stdin.read()'",
        dir.display()
    );
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let fired = tokio::time::timeout(Duration::from_secs(20), n.crossed()).await;
    let used = usage(&dir);
    child.kill().await.unwrap();
    let _ = child.wait().await;
    assert!(
        fired.is_ok(),
        "no notification; usage {used}, threshold {threshold}"
    );
    assert!(
        used >= threshold,
        "notified below the threshold: {used} < {threshold}"
    );
}

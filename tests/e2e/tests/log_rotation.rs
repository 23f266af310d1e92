//! Container log rotation: a container that keeps logging past `containerLogMaxSize` gets its
//! log rotated (renamed with a timestamp, older ones gzipped) with at most
//! `containerLogMaxFiles` files kept, while `kubectl logs` goes on reading the live file.
//! The limits are read from the kubelet's /configz; scripts/test.sh runs the e2e kubelet with
//! 1Mi and 3 files, so that a burst is small.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_e2e::{TestNs, node_name, phase};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

fn quantity_bytes(q: &str) -> u64 {
    let (num, mult) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    num.parse::<u64>().unwrap() * mult
}

#[tokio::test]
async fn logs_past_the_max_size_are_rotated_and_compressed() {
    let ns = TestNs::new("logrot").await;
    let configz = ns
        .client
        .request_text(
            http::Request::get(format!("/api/v1/nodes/{}/proxy/configz", node_name()))
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    let kc: serde_json::Value = serde_json::from_str(&configz).unwrap();
    let kc = &kc["kubeletconfig"];
    let max = quantity_bytes(kc["containerLogMaxSize"].as_str().unwrap());
    let max_files = kc["containerLogMaxFiles"].as_u64().unwrap() as usize;
    // A burst a little over the limit every 2 s, each followed by a marker line.
    let burst = max + max / 4;
    let script = format!(
        "i=0; while true; do i=$((i+1)); head -c {burst} /dev/zero | tr '\\0' x | fold -w 1000; echo; echo marker $i; sleep 2; done"
    );
    let c = json!({"name": "main", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "Never", "command": ["sh", "-c", script]});
    ns.create(&ns.pod("p", "Always", json!([c]))).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let uid = p.metadata.uid.clone().unwrap();
    // A follower started before any rotation must keep up across them.
    let mut follow = tokio::process::Command::new("kubectl")
        .args(["logs", "-f", "-n", &ns.name, "p"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let followed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
        let followed = followed.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(n) = l
                    .strip_prefix("marker ")
                    .and_then(|n| n.trim().parse().ok())
                {
                    followed.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let dir = PathBuf::from(format!("/var/log/pods/{}_p_{uid}/main", ns.name));
    let files = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // a compression in flight
                    .filter(|n| !n.ends_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // Rotation runs every 10 s; several rotations leave a compressed one. Between a rename
    // and the runtime's reopen there is briefly no 0.log: wait for a settled listing.
    let settled = |f: &[String]| {
        let gz = f
            .iter()
            .any(|n| n.starts_with("0.log.") && n.ends_with(".gz"));
        let plain = f
            .iter()
            .filter(|n| n.starts_with("0.log.") && !n.ends_with(".gz"))
            .count();
        gz && plain == 1 && f.contains(&"0.log".to_string())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let f = loop {
        let f = files();
        if settled(&f) {
            break f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no settled rotation (0.log, one plain and a compressed rotated log) within 90 s: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(f.len() <= max_files, "at most {max_files} files: {f:?}");
    // The newest rotated file stays uncompressed, and holds at least the limit.
    let plain: Vec<&String> = f
        .iter()
        .filter(|n| n.starts_with("0.log.") && !n.ends_with(".gz"))
        .collect();
    assert!(std::fs::metadata(dir.join(plain[0])).unwrap().len() >= max);
    // The runtime writes to the reopened file: new markers keep reaching kubectl logs.
    let seen = |s: &str| -> Option<u32> {
        s.lines()
            .filter_map(|l| l.strip_prefix("marker "))
            .filter_map(|n| n.trim().parse().ok())
            .max()
    };
    let logs = || async {
        let out = tokio::process::Command::new("kubectl")
            .args(["logs", "-n", &ns.name, "p", "--tail", "5"])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = seen(&logs().await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let last = loop {
        let now = seen(&logs().await);
        if let Some(n) = now.filter(|n| Some(*n) > first) {
            break n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new marker in kubectl logs after rotation: {first:?} {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while followed.load(std::sync::atomic::Ordering::Relaxed) < last {
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl logs -f stopped at marker {} after rotation; the log is at {last}",
            followed.load(std::sync::atomic::Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = follow.kill().await;
    ns.cleanup().await;
}

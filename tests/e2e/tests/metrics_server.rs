//! What `kubectl top` shows comes from metrics-server, which cannot be fetched here; this test
//! makes metrics-server's own requests to the kubelet instead (0.4's
//! `GET /stats/summary?only_cpu_and_memory=true`, 0.6's `GET /metrics/resource`, both on 10250
//! with a client certificate) and checks the figures against the cgroup files the kernel
//! keeps for the container (cgroup v1, as this host): CPU between two reads of
//! `cpuacct.usage` taken around the request, the working set as `memory.usage_in_bytes` less
//! `total_inactive_file`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_e2e::{TestNs, container_status, eventually, kubelet_get, phase};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The container's directory under a v1 controller: `.../pod<uid>/<container id>`.
fn container_cgroup(controller: &str, uid: &str, cid: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, pod: &str, cid: &str, depth: usize) -> Option<PathBuf> {
        if depth > 6 {
            return None;
        }
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == pod) {
                let c = p.join(cid);
                return c.is_dir().then_some(c);
            }
            if let Some(found) = walk(&p, pod, cid, depth + 1) {
                return Some(found);
            }
        }
        None
    }
    let root = Path::new("/sys/fs/cgroup").join(controller);
    walk(&root, &format!("pod{uid}"), cid, 0)
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

fn working_set(memcg: &Path) -> u64 {
    let usage = read_u64(&memcg.join("memory.usage_in_bytes"));
    let stat = std::fs::read_to_string(memcg.join("memory.stat")).unwrap();
    let inactive = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

#[tokio::test]
async fn metrics_servers_requests_match_the_cgroup_files() {
    if !Path::new("/sys/fs/cgroup/cpuacct").is_dir() {
        // The VM node's run covers cgroup v2 (vm_node.rs stats_from_cgroup_v2).
        eprintln!("not cgroup v1: this host test reads v1 files");
        return;
    }
    let ns = TestNs::new("top").await;
    // Busy on a 100m quota, and holding 24 MiB of anonymous memory.
    let c = json!([{"name": "busy", "image": "busybox", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "x=$(head -c 25165824 /dev/zero | tr '\\0' a); while :; do :; done"],
        "resources": {"limits": {"cpu": "100m", "memory": "128Mi"}}}]);
    ns.create(&ns.pod("busy", "Always", c)).await;
    let p = ns
        .wait_pod("busy", Duration::from_secs(60), |p| phase(p) == "Running")
        .await;
    let uid = p.metadata.uid.clone().unwrap();
    let cid = container_status(&p, 0)
        .container_id
        .unwrap()
        .rsplit("://")
        .next()
        .unwrap()
        .to_string();
    let cpu_cg = container_cgroup("cpuacct", &uid, &cid).expect("the container's cpuacct cgroup");
    let mem_cg = container_cgroup("memory", &uid, &cid).expect("the container's memory cgroup");
    // Until the container holds its memory and the stats list it.
    let summary_of = || {
        let (body, code) = kubelet_get("/stats/summary?only_cpu_and_memory=true");
        assert_eq!(code, "200", "{body}");
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        s["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["podRef"]["uid"] == uid.as_str())
            .map(|p| p["containers"][0].clone())
    };
    eventually(Duration::from_secs(60), "the container's stats", || async {
        let c = summary_of()?;
        (c["memory"]["workingSetBytes"].as_u64()? > 20 << 20).then_some(())
    })
    .await;

    let before = read_u64(&cpu_cg.join("cpuacct.usage"));
    let c = summary_of().unwrap();
    let after = read_u64(&cpu_cg.join("cpuacct.usage"));
    let ws_file = working_set(&mem_cg);
    // metrics-server 0.4 reads these (and only these) from the summary.
    let cpu = c["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap();
    let ws = c["memory"]["workingSetBytes"].as_u64().unwrap();
    assert!(
        c["cpu"]["time"].is_string() && c["memory"]["time"].is_string(),
        "{c}"
    );
    // Stats may be a collection period old: at most 10 s of a 100m quota behind.
    assert!(
        cpu <= after && cpu + 1_500_000_000 >= before,
        "cpu {cpu} outside [{before} - 1.5 s, {after}]"
    );
    let slack = ws_file / 10 + (2 << 20);
    assert!(
        ws.abs_diff(ws_file) <= slack,
        "working set {ws} vs the cgroup's {ws_file}"
    );

    // metrics-server 0.6: the same figures in the Prometheus text format.
    let (text, code) = kubelet_get("/metrics/resource");
    assert_eq!(code, "200");
    let series = |name: &str| {
        let prefix = format!(
            "{name}{{container=\"busy\",namespace=\"{}\",pod=\"busy\"}} ",
            ns.name
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
    };
    let cpu_s = series("container_cpu_usage_seconds_total");
    let now = read_u64(&cpu_cg.join("cpuacct.usage")) as f64 / 1e9;
    assert!(
        cpu_s <= now && cpu_s + 1.5 >= before as f64 / 1e9,
        "container_cpu_usage_seconds_total {cpu_s} vs cpuacct.usage {now}"
    );
    let ws_m = series("container_memory_working_set_bytes");
    let ws_file = working_set(&mem_cg) as f64;
    assert!(
        (ws_m - ws_file).abs() <= ws_file / 10.0 + f64::from(2u32 << 20),
        "container_memory_working_set_bytes {ws_m} vs the cgroup's {ws_file}"
    );
    // The node's line, which `kubectl top node` shows.
    assert!(
        text.lines()
            .any(|l| l.starts_with("node_memory_working_set_bytes ")),
        "{text}"
    );

    // Prometheus' cAdvisor scrape: cAdvisor's families and labels, the same figures.
    let (text, code) = kubelet_get("/metrics/cadvisor");
    assert_eq!(code, "200", "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{container=\"busy\","))
                    && l.contains(&format!("namespace=\"{}\"", ns.name))
            })
            .unwrap_or_else(|| panic!("no {name} for the container in:\n{text}"))
            .to_string()
    };
    let ws_line = line("container_memory_working_set_bytes");
    assert!(
        ws_line.contains(&format!("name=\"{cid}\"")) && ws_line.contains("image=\""),
        "{ws_line}"
    );
    assert!(
        ws_line.contains(&format!("pod{uid}/{cid}\"")),
        "the id is the cgroup: {ws_line}"
    );
    let ws_c: f64 = ws_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ws_file = working_set(&mem_cg) as f64;
    assert!(
        (ws_c - ws_file).abs() <= ws_file / 10.0 + f64::from(2u32 << 20),
        "cadvisor working set {ws_c} vs the cgroup's {ws_file}"
    );
    for fam in [
        "container_cpu_usage_seconds_total",
        "container_memory_rss",
        "container_start_time_seconds",
    ] {
        line(fam);
    }
    assert!(
        text.contains("container_network_receive_bytes_total{container=\"\","),
        "no pod network series in:\n{text}"
    );
    ns.cleanup().await;
}

//! Container logs as upstream serves them: partial CRI records (output without a trailing
//! newline, lines the runtime splits at 16 KiB), the errors of `/containerLogs`, and logs
//! that are complete as soon as the status says the container is done.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::api::LogParams;
use kubelet_e2e::{TestNs, api_error, container_state, kubelet_get, phase};
use serde_json::json;
use std::time::Duration;

fn busybox(script: &str) -> serde_json::Value {
    json!([{"name": "c", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Never",
            "command": ["sh", "-c", script]}])
}

async fn logs(ns: &TestNs, pod: &str, p: LogParams) -> Result<String, kube::Error> {
    ns.pods().logs(pod, &p).await
}

#[tokio::test]
async fn partial_lines_are_joined_and_keep_their_missing_newline() {
    let ns = TestNs::new("partial").await;
    // A 40000-byte line (the runtime writes it as 16 KiB partial records), a line, then
    // output with no newline at all, which the runtime records as a partial record only.
    let script = "head -c 40000 /dev/zero | tr '\\0' x; echo; echo mid; printf end-without-newline";
    ns.create(&ns.pod("p", "Never", busybox(script))).await;
    ns.wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Succeeded")
        .await;
    let long = "x".repeat(40000);
    let all = logs(&ns, "p", LogParams::default()).await.unwrap();
    assert_eq!(
        all.len(),
        40000 + 1 + 4 + 19,
        "{:?}",
        &all[all.len().saturating_sub(40)..]
    );
    assert_eq!(all, format!("{long}\nmid\nend-without-newline"));
    let tail = |n| LogParams {
        tail_lines: Some(n),
        ..Default::default()
    };
    assert_eq!(
        logs(&ns, "p", tail(1)).await.unwrap(),
        "end-without-newline"
    );
    assert_eq!(
        logs(&ns, "p", tail(3)).await.unwrap(),
        format!("{long}\nmid\nend-without-newline"),
        "a line split into partial records counts once"
    );
    let limited = LogParams {
        limit_bytes: Some(5),
        ..Default::default()
    };
    assert_eq!(logs(&ns, "p", limited).await.unwrap(), "xxxxx");
    // One time prefix a line, in upstream's fixed nine-digit format.
    let ts = logs(
        &ns,
        "p",
        LogParams {
            timestamps: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let lines: Vec<&str> = ts.split('\n').collect();
    assert_eq!(lines.len(), 3, "{:?}", ts.get(..200));
    for (l, want) in lines
        .iter()
        .zip([long.as_str(), "mid", "end-without-newline"])
    {
        let (time, rest) = l.split_once(' ').unwrap();
        assert_eq!(rest, want);
        let frac = time.split('.').nth(1).unwrap();
        assert_eq!(frac.len(), "123456789Z".len(), "{time}");
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn fallback_to_logs_keeps_output_without_newline() {
    let ns = TestNs::new("fallback").await;
    let mut c = busybox("echo -n DONE; exit 1");
    c[0]["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    ns.create(&ns.pod("p", "Never", c)).await;
    let p = ns
        .wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Failed")
        .await;
    let t = &container_state(&p, 0)["terminated"];
    assert_eq!(t["exitCode"], 1, "{t}");
    assert_eq!(t["message"], "DONE", "{t}");
    ns.cleanup().await;
}

#[tokio::test]
async fn log_errors_match_upstream() {
    let ns = TestNs::new("logerr").await;
    // Never starts: its env names a ConfigMap that does not exist.
    let waiting = json!([{"name": "c", "image": "docker.io/library/busybox:latest",
        "imagePullPolicy": "Never", "command": ["sleep", "3600"],
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}]}]);
    ns.create(&ns.pod("waits", "Always", waiting)).await;
    ns.wait_waiting(
        "waits",
        "CreateContainerConfigError",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        api_error(logs(&ns, "waits", LogParams::default()).await),
        (
            400,
            r#"container "c" in pod "waits" is waiting to start: CreateContainerConfigError"#
                .to_string()
        )
    );
    // A running container has no previous instance.
    ns.create(&ns.pod("runs", "Always", busybox("sleep 3600")))
        .await;
    ns.wait_pod("runs", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let prev = LogParams {
        previous: true,
        ..Default::default()
    };
    assert_eq!(
        api_error(logs(&ns, "runs", prev).await),
        (
            400,
            r#"previous terminated container "c" in pod "runs" not found"#.to_string()
        )
    );
    // What only the kubelet itself can be asked: unknown pods and containers.
    let n = &ns.name;
    assert_eq!(
        kubelet_get(&format!("/containerLogs/{n}/nope/c")),
        (
            r#"pod "nope" does not exist"#.to_string(),
            "404".to_string()
        )
    );
    assert_eq!(
        kubelet_get(&format!("/containerLogs/{n}/runs/other")),
        (
            r#"container "other" not found in pod "runs""#.to_string(),
            "404".to_string()
        )
    );
    assert_eq!(
        kubelet_get(&format!("/containerLogs/{n}/runs/c?tailLines=-1")).1,
        "422"
    );
    assert_eq!(
        kubelet_get(&format!("/containerLogs/{n}/runs/c?tailLines=x")),
        (
            r#"{"message": "Unable to decode query."}"#.to_string(),
            "400".to_string()
        )
    );
    ns.cleanup().await;
}

/// Status must not run ahead of what a client can read back: logs read the moment the pod
/// is Succeeded, or the moment a container that logged first turns Ready, hold everything the
/// container wrote. Many pods in a row, some at once to load the node.
#[tokio::test]
async fn logs_are_complete_when_the_status_changes() {
    let ns = TestNs::new("logsnow").await;
    // Three "files" without trailing newlines, as `cat` of ConfigMap keys prints them.
    let script = "printf one; printf two; printf three; printf '\\nlast line\\n'; printf tail";
    let want = "onetwothree\nlast line\ntail";
    let ready_script = "echo container is alive; touch /tmp/ready; sleep 3600";
    for round in 0..4 {
        let mut names = vec![];
        for i in 0..5 {
            let name = format!("done-{round}-{i}");
            ns.create(&ns.pod(&name, "Never", busybox(script))).await;
            names.push(name);
        }
        let ready = format!("ready-{round}");
        let mut c = busybox(ready_script);
        c[0]["readinessProbe"] =
            json!({"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1});
        ns.create(&ns.pod(&ready, "Never", c)).await;
        let reads = names.iter().map(|name| {
            let ns = ns.clone();
            async move {
                ns.wait_pod(name, Duration::from_secs(30), |p| phase(p) == "Succeeded")
                    .await;
                (
                    name.clone(),
                    logs(&ns, name, LogParams::default()).await.unwrap(),
                )
            }
        });
        for (name, got) in futures::future::join_all(reads).await {
            assert_eq!(got, want, "pod {name}");
        }
        ns.wait_pod(&ready, Duration::from_secs(30), |p| {
            kubelet_e2e::condition(p, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
        let got = logs(&ns, &ready, LogParams::default()).await.unwrap();
        assert_eq!(got, "container is alive\n", "pod {ready}");
    }
    ns.cleanup().await;
}

/// The kubelet's peak resident memory, in KiB.
fn kubelet_hwm_kib() -> u64 {
    let pid = kubelet_e2e::kubelet_pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The raw bytes of a request to the kubelet itself, as the cluster admin.
fn kubelet_get_bytes(path: &str) -> (Vec<u8>, String) {
    let dir = kubelet_e2e::env("KRS_CLUSTER_DIR");
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "60", "-o", "-", "-D", "/dev/stderr"])
        .args(["--cert", &format!("{dir}/pki/admin.crt")])
        .args(["--key", &format!("{dir}/pki/admin.key")])
        .arg(format!("https://127.0.0.1:10250{path}"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (out.stdout, code)
}

/// A 64 MiB log is served from its end for tailLines=1, without the kubelet holding it in
/// memory; bytes that are not UTF-8 pass through with 200.
#[tokio::test]
async fn big_and_binary_logs_are_streamed() {
    let ns = TestNs::new("biglog").await;
    ns.create(&ns.pod("bin", "Never", busybox("printf '\\377\\376 raw\\n'")))
        .await;
    ns.create(&ns.pod("big", "Never", busybox("echo start")))
        .await;
    let n = ns.name.clone();
    ns.wait_pod("bin", Duration::from_secs(30), |p| phase(p) == "Succeeded")
        .await;
    let (body, code) = kubelet_get_bytes(&format!("/containerLogs/{n}/bin/c"));
    assert_eq!(
        (body.as_slice(), code.as_str()),
        (&b"\xff\xfe raw\n"[..], "200")
    );

    let p = ns
        .wait_pod("big", Duration::from_secs(30), |p| phase(p) == "Succeeded")
        .await;
    // Grow the exited container's log to 64 MiB (no rotation touches an exited container's).
    let uid = p.metadata.uid.unwrap();
    let log = std::path::PathBuf::from(format!("/var/log/pods/{n}_big_{uid}/c/0.log"));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let line = format!(
            "2026-11-30T10:00:00.000000000Z stdout F {}\n",
            "y".repeat(1000)
        );
        let block = line.repeat(1024);
        for _ in 0..64 {
            f.write_all(block.as_bytes()).unwrap();
        }
        f.write_all(b"2026-11-30T10:00:01.000000000Z stdout F the end\n")
            .unwrap();
    }
    assert!(std::fs::metadata(&log).unwrap().len() > 64 << 20);
    let before = kubelet_hwm_kib();
    let (body, code) = kubelet_get_bytes(&format!("/containerLogs/{n}/big/c?tailLines=1"));
    assert_eq!(
        (String::from_utf8_lossy(&body).as_ref(), code.as_str()),
        ("the end\n", "200")
    );
    let (body, code) = kubelet_get_bytes(&format!("/containerLogs/{n}/big/c?limitBytes=10"));
    assert_eq!(
        (body.as_slice(), code.as_str()),
        (&b"start\nyyyy"[..], "200")
    );
    // The whole log, streamed.
    let (body, _) = kubelet_get_bytes(&format!("/containerLogs/{n}/big/c"));
    assert_eq!(body.len(), 6 + 64 * 1024 * 1001 + 8);
    let grown = kubelet_hwm_kib().saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "the kubelet's peak RSS grew by {grown} KiB"
    );
    ns.cleanup().await;
}

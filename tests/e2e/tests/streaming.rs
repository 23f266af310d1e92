//! `kubectl exec`, `attach` and `port-forward` through the real API server: it upgrades the
//! connection to the kubelet, which splices it to containerd's streaming server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_e2e::{TestNs, env, eventually, phase};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BB: &str = "docker.io/library/busybox:latest";

fn kubectl(ns: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.args(["--kubeconfig", &env("KRS_KUBECONFIG"), "-n", ns])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn exec_with_streams_exit_codes_and_a_tty() {
    let ns = TestNs::new("exec").await;
    ns.create(&ns.pod(
        "p",
        "Always",
        json!([{"name": "main", "image": BB, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]),
    ))
    .await;
    ns.wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let ns2 = ns.name.clone();
    let out = tokio::task::spawn_blocking({
        let ns = ns2.clone();
        move || {
            kubectl(
                &ns,
                &[
                    "exec",
                    "p",
                    "-c",
                    "main",
                    "--",
                    "sh",
                    "-c",
                    "echo out; echo err >&2; exit 3",
                ],
                None,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // stdin reaches the process, and its end closes the stream.
    let out = tokio::task::spawn_blocking({
        let ns = ns2.clone();
        move || {
            kubectl(
                &ns,
                &["exec", "-i", "p", "--", "sh", "-c", "cat; echo done"],
                Some("hello\n"),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(text(&out.stdout), "hello\ndone\n", "{}", text(&out.stderr));
    assert!(out.status.success());

    // A TTY, through script(1) so that kubectl has a terminal.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("script")
            .args([
                "-qec",
                &format!(
                    "kubectl --kubeconfig {} -n {ns2} exec -it p -- sh -c 'tty; stty size'",
                    env("KRS_KUBECONFIG")
                ),
                "/dev/null",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let tty = text(&out.stdout);
    assert!(tty.contains("/dev/pts/"), "{tty}");

    // A container that does not exist: kubectl reports the kubelet's error.
    let out = tokio::task::spawn_blocking({
        let ns = ns.name.clone();
        move || kubectl(&ns, &["exec", "p", "-c", "nope", "--", "true"], None)
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
    ns.cleanup().await;
}

#[tokio::test]
async fn attach_to_a_running_container() {
    let ns = TestNs::new("attach").await;
    let mut p = ns.pod(
        "p",
        "Never",
        json!([{"name": "main", "image": BB, "imagePullPolicy": "Never", "stdin": true, "stdinOnce": true,
            "command": ["sh", "-c", "read line; echo got $line"]}]),
    );
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(1);
    ns.create(&p).await;
    ns.wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let out = tokio::task::spawn_blocking({
        let ns = ns.name.clone();
        move || kubectl(&ns, &["attach", "-i", "p", "-c", "main"], Some("hello\n"))
    })
    .await
    .unwrap();
    assert!(
        text(&out.stdout).contains("got hello"),
        "stdout {:?} stderr {:?}",
        text(&out.stdout),
        text(&out.stderr)
    );
    ns.wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Succeeded")
        .await;
    ns.cleanup().await;
}

#[tokio::test]
async fn port_forward_reaches_a_server_in_the_pod() {
    let ns = TestNs::new("portfwd").await;
    ns.create(&ns.pod(
        "p",
        "Always",
        json!([{"name": "main", "image": BB, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "mkdir -p /www && echo forwarded > /www/index.html && httpd -f -p 8080 -h /www"]}]),
    ))
    .await;
    ns.wait_pod("p", Duration::from_secs(20), |p| phase(p) == "Running")
        .await;
    let mut child = Command::new("kubectl")
        .args([
            "--kubeconfig",
            &env("KRS_KUBECONFIG"),
            "-n",
            &ns.name,
            "port-forward",
            "pod/p",
            ":8080",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // "Forwarding from 127.0.0.1:NNNNN -> 8080". The reader keeps draining afterwards: a
    // closed pipe would kill kubectl at its next line ("Handling connection for ...").
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let port = l
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok());
            if let (Some(p), Some(tx)) = (port, tx.take_if(|_| port.is_some())) {
                let _ = tx.send(p);
            }
        }
    });
    let port = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("kubectl port-forward started")
        .ok();
    let Some(port) = port else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("port-forward failed: {}", text(&out.stderr));
    };
    let body = eventually(
        Duration::from_secs(15),
        "a response through the forward",
        || async move {
            let out = tokio::process::Command::new("curl")
                .args([
                    "-s",
                    "--max-time",
                    "5",
                    &format!("http://127.0.0.1:{port}/"),
                ])
                .output()
                .await
                .ok()?;
            let b = text(&out.stdout);
            (!b.is_empty()).then_some(b)
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body, "forwarded\n");
    ns.cleanup().await;
}

#[tokio::test]
async fn kubectl_logs_follow_and_previous() {
    let ns = TestNs::new("logs-f").await;
    // Each run counts its own lines; the first run exits after 3, the next runs keep going.
    let script = "if [ -f /data/ran ]; then i=0; while true; do i=$((i+1)); echo second $i; sleep 0.2; done; fi; touch /data/ran; echo first 1; echo first 2; echo first 3; exit 1";
    let mut p = ns.pod(
        "p",
        "Always",
        json!([{"name": "main", "image": BB, "imagePullPolicy": "Never", "command": ["sh", "-c", script],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]),
    );
    p.spec.as_mut().unwrap().volumes =
        Some(serde_json::from_value(json!([{"name": "data", "emptyDir": {}}])).unwrap());
    ns.create(&p).await;
    ns.wait_pod("p", Duration::from_secs(40), |p| {
        phase(p) == "Running"
            && p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| c[0].restart_count >= 1 && c[0].ready)
    })
    .await;
    let name = ns.name.clone();
    let prev =
        tokio::task::spawn_blocking(move || kubectl(&name, &["logs", "--previous", "p"], None))
            .await
            .unwrap();
    assert_eq!(
        text(&prev.stdout),
        "first 1\nfirst 2\nfirst 3\n",
        "{}",
        text(&prev.stderr)
    );
    // -f streams lines as they are written: read a few, then stop kubectl.
    let mut child = Command::new("kubectl")
        .args([
            "--kubeconfig",
            &env("KRS_KUBECONFIG"),
            "-n",
            &ns.name,
            "logs",
            "-f",
            "p",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut seen = vec![];
        let mut tx = Some(tx);
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push(l);
            if seen.len() == 20
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(seen.clone());
            }
        }
    });
    let lines = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("kubectl logs -f kept streaming")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // Consecutive numbers: nothing lost or repeated while following.
    let nums: Vec<u32> = lines
        .iter()
        .map(|l| l.strip_prefix("second ").unwrap().parse().unwrap())
        .collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{lines:?}");
    ns.cleanup().await;
}

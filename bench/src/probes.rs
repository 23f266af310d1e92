//! Probe punctuality: N pods, each with an HTTP readiness probe aimed at a server in this
//! process (the kubelet runs in the host's network, so 127.0.0.1 reaches it). The server
//! stamps every probe on arrival; the kubelet's footprint is measured over the same window.
//!
//! Lateness of a probe is how far it falls behind its pod's own schedule: the k-th probe of
//! the window is due at `phase + k * period`, with `phase` the earliest `t_k - k * period`
//! seen for that pod (the pod's most punctual probe defines the schedule, so the random
//! initial offset of each worker does not count). A skipped period is not lateness: it shows
//! as fewer probes than expected.

use anyhow::{Context, Result};
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::stats::{r4, summary};
use crate::workloads::{IMAGE, LABEL, Watch, drop_namespace, namespace};

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

#[derive(Debug)]
pub struct ProbeOpts {
    pub pods: usize,
    pub period: u64,
    pub timeout: Duration,
    pub pid: Option<u32>,
    pub settle: Duration,
    pub window: Duration,
}

/// Serves `GET /p/<name>` with 200, recording the arrival under `<name>`.
async fn serve(arrivals: Arrivals) -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the probe target")?;
    let port = l.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let now = Instant::now();
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]);
                if let Some(name) = line
                    .strip_prefix("GET /p/")
                    .and_then(|r| r.split(' ').next())
                {
                    arrivals
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(name.to_string())
                        .or_default()
                        .push(now);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok((port, task))
}

fn probed_pod(name: &str, node: &str, port: u16, period: u64) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {LABEL: "true"}},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
                "readinessProbe": {
                    "httpGet": {"host": "127.0.0.1", "port": port, "path": format!("/p/{name}")},
                    "periodSeconds": period,
                    "timeoutSeconds": 1,
                },
            }],
        }
    }))?)
}

/// Lateness (seconds) of each probe, per the module's definition.
pub fn lateness(times: &[f64], period: f64) -> Vec<f64> {
    let Some(&t0) = times.first() else {
        return vec![];
    };
    let slots: Vec<(f64, f64)> = times
        .iter()
        .map(|t| {
            let k = ((t - t0) / period).round();
            (*t, k)
        })
        .collect();
    let phase = slots
        .iter()
        .map(|(t, k)| t - k * period)
        .fold(f64::INFINITY, f64::min);
    slots
        .iter()
        .map(|(t, k)| (t - k * period - phase).max(0.0))
        .collect()
}

pub async fn run(client: &Client, node: &str, o: &ProbeOpts) -> Result<Value> {
    let ns = namespace(client, &format!("bench-probes-{}", o.pods)).await?;
    let res = run_in(client, node, o, &ns).await;
    drop_namespace(client, &ns).await;
    res
}

async fn run_in(client: &Client, node: &str, o: &ProbeOpts, ns: &str) -> Result<Value> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let watch = Watch::start(api.clone()).await?;
    let arrivals: Arrivals = Arc::default();
    let (port, server) = serve(arrivals.clone()).await?;
    let names: Vec<String> = (0..o.pods).map(|i| format!("p{i:03}")).collect();
    let specs = names
        .iter()
        .map(|n| probed_pod(n, node, port, o.period))
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let pp = PostParams::default();
    for r in join_all(specs.iter().map(|p| api.create(&pp, p))).await {
        r.context("creating a probed pod")?;
    }
    let all_ready = watch
        .until(o.timeout, |s| names.iter().all(|n| s.is_running(n)))
        .await
        .is_ok();
    let all_ready_s = all_ready.then(|| r4(t0.elapsed().as_secs_f64()));
    tokio::time::sleep(o.settle).await;

    let w0 = Instant::now();
    arrivals.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let footprint = match o.pid {
        Some(pid) => Some(crate::footprint::measure(pid, o.window).await?),
        None => {
            tokio::time::sleep(o.window).await;
            None
        }
    };
    let window_s = w0.elapsed().as_secs_f64();
    let seen = std::mem::take(&mut *arrivals.lock().unwrap_or_else(|e| e.into_inner()));
    server.abort();

    let period = o.period as f64;
    let mut late = vec![];
    let mut probes = 0usize;
    let mut silent = 0usize;
    for n in &names {
        let times: Vec<f64> = seen
            .get(n)
            .map(|v| {
                v.iter()
                    .map(|t| t.duration_since(w0).as_secs_f64())
                    .collect()
            })
            .unwrap_or_default();
        if times.is_empty() {
            silent += 1;
        }
        probes += times.len();
        late.extend(lateness(&times, period));
    }
    let expected = (window_s / period).floor() as usize * o.pods;

    watch.mark_deleting(&names);
    let dp = DeleteParams::default().grace_period(1);
    join_all(names.iter().map(|n| api.delete(n, &dp))).await;
    let all_gone = watch
        .until(o.timeout, |s| names.iter().all(|n| s.is_gone(n)))
        .await
        .is_ok();

    Ok(json!({
        "pods": o.pods,
        "period_s": o.period,
        "window_s": r4(window_s),
        "all_ready_s": all_ready_s,
        "probes": probes,
        "probes_expected": expected,
        "pods_never_probed": silent,
        "lateness": summary(&late),
        "footprint": footprint,
        "all_gone": all_gone,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_measured_against_the_pods_best_phase() {
        // on schedule, with an arbitrary offset
        let l = lateness(&[0.3, 1.3, 2.3, 3.3], 1.0);
        assert!(l.iter().all(|x| x.abs() < 1e-9), "{l:?}");
        // one probe 150 ms late, the next back on schedule
        let l = lateness(&[0.3, 1.45, 2.3], 1.0);
        assert!((l[1] - 0.15).abs() < 1e-9 && l[2].abs() < 1e-9, "{l:?}");
        // a late first probe does not make the others look early
        let l = lateness(&[0.5, 1.3, 2.3], 1.0);
        assert!((l[0] - 0.2).abs() < 1e-9 && l[1].abs() < 1e-9, "{l:?}");
        // a skipped period is not lateness
        let l = lateness(&[0.0, 1.0, 3.0], 1.0);
        assert!(l.iter().all(|x| x.abs() < 1e-9), "{l:?}");
        assert!(lateness(&[], 1.0).is_empty());
    }
}

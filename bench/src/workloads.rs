//! Workloads through the API: a burst of pods (startup, footprint with them running, delete,
//! requests counted in the audit log) and crash-to-status.
//!
//! Every latency is observed on a watch that was established (its initial list done) before
//! the first request, stamped when the event reaches this process.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::stats::{r4, summary};

pub const LABEL: &str = "kubelet-bench";
pub const IMAGE: &str = "docker.io/library/busybox:latest";

/// What the watch saw, stamped on arrival.
#[derive(Debug, Default)]
pub struct Seen {
    synced: bool,
    running: HashMap<String, Instant>,
    /// First sight of a terminated state of the first container: (wall clock, container id).
    terminated: HashMap<String, (SystemTime, String)>,
    gone: HashMap<String, Instant>,
    /// Pods we asked to delete: a relist that lacks them counts as gone.
    deleting: HashSet<String>,
    relist: HashSet<String>,
    restarts: u32,
    errors: u32,
}

#[derive(Debug)]
pub struct Watch {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

fn lock(m: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn running_ready(p: &Pod) -> bool {
    let Some(st) = &p.status else { return false };
    st.phase.as_deref() == Some("Running")
        && st
            .container_statuses
            .as_ref()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready))
}

fn terminated(p: &Pod) -> Option<String> {
    let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    cs.state.as_ref()?.terminated.as_ref()?;
    Some(
        cs.container_id
            .clone()
            .unwrap_or_default()
            .split_once("://")
            .map(|(_, id)| id.to_string())
            .unwrap_or_default(),
    )
}

impl Seen {
    pub fn is_running(&self, name: &str) -> bool {
        self.running.contains_key(name)
    }

    pub fn is_gone(&self, name: &str) -> bool {
        self.gone.contains_key(name)
    }
}

impl Watch {
    /// Starts watching the pods of `ns` and waits for the initial list.
    pub async fn start(pods: Api<Pod>) -> Result<Watch> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let cfg = watcher::Config::default().labels(LABEL);
            let mut stream = watcher::watcher(pods, cfg).boxed();
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let wall = crate::wall_now();
                let failed = ev.is_err();
                {
                    let mut g = lock(&s);
                    match ev {
                        Ok(Event::Init) => {
                            g.relist.clear();
                            g.restarts += 1;
                        }
                        Ok(Event::InitApply(p)) | Ok(Event::Apply(p)) => {
                            let name = p.metadata.name.clone().unwrap_or_default();
                            g.relist.insert(name.clone());
                            if running_ready(&p) {
                                g.running.entry(name.clone()).or_insert(now);
                            }
                            if let Some(id) = terminated(&p) {
                                g.terminated.entry(name).or_insert((wall, id));
                            }
                        }
                        Ok(Event::Delete(p)) => {
                            let name = p.metadata.name.clone().unwrap_or_default();
                            g.gone.entry(name).or_insert(now);
                        }
                        Ok(Event::InitDone) => {
                            g.synced = true;
                            let missing: Vec<String> = g
                                .deleting
                                .iter()
                                .filter(|n| !g.relist.contains(*n) && !g.gone.contains_key(*n))
                                .cloned()
                                .collect();
                            for n in missing {
                                g.gone.insert(n, now);
                            }
                        }
                        Err(_) => g.errors += 1,
                    }
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let w = Watch { seen, task };
        w.until(Duration::from_secs(30), |s| s.synced)
            .await
            .context("the pod watch did not sync within 30 s")?;
        Ok(w)
    }

    /// Polls the watch's record (the timestamps come from the watch task, not from this poll).
    pub async fn until(&self, timeout: Duration, cond: impl Fn(&Seen) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&lock(&self.seen)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn mark_deleting(&self, names: &[String]) {
        lock(&self.seen).deleting.extend(names.iter().cloned());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A namespace of the run's own, with its default service account in place (pods are
/// refused until the service account controller has made it).
pub async fn namespace(client: &Client, prefix: &str) -> Result<String> {
    let name = format!(
        "{prefix}-{:x}",
        crate::wall_now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            % 0xff_ffff
    );
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {LABEL: "true"}}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .context("creating namespace")?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sas.get_opt("default").await?.is_none() {
        if Instant::now() >= deadline {
            bail!("no default service account in {name} after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(name)
}

pub async fn drop_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

fn pod(name: &str, node: &str, restart: &str, command: &[&str]) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {LABEL: "true"}},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": command,
            }],
        }
    }))?)
}

#[derive(Debug, Clone)]
pub struct Audit {
    pub path: String,
    pub user: String,
}

#[derive(Debug)]
pub struct LifecycleOpts {
    pub pods: usize,
    pub timeout: Duration,
    /// Footprint of this pid with the pods running, after `settle`, over `window`.
    pub footprint: Option<(u32, Duration, Duration)>,
    pub audit: Option<Audit>,
    /// Extra time after the last pod is gone, still counted in the audit window (the kubelet's
    /// last requests for the pods may trail the final DELETE).
    pub tail: Duration,
}

/// Creates `pods` pods at once, waits until all are Running and ready, optionally measures the
/// kubelet's footprint with them running, deletes them with a 1 s grace period and waits until
/// all are gone. Requests of the node user over the whole span come from the audit log.
pub async fn lifecycle(client: &Client, node: &str, o: &LifecycleOpts) -> Result<Value> {
    let ns = namespace(client, &format!("bench-{}", o.pods)).await?;
    let res = lifecycle_in(client, node, o, &ns).await;
    drop_namespace(client, &ns).await;
    res
}

async fn lifecycle_in(client: &Client, node: &str, o: &LifecycleOpts, ns: &str) -> Result<Value> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let watch = Watch::start(api.clone()).await?;
    let names: Vec<String> = (0..o.pods).map(|i| format!("p{i:03}")).collect();
    let specs = names
        .iter()
        .map(|n| pod(n, node, "Always", &["sleep", "3600"]))
        .collect::<Result<Vec<_>>>()?;

    // --- startup
    let wall0 = crate::wall_now();
    let t0 = Instant::now();
    let created = join_all(specs.iter().map(|p| {
        let api = api.clone();
        async move {
            let at = Instant::now();
            api.create(&PostParams::default(), p).await.map(|_| at)
        }
    }))
    .await;
    let mut create_at: HashMap<String, Instant> = HashMap::new();
    let mut create_errors = vec![];
    for (n, r) in names.iter().zip(created) {
        match r {
            Ok(at) => {
                create_at.insert(n.clone(), at);
            }
            Err(e) => create_errors.push(format!("{n}: {e}")),
        }
    }
    let create_calls_s = t0.elapsed().as_secs_f64();
    let want: Vec<String> = create_at.keys().cloned().collect();
    let all_running = watch
        .until(o.timeout, |s| {
            want.iter().all(|n| s.running.contains_key(n))
        })
        .await
        .is_ok();
    let (startup, last_running, not_running) = {
        let s = lock(&watch.seen);
        let mut lat = vec![];
        let mut last = t0;
        for (n, at) in &create_at {
            if let Some(r) = s.running.get(n) {
                lat.push(r.duration_since(*at).as_secs_f64());
                last = last.max(*r);
            }
        }
        (lat, last, want.len() - s.running.len().min(want.len()))
    };
    let all_running_s = all_running.then(|| r4(last_running.duration_since(t0).as_secs_f64()));

    // --- footprint with the pods running
    let footprint = match o.footprint {
        Some((pid, settle, window)) => {
            tokio::time::sleep(settle).await;
            let w0 = crate::wall_now();
            let mut f = crate::footprint::measure(pid, window).await?;
            if let Some(a) = &o.audit {
                f["api"] = crate::audit::count(&a.path, &a.user, w0, crate::wall_now())?;
            }
            f["pods"] = json!(o.pods);
            Some(f)
        }
        None => None,
    };

    // --- delete
    watch.mark_deleting(&want);
    let dp = DeleteParams {
        grace_period_seconds: Some(1),
        ..Default::default()
    };
    let d0 = Instant::now();
    let deleted = join_all(want.iter().map(|n| {
        let api = api.clone();
        let dp = dp.clone();
        async move {
            let at = Instant::now();
            api.delete(n, &dp).await.map(|_| (n.clone(), at))
        }
    }))
    .await;
    let mut delete_at = HashMap::new();
    let mut delete_errors = vec![];
    for r in deleted {
        match r {
            Ok((n, at)) => {
                delete_at.insert(n, at);
            }
            Err(e) => delete_errors.push(e.to_string()),
        }
    }
    let all_gone = watch
        .until(o.timeout, |s| want.iter().all(|n| s.gone.contains_key(n)))
        .await
        .is_ok();
    let (delete, last_gone, not_gone) = {
        let s = lock(&watch.seen);
        let mut lat = vec![];
        let mut last = d0;
        for (n, at) in &delete_at {
            if let Some(g) = s.gone.get(n) {
                lat.push(g.duration_since(*at).as_secs_f64());
                last = last.max(*g);
            }
        }
        let gone = want.iter().filter(|n| s.gone.contains_key(*n)).count();
        (lat, last, want.len() - gone)
    };
    let all_gone_s = all_gone.then(|| r4(last_gone.duration_since(d0).as_secs_f64()));
    tokio::time::sleep(o.tail).await;
    let wall1 = crate::wall_now();
    let api_count = match &o.audit {
        Some(a) => Some(crate::audit::count(&a.path, &a.user, wall0, wall1)?),
        None => None,
    };
    let (restarts, errors) = {
        let s = lock(&watch.seen);
        (s.restarts, s.errors)
    };
    let r4v = |v: &[f64]| v.iter().map(|x| r4(*x)).collect::<Vec<_>>();
    Ok(json!({
        "pods": o.pods,
        "namespace": ns,
        "startup": summary(&startup),
        "all_running_s": all_running_s,
        "not_running": not_running,
        "create_calls_s": r4(create_calls_s),
        "create_errors": create_errors.into_iter().take(5).collect::<Vec<_>>(),
        "delete": summary(&delete),
        "all_gone_s": all_gone_s,
        "not_gone": not_gone,
        "delete_errors": delete_errors.into_iter().take(5).collect::<Vec<_>>(),
        "footprint": footprint,
        "api": api_count,
        "watch": {"restarts": restarts, "errors": errors},
        "startup_samples": r4v(&startup),
        "delete_samples": r4v(&delete),
    }))
}

/// `runs` times, one after the other: a pod whose container exits 1 after `after`
/// (restartPolicy Never); the time from the container's finishedAt in the runtime until the
/// watch sees the terminated state.
pub async fn crash(
    client: &Client,
    node: &str,
    cri: &str,
    runs: usize,
    after: Duration,
    timeout: Duration,
) -> Result<Value> {
    let ns = namespace(client, "bench-crash").await?;
    let res = crash_in(client, node, cri, runs, after, timeout, &ns).await;
    drop_namespace(client, &ns).await;
    res
}

async fn crash_in(
    client: &Client,
    node: &str,
    cri: &str,
    runs: usize,
    after: Duration,
    timeout: Duration,
    ns: &str,
) -> Result<Value> {
    use kubelet_cri::RuntimeService;
    let rt = kubelet_cri::remote::RemoteRuntime::connect(cri, Duration::from_secs(30))?;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let watch = Watch::start(api.clone()).await?;
    let script = format!("sleep {}; exit 1", after.as_secs_f64());
    let mut lat = vec![];
    let mut failures = vec![];
    let dp = DeleteParams {
        grace_period_seconds: Some(1),
        ..Default::default()
    };
    for i in 0..runs {
        let name = format!("crash-{i}");
        api.create(
            &PostParams::default(),
            &pod(&name, node, "Never", &["sh", "-c", &script])?,
        )
        .await
        .context("creating crash pod")?;
        let ok = watch
            .until(timeout, |s| s.terminated.contains_key(&name))
            .await;
        let seen = lock(&watch.seen).terminated.get(&name).cloned();
        match (ok, seen) {
            (Ok(()), Some((wall, id))) if !id.is_empty() => match rt.container_status(&id).await {
                Ok(st) if st.finished_at > 0 => {
                    let seen_ns = wall
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos() as i128;
                    lat.push((seen_ns - i128::from(st.finished_at)) as f64 / 1e9);
                }
                Ok(_) => failures.push(format!("{name}: no finishedAt in the runtime")),
                Err(e) => failures.push(format!("{name}: ContainerStatus {id}: {e}")),
            },
            (Ok(()), _) => failures.push(format!("{name}: terminated without a container id")),
            (Err(e), _) => failures.push(format!("{name}: {e}")),
        }
        watch.mark_deleting(std::slice::from_ref(&name));
        let _ = api.delete(&name, &dp).await;
        let _ = watch.until(timeout, |s| s.gone.contains_key(&name)).await;
    }
    Ok(json!({
        "runs": runs,
        "exit_after_s": after.as_secs_f64(),
        "crash_to_status": summary(&lat),
        "failures": failures,
        "samples": lat.iter().map(|x| r4(*x)).collect::<Vec<_>>(),
    }))
}

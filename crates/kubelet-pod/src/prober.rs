//! Liveness, readiness and startup probes (upstream `pkg/kubelet/prober`): one task per
//! container probe, tied to one container instance (a restarted container gets fresh
//! workers and fresh results), with upstream's thresholds, initial delay and random start
//! jitter. Result changes wake the pod's worker at once.

use crate::lifecycle::resolve_port;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use kubelet_api::events::{Recorder, WARNING, pod_ref};
use kubelet_core::actions::{ProbeFailure, init_containers, is_sidecar};
use kubelet_core::runtime::{ContainerState, ContainerStatus, PodStatus};
use kubelet_cri::RuntimeService;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    fn label(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// Before the first verdict: not ready, alive, not started.
    fn initial(self) -> ProbeResult {
        match self {
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Startup => ProbeResult::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure,
    Unknown,
}

type Key = (String, String, ProbeKind);

#[derive(Debug)]
struct Entry {
    container_id: String,
    result: ProbeResult,
    cancel: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct ProbeManager {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    rt: Arc<dyn RuntimeService>,
    recorder: Recorder,
    changed: mpsc::UnboundedSender<String>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Turns the container's start time into a delay.
    clock: kubelet_core::clock::SharedClock,
}

fn probe_of(c: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
        ProbeKind::Readiness => c.readiness_probe.as_ref(),
        ProbeKind::Startup => c.startup_probe.as_ref(),
    }
}

const KINDS: [ProbeKind; 3] = [
    ProbeKind::Startup,
    ProbeKind::Liveness,
    ProbeKind::Readiness,
];

/// Containers that are probed: the regular ones and sidecars.
fn probed(pod: &Pod) -> impl Iterator<Item = &Container> {
    let regular = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    regular
        .iter()
        .chain(init_containers(pod).iter().filter(|c| is_sidecar(c)))
}

impl ProbeManager {
    /// `changed` receives the UID of a pod whenever one of its probe results changes.
    pub fn new(
        rt: Arc<dyn RuntimeService>,
        recorder: Recorder,
        changed: mpsc::UnboundedSender<String>,
        cancel: CancellationToken,
        clock: kubelet_core::clock::SharedClock,
    ) -> Self {
        ProbeManager {
            entries: Arc::default(),
            rt,
            recorder,
            changed,
            tracker: TaskTracker::new(),
            cancel,
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts workers for the pod's running containers and stops those of containers that
    /// are gone or were replaced.
    pub fn sync_pod(&self, pod: &Pod, rt: &PodStatus) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ip = rt
            .sandboxes
            .first()
            .filter(|s| s.ready)
            .map(|s| s.ip.clone())
            .filter(|ip| !ip.is_empty());
        let mut g = self.lock();
        let mut wanted = vec![];
        for c in probed(pod) {
            let running = rt
                .find(&c.name)
                .filter(|s| s.state == ContainerState::Running);
            for kind in KINDS {
                let Some(probe) = probe_of(c, kind) else {
                    continue;
                };
                let Some(s) = running else { continue };
                let key = (uid.clone(), c.name.clone(), kind);
                wanted.push(key.clone());
                if g.get(&key).is_some_and(|e| e.container_id == s.id) {
                    continue;
                }
                if let Some(old) = g.remove(&key) {
                    old.cancel.cancel();
                }
                let cancel = self.cancel.child_token();
                g.insert(
                    key.clone(),
                    Entry {
                        container_id: s.id.clone(),
                        result: kind.initial(),
                        cancel: cancel.clone(),
                    },
                );
                let w = Worker {
                    key,
                    probe: probe.clone(),
                    container: c.clone(),
                    pod: pod.clone(),
                    status: s.clone(),
                    pod_ip: ip.clone(),
                    has_startup: c.startup_probe.is_some(),
                    mgr: self.clone(),
                };
                self.tracker.spawn(w.run(cancel));
            }
        }
        g.retain(|k, e| {
            let keep = k.0 != uid || wanted.contains(k);
            if !keep {
                e.cancel.cancel();
            }
            keep
        });
    }

    pub fn remove_pod(&self, uid: &str) {
        crate::metrics::METRICS.forget_pod_probes(uid);
        self.lock().retain(|k, e| {
            if k.0 == uid {
                e.cancel.cancel();
            }
            k.0 != uid
        });
    }

    fn result(&self, uid: &str, name: &str, kind: ProbeKind) -> Option<(String, ProbeResult)> {
        self.lock()
            .get(&(uid.to_string(), name.to_string(), kind))
            .map(|e| (e.container_id.clone(), e.result))
    }

    fn set(&self, key: &Key, container_id: &str, result: ProbeResult) -> bool {
        let mut g = self.lock();
        match g.get_mut(key).filter(|e| e.container_id == container_id) {
            Some(e) if e.result != result => {
                e.result = result;
                true
            }
            _ => false,
        }
    }

    /// Readiness of each container with a readiness probe (false until it succeeds).
    pub fn readiness(&self, pod: &Pod) -> HashMap<String, bool> {
        self.verdicts(pod, ProbeKind::Readiness)
    }

    /// Startup success of each container with a startup probe.
    pub fn startup(&self, pod: &Pod) -> HashMap<String, bool> {
        self.verdicts(pod, ProbeKind::Startup)
    }

    fn verdicts(&self, pod: &Pod, kind: ProbeKind) -> HashMap<String, bool> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        probed(pod)
            .filter(|c| probe_of(c, kind).is_some())
            .map(|c| {
                let ok = self
                    .result(uid, &c.name, kind)
                    .is_some_and(|(_, r)| r == ProbeResult::Success);
                (c.name.clone(), ok)
            })
            .collect()
    }

    /// Whether the running container `s` failed its liveness or startup probe.
    pub fn failed(&self, uid: &str, s: &ContainerStatus) -> Option<ProbeFailure> {
        for (kind, f) in [
            (ProbeKind::Liveness, ProbeFailure::Liveness),
            (ProbeKind::Startup, ProbeFailure::Startup),
        ] {
            if self
                .result(uid, &s.name, kind)
                .is_some_and(|(id, r)| id == s.id && r == ProbeResult::Failure)
            {
                return Some(f);
            }
        }
        None
    }

    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

struct Worker {
    key: Key,
    probe: Probe,
    container: Container,
    pod: Pod,
    status: ContainerStatus,
    pod_ip: Option<String>,
    has_startup: bool,
    mgr: ProbeManager,
}

fn secs(v: Option<i32>, default: i32, min: i32) -> u64 {
    v.unwrap_or(default).max(min) as u64
}

impl Worker {
    async fn run(self, cancel: CancellationToken) {
        let (uid, name, kind) = self.key.clone();
        let period = Duration::from_secs(secs(self.probe.period_seconds, 10, 1));
        let timeout = Duration::from_secs(secs(self.probe.timeout_seconds, 1, 1));
        let success_threshold = secs(self.probe.success_threshold, 1, 1);
        let failure_threshold = secs(self.probe.failure_threshold, 3, 1);
        let initial_delay = self.probe.initial_delay_seconds.unwrap_or(0).max(0) as i64;
        // Upstream's random start, so that many pods do not probe in lockstep.
        let seed = format!("{uid}{name}{kind:?}{}", self.status.id);
        let jitter = Duration::from_millis(
            kubelet_core::hash::fnv1a(seed.as_bytes()) % (period.as_millis() as u64).max(1),
        );
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(jitter) => {}
        }
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut successes, mut failures) = (0u64, 0u64);
        let mut result = kind.initial();
        // The initial delay counts from the container's start (wall clock, from the runtime);
        // turned into a monotonic deadline once, so that a paused clock drives it in tests.
        let delay_end_ns = self
            .status
            .started_at
            .saturating_add(initial_delay * 1_000_000_000);
        let left_ns = delay_end_ns.saturating_sub(self.mgr.clock.now_unix_ns());
        let not_before = tokio::time::Instant::now() + Duration::from_nanos(left_ns.max(0) as u64);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if tokio::time::Instant::now() < not_before {
                continue;
            }
            if kind != ProbeKind::Startup
                && self.has_startup
                && self
                    .mgr
                    .result(&uid, &name, ProbeKind::Startup)
                    .is_none_or(|(_, r)| r != ProbeResult::Success)
            {
                continue;
            }
            // A finished startup probe, or a failed liveness/startup probe, waits for the
            // container to be replaced.
            if kind == ProbeKind::Startup && result == ProbeResult::Success
                || kind != ProbeKind::Readiness && result == ProbeResult::Failure
            {
                continue;
            }
            let (ok, output) = self.probe_once(timeout).await;
            crate::metrics::record_probe(
                kind.label(),
                if ok { "successful" } else { "failed" },
                &name,
                self.pod.metadata.name.as_deref().unwrap_or_default(),
                self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                &uid,
            );
            if ok {
                successes += 1;
                failures = 0;
            } else {
                failures += 1;
                successes = 0;
                debug!(pod = %uid, container = %name, ?kind, %output, "probe failed");
                self.mgr.recorder.emit(
                    pod_ref(&self.pod, Some(&name)),
                    WARNING,
                    "Unhealthy",
                    format!("{} probe failed: {output}", kind.label()),
                );
            }
            let next = if ok && successes >= success_threshold {
                ProbeResult::Success
            } else if !ok && failures >= failure_threshold {
                ProbeResult::Failure
            } else {
                result
            };
            if next != result {
                result = next;
                if self.mgr.set(&self.key, &self.status.id, next) {
                    let _ = self.mgr.changed.send(uid.clone());
                }
            }
        }
    }

    async fn probe_once(&self, timeout: Duration) -> (bool, String) {
        let p = &self.probe;
        if let Some(exec) = &p.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            return match self
                .mgr
                .rt
                .exec_sync(&self.status.id, cmd.clone(), timeout)
                .await
            {
                Ok(r) if r.exit_code == 0 => (true, String::new()),
                Ok(r) => {
                    let out = String::from_utf8_lossy(&r.stdout).into_owned()
                        + &String::from_utf8_lossy(&r.stderr);
                    (false, out)
                }
                Err(e) => (false, format!("command {cmd:?} failed: {e}")),
            };
        }
        let host = |h: Option<&String>| {
            h.filter(|h| !h.is_empty())
                .cloned()
                .or_else(|| self.pod_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".into())
        };
        if let Some(g) = &p.http_get {
            let port = match resolve_port(&g.port, &self.container) {
                Ok(p) => p,
                Err(e) => return (false, e.to_string()),
            };
            let https = g
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
            let headers = crate::lifecycle::header_pairs(g);
            return http_probe(
                https,
                &host(g.host.as_ref()),
                port,
                g.path.as_deref().unwrap_or("/"),
                &headers,
                timeout,
            )
            .await;
        }
        if let Some(t) = &p.tcp_socket {
            let port = match resolve_port(&t.port, &self.container) {
                Ok(p) => p,
                Err(e) => return (false, e.to_string()),
            };
            let h = host(t.host.as_ref());
            return match tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((h.as_str(), port)),
            )
            .await
            {
                Ok(Ok(_)) => (true, String::new()),
                Ok(Err(e)) => (false, format!("dial tcp {h}:{port}: connect: {e}")),
                Err(_) => (false, format!("dial tcp {h}:{port}: i/o timeout")),
            };
        }
        if let Some(g) = &p.grpc {
            let Ok(port) = u16::try_from(g.port) else {
                return (false, format!("invalid port {}", g.port));
            };
            let service = g.service.clone().unwrap_or_default();
            return grpc_probe(&host(None), port, &service, timeout).await;
        }
        (false, "probe has no handler".into())
    }
}

/// A gRPC probe: the standard health checking protocol (grpc.health.v1.Health/Check) over
/// plain HTTP/2, success only on SERVING; the messages are upstream's.
pub async fn grpc_probe(host: &str, port: u16, service: &str, timeout: Duration) -> (bool, String) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        // Only our own timers bound the probe, so that a timeout always reads as one.
        Ok(e) => e,
        Err(e) => {
            return (
                false,
                format!("error: failed to connect service at {addr:?}: {e}"),
            );
        }
    };
    let endpoint = match endpoint.user_agent("kube-probe/1.20") {
        Ok(e) => e,
        Err(e) => return (false, format!("error: {e}")),
    };
    let t0 = tokio::time::Instant::now();
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return (
                false,
                format!("error: failed to connect service at {addr:?}: {e}"),
            );
        }
        Err(_) => {
            return (
                false,
                format!("timeout: failed to connect service {addr:?} within {timeout:?}"),
            );
        }
    };
    let left = timeout.saturating_sub(t0.elapsed());
    let req = HealthCheckRequest {
        service: service.to_string(),
    };
    let res = tokio::time::timeout(left, HealthClient::new(channel).check(req)).await;
    let status = match res {
        Err(_) => {
            return (
                false,
                format!("timeout: health rpc did not complete within {timeout:?}"),
            );
        }
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
            return (
                false,
                format!(
                    "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    s.message()
                ),
            );
        }
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => {
            return (
                false,
                format!("timeout: health rpc did not complete within {timeout:?}"),
            );
        }
        Ok(Err(s)) => return (false, format!("error: health rpc probe failed: {s}")),
        Ok(Ok(r)) => r.into_inner().status(),
    };
    if status == ServingStatus::Serving {
        (true, String::new())
    } else {
        (
            false,
            format!(
                "service unhealthy (responded with {:?})",
                status.as_str_name()
            ),
        )
    }
}

/// An HTTP probe as upstream's (`pkg/probe/http`): success on 200–399. Redirects
/// (301/302/303/307/308) are followed to the same host name, resolved against the current
/// URL (another scheme or port included), at most 10; one to another host ends the chain as a
/// success with a warning ("Probe terminated redirects"), as does a 3xx that is not followed.
/// The timeout covers the whole chain. HTTPS does not verify the server's certificate.
pub async fn http_probe(
    https: bool,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> (bool, String) {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let first = Target {
        https,
        host: host.to_string(),
        port,
        path,
    };
    let url = first.url();
    match tokio::time::timeout(timeout, probe_chain(first, headers, timeout)).await {
        Ok(r) => r,
        Err(_) => (
            false,
            format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ),
        ),
    }
}

/// Where one request of a probe goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }

    /// `Location` resolved against this URL (RFC 3986, enough for redirects): absolute,
    /// scheme-relative, absolute-path or relative-path.
    fn resolve(&self, loc: &str) -> Option<Target> {
        let authority = |https: bool, rest: &str| -> Option<Target> {
            let (auth, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let default = if https { 443 } else { 80 };
            let (h, p) = if let Some(r) = auth.strip_prefix('[') {
                let (h, tail) = r.split_once(']')?;
                (
                    h.to_string(),
                    tail.strip_prefix(':').map(str::parse).transpose().ok()?,
                )
            } else {
                match auth.rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
                    None => (auth.to_string(), None),
                }
            };
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            Some(Target {
                https,
                host: h,
                port: p.unwrap_or(default),
                path,
            })
        };
        if let Some(rest) = loc.strip_prefix("http://") {
            return authority(false, rest);
        }
        if let Some(rest) = loc.strip_prefix("https://") {
            return authority(true, rest);
        }
        if let Some(rest) = loc.strip_prefix("//") {
            return authority(self.https, rest);
        }
        let path = if loc.starts_with('/') {
            loc.to_string()
        } else {
            // Relative to the current path's directory, dot segments removed.
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{loc}")
        };
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path, None),
        };
        let mut out: Vec<&str> = vec![];
        for seg in p.split('/').skip(1) {
            match seg {
                "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        let mut path = format!("/{}", out.join("/"));
        if p.ends_with("/.") || p.ends_with("/..") {
            path.push('/');
        }
        if let Some(q) = q {
            path = format!("{path}?{q}");
        }
        Some(Target {
            path,
            ..self.clone()
        })
    }
}

async fn probe_chain(
    first: Target,
    headers: &[(String, String)],
    timeout: Duration,
) -> (bool, String) {
    // Upstream's prober: its User-Agent and `Accept: */*` unless the probe sets them.
    let defaults = [("User-Agent", "kube-probe/1.20"), ("Accept", "*/*")];
    let mut t = first.clone();
    let mut hops = 0;
    loop {
        let url = t.url();
        let r = match crate::lifecycle::get(
            t.https,
            &t.host,
            t.port,
            &t.path,
            headers,
            &defaults,
            &[("Connection", "close")],
            timeout,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return (false, format!("Get {url:?}: {e}")),
        };
        let follow = matches!(r.status, 301 | 302 | 303 | 307 | 308);
        if follow && let Some(loc) = r.location.as_deref() {
            let Some(next) = t.resolve(loc) else {
                return (
                    false,
                    format!("Get {url:?}: failed to parse Location header {loc:?}"),
                );
            };
            if hops >= 9 {
                return (
                    false,
                    format!("Get {:?}: stopped after 10 redirects", next.url()),
                );
            }
            if next.host == first.host {
                t = next;
                hops += 1;
                continue;
            }
        }
        return match r.status {
            200..=299 => (true, String::new()),
            300..=399 => (
                true,
                format!("Probe terminated redirects, Response body: {}", r.body),
            ),
            code => (false, format!("HTTP probe failed with statuscode: {code}")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn serve(answers: Vec<&'static str>) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(a.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_codes_and_redirects() {
        let p = serve(vec!["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]).await;
        assert!(
            http_probe(
                false,
                "127.0.0.1",
                p,
                "/healthz",
                &[],
                Duration::from_secs(2)
            )
            .await
            .0
        );
        let p = serve(vec!["HTTP/1.1 503 No\r\n\r\n"]).await;
        let (ok, out) = http_probe(false, "127.0.0.1", p, "/", &[], Duration::from_secs(2)).await;
        assert!(!ok);
        assert_eq!(out, "HTTP probe failed with statuscode: 503");
        let p = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /there\r\n\r\n",
            "HTTP/1.1 500 No\r\n\r\n",
        ])
        .await;
        assert!(
            !http_probe(false, "127.0.0.1", p, "/", &[], Duration::from_secs(2))
                .await
                .0,
            "followed to the 500"
        );
        let p = serve(vec![
            "HTTP/1.1 301 Moved\r\nLocation: http://elsewhere.example/\r\n\r\n",
        ])
        .await;
        assert!(
            http_probe(false, "127.0.0.1", p, "/", &[], Duration::from_secs(2))
                .await
                .0
        );
        // a server that never answers: the timeout is enforced
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let t0 = tokio::time::Instant::now();
        let (ok, out) = http_probe(
            false,
            "127.0.0.1",
            port,
            "/",
            &[],
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(
            out,
            format!(
                "Get \"http://127.0.0.1:{port}/\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )
        );
        assert!(!ok);
        assert!(t0.elapsed() < Duration::from_secs(2));
        drop(l);
        // A relative Location is resolved against the current path; a 300 is not followed.
        let p = serve(vec![
            "HTTP/1.1 307 Temp\r\nLocation: ../up?x=1\r\n\r\n",
            "HTTP/1.1 300 Choices\r\nLocation: /never\r\nContent-Length: 4\r\n\r\nbody",
        ])
        .await;
        let (ok, out) =
            http_probe(false, "127.0.0.1", p, "/a/b/c", &[], Duration::from_secs(2)).await;
        assert!(ok);
        assert_eq!(out, "Probe terminated redirects, Response body: body");
    }

    #[test]
    fn locations_resolve_as_rfc_3986() {
        let t = Target {
            https: false,
            host: "10.0.0.1".into(),
            port: 8080,
            path: "/a/b/c?q".into(),
        };
        let r = |l: &str| t.resolve(l).map(|x| x.url());
        assert_eq!(r("d").as_deref(), Some("http://10.0.0.1:8080/a/b/d"));
        assert_eq!(r("../d?x").as_deref(), Some("http://10.0.0.1:8080/a/d?x"));
        assert_eq!(r("/z").as_deref(), Some("http://10.0.0.1:8080/z"));
        assert_eq!(
            r("https://10.0.0.1:8443/s").as_deref(),
            Some("https://10.0.0.1:8443/s")
        );
        assert_eq!(r("//other/x").map(|u| u.contains("other")), Some(true));
        assert_eq!(
            r("http://[fd00::1]/").as_deref(),
            Some("http://[fd00::1]:80/")
        );
        assert_eq!(r("http://h:notaport/"), None);
    }

    /// A TLS server with a self-signed certificate, answering each connection in turn.
    async fn serve_tls(answers: Vec<&'static str>) -> u16 {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = key.cert.der().clone();
        let pkey =
            rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], pkey)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            for a in answers {
                let (s, _) = l.accept().await.unwrap();
                let Ok(mut s) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(a.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        port
    }

    #[tokio::test]
    async fn https_probes_skip_verification() {
        let p = serve_tls(vec![
            "HTTP/1.1 302 Found\r\nLocation: /ok\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 500 No\r\n\r\n",
        ])
        .await;
        let (ok, out) = http_probe(true, "127.0.0.1", p, "/", &[], Duration::from_secs(5)).await;
        assert!(
            ok,
            "self-signed certificate accepted, redirect followed: {out}"
        );
        let (ok, out) = http_probe(true, "127.0.0.1", p, "/", &[], Duration::from_secs(5)).await;
        assert!(!ok);
        assert_eq!(out, "HTTP probe failed with statuscode: 500");
        // HTTPS against a plain HTTP server fails in the handshake, naming the URL
        let p = serve(vec!["HTTP/1.1 200 OK\r\n\r\n"]).await;
        let (ok, out) = http_probe(true, "127.0.0.1", p, "/x", &[], Duration::from_secs(5)).await;
        assert!(!ok && out.starts_with("Get \"https://127.0.0.1:"), "{out}");
    }

    #[tokio::test]
    async fn grpc_health_protocol() {
        use tonic_health::ServingStatus;
        let (reporter, svc) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("up", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("down", ServingStatus::NotServing)
            .await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
        );
        let t = Duration::from_secs(5);
        assert_eq!(
            grpc_probe("127.0.0.1", port, "up", t).await,
            (true, String::new())
        );
        // the empty name is the server as a whole, which the reporter marks serving
        assert!(grpc_probe("127.0.0.1", port, "", t).await.0);
        assert_eq!(
            grpc_probe("127.0.0.1", port, "down", t).await,
            (
                false,
                "service unhealthy (responded with \"NOT_SERVING\")".into()
            )
        );
        let (ok, out) = grpc_probe("127.0.0.1", port, "unknown", t).await;
        assert!(
            !ok && out.starts_with("error: health rpc probe failed"),
            "{out}"
        );
        server.abort();
        // an HTTP/1 server that never answers the HTTP/2 preface: the timeout holds
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let t0 = tokio::time::Instant::now();
        let (ok, out) = grpc_probe("127.0.0.1", port, "", Duration::from_millis(300)).await;
        assert!(!ok && out.starts_with("timeout"), "{out}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        drop(l);
    }

    /// A pod with one running container "c" (id "c1", started now) and these probes.
    fn probed_pod(probes: serde_json::Value) -> (Pod, PodStatus) {
        let mut c = serde_json::json!({"name": "c", "image": "busybox"});
        for (k, v) in probes.as_object().unwrap() {
            c[k] = v.clone();
        }
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [c]},
        }))
        .unwrap();
        // The harness's fake clock stands still at this time.
        let now = kubelet_core::clock::FakeClock::new()
            .now_ts()
            .as_nanosecond() as i64;
        let st = PodStatus {
            sandboxes: vec![kubelet_core::runtime::SandboxStatus {
                id: "s1".into(),
                ready: true,
                created_at: now,
                ip: "10.0.0.2".into(),
                ..Default::default()
            }],
            containers: vec![ContainerStatus {
                id: "c1".into(),
                name: "c".into(),
                state: ContainerState::Running,
                created_at: now,
                started_at: now,
                sandbox_id: "s1".into(),
                ..Default::default()
            }],
        };
        (pod, st)
    }

    struct Harness {
        rt: Arc<kubelet_cri::fake::FakeRuntime>,
        mgr: ProbeManager,
        changed: mpsc::UnboundedReceiver<String>,
        t0: tokio::time::Instant,
    }

    impl Harness {
        fn new() -> Self {
            let rt = Arc::new(kubelet_cri::fake::FakeRuntime::default());
            let (tx, changed) = mpsc::unbounded_channel();
            let mgr = ProbeManager::new(
                rt.clone(),
                Recorder::disabled(),
                tx,
                CancellationToken::new(),
                kubelet_core::clock::FakeClock::new(),
            );
            Harness {
                rt,
                mgr,
                changed,
                t0: tokio::time::Instant::now(),
            }
        }

        fn execs(&self) -> usize {
            self.rt
                .calls()
                .iter()
                .filter(|c| c.starts_with("ExecSync"))
                .count()
        }

        /// Advances the paused clock a second at a time until the next probe runs; the
        /// seconds since the start at which it ran.
        async fn next_probe(&self) -> u64 {
            let before = self.execs();
            // let freshly spawned workers start their clocks before time moves
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            for _ in 0..120 {
                tokio::time::advance(Duration::from_secs(1)).await;
                for _ in 0..20 {
                    tokio::task::yield_now().await;
                }
                if self.execs() > before {
                    return self.t0.elapsed().as_secs();
                }
            }
            panic!("no probe within 120 s");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_thresholds_period_and_initial_delay() {
        let mut h = Harness::new();
        let (pod, st) = probed_pod(serde_json::json!({"readinessProbe": {
            "exec": {"command": ["true"]}, "initialDelaySeconds": 30, "periodSeconds": 10,
            "successThreshold": 2, "failureThreshold": 3,
        }}));
        h.mgr.sync_pod(&pod, &st);
        let ready = |h: &Harness| h.mgr.readiness(&pod)["c"];
        let first = h.next_probe().await;
        // The first tick past the delay: the random start puts it within one period.
        assert!(
            (30..=40).contains(&first),
            "not before the initial delay: {first}"
        );
        assert!(!ready(&h), "one success of two needed");
        let second = h.next_probe().await;
        assert_eq!(second - first, 10, "the period");
        assert!(ready(&h));
        assert_eq!(h.changed.try_recv().ok().as_deref(), Some("u"));
        h.rt.set_exec_exit(1);
        for n in 1..=3 {
            let at = h.next_probe().await;
            assert_eq!(at - first, 10 * (n + 1));
            assert_eq!(ready(&h), n < 3, "ready until the third failure in a row");
        }
        assert_eq!(h.changed.try_recv().ok().as_deref(), Some("u"));
        // readiness keeps probing after a failure, and recovers
        h.rt.set_exec_exit(0);
        h.next_probe().await;
        h.next_probe().await;
        assert!(ready(&h));
        h.mgr.remove_pod("u");
        h.mgr.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn startup_holds_off_liveness_and_a_failed_liveness_stops_probing() {
        let h = Harness::new();
        h.rt.set_exec_exit(1);
        let (pod, st) = probed_pod(serde_json::json!({
            "startupProbe": {"exec": {"command": ["s"]}, "periodSeconds": 1, "failureThreshold": 5},
            "livenessProbe": {"exec": {"command": ["l"]}, "periodSeconds": 1, "failureThreshold": 2},
        }));
        h.mgr.sync_pod(&pod, &st);
        let c = &st.containers[0];
        // Only the startup probe runs while it fails: one exec a second, never liveness's.
        for _ in 0..4 {
            h.next_probe().await;
        }
        assert_eq!(
            h.mgr.failed("u", c),
            None,
            "four startup failures of five allowed"
        );
        assert!(!h.mgr.startup(&pod)["c"]);
        h.rt.set_exec_exit(0);
        h.next_probe().await;
        assert!(h.mgr.startup(&pod)["c"]);
        // Liveness now runs; two failures in a row fail it, and then it waits for a new
        // container rather than probing on.
        h.rt.set_exec_exit(1);
        let mut n = 0;
        while h.mgr.failed("u", c).is_none() {
            h.next_probe().await;
            n += 1;
            assert!(n <= 3, "liveness should have failed after two failures");
        }
        assert_eq!(h.mgr.failed("u", c), Some(ProbeFailure::Liveness));
        let after = h.execs();
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(h.execs(), after, "no probes after the verdict");
        h.mgr.shutdown().await;
    }

    /// A server that answers once and keeps the connection open (keep-alive), handing back
    /// the raw request it got.
    async fn keep_alive_server(
        answer: &'static str,
    ) -> (u16, tokio::sync::oneshot::Receiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 2048];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
            let _ = s.write_all(answer.as_bytes()).await;
            // Never closes: the client must not wait for it.
            std::future::pending::<()>().await;
        });
        (port, rx)
    }

    #[tokio::test]
    async fn the_request_is_upstreams_and_keep_alive_is_not_waited_for() {
        let (p, req) = keep_alive_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let (ok, _) = http_probe(
            false,
            "127.0.0.1",
            p,
            "/healthz",
            &[],
            Duration::from_secs(5),
        )
        .await;
        assert!(ok, "a keep-alive server's answer is taken at once");
        assert_eq!(
            req.await.unwrap(),
            format!(
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nUser-Agent: kube-probe/1.20\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            )
        );
        // The user's Host and User-Agent replace the defaults (one of each); an empty Accept
        // drops it; other names are written as Go canonicalizes them, sorted.
        let (p, req) = keep_alive_server("HTTP/1.1 204 No Content\r\n\r\n").await;
        let user = [
            ("x-b".to_string(), "2".to_string()),
            ("host".to_string(), "example.com".to_string()),
            ("user-agent".to_string(), "mine".to_string()),
            ("Accept".to_string(), String::new()),
            ("X-A".to_string(), "1".to_string()),
        ];
        let (ok, _) = http_probe(false, "127.0.0.1", p, "/", &user, Duration::from_secs(5)).await;
        assert!(ok);
        assert_eq!(
            req.await.unwrap(),
            "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: mine\r\nX-A: 1\r\nX-B: 2\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let h = crate::lifecycle::request_headers("fd00::1", 8080, &[], &[], &[]);
        assert_eq!(h[0], ("Host".to_string(), "[fd00::1]:8080".to_string()));
    }
}

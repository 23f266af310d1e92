//! The kubelet's Prometheus metrics (upstream `pkg/kubelet/metrics`, `prober/metrics`), with
//! upstream's names and labels. One process-wide set, as upstream's global registry: the
//! runtime wrapper, PLEG, pod workers and prober record into it; `/metrics` and
//! `/metrics/probes` render it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};

type Labels = Vec<(String, String)>;

/// Prometheus' default buckets, which upstream's kubelet histograms use.
const DEF_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn histogram_default() -> Histogram {
    Histogram::new(DEF_BUCKETS)
}

fn histogram_runtime() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.5, 14))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    probes_registry: Mutex<Registry>,
    pub runtime_operations: Family<Labels, Counter>,
    pub runtime_operations_errors: Family<Labels, Counter>,
    pub runtime_operations_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub pleg_relist_duration: Histogram,
    pub pleg_relist_interval: Histogram,
    pub pod_worker_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub pod_start_duration: Histogram,
    pub running_pods: Gauge,
    pub running_containers: Family<Labels, Gauge>,
    pub node_name: Family<Labels, Gauge>,
    pub evictions: Family<Labels, Counter>,
    pub prober_probe: Family<Labels, Counter>,
    pub process_resident_memory: Gauge,
    pub process_virtual_memory: Gauge,
    pub process_cpu_seconds: Counter<f64, AtomicU64>,
    pub process_start_time: Gauge<f64, AtomicU64>,
    pub process_open_fds: Gauge,
    pub process_max_fds: Gauge,
    pub process_virtual_memory_max: Gauge<f64, AtomicU64>,
    pub build_info: Family<Labels, Gauge>,
    pub preemptions: Family<Labels, Counter>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            registry: Mutex::default(),
            probes_registry: Mutex::default(),
            runtime_operations: Family::default(),
            runtime_operations_errors: Family::default(),
            runtime_operations_duration: Family::new_with_constructor(histogram_runtime),
            pleg_relist_duration: histogram_default(),
            pleg_relist_interval: histogram_default(),
            pod_worker_duration: Family::new_with_constructor(histogram_default),
            pod_start_duration: histogram_default(),
            running_pods: Gauge::default(),
            running_containers: Family::default(),
            node_name: Family::default(),
            evictions: Family::default(),
            prober_probe: Family::default(),
            process_resident_memory: Gauge::default(),
            process_virtual_memory: Gauge::default(),
            process_cpu_seconds: Counter::default(),
            process_start_time: Gauge::default(),
            process_open_fds: Gauge::default(),
            process_max_fds: Gauge::default(),
            process_virtual_memory_max: Gauge::default(),
            build_info: Family::default(),
            preemptions: Family::default(),
        };
        m.build_info.get_or_create(&build_info_labels()).set(1);
        {
            let mut r = m.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register(
                "kubelet_runtime_operations",
                "[ALPHA] Cumulative number of runtime operations by operation type",
                m.runtime_operations.clone(),
            );
            r.register(
                "kubelet_runtime_operations_errors",
                "[ALPHA] Cumulative number of runtime operation errors by operation type",
                m.runtime_operations_errors.clone(),
            );
            r.register(
                "kubelet_runtime_operations_duration_seconds",
                "[ALPHA] Duration in seconds of runtime operations. Broken down by operation type",
                m.runtime_operations_duration.clone(),
            );
            r.register(
                "kubelet_pleg_relist_duration_seconds",
                "[ALPHA] Duration in seconds for relisting pods in PLEG",
                m.pleg_relist_duration.clone(),
            );
            r.register(
                "kubelet_pleg_relist_interval_seconds",
                "[ALPHA] Interval in seconds between relisting in PLEG",
                m.pleg_relist_interval.clone(),
            );
            r.register("kubelet_pod_worker_duration_seconds", "[ALPHA] Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync", m.pod_worker_duration.clone());
            r.register(
                "kubelet_pod_start_duration_seconds",
                "[ALPHA] Duration in seconds for a single pod to go from pending to running",
                m.pod_start_duration.clone(),
            );
            r.register(
                "kubelet_running_pods",
                "[ALPHA] Number of pods that have a running pod sandbox",
                m.running_pods.clone(),
            );
            r.register(
                "kubelet_running_containers",
                "[ALPHA] Number of containers currently running",
                m.running_containers.clone(),
            );
            r.register(
                "kubelet_node_name",
                "[ALPHA] The node's name. The count is always 1",
                m.node_name.clone(),
            );
            r.register(
                "kubelet_evictions",
                "[ALPHA] Cumulative number of pod evictions by eviction signal",
                m.evictions.clone(),
            );
            r.register(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                m.process_resident_memory.clone(),
            );
            r.register(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                m.process_virtual_memory.clone(),
            );
            r.register(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                m.process_cpu_seconds.clone(),
            );
            r.register(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                m.process_start_time.clone(),
            );
            r.register(
                "process_open_fds",
                "Number of open file descriptors",
                m.process_open_fds.clone(),
            );
            r.register(
                "process_max_fds",
                "Maximum number of open file descriptors",
                m.process_max_fds.clone(),
            );
            r.register(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes",
                m.process_virtual_memory_max.clone(),
            );
            r.register(
                "kubernetes_build_info",
                "[ALPHA] A metric with a constant '1' value labeled by major, minor, git version, git commit, git tree state, build date, Go version, and compiler from which Kubernetes was built, and platform on which it is running.",
                m.build_info.clone(),
            );
            let rest = &*kubelet_api::rest_metrics::REST_CLIENT;
            r.register(
                "rest_client_requests",
                "[ALPHA] Number of HTTP requests, partitioned by status code, method, and host.",
                rest.requests.clone(),
            );
            r.register(
                "rest_client_request_duration_seconds",
                "[ALPHA] Request latency in seconds. Broken down by verb and URL.",
                rest.duration.clone(),
            );
            r.register(
                "kubelet_preemptions",
                "[ALPHA] Cumulative number of pod preemptions by preemption resource",
                m.preemptions.clone(),
            );
        }
        {
            let mut r = m.probes_registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register(
                "prober_probe",
                "[ALPHA] Cumulative number of a liveness, readiness or startup probe for a container by result",
                m.prober_probe.clone(),
            );
            // As upstream's probe registry.
            r.register(
                "process_start_time_seconds",
                "[ALPHA] Start time of the process since unix epoch in seconds",
                m.process_start_time.clone(),
            );
        }
        m
    }

    /// Records one runtime call (upstream `instrumented_services.go`).
    pub fn runtime_op(&self, op: &str, seconds: f64, failed: bool) {
        let l = vec![("operation_type".to_string(), op.to_string())];
        self.runtime_operations.get_or_create(&l).inc();
        self.runtime_operations_duration
            .get_or_create(&l)
            .observe(seconds);
        if failed {
            self.runtime_operations_errors.get_or_create(&l).inc();
        }
    }

    /// Records a probe's result: "successful", "failed" or "unknown".
    pub fn probe(
        &self,
        probe_type: &str,
        result: &str,
        container: &str,
        pod: &str,
        namespace: &str,
        uid: &str,
    ) {
        let l = probe_labels(probe_type, result, container, pod, namespace, uid);
        self.prober_probe.get_or_create(&l).inc();
    }

    /// Forgets a pod's probe series once the pod is gone, so that they do not pile up.
    pub fn forget_pod_probes(&self, uid: &str) {
        let gone: Vec<Labels> = {
            let mut v = vec![];
            // Family has no iterator: remember the label sets we created.
            let known = PROBE_SERIES.lock().unwrap_or_else(|e| e.into_inner());
            for l in known.iter() {
                if l.iter().any(|(k, x)| k == "pod_uid" && x == uid) {
                    v.push(l.clone());
                }
            }
            v
        };
        for l in &gone {
            self.prober_probe.remove(l);
        }
        PROBE_SERIES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| !gone.contains(l));
    }

    /// `/metrics`, in the Prometheus text format 0.0.4, as upstream serves it.
    pub fn render(&self) -> String {
        refresh_process_metrics(self);
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if encode(&mut out, &r).is_err() {
            out.clear();
        }
        to_prometheus_text(&out)
    }

    /// `/metrics/probes`.
    pub fn render_probes(&self) -> String {
        refresh_process_metrics(self);
        let mut out = String::new();
        let r = self
            .probes_registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if encode(&mut out, &r).is_err() {
            out.clear();
        }
        to_prometheus_text(&out)
    }
}

/// The probe label sets created so far (for `forget_pod_probes`).
/// prober_probe_total's labels, in upstream's order.
fn probe_labels(
    probe_type: &str,
    result: &str,
    container: &str,
    pod: &str,
    namespace: &str,
    uid: &str,
) -> Labels {
    [
        ("probe_type", probe_type),
        ("result", result),
        ("container", container),
        ("pod", pod),
        ("namespace", namespace),
        ("pod_uid", uid),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

static PROBE_SERIES: LazyLock<Mutex<Vec<Labels>>> = LazyLock::new(Mutex::default);

/// Records a probe result, remembering the series.
pub fn record_probe(
    probe_type: &str,
    result: &str,
    container: &str,
    pod: &str,
    namespace: &str,
    uid: &str,
) {
    METRICS.probe(probe_type, result, container, pod, namespace, uid);
    let l = probe_labels(probe_type, result, container, pod, namespace, uid);
    let mut known = PROBE_SERIES.lock().unwrap_or_else(|e| e.into_inner());
    if !known.contains(&l) {
        known.push(l);
    }
}

/// Fields of /proc/self/stat after the command: (utime, stime, starttime, vsize, rss pages).
fn parse_self_stat(text: &str) -> Option<(u64, u64, u64, u64, i64)> {
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, so index 11.
    Some((
        f.get(11)?.parse().ok()?,
        f.get(12)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
        f.get(20)?.parse().ok()?,
        f.get(21)?.parse().ok()?,
    ))
}

fn refresh_process_metrics(m: &Metrics) {
    // USER_HZ and the page size are fixed on the platforms we build for.
    const TICKS: f64 = 100.0;
    const PAGE: i64 = 4096;
    if let Some((utime, stime, start, vsize, rss)) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(parse_self_stat)
    {
        // A counter only goes up: add what was spent since the last scrape.
        let spent = (utime + stime) as f64 / TICKS - m.process_cpu_seconds.get();
        if spent > 0.0 {
            m.process_cpu_seconds.inc_by(spent);
        }
        m.process_virtual_memory
            .set(i64::try_from(vsize).unwrap_or(i64::MAX));
        m.process_resident_memory.set(rss.saturating_mul(PAGE));
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let Some(b) = boot {
            m.process_start_time.set(b + start as f64 / TICKS);
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        m.process_open_fds.set(rd.count() as i64);
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        // The soft limit; "unlimited" is u64::MAX, as procfs reads it.
        let soft = |name: &str, skip: usize| {
            limits
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(skip))
                .map(|v| v.parse::<u64>().unwrap_or(u64::MAX))
        };
        if let Some(n) = soft("Max open files", 3) {
            m.process_max_fds.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(n) = soft("Max address space", 3) {
            m.process_virtual_memory_max.set(n as f64);
        }
    }
}

/// `kubernetes_build_info`'s labels, as `--version=raw` reports the build (sorted, as
/// client_golang writes them).
fn build_info_labels() -> Labels {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    [
        ("build_date", ""),
        ("compiler", "rustc"),
        ("git_commit", ""),
        ("git_tree_state", ""),
        ("git_version", kubelet_core::nodestatus::KUBELET_VERSION),
        ("go_version", ""),
        ("major", "1"),
        ("minor", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "platform".to_string(),
        format!("{}/{arch}", std::env::consts::OS),
    )])
    .collect()
}

/// Counters whose upstream name has no `_total` (Prometheus text keeps the name as is).
const NO_TOTAL: &[&str] = &[
    "kubelet_evictions",
    "kubelet_preemptions",
    "kubelet_pleg_discard_events",
];

/// OpenMetrics text as the Prometheus text format 0.0.4 that upstream's kubelet serves, so the
/// series keep upstream's exact names: a counter is named for its samples (`X_total`), except
/// those upstream names without `_total`; no `_created` samples, `# UNIT` or `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    let mut counter: Option<(String, bool)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            counter = (kind == "counter").then(|| (name.to_string(), NO_TOTAL.contains(&name)));
            let shown = match &counter {
                Some((n, false)) => format!("{n}_total"),
                _ => name.to_string(),
            };
            if let Some(h) = help.take() {
                // prometheus-client ends every help text with a period of its own.
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                let text = text.strip_suffix('.').unwrap_or(text);
                out.push_str(&format!("# HELP {shown} {text}\n"));
            }
            out.push_str(&format!("# TYPE {shown} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        if sample.ends_with("_created") {
            continue;
        }
        match &counter {
            Some((n, true)) if sample == format!("{n}_total") => {
                out.push_str(n);
                out.push_str(&line[sample.len()..]);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_stat() {
        let s = "1234 (kube let) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 9000 123456 789 18446744073709551615";
        assert_eq!(parse_self_stat(s), Some((250, 50, 9000, 123456, 789)));
        assert_eq!(parse_self_stat("garbage"), None);
    }

    fn text_has(text: &str, want: &str) -> bool {
        text.contains(want) || {
            eprintln!("{text}");
            false
        }
    }

    #[test]
    fn renders_upstream_names() {
        METRICS.runtime_op("list_containers", 0.01, false);
        METRICS.runtime_op("list_containers", 0.02, true);
        let text = METRICS.render();
        assert!(
            text.contains("kubelet_runtime_operations_total{operation_type=\"list_containers\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "kubelet_runtime_operations_errors_total{operation_type=\"list_containers\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("kubelet_runtime_operations_duration_seconds_bucket{le=\"0.005\",operation_type=\"list_containers\"}") || text.contains("kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"list_containers\",le=\"0.005\"}"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        // Prometheus text 0.0.4, upstream's names: counters typed by their sample names, the
        // few without `_total` kept so.
        assert!(
            text.contains("# TYPE kubelet_runtime_operations_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "),
            "{text}"
        );
        assert!(text.contains("process_max_fds "), "{text}");
        assert!(
            text.contains("kubernetes_build_info{build_date=\"\",compiler=\"rustc\",git_commit=\"\",git_tree_state=\"\",git_version=\"v1.20.2-"),
            "{text}"
        );
        METRICS
            .evictions
            .get_or_create(&vec![("eviction_signal".into(), "test.signal".into())])
            .inc();
        assert!(text_has(
            &METRICS.render(),
            "kubelet_evictions{eviction_signal=\"test.signal\"} 1"
        ),);
        assert!(text_has(
            &METRICS.render(),
            "# TYPE kubelet_evictions counter\n"
        ));
        assert!(
            !text.contains("# EOF") && !text.contains("_created"),
            "{text}"
        );
        record_probe("Readiness", "successful", "c", "p", "ns", "uid-1");
        let probes = METRICS.render_probes();
        assert!(probes.contains("prober_probe_total{"), "{probes}");
        assert!(probes.contains("pod_uid=\"uid-1\""), "{probes}");
        METRICS.forget_pod_probes("uid-1");
        assert!(!METRICS.render_probes().contains("uid-1"));
    }
}

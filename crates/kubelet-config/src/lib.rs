//! `kubelet.config.k8s.io/v1beta1` KubeletConfiguration: the fields we honour, with
//! upstream's defaults; every other v1beta1 field is accepted and reported as not yet supported.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("config file {path}: field {field}: {message}")]
    Field {
        path: String,
        field: String,
        message: String,
    },
    #[error("config file {path}: {message}")]
    Kind { path: String, message: String },
    #[error("invalid value for {field}: {message}")]
    Invalid { field: String, message: String },
    /// A flag's value that its KubeletConfiguration field refuses.
    #[error("invalid flag --{flag}: {message}")]
    Flag { flag: &'static str, message: String },
}

mod duration;
pub mod flags;
mod load;
#[cfg(test)]
mod tests;

pub use duration::{DurationError, format_go_duration, parse_go_duration};
pub use load::{
    Loaded, MAX_CONFIG_BYTES, MIN_QPS, load, load_with_overlay, parse, parse_with_overlay, validate,
};

/// Durations as Go writes them ("2m0s"), for `#[serde(with = "go_duration")]`.
mod go_duration {
    pub(super) use super::duration::{de_duration as deserialize, ser_duration as serialize};
}

/// `go_duration` for an optional field.
mod go_opt_duration {
    pub(super) use super::duration::{
        de_opt_duration as deserialize, ser_opt_duration as serialize,
    };
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct X509Authentication {
    #[serde(default, rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookAuthentication {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "two_minutes", rename = "cacheTTL", with = "go_duration")]
    pub cache_ttl: Duration,
}

impl Default for WebhookAuthentication {
    fn default() -> Self {
        WebhookAuthentication {
            enabled: true,
            cache_ttl: two_minutes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousAuthentication {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authentication {
    #[serde(default)]
    pub x509: X509Authentication,
    #[serde(default)]
    pub webhook: WebhookAuthentication,
    #[serde(default)]
    pub anonymous: AnonymousAuthentication,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookAuthorization {
    #[serde(
        default = "five_minutes",
        rename = "cacheAuthorizedTTL",
        with = "go_duration"
    )]
    pub cache_authorized_ttl: Duration,
    #[serde(
        default = "thirty_seconds",
        rename = "cacheUnauthorizedTTL",
        with = "go_duration"
    )]
    pub cache_unauthorized_ttl: Duration,
}

impl Default for WebhookAuthorization {
    fn default() -> Self {
        WebhookAuthorization {
            cache_authorized_ttl: five_minutes(),
            cache_unauthorized_ttl: thirty_seconds(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum AuthorizationMode {
    AlwaysAllow,
    #[default]
    Webhook,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    #[serde(default)]
    pub mode: AuthorizationMode,
    #[serde(default)]
    pub webhook: WebhookAuthorization,
}

pub use kubelet_core::cm::Driver as CgroupDriver;

fn yes() -> bool {
    true
}
fn two_minutes() -> Duration {
    Duration::from_secs(120)
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn one_minute() -> Duration {
    Duration::from_secs(60)
}

/// The fields kubelet-rs honours. Names, types and defaults are upstream's.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletConfiguration {
    #[serde(default)]
    pub authentication: Authentication,
    #[serde(default)]
    pub authorization: Authorization,
    #[serde(default)]
    pub cgroup_driver: CgroupDriver,
    /// The cgroup the node's pods hang under (`<cgroupRoot>/kubepods/...`), in cgroupfs
    /// form; "" and "/" are the host's root. Honoured with the cgroupfs driver only.
    #[serde(default)]
    pub cgroup_root: String,
    #[serde(default, rename = "clusterDNS")]
    pub cluster_dns: Vec<String>,
    #[serde(default)]
    pub cluster_domain: String,
    #[serde(default)]
    pub tls_cert_file: Option<String>,
    #[serde(default)]
    pub tls_private_key_file: Option<String>,
    #[serde(default)]
    pub read_only_port: u16,
    /// Go cipher suite names for TLS 1.2 (TLS 1.3's are fixed, as in Go).
    #[serde(default)]
    pub tls_cipher_suites: Vec<String>,
    /// "VersionTLS12" or "VersionTLS13"; older versions are raised to 1.2.
    #[serde(default)]
    pub tls_min_version: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_address")]
    pub address: String,
    #[serde(default = "yes")]
    pub fail_swap_on: bool,
    #[serde(default = "default_max_pods")]
    pub max_pods: u32,
    /// Image GC starts above this much of the image filesystem used (100: never).
    #[serde(
        default = "default_image_gc_high",
        rename = "imageGCHighThresholdPercent"
    )]
    pub image_gc_high_threshold_percent: i32,
    /// ... and frees down to this.
    #[serde(
        default = "default_image_gc_low",
        rename = "imageGCLowThresholdPercent"
    )]
    pub image_gc_low_threshold_percent: i32,
    /// Images younger than this are never collected.
    #[serde(
        default = "two_minutes",
        rename = "imageMinimumGCAge",
        with = "go_duration"
    )]
    pub image_minimum_gc_age: Duration,
    /// Pods per core; 0: no limit but `maxPods`.
    #[serde(default)]
    pub pods_per_core: u32,
    #[serde(default = "default_pids_limit")]
    pub pod_pids_limit: i64,
    #[serde(default = "ten_seconds", with = "go_duration")]
    pub node_status_update_frequency: Duration,
    #[serde(
        default,
        with = "go_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_status_report_frequency: Option<Duration>,
    #[serde(default = "default_lease_seconds")]
    pub node_lease_duration_seconds: u32,
    #[serde(default = "default_qps", rename = "kubeAPIQPS")]
    pub kube_api_qps: f64,
    #[serde(default = "default_burst", rename = "kubeAPIBurst")]
    pub kube_api_burst: u32,
    #[serde(default = "default_resolv_conf")]
    pub resolv_conf: String,
    #[serde(default = "two_minutes", with = "go_duration")]
    pub runtime_request_timeout: Duration,
    #[serde(default = "one_minute", with = "go_duration")]
    pub sync_frequency: Duration,
    #[serde(default)]
    pub eviction_hard: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "quantity_map")]
    pub eviction_soft: BTreeMap<String, String>,
    /// Go durations per signal ("1m30s").
    #[serde(default)]
    pub eviction_soft_grace_period: BTreeMap<String, String>,
    /// The grace period cap for soft evictions, in seconds.
    #[serde(default)]
    pub eviction_max_pod_grace_period: i32,
    #[serde(default, deserialize_with = "quantity_map")]
    pub eviction_minimum_reclaim: BTreeMap<String, String>,
    /// How long a pressure condition is kept after its signal recovered.
    #[serde(default = "five_minutes", with = "go_duration")]
    pub eviction_pressure_transition_period: Duration,
    #[serde(default = "default_healthz_port")]
    pub healthz_port: u16,
    #[serde(default = "default_healthz_address")]
    pub healthz_bind_address: String,
    #[serde(default = "default_max_images")]
    pub node_status_max_images: i32,
    #[serde(default = "default_qps", rename = "eventRecordQPS")]
    pub event_record_qps: f64,
    #[serde(default = "default_burst")]
    pub event_burst: u32,
    #[serde(default)]
    pub allowed_unsafe_sysctls: Vec<String>,
    /// A quantity ("10Mi"): a running container's log of this size is rotated.
    #[serde(default = "default_log_max_size")]
    pub container_log_max_size: String,
    #[serde(default = "default_log_max_files")]
    pub container_log_max_files: i32,
    /// `false`: no listener on `port` at all.
    #[serde(default = "yes")]
    pub enable_server: bool,
    /// `false`: exec, attach, portForward, run, containerLogs and runningpods answer 405.
    #[serde(default = "yes")]
    pub enable_debugging_handlers: bool,
    /// An exec, attach or port-forward stream with no traffic for this long is closed.
    #[serde(default = "four_hours", with = "go_duration")]
    pub streaming_connection_idle_timeout: Duration,
    /// `true`: kernel settings that differ from what the kubelet expects stop it; `false`:
    /// the kubelet sets them.
    #[serde(default)]
    pub protect_kernel_defaults: bool,
    /// KUBE-FIREWALL (dropping martian traffic to localhost) and the mark chains.
    #[serde(default = "yes", rename = "makeIPTablesUtilChains")]
    pub make_iptables_util_chains: bool,
    #[serde(default = "default_masquerade_bit", rename = "iptablesMasqueradeBit")]
    pub iptables_masquerade_bit: i32,
    #[serde(default = "default_drop_bit", rename = "iptablesDropBit")]
    pub iptables_drop_bit: i32,
    /// Only the gates in `FEATURE_GATES` are accepted.
    #[serde(default)]
    pub feature_gates: BTreeMap<String, bool>,
    /// How long a node shutdown is delayed for its pods (logind inhibitor); 0: not at all.
    #[serde(default, with = "go_duration")]
    pub shutdown_grace_period: Duration,
    /// The part of `shutdown_grace_period` kept for critical pods, which go last.
    #[serde(default, with = "go_duration")]
    pub shutdown_grace_period_critical_pods: Duration,
    /// Held back from pods for the Kubernetes daemons and the system: cpu, memory,
    /// ephemeral-storage (node allocatable and the kubepods cgroup).
    #[serde(default, deserialize_with = "quantity_map")]
    pub kube_reserved: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "quantity_map")]
    pub system_reserved: BTreeMap<String, String>,
    /// A directory (or one file) of static pod manifests; empty: none.
    #[serde(default)]
    pub static_pod_path: String,
    /// How often `static_pod_path` is rescanned (inotify covers the time between).
    #[serde(default = "twenty_seconds", with = "go_duration")]
    pub file_check_frequency: Duration,
    /// A URL serving static pod manifests (a Pod or a PodList); empty: none.
    #[serde(default, rename = "staticPodURL")]
    pub static_pod_url: String,
    /// Headers sent with every `static_pod_url` request.
    #[serde(default, rename = "staticPodURLHeader")]
    pub static_pod_url_header: BTreeMap<String, Vec<String>>,
    /// How often `static_pod_url` is fetched.
    #[serde(default = "twenty_seconds", with = "go_duration")]
    pub http_check_frequency: Duration,
    /// The node's ID in its cloud provider's database, set on the Node at registration.
    #[serde(default, rename = "providerID")]
    pub provider_id: String,
    /// Renew the client certificate through CSRs before it expires (and bootstrap it with
    /// `--bootstrap-kubeconfig`).
    #[serde(default)]
    pub rotate_certificates: bool,
    /// The serving certificate comes from a CSR (signer kubernetes.io/kubelet-serving, which
    /// someone must approve) and is rotated like the client's; no self-signed one is made.
    #[serde(default, rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: bool,
    /// The log format (`text`: klog's lines; `json`); `--logging-format` sets it.
    #[serde(default)]
    pub logging: LoggingConfiguration,
    /// Memory thresholds also armed as kernel memcg notifications (cgroup v1).
    #[serde(default)]
    pub kernel_memcg_notification: bool,
}

/// `logging` (component-base's LoggingConfiguration, 1.20).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingConfiguration {
    #[serde(default = "text_format")]
    pub format: String,
    /// Upstream's experimental redaction of sensitive fields: not done, so refused if asked.
    #[serde(default)]
    pub sanitization: bool,
}

impl Default for LoggingConfiguration {
    fn default() -> Self {
        Self {
            format: text_format(),
            sanitization: false,
        }
    }
}

fn text_format() -> String {
    "text".into()
}

fn twenty_seconds() -> Duration {
    Duration::from_secs(20)
}

fn default_masquerade_bit() -> i32 {
    14
}
fn default_drop_bit() -> i32 {
    15
}

/// A map of quantities, which YAML may spell as numbers (`cpu: 1`).
fn quantity_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Q {
        S(String),
        I(i64),
        F(f64),
    }
    let m = BTreeMap::<String, Q>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Q::S(s) => s,
                Q::I(i) => i.to_string(),
                Q::F(f) => f.to_string(),
            };
            (k, v)
        })
        .collect())
}

fn four_hours() -> Duration {
    Duration::from_secs(4 * 3600)
}

fn default_log_max_size() -> String {
    "10Mi".into()
}
fn default_log_max_files() -> i32 {
    5
}

fn default_port() -> u16 {
    10250
}
fn default_address() -> String {
    "0.0.0.0".into()
}
fn default_image_gc_high() -> i32 {
    85
}
fn default_image_gc_low() -> i32 {
    80
}
fn default_max_pods() -> u32 {
    110
}
fn default_pids_limit() -> i64 {
    -1
}
fn default_lease_seconds() -> u32 {
    40
}
fn default_qps() -> f64 {
    5.0
}
fn default_burst() -> u32 {
    10
}
fn default_resolv_conf() -> String {
    "/etc/resolv.conf".into()
}
fn default_healthz_port() -> u16 {
    10248
}
fn default_healthz_address() -> String {
    "127.0.0.1".into()
}
fn default_max_images() -> i32 {
    50
}

impl Default for KubeletConfiguration {
    fn default() -> Self {
        KubeletConfiguration {
            authentication: Authentication::default(),
            authorization: Authorization::default(),
            cgroup_driver: CgroupDriver::default(),
            cgroup_root: String::new(),
            cluster_dns: vec![],
            cluster_domain: String::new(),
            tls_cert_file: None,
            tls_private_key_file: None,
            read_only_port: 0,
            tls_cipher_suites: vec![],
            tls_min_version: String::new(),
            port: default_port(),
            address: default_address(),
            fail_swap_on: true,
            max_pods: default_max_pods(),
            pods_per_core: 0,
            image_gc_high_threshold_percent: default_image_gc_high(),
            image_gc_low_threshold_percent: default_image_gc_low(),
            image_minimum_gc_age: two_minutes(),
            pod_pids_limit: default_pids_limit(),
            node_status_update_frequency: ten_seconds(),
            node_status_report_frequency: None,
            node_lease_duration_seconds: default_lease_seconds(),
            kube_api_qps: default_qps(),
            kube_api_burst: default_burst(),
            resolv_conf: default_resolv_conf(),
            runtime_request_timeout: two_minutes(),
            sync_frequency: one_minute(),
            eviction_hard: None,
            eviction_soft: BTreeMap::new(),
            eviction_soft_grace_period: BTreeMap::new(),
            eviction_max_pod_grace_period: 0,
            eviction_minimum_reclaim: BTreeMap::new(),
            eviction_pressure_transition_period: five_minutes(),
            healthz_port: default_healthz_port(),
            healthz_bind_address: default_healthz_address(),
            node_status_max_images: default_max_images(),
            event_record_qps: default_qps(),
            event_burst: default_burst(),
            allowed_unsafe_sysctls: vec![],
            container_log_max_size: default_log_max_size(),
            container_log_max_files: default_log_max_files(),
            enable_server: true,
            enable_debugging_handlers: true,
            streaming_connection_idle_timeout: four_hours(),
            protect_kernel_defaults: false,
            make_iptables_util_chains: true,
            iptables_masquerade_bit: default_masquerade_bit(),
            iptables_drop_bit: default_drop_bit(),
            feature_gates: BTreeMap::new(),
            shutdown_grace_period: Duration::ZERO,
            shutdown_grace_period_critical_pods: Duration::ZERO,
            kube_reserved: BTreeMap::new(),
            system_reserved: BTreeMap::new(),
            static_pod_path: String::new(),
            file_check_frequency: twenty_seconds(),
            static_pod_url: String::new(),
            static_pod_url_header: BTreeMap::new(),
            http_check_frequency: twenty_seconds(),
            provider_id: String::new(),
            rotate_certificates: false,
            server_tls_bootstrap: false,
            logging: LoggingConfiguration::default(),
            kernel_memcg_notification: false,
        }
    }
}

impl KubeletConfiguration {
    /// Where pod and QoS cgroups are named (`<cgroupRoot>/kubepods/...`); `cgroupRoot` is
    /// validated at load, so an invalid one (only in a hand-built configuration) is the
    /// host's root.
    pub fn cgroup_layout(&self) -> kubelet_core::cm::CgroupLayout {
        kubelet_core::cm::CgroupLayout::new(&self.cgroup_root).unwrap_or_default()
    }

    /// The GracefulNodeShutdown gate (alpha and off by default in 1.20).
    pub fn graceful_node_shutdown(&self) -> bool {
        self.feature_gates
            .get("GracefulNodeShutdown")
            .copied()
            .unwrap_or(false)
    }

    /// `kubeReserved` + `systemReserved` (validated at load: known resources, quantities
    /// that parse and are not negative).
    pub fn reserved(&self) -> kubelet_core::nodestatus::Reserved {
        let mut r = kubelet_core::nodestatus::Reserved::default();
        for (k, v) in self.kube_reserved.iter().chain(&self.system_reserved) {
            let milli = kubelet_core::quantity::parse_milli(v)
                .ok()
                .and_then(|m| u64::try_from(m).ok())
                .unwrap_or(0);
            match k.as_str() {
                "cpu" => r.cpu_milli += milli,
                "memory" => r.memory += milli.div_ceil(1000),
                "ephemeral-storage" => r.ephemeral_storage += milli.div_ceil(1000),
                _ => {}
            }
        }
        r
    }

    /// `containerLogMaxSize` in bytes; `None` when it is not a positive quantity.
    pub fn container_log_max_bytes(&self) -> Option<u64> {
        let milli = kubelet_core::quantity::parse_milli(&self.container_log_max_size).ok()?;
        u64::try_from((milli + 999) / 1000).ok().filter(|b| *b > 0)
    }

    /// Upstream: the report frequency defaults to 5m only when neither is set; with just
    /// the update frequency set, reports follow it.
    pub fn report_frequency(&self) -> Duration {
        self.node_status_report_frequency
            .unwrap_or(self.node_status_update_frequency)
    }

    /// The node's pod capacity: `maxPods`, or `podsPerCore` × cores when that is smaller.
    pub fn pod_capacity(&self, cores: u64) -> u32 {
        if self.pods_per_core == 0 {
            return self.max_pods;
        }
        let per_core = u64::from(self.pods_per_core).saturating_mul(cores);
        u32::try_from(per_core.min(u64::from(self.max_pods))).unwrap_or(self.max_pods)
    }

    /// Every eviction threshold, parsed as upstream's `ParseThresholdConfig` (pods are always
    /// enforced: `enforceNodeAllocatable` is `["pods"]`).
    pub fn eviction_thresholds(
        &self,
    ) -> Result<Vec<kubelet_core::eviction::thresholds::Threshold>, String> {
        let mut grace = BTreeMap::new();
        for (k, v) in &self.eviction_soft_grace_period {
            let d = parse_go_duration(v).map_err(|e| format!("{k}: {v:?}: {e}"))?;
            grace.insert(k.clone(), d);
        }
        kubelet_core::eviction::thresholds::parse_thresholds(
            &self.eviction_hard(),
            &self.eviction_soft,
            &grace,
            &self.eviction_minimum_reclaim,
            true,
        )
        .map_err(|e| e.0)
    }

    /// Hard eviction thresholds, with upstream's Linux defaults when the map is absent.
    pub fn eviction_hard(&self) -> BTreeMap<String, String> {
        self.eviction_hard
            .clone()
            .unwrap_or_else(kubelet_core::eviction::default_eviction_hard)
    }
}

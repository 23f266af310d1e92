//! `kubelet.config.k8s.io/v1beta1` KubeletConfiguration: the fields we honour, with
//! upstream's defaults; every other v1beta1 field is accepted and reported as not yet supported.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
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
}

/// Parses Go's `time.Duration` text form ("10s", "1m0s", "1h30m", "250ms").
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(format!("invalid duration {s:?}"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(format!("missing unit in duration {s:?}"))?;
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        total += num * mult;
        rest = &rest[u..];
    }
    // Go's durations are int64 nanoseconds: about 292 years at most.
    if !total.is_finite() || total * 1e9 > i64::MAX as f64 {
        return Err(format!("invalid duration {s:?}: out of range"));
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("invalid duration {s:?}"))
}

/// Go's `time.Duration.String()`: "0s", "250ms", "10s", "1m0s", "1h30m0s", "1.5s".
pub fn format_go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let trim = |whole: u128, frac: u128, digits: usize| {
        let f = format!("{frac:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{f}")
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim(ns / 1_000, ns % 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim(ns / 1_000_000, ns % 1_000_000, 6));
    }
    let secs = ns / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let s = format!("{}s", trim(s, ns % 1_000_000_000, 9));
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_go_duration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_go_duration(*d)),
        None => s.serialize_none(),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_go_duration(&s).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
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
    #[serde(
        default = "two_minutes",
        rename = "cacheTTL",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
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
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub cache_authorized_ttl: Duration,
    #[serde(
        default = "thirty_seconds",
        rename = "cacheUnauthorizedTTL",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

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
    #[serde(default = "default_pids_limit")]
    pub pod_pids_limit: i64,
    #[serde(
        default = "ten_seconds",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub node_status_update_frequency: Duration,
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
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
    #[serde(
        default = "two_minutes",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub runtime_request_timeout: Duration,
    #[serde(
        default = "one_minute",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub sync_frequency: Duration,
    #[serde(default)]
    pub eviction_hard: Option<BTreeMap<String, String>>,
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
    #[serde(
        default = "four_hours",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
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
}

fn default_masquerade_bit() -> i32 {
    14
}
fn default_drop_bit() -> i32 {
    15
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
        }
    }
}

/// Fields of v1beta1 that only tune what this kubelet does not do (static pod polling,
/// metrics visibility, log format...): accepted with any value, and reported as ignored.
const IGNORED: &[&str] = &[
    "fileCheckFrequency",
    "httpCheckFrequency",
    "volumeStatsAggPeriod",
    "cpuManagerReconcilePeriod",
    "contentType",
    "showHiddenMetricsForVersion",
    "logging",
    "enableSystemLogHandler",
    "hairpinMode",
    "podCIDR",
    "serializeImagePulls",
    "configMapAndSecretChangeDetectionStrategy",
    "volumePluginDir",
    "evictionPressureTransitionPeriod",
    "maxOpenFiles",
];

/// Fields of v1beta1 this kubelet does not honour yet: accepted only with values that ask for
/// what it does anyway (upstream's default, or the zero value that means it), refused
/// otherwise, since a user would rely on them.
const DEFAULT_ONLY: &[(&str, &str)] = &[
    ("staticPodPath", r#""""#),
    ("staticPodURL", r#""""#),
    ("staticPodURLHeader", "{}"),
    ("rotateCertificates", "false"),
    ("serverTLSBootstrap", "false"),
    ("registryPullQPS", "5"),
    ("registryBurst", "10"),
    ("enableContentionProfiling", "false"),
    ("oomScoreAdj", "-999"),
    ("imageMinimumGCAge", r#""2m0s""#),
    ("imageGCHighThresholdPercent", "85"),
    ("imageGCLowThresholdPercent", "80"),
    ("kubeletCgroups", r#""""#),
    ("systemCgroups", r#""""#),
    ("cgroupRoot", r#""""#),
    ("cgroupsPerQOS", "true"),
    ("cpuManagerPolicy", r#""none""#),
    ("topologyManagerPolicy", r#""none""#),
    ("topologyManagerScope", r#""container""#),
    ("qosReserved", "{}"),
    ("runOnce", "false"),
    ("cpuCFSQuota", "true"),
    ("cpuCFSQuotaPeriod", r#""100ms""#),
    ("evictionSoft", "{}"),
    ("evictionSoftGracePeriod", "{}"),
    ("evictionMaxPodGracePeriod", "0"),
    ("evictionMinimumReclaim", "{}"),
    ("podsPerCore", "0"),
    ("enableControllerAttachDetach", "true"),
    ("featureGates", "{}"),
    ("systemReserved", "{}"),
    ("kubeReserved", "{}"),
    ("reservedSystemCPUs", r#""""#),
    ("systemReservedCgroup", r#""""#),
    ("kubeReservedCgroup", r#""""#),
    ("enforceNodeAllocatable", r#"["pods"]"#),
    ("providerID", r#""""#),
    ("kernelMemcgNotification", "false"),
    ("shutdownGracePeriod", r#""0s""#),
    ("shutdownGracePeriodCriticalPods", r#""0s""#),
];

/// Whether `v` asks for the default `default` (JSON): the same value, the zero value that
/// upstream's defaulting replaces, or the same duration written another way.
fn asks_for_default(v: &serde_yaml::Value, default: &str) -> bool {
    let Ok(v) = serde_json::to_value(v) else {
        return false;
    };
    let Ok(d) = serde_json::from_str::<serde_json::Value>(default) else {
        return false;
    };
    let zero = match &v {
        serde_json::Value::Null => true,
        serde_json::Value::Bool(b) => !b,
        serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
        serde_json::Value::String(s) => s.is_empty() || parse_go_duration(s) == Ok(Duration::ZERO),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
    };
    // A false boolean is only a default where the default is false.
    let zero = zero
        && !matches!(
            (&v, &d),
            (serde_json::Value::Bool(_), serde_json::Value::Bool(true))
        );
    let same_duration = match (&v, &d) {
        (serde_json::Value::String(a), serde_json::Value::String(b)) => {
            parse_go_duration(a).is_ok() && parse_go_duration(a) == parse_go_duration(b)
        }
        _ => false,
    };
    let same_number = match (&v, &d) {
        (serde_json::Value::Number(a), serde_json::Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => false,
    };
    v == d || zero || same_duration || same_number
}

const SUPPORTED: &[&str] = &[
    "authentication",
    "authorization",
    "cgroupDriver",
    "clusterDNS",
    "clusterDomain",
    "tlsCertFile",
    "tlsPrivateKeyFile",
    "readOnlyPort",
    "tlsCipherSuites",
    "tlsMinVersion",
    "port",
    "address",
    "failSwapOn",
    "maxPods",
    "podPidsLimit",
    "nodeStatusUpdateFrequency",
    "nodeStatusReportFrequency",
    "nodeLeaseDurationSeconds",
    "kubeAPIQPS",
    "kubeAPIBurst",
    "resolvConf",
    "runtimeRequestTimeout",
    "syncFrequency",
    "evictionHard",
    "healthzPort",
    "healthzBindAddress",
    "nodeStatusMaxImages",
    "eventRecordQPS",
    "eventBurst",
    "allowedUnsafeSysctls",
    "containerLogMaxSize",
    "containerLogMaxFiles",
    "enableServer",
    "enableDebuggingHandlers",
    "streamingConnectionIdleTimeout",
    "protectKernelDefaults",
    "makeIPTablesUtilChains",
    "iptablesMasqueradeBit",
    "iptablesDropBit",
];

/// The parsed file plus what the operator should be told about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: KubeletConfiguration,
    pub unsupported: Vec<String>,
    pub unknown: Vec<String>,
}

pub fn parse(path: &str, text: &str) -> Result<Loaded, ConfigError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.into(),
        message: e.to_string(),
    })?;
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(ConfigError::Syntax {
            path: path.into(),
            message: "expected a YAML mapping".into(),
        });
    };
    let mut kept = serde_yaml::Mapping::new();
    let (mut unsupported, mut unknown) = (vec![], vec![]);
    let mut api_version = None;
    let mut kind = None;
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            return Err(ConfigError::Syntax {
                path: path.into(),
                message: format!("non-string key {k:?}"),
            });
        };
        match key {
            "apiVersion" => api_version = v.as_str().map(str::to_string),
            "kind" => kind = v.as_str().map(str::to_string),
            k if SUPPORTED.contains(&k) => {
                kept.insert(serde_yaml::Value::String(k.into()), v);
            }
            k if IGNORED.contains(&k) => unsupported.push(k.to_string()),
            k => match DEFAULT_ONLY.iter().find(|(f, _)| *f == k) {
                Some((_, d)) if asks_for_default(&v, d) => {}
                Some((f, d)) => {
                    return Err(ConfigError::Invalid {
                        field: (*f).to_string(),
                        message: format!(
                            "is not supported by kubelet-rs yet: only its default ({d}) is accepted, got {}",
                            serde_json::to_string(&v).unwrap_or_default()
                        ),
                    });
                }
                None => unknown.push(k.to_string()),
            },
        }
    }
    if api_version.as_deref() != Some("kubelet.config.k8s.io/v1beta1") {
        return Err(ConfigError::Kind {
            path: path.into(),
            message: format!(
                "apiVersion must be kubelet.config.k8s.io/v1beta1, got {api_version:?}"
            ),
        });
    }
    if kind.as_deref() != Some("KubeletConfiguration") {
        return Err(ConfigError::Kind {
            path: path.into(),
            message: format!("kind must be KubeletConfiguration, got {kind:?}"),
        });
    }
    let de = serde_yaml::Value::Mapping(kept);
    let config: KubeletConfiguration =
        serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Field {
            path: path.into(),
            field: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    let mut config = config;
    zero_means_default(&mut config);
    validate(&config)?;
    Ok(Loaded {
        config,
        unsupported,
        unknown,
    })
}

/// The largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let p = path.display().to_string();
    // A config file is small; a device or a runaway file must not hold start-up.
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::Syntax {
            path: p,
            message: format!("larger than {MAX_CONFIG_BYTES} bytes"),
        });
    }
    parse(&p, &text)
}

/// Upstream's defaulting replaces these zero values (kubeadm writes durations as "0s").
fn zero_means_default(c: &mut KubeletConfiguration) {
    let d = KubeletConfiguration::default();
    let dur = |v: &mut Duration, default: Duration| {
        if v.is_zero() {
            *v = default;
        }
    };
    dur(&mut c.sync_frequency, d.sync_frequency);
    dur(
        &mut c.node_status_update_frequency,
        d.node_status_update_frequency,
    );
    dur(&mut c.runtime_request_timeout, d.runtime_request_timeout);
    dur(
        &mut c.streaming_connection_idle_timeout,
        d.streaming_connection_idle_timeout,
    );
    let (w, dw) = (&mut c.authentication.webhook, &d.authentication.webhook);
    dur(&mut w.cache_ttl, dw.cache_ttl);
    let (w, dw) = (&mut c.authorization.webhook, &d.authorization.webhook);
    dur(&mut w.cache_authorized_ttl, dw.cache_authorized_ttl);
    dur(&mut w.cache_unauthorized_ttl, dw.cache_unauthorized_ttl);
    if c.node_status_report_frequency == Some(Duration::ZERO) {
        c.node_status_report_frequency = None;
    }
    if c.node_lease_duration_seconds == 0 {
        c.node_lease_duration_seconds = d.node_lease_duration_seconds;
    }
    if c.max_pods == 0 {
        c.max_pods = d.max_pods;
    }
    if c.kube_api_burst == 0 {
        c.kube_api_burst = d.kube_api_burst;
    }
    if c.event_burst == 0 {
        c.event_burst = d.event_burst;
    }
    if c.port == 0 {
        c.port = d.port;
    }
    if c.address.is_empty() {
        c.address = d.address;
    }
}

/// The smallest client QPS accepted: one request every 100 s.
pub const MIN_QPS: f64 = 0.01;

pub fn validate(c: &KubeletConfiguration) -> Result<(), ConfigError> {
    let bad = |field: &str, message: &str| {
        Err(ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        })
    };
    // Below MIN_QPS a single request waits longer than any timeout the kubelet has.
    if c.kube_api_qps.is_nan() || c.kube_api_qps < MIN_QPS || !c.kube_api_qps.is_finite() {
        return bad(
            "kubeAPIQPS",
            &format!("must be a number of at least {MIN_QPS}"),
        );
    }
    let eq = c.event_record_qps;
    if eq.is_nan() || (eq != 0.0 && eq < MIN_QPS) || !eq.is_finite() {
        return bad(
            "eventRecordQPS",
            &format!("must be 0 (no limit) or at least {MIN_QPS}"),
        );
    }
    if c.kube_api_burst == 0 {
        return bad("kubeAPIBurst", "must be at least 1");
    }
    if c.node_lease_duration_seconds == 0 {
        return bad("nodeLeaseDurationSeconds", "must be positive");
    }
    if c.node_status_update_frequency.is_zero() {
        return bad("nodeStatusUpdateFrequency", "must be positive");
    }
    for (field, bit) in [
        ("iptablesMasqueradeBit", c.iptables_masquerade_bit),
        ("iptablesDropBit", c.iptables_drop_bit),
    ] {
        if !(0..=31).contains(&bit) {
            return bad(field, "must be between 0 and 31");
        }
    }
    if c.iptables_masquerade_bit == c.iptables_drop_bit {
        return bad("iptablesDropBit", "must differ from iptablesMasqueradeBit");
    }
    if c.max_pods == 0 {
        return bad("maxPods", "must be positive");
    }
    if c.address.parse::<std::net::IpAddr>().is_err() {
        return bad("address", "must be an IP address");
    }
    if c.container_log_max_files < 2 {
        return bad("containerLogMaxFiles", "must be greater than 1");
    }
    if c.container_log_max_bytes().is_none() {
        return bad("containerLogMaxSize", "must be a positive quantity");
    }
    for ip in &c.cluster_dns {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return bad("clusterDNS", &format!("{ip:?} is not an IP address"));
        }
    }
    Ok(())
}

impl KubeletConfiguration {
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

    /// Hard eviction thresholds, with upstream's Linux defaults when the map is absent.
    pub fn eviction_hard(&self) -> BTreeMap<String, String> {
        self.eviction_hard.clone().unwrap_or_else(|| {
            [
                ("memory.available", "100Mi"),
                ("nodefs.available", "10%"),
                ("nodefs.inodesFree", "5%"),
                ("imagefs.available", "15%"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    #[test]
    fn go_durations_round_trip() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (Duration::from_millis(1500), "1.5s"),
        ] {
            assert_eq!(format_go_duration(d), text);
            assert_eq!(parse_go_duration(text), Ok(d));
        }
    }

    #[test]
    fn configz_round_trips() {
        let text = format!(
            "{HEAD}tlsMinVersion: VersionTLS13\ntlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\nsyncFrequency: 30s\n"
        );
        let c = parse("k.yaml", &text).unwrap().config;
        assert_eq!(c.tls_min_version, "VersionTLS13");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["syncFrequency"], "30s");
        assert_eq!(
            v["tlsCipherSuites"][0],
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        let nulls: Vec<_> = v
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, x)| x.is_null())
            .map(|(k, _)| k.clone())
            .collect();
        let back: KubeletConfiguration =
            serde_json::from_value(v).unwrap_or_else(|e| panic!("{e} {nulls:?}"));
        assert_eq!(back, c);
    }

    #[test]
    fn defaults_match_an_empty_file() {
        let empty = parse("k.yaml", HEAD).unwrap().config;
        assert_eq!(empty, KubeletConfiguration::default());
    }

    #[test]
    fn defaults() {
        let c = KubeletConfiguration::default();
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.port, 10250);
        assert_eq!(c.read_only_port, 0);
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(c.node_lease_duration_seconds, 40);
        assert_eq!((c.kube_api_qps, c.kube_api_burst), (5.0, 10));
        assert!(c.authentication.webhook.enabled && !c.authentication.anonymous.enabled);
        assert_eq!(c.authorization.mode, AuthorizationMode::Webhook);
        assert_eq!(c.eviction_hard()["memory.available"], "100Mi");
    }

    #[test]
    fn reference_file() {
        let text = format!(
            "{HEAD}authentication:\n  anonymous: {{enabled: false}}\n  webhook: {{enabled: true}}\n  x509: {{clientCAFile: /pki/ca.crt}}\nauthorization: {{mode: Webhook}}\ncgroupDriver: cgroupfs\nfailSwapOn: false\nclusterDNS: [10.0.0.10]\nclusterDomain: cluster.local\ntlsCertFile: /a.crt\ntlsPrivateKeyFile: /a.key\nreadOnlyPort: 0\nport: 10250\naddress: 127.0.0.1\nnodeStatusUpdateFrequency: 1m0s\nkubeAPIQPS: 50\nkubeAPIBurst: 100\nfileCheckFrequency: 20s\nbogusField: 1\n"
        );
        let l = parse("k.yaml", &text).unwrap();
        assert_eq!(
            l.config.authentication.x509.client_ca_file.as_deref(),
            Some("/pki/ca.crt")
        );
        assert_eq!(l.config.cluster_dns, vec!["10.0.0.10"]);
        assert_eq!(
            l.config.node_status_update_frequency,
            Duration::from_secs(60)
        );
        assert_eq!(l.config.kube_api_qps, 50.0);
        assert!(!l.config.fail_swap_on);
        assert_eq!(l.unsupported, vec!["fileCheckFrequency"]);
        assert_eq!(l.unknown, vec!["bogusField"]);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("k.yaml", &format!("{HEAD}maxPods: lots\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("maxPods"), "{e}");
        let e = parse(
            "k.yaml",
            &format!("{HEAD}authentication:\n  webhook:\n    cacheTTL: soon\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("authentication.webhook.cacheTTL"), "{e}");
        let e = parse("k.yaml", &format!("{HEAD}authorization: {{mode: Maybe}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("authorization.mode"), "{e}");
        let e = parse("k.yaml", "kind: KubeletConfiguration\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("apiVersion"), "{e}");
        assert!(parse("k.yaml", "{{{").is_err());
        let e = parse("k.yaml", &format!("{HEAD}kubeAPIQPS: 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("kubeAPIQPS"), "{e}");
        for bad in [
            "containerLogMaxFiles: 1",
            "containerLogMaxSize: 0",
            "containerLogMaxSize: big",
        ] {
            let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad.split(':').next().unwrap_or_default()), "{e}");
        }
        let ok = parse("k.yaml", &format!("{HEAD}containerLogMaxSize: 1Mi\n")).unwrap();
        assert_eq!(ok.config.container_log_max_bytes(), Some(1 << 20));
        assert!(ok.unsupported.is_empty(), "{:?}", ok.unsupported);
    }

    /// Settings this kubelet cannot honour are refused unless they ask for what it does.
    #[test]
    fn unhonoured_settings_are_refused_unless_default() {
        for bad in [
            "staticPodPath: /etc/kubernetes/manifests",
            "rotateCertificates: true",
            "imageGCHighThresholdPercent: 90",
            "featureGates: {RotateKubeletServerCertificate: true}",
            "kubeReserved: {cpu: 100m}",
            "cgroupsPerQOS: false",
            "shutdownGracePeriod: 30s",
            "enforceNodeAllocatable: [pods, kube-reserved]",
        ] {
            let field = bad.split(':').next().unwrap_or_default();
            let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("not supported"), "{e}");
        }
        // What kubeadm writes: zero values that mean "the default", and the defaults.
        for ok in [
            "staticPodPath: \"\"",
            "rotateCertificates: false",
            "imageMinimumGCAge: 0s",
            "imageMinimumGCAge: 2m",
            "cpuCFSQuotaPeriod: 100ms",
            "evictionMaxPodGracePeriod: 0",
            "cgroupsPerQOS: true",
            "enforceNodeAllocatable: [pods]",
            "shutdownGracePeriod: 0s",
            "registryPullQPS: 5",
            "oomScoreAdj: -999",
        ] {
            assert!(parse("k.yaml", &format!("{HEAD}{ok}\n")).is_ok(), "{ok}");
        }
        let l = parse(
            "k.yaml",
            &format!(
                "{HEAD}enableServer: false\nenableDebuggingHandlers: false\nstreamingConnectionIdleTimeout: 5m\n"
            ),
        )
        .unwrap();
        assert!(!l.config.enable_server && !l.config.enable_debugging_handlers);
        assert_eq!(
            l.config.streaming_connection_idle_timeout,
            Duration::from_secs(300)
        );
        let d = KubeletConfiguration::default();
        assert!(d.enable_server && d.enable_debugging_handlers);
        assert_eq!(
            d.streaming_connection_idle_timeout,
            Duration::from_secs(4 * 3600)
        );
    }

    /// What kubeadm 1.20 writes: upstream's field names, zero durations meaning defaults.
    #[test]
    fn kubeadm_style_file_loads_with_defaults() {
        let text = format!(
            "{HEAD}authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    cacheTTL: 0s\n    enabled: true\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nauthorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 0s\n    cacheUnauthorizedTTL: 0s\ncgroupDriver: cgroupfs\nclusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\ncpuManagerReconcilePeriod: 0s\nevictionPressureTransitionPeriod: 0s\nfileCheckFrequency: 0s\nhealthzBindAddress: 127.0.0.1\nhealthzPort: 10248\nhttpCheckFrequency: 0s\nimageMinimumGCAge: 0s\nlogging: {{}}\nnodeStatusReportFrequency: 0s\nnodeStatusUpdateFrequency: 0s\nrotateCertificates: false\nruntimeRequestTimeout: 0s\nshutdownGracePeriod: 0s\nshutdownGracePeriodCriticalPods: 0s\nstaticPodPath: \"\"\nstreamingConnectionIdleTimeout: 0s\nsyncFrequency: 0s\nvolumeStatsAggPeriod: 0s\n"
        );
        let l = parse("config.yaml", &text).unwrap();
        let c = l.config;
        assert_eq!(c.authentication.webhook.cache_ttl, Duration::from_secs(120));
        assert_eq!(
            c.authorization.webhook.cache_authorized_ttl,
            Duration::from_secs(300)
        );
        assert_eq!(
            c.authorization.webhook.cache_unauthorized_ttl,
            Duration::from_secs(30)
        );
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(c.sync_frequency, Duration::from_secs(60));
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(120));
        assert_eq!(
            c.streaming_connection_idle_timeout,
            Duration::from_secs(4 * 3600)
        );
        assert_eq!(c.node_status_report_frequency, None);
        // /configz shows upstream's names.
        let z = serde_json::to_value(&c).unwrap();
        assert_eq!(z["authentication"]["webhook"]["cacheTTL"], "2m0s");
        assert_eq!(z["authorization"]["webhook"]["cacheAuthorizedTTL"], "5m0s");
    }

    /// The documented production file loads, with nothing ignored or unknown.
    #[test]
    fn production_example_loads() {
        let text = include_str!("../../../examples/kubelet-config-production.yaml");
        let l = parse("examples/kubelet-config-production.yaml", text).unwrap();
        assert!(l.unsupported.is_empty() && l.unknown.is_empty(), "{l:?}");
        let c = l.config;
        assert!(!c.authentication.anonymous.enabled);
        assert!(c.protect_kernel_defaults);
        assert_eq!(c.read_only_port, 0);
        assert_eq!(
            c.streaming_connection_idle_timeout,
            Duration::from_secs(4 * 3600)
        );
        assert_eq!(c.tls_cipher_suites.len(), 6);
    }

    /// Values that would overflow or stall are field errors, never a panic.
    #[test]
    fn absurd_values_are_field_errors() {
        for (bad, field) in [
            ("syncFrequency: 99999999999999999999h", "syncFrequency"),
            (
                "nodeStatusUpdateFrequency: 1e400s",
                "nodeStatusUpdateFrequency",
            ),
            ("kubeAPIQPS: 0.0000000000001", "kubeAPIQPS"),
            ("kubeAPIQPS: .nan", "kubeAPIQPS"),
            ("eventRecordQPS: 1e-300", "eventRecordQPS"),
            (
                "streamingConnectionIdleTimeout: 3000000h",
                "streamingConnectionIdleTimeout",
            ),
        ] {
            let e = parse("k.yaml", &format!("{HEAD}{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
        assert!(parse_go_duration("2562047h").is_ok(), "Go's maximum");
        assert!(parse_go_duration("2562048h").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1h0m0s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("-1s").is_err());
    }
}

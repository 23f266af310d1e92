//! Reading a KubeletConfiguration file: what is honoured, what must stay at its default,
//! what is ignored, and the checks upstream's validation makes.

use crate::flags::Overlay;
use crate::*;
use std::path::Path;

type Mapping = serde_json::Map<String, serde_json::Value>;

/// Fields of v1beta1 that only tune what this kubelet does not do (static pod polling,
/// metrics visibility, log format...): accepted with any value, and reported as ignored.
pub(crate) const IGNORED: &[&str] = &[
    "volumeStatsAggPeriod",
    "cpuManagerReconcilePeriod",
    "contentType",
    "showHiddenMetricsForVersion",
    "enableSystemLogHandler",
    "hairpinMode",
    "podCIDR",
    "serializeImagePulls",
    "configMapAndSecretChangeDetectionStrategy",
    "volumePluginDir",
    "maxOpenFiles",
];

/// Fields of v1beta1 this kubelet does not honour yet: accepted only with values that ask for
/// what it does anyway (upstream's default, or the zero value that means it), refused
/// otherwise, since a user would rely on them.
pub(crate) const DEFAULT_ONLY: &[(&str, &str)] = &[
    ("registryPullQPS", "5"),
    ("registryBurst", "10"),
    ("enableContentionProfiling", "false"),
    ("oomScoreAdj", "-999"),
    ("kubeletCgroups", r#""""#),
    ("systemCgroups", r#""""#),
    ("cgroupsPerQOS", "true"),
    ("cpuManagerPolicy", r#""none""#),
    ("topologyManagerPolicy", r#""none""#),
    ("topologyManagerScope", r#""container""#),
    ("qosReserved", "{}"),
    ("runOnce", "false"),
    ("cpuCFSQuota", "true"),
    ("cpuCFSQuotaPeriod", r#""100ms""#),
    ("enableControllerAttachDetach", "true"),
    ("reservedSystemCPUs", r#""""#),
    ("systemReservedCgroup", r#""""#),
    ("kubeReservedCgroup", r#""""#),
    ("enforceNodeAllocatable", r#"["pods"]"#),
];

/// Whether `v` asks for the default `default` (JSON): the same value, the zero value that
/// upstream's defaulting replaces, or the same duration written another way.
pub(crate) fn asks_for_default(v: &serde_json::Value, default: &str) -> bool {
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
    *v == d || zero || same_duration || same_number
}

pub(crate) const SUPPORTED: &[&str] = &[
    "kernelMemcgNotification",
    "logging",
    "authentication",
    "authorization",
    "cgroupDriver",
    "cgroupRoot",
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
    "podsPerCore",
    "imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent",
    "imageMinimumGCAge",
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
    "evictionSoft",
    "evictionSoftGracePeriod",
    "evictionMaxPodGracePeriod",
    "evictionMinimumReclaim",
    "evictionPressureTransitionPeriod",
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
    "featureGates",
    "shutdownGracePeriod",
    "shutdownGracePeriodCriticalPods",
    "kubeReserved",
    "systemReserved",
    "staticPodPath",
    "fileCheckFrequency",
    "staticPodURL",
    "staticPodURLHeader",
    "httpCheckFrequency",
    "providerID",
    "rotateCertificates",
    "serverTLSBootstrap",
];

/// Resources `kubeReserved` and `systemReserved` may hold back here (upstream also takes
/// `pid`, which is not built yet).
pub const RESERVABLE: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Feature gates this kubelet knows; any other is refused rather than silently ignored.
pub const FEATURE_GATES: &[&str] = &["GracefulNodeShutdown"];

/// The parsed file plus what the operator should be told about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: KubeletConfiguration,
    pub unsupported: Vec<String>,
    pub unknown: Vec<String>,
}

pub fn parse(path: &str, text: &str) -> Result<Loaded, ConfigError> {
    parse_with_overlay(Some(path), Some(text), &[])
}

/// What errors call the configuration when no `--config` file is given.
const NO_FILE: &str = "(none: defaults and flags)";

/// Upstream reads the file as YAML 1.1 (`sigs.k8s.io/yaml`): `failSwapOn: no` is false.
fn read_mapping(path: &str, text: &str) -> Result<Mapping, ConfigError> {
    let value = kubelet_core::yaml::to_json(text).map_err(|e| ConfigError::Syntax {
        path: path.into(),
        message: e.to_string(),
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(ConfigError::Syntax {
            path: path.into(),
            message: "expected a YAML mapping".into(),
        });
    };
    Ok(map)
}

/// The file a kubelet without `--config` reads: only the defaults.
fn empty_mapping() -> Mapping {
    let mut m = Mapping::new();
    m.insert("apiVersion".into(), "kubelet.config.k8s.io/v1beta1".into());
    m.insert("kind".into(), "KubeletConfiguration".into());
    m
}

/// Writes a flag's value into the file's mapping: it replaces what the file has at that path,
/// except `featureGates`, which is merged gate by gate (upstream's
/// `kubeletConfigFlagPrecedence`).
fn apply_overlay(map: &mut Mapping, o: &Overlay) {
    let Ok(value) = serde_json::to_value(&o.value) else {
        return;
    };
    let Some((last, parents)) = o.path.split_last() else {
        return;
    };
    let mut cur = map;
    for p in parents {
        let entry = cur
            .entry(*p)
            .or_insert_with(|| serde_json::Value::Object(Mapping::new()));
        if !entry.is_object() {
            *entry = serde_json::Value::Object(Mapping::new());
        }
        let serde_json::Value::Object(m) = entry else {
            return;
        };
        cur = m;
    }
    let key = (*last).to_string();
    match (o.path, cur.get_mut(&key), value) {
        (
            ["featureGates"],
            Some(serde_json::Value::Object(file)),
            serde_json::Value::Object(gates),
        ) => {
            for (k, v) in gates {
                file.insert(k, v);
            }
        }
        (_, _, value) => {
            cur.insert(key, value);
        }
    }
}

/// Reads a config file (`path` and `text`; both `None` without `--config`) with the flags'
/// values written over it first, so that a flag acts exactly as its field: honoured, ignored
/// with a warning, or refused. An error a flag alone causes names the flag.
pub fn parse_with_overlay(
    path: Option<&str>,
    text: Option<&str>,
    overlay: &[Overlay],
) -> Result<Loaded, ConfigError> {
    let name = path.unwrap_or(NO_FILE);
    let mut map = match text {
        Some(t) => read_mapping(name, t)?,
        None => empty_mapping(),
    };
    for o in overlay {
        apply_overlay(&mut map, o);
    }
    let err = match from_mapping(name, map) {
        Ok(l) => return Ok(l),
        Err(e) => e,
    };
    // Which flag, if any, is wrong by itself (over the defaults)?
    for o in overlay {
        let mut alone = empty_mapping();
        apply_overlay(&mut alone, o);
        if let Err(e) = from_mapping(NO_FILE, alone) {
            let message = match e {
                ConfigError::Field { field, message, .. } => format!("{field}: {message}"),
                ConfigError::Invalid { field, message } => format!("{field}: {message}"),
                e => e.to_string(),
            };
            return Err(ConfigError::Flag {
                flag: o.flag,
                message,
            });
        }
    }
    Err(err)
}

/// Reads a mapping: what is honoured, ignored or refused, then the values and their checks.
fn from_mapping(path: &str, map: Mapping) -> Result<Loaded, ConfigError> {
    let mut kept = Mapping::new();
    let (mut unsupported, mut unknown) = (vec![], vec![]);
    let mut api_version = None;
    let mut kind = None;
    for (key, v) in map {
        match key.as_str() {
            "apiVersion" => api_version = v.as_str().map(str::to_string),
            "kind" => kind = v.as_str().map(str::to_string),
            k if SUPPORTED.contains(&k) => {
                kept.insert(k.into(), v);
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
    let de = serde_json::Value::Object(kept);
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
    load_with_overlay(Some(path), &[])
}

/// [`parse_with_overlay`] on the `--config` file, if any.
pub fn load_with_overlay(path: Option<&Path>, overlay: &[Overlay]) -> Result<Loaded, ConfigError> {
    let Some(path) = path else {
        return parse_with_overlay(None, None, overlay);
    };
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
    parse_with_overlay(Some(&p), Some(&text), overlay)
}

/// Upstream's defaulting replaces these zero values (kubeadm writes durations as "0s").
pub(crate) fn zero_means_default(c: &mut KubeletConfiguration) {
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
    dur(&mut c.file_check_frequency, d.file_check_frequency);
    dur(&mut c.http_check_frequency, d.http_check_frequency);
    dur(&mut c.image_minimum_gc_age, d.image_minimum_gc_age);
    dur(
        &mut c.eviction_pressure_transition_period,
        d.eviction_pressure_transition_period,
    );
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
    // Upstream's words (component-base/logs): only the registered formats.
    if !["text", "json"].contains(&c.logging.format.as_str()) {
        return bad(
            "logging.format",
            &format!(
                "Unsupported log format: {:?} (text, json)",
                c.logging.format
            ),
        );
    }
    if c.logging.sanitization {
        return bad(
            "logging.sanitization",
            "log sanitization is not supported by kubelet-rs: it would not be done",
        );
    }
    let url = &c.static_pod_url;
    if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        return bad("staticPodURL", "must be an http:// or https:// URL");
    }
    if let Some(g) = c
        .feature_gates
        .keys()
        .find(|g| !FEATURE_GATES.contains(&g.as_str()))
    {
        return bad(
            "featureGates",
            &format!("{g} is not supported by kubelet-rs yet (known: {FEATURE_GATES:?})"),
        );
    }
    for (field, m) in [
        ("kubeReserved", &c.kube_reserved),
        ("systemReserved", &c.system_reserved),
    ] {
        for (k, v) in m {
            if !RESERVABLE.contains(&k.as_str()) {
                return bad(
                    field,
                    &format!(
                        "cannot reserve {k:?} resource: not supported by kubelet-rs (it reserves {RESERVABLE:?})"
                    ),
                );
            }
            match kubelet_core::quantity::parse_milli(v) {
                Ok(m) if m >= 0 => {}
                Ok(_) => {
                    return bad(
                        field,
                        &format!("resource quantity for {k:?} cannot be negative: {v}"),
                    );
                }
                Err(e) => return bad(field, &format!("{k}: {v:?}: {e}")),
            }
        }
    }
    // As upstream 1.20's validation.
    let (grace, critical) = (
        c.shutdown_grace_period,
        c.shutdown_grace_period_critical_pods,
    );
    if critical > grace {
        return bad(
            "shutdownGracePeriodCriticalPods",
            &format!(
                "{} must be <= shutdownGracePeriod ({})",
                crate::format_go_duration(critical),
                crate::format_go_duration(grace)
            ),
        );
    }
    if !grace.is_zero() && !c.graceful_node_shutdown() {
        return bad(
            "shutdownGracePeriod",
            "requires feature gate GracefulNodeShutdown",
        );
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
    // As upstream's ValidateKubeletConfiguration words it.
    for (field, flag, v) in [
        (
            "imageGCHighThresholdPercent",
            "image-gc-high-threshold",
            c.image_gc_high_threshold_percent,
        ),
        (
            "imageGCLowThresholdPercent",
            "image-gc-low-threshold",
            c.image_gc_low_threshold_percent,
        ),
    ] {
        if !(0..=100).contains(&v) {
            return bad(
                field,
                &format!(
                    "invalid configuration: {field} (--{flag}) {v} must be between 0 and 100, inclusive"
                ),
            );
        }
    }
    let (hi, lo) = (
        c.image_gc_high_threshold_percent,
        c.image_gc_low_threshold_percent,
    );
    if lo >= hi {
        return bad(
            "imageGCLowThresholdPercent",
            &format!(
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {lo} must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) {hi}"
            ),
        );
    }
    if let Err(e) = c.eviction_thresholds() {
        return bad(
            "evictionHard, evictionSoft, evictionSoftGracePeriod, evictionMinimumReclaim",
            &e,
        );
    }
    if let Err(e) = kubelet_core::cm::parse_cgroup_root(&c.cgroup_root) {
        return bad("cgroupRoot", &e);
    }
    // Under systemd a root is a slice name, which is not built yet.
    if c.cgroup_driver == CgroupDriver::Systemd && !matches!(c.cgroup_root.as_str(), "" | "/") {
        return bad(
            "cgroupRoot",
            &format!(
                "{:?} is not supported by kubelet-rs with cgroupDriver systemd yet (only \"\" or \"/\"); use cgroupDriver: cgroupfs for a cgroup root",
                c.cgroup_root
            ),
        );
    }
    Ok(())
}

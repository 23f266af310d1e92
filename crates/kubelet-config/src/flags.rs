//! The kubelet's command line, as upstream 1.20.2's (`cmd/kubelet/app/options`, klog's flags,
//! `verflag`): every flag of its `--help` is accepted, parsed with pflag's rules, and either
//! acts (as a [`KubeletFlags`] field, or as the KubeletConfiguration field it overrides), warns
//! (accepted but with no effect here), or is refused when set to anything but its default
//! (something this kubelet cannot honour safely).
//!
//! Parsing rules (pflag with `WordSepNormalizeFunc`):
//! - `_` and `-` are the same in flag names: `--log_dir` is `--log-dir`;
//! - `--f=v` or `--f v`; `-v N`, `-vN`, `-v=N` and `-h` are the only short forms;
//! - a bool flag alone means true; `--f=false` sets it false (`--f false` leaves `false` as a
//!   positional argument, which is an error, as upstream's "unknown command");
//! - scalars: the last use wins; string slices (`--cluster-dns`...): the first use replaces the
//!   default, later uses append; maps (`--kube-reserved a=b,c=d`, `--eviction-hard k<v`,
//!   `--manifest-url-header k:v`, `--feature-gates K=bool`): the same, pair by pair, and a pair
//!   without its separator is refused ("malformed pair"); `--node-labels` is upstream's
//!   ConfigurationMap, where `k` alone means `k=`; `--register-with-taints`: the last use wins.
//!
//! Config-field flags become [`Overlay`]s written into the config file's mapping before it is
//! read (`crate::load::parse_with_overlay`), so precedence is upstream's: defaults < `--config`
//! file < flags. A map flag replaces the file's map, except `--feature-gates`, which is merged
//! per gate. The flag is then honoured, ignored with a warning or refused exactly as the field
//! would be.
//!
//! Deviations from upstream, on purpose:
//! - without `--config`, upstream applies legacy defaults (`applyLegacyDefaults`: anonymous
//!   auth on, token webhook off, `AlwaysAllow`, read-only port 10255). They open the node's API
//!   to anyone who can reach it, so kubelet-rs keeps its secure defaults (the v1beta1 ones);
//! - `--container-runtime` defaults to `remote` and `--container-runtime-endpoint` to
//!   containerd's socket (upstream: dockershim's); dockershim is not built;
//! - `--cert-dir` defaults to `<root-dir>/pki` (upstream: the literal `/var/lib/kubelet/pki`,
//!   the same with the default root dir).

use crate::{format_go_duration, parse_go_duration};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::IpAddr;

mod table;
#[cfg(test)]
mod tests;

/// Upstream's deprecation message for every KubeletConfiguration flag.
pub const CONFIG_FILE: &str = "This parameter should be set via the config file specified by the Kubelet's --config flag. See https://kubernetes.io/docs/tasks/administer-cluster/kubelet-config-file/ for more information.";

/// How a flag's value is written and parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Str,
    Int32,
    Int64,
    Uint64,
    Float,
    /// Go's `time.Duration` text.
    Duration,
    Ip,
    /// Comma-separated; uses after the first append.
    StrSlice,
    Map(MapKind),
    /// `key=value:Effect` or `key:Effect`, comma-separated.
    Taints,
    /// `--version`, `--version=raw`, `--version=false`.
    Version,
    /// klog's `-v`.
    Level,
    /// klog's `--vmodule`: `pattern=N,...`.
    ModuleSpec,
    /// klog's `--log-backtrace-at`: `file.go:N`.
    TraceLocation,
    /// klog's `--stderrthreshold`: INFO, WARNING, ERROR, FATAL or a number.
    Severity,
}

/// The map flags' pair syntaxes (`component-base/cli/flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// MapStringString: `k=v,...`.
    Eq,
    /// LangleSeparatedMapStringString: `k<v,...`.
    Langle,
    /// ColonSeparatedMultimapStringString: `k:v,...`, values of a key accumulate.
    Colon,
    /// MapStringBool: `k=true,...`.
    Bool,
    /// ConfigurationMap (`--node-labels`): `k=v,...`, `k` alone is `k=`.
    Labels,
}

/// The [`KubeletFlags`] field a flag sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Config,
    Kubeconfig,
    BootstrapKubeconfig,
    CertDir,
    RootDir,
    HostnameOverride,
    NodeIp,
    NodeLabels,
    RegisterNode,
    RegisterWithTaints,
    RegisterSchedulable,
    ContainerRuntime,
    ContainerRuntimeEndpoint,
    ImageServiceEndpoint,
    LockFile,
    ExitOnLockContention,
    Verbosity,
    Vmodule,
    MaximumDeadContainers,
    MaximumDeadContainersPerContainer,
    MinimumContainerTtlDuration,
}

/// What a flag acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A KubeletConfiguration field, by its camelCase JSON path.
    Config(&'static [&'static str]),
    /// A [`KubeletFlags`] field.
    Flag(Field),
    /// Accepted; a value other than the default warns that it has no effect here (the reason).
    Ignored(&'static str),
    /// Accepted only at its default; any other value is refused (the reason).
    Refuse(&'static str),
    Help,
    Version,
}

/// One flag of the table.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    pub name: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    pub target: Target,
    /// The default as help shows it; "" for none (false, empty, zero).
    pub default: &'static str,
    /// Upstream's deprecation message: using the flag warns
    /// "Flag --x has been deprecated, <message>".
    pub deprecated: Option<&'static str>,
    pub help: &'static str,
}

/// Every flag of upstream 1.20.2's `kubelet --help`, plus its one hidden flag.
pub fn table() -> &'static [FlagSpec] {
    table::TABLE
}

/// Looks a flag up by its name (with `_` or `-`).
pub fn spec(name: &str) -> Option<&'static FlagSpec> {
    let name = name.replace('_', "-");
    table::TABLE.iter().find(|s| s.name == name)
}

/// The flags that are not KubeletConfiguration fields (upstream's `KubeletFlags`, the part
/// kubelet-rs acts on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletFlags {
    /// Path to a kubeconfig file for the API server. Without it, the kubelet runs standalone.
    pub kubeconfig: Option<String>,
    /// A kubeconfig to request the node's client certificate with (TLS bootstrap), used while
    /// `kubeconfig` does not exist yet.
    pub bootstrap_kubeconfig: Option<String>,
    /// Path to a KubeletConfiguration (kubelet.config.k8s.io/v1beta1) file.
    pub config: Option<String>,
    /// Use this name instead of the hostname as the node's name.
    pub hostname_override: Option<String>,
    /// The CRI endpoint: `unix:///path` or a bare absolute path.
    pub container_runtime_endpoint: String,
    /// The CRI image service endpoint; `None`: the runtime endpoint.
    pub image_service_endpoint: Option<String>,
    /// Only "remote" (CRI) is supported.
    pub container_runtime: String,
    /// Directory for the kubelet's files (pod directories, volumes, plugins).
    pub root_dir: String,
    /// Where the self-signed serving certificate goes when tlsCertFile is unset (default:
    /// `<root-dir>/pki`).
    pub cert_dir: Option<String>,
    /// IP address (or comma-separated dual-stack pair) of the node.
    pub node_ip: Option<String>,
    /// `--node-labels` as given: `key=value` pairs separated by commas, one entry per use.
    pub node_labels: Vec<String>,
    /// Register the node with the API server.
    pub register_node: bool,
    /// Taints the node is registered with, one `key=value:Effect` or `key:Effect` each
    /// (validated; see [`KubeletFlags::taints`]).
    pub register_with_taints: Vec<String>,
    /// `false`: register the node unschedulable (deprecated upstream, still honoured there).
    pub register_schedulable: bool,
    /// `--lock-file`: a file the kubelet holds a lock on.
    pub lock_file: Option<String>,
    /// Exit when another process takes `lock_file`.
    pub exit_on_lock_contention: bool,
    /// Log verbosity, as klog's `-v`.
    pub verbosity: i32,
    /// klog's `--vmodule` (`pattern=N,...`): verbosity by source file.
    pub vmodule: String,
    /// Container GC: dead containers kept in all (negative: no limit).
    pub maximum_dead_containers: i32,
    /// Container GC: dead containers kept per container of a pod (negative: no limit).
    pub maximum_dead_containers_per_container: i32,
    /// Container GC: a dead container younger than this is kept.
    pub minimum_container_ttl_duration: std::time::Duration,
}

/// The default CRI endpoint: containerd's (upstream: dockershim's).
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

impl Default for KubeletFlags {
    fn default() -> Self {
        KubeletFlags {
            kubeconfig: None,
            bootstrap_kubeconfig: None,
            config: None,
            hostname_override: None,
            container_runtime_endpoint: DEFAULT_RUNTIME_ENDPOINT.into(),
            image_service_endpoint: None,
            container_runtime: "remote".into(),
            root_dir: "/var/lib/kubelet".into(),
            cert_dir: None,
            node_ip: None,
            node_labels: vec![],
            register_node: true,
            register_with_taints: vec![],
            register_schedulable: true,
            lock_file: None,
            exit_on_lock_contention: false,
            verbosity: 0,
            vmodule: String::new(),
            maximum_dead_containers: -1,
            maximum_dead_containers_per_container: 1,
            minimum_container_ttl_duration: std::time::Duration::ZERO,
        }
    }
}

/// A taint effect the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// One `--register-with-taints` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

impl Taint {
    /// As the Node API takes it.
    pub fn to_k8s(&self) -> k8s_openapi::api::core::v1::Taint {
        k8s_openapi::api::core::v1::Taint {
            key: self.key.clone(),
            value: Some(self.value.clone()).filter(|v| !v.is_empty()),
            effect: self.effect.as_str().into(),
            time_added: None,
        }
    }
}

impl KubeletFlags {
    /// `register_with_taints`, parsed.
    pub fn taints(&self) -> Result<Vec<Taint>, String> {
        self.register_with_taints
            .iter()
            .map(|t| parse_taint(t))
            .collect()
    }
}

/// Upstream's `parseTaint`, except that the effect is required (a taint without one is
/// refused by the API server when the node registers).
pub fn parse_taint(spec: &str) -> Result<Taint, String> {
    let invalid = |why: &str| format!("invalid taint spec {spec:?}: {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (kv, effect) = match parts.as_slice() {
        [kv, effect] => (*kv, *effect),
        [_] => {
            return Err(invalid(
                "missing effect (NoSchedule, PreferNoSchedule or NoExecute)",
            ));
        }
        _ => return Err(invalid("expected <key>=<value>:<effect> or <key>:<effect>")),
    };
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        e => {
            return Err(invalid(&format!(
                "unsupported taint effect {e:?} (NoSchedule, PreferNoSchedule or NoExecute)"
            )));
        }
    };
    let kv: Vec<&str> = kv.split('=').collect();
    let (key, value) = match kv.as_slice() {
        [k] => (*k, ""),
        [k, v] => (*k, *v),
        _ => return Err(invalid("more than one '='")),
    };
    if let Err(e) = qualified_name(key) {
        return Err(invalid(&format!("key: {e}")));
    }
    if !value.is_empty()
        && let Err(e) = label_value(value)
    {
        return Err(invalid(&format!("value: {e}")));
    }
    Ok(Taint {
        key: key.into(),
        value: value.into(),
        effect,
    })
}

/// A label name part: at most 63 alphanumerics, '-', '_' or '.', alphanumeric at both ends.
fn label_value(v: &str) -> Result<(), String> {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if v.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !ok_end(v.chars().next())
        || !ok_end(v.chars().last())
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{v:?} must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// Upstream's `IsQualifiedName`: `[prefix/]name`, the prefix a DNS subdomain.
fn qualified_name(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    label_value(name)?;
    if let Some(p) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if p.is_empty() || p.len() > 253 || !p.split('.').all(label_ok) {
            return Err(format!("prefix {p:?} must be a DNS subdomain"));
        }
    }
    Ok(())
}

/// A config-file value set by a flag: written into the config file's mapping at `path`
/// (camelCase keys) before the file is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// The flag's name, without dashes.
    pub flag: &'static str,
    pub path: &'static [&'static str],
    pub value: Value,
}

/// The command line, parsed.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub flags: KubeletFlags,
    /// In command-line order (of each flag's last use).
    pub overlay: Vec<Overlay>,
    /// To log once logging is up: deprecations and flags with no effect.
    pub warnings: Vec<String>,
}

impl Parsed {
    /// The flags alone, no config overlay (what an empty command line gives).
    pub fn from_flags(flags: KubeletFlags) -> Parsed {
        Parsed {
            flags,
            overlay: vec![],
            warnings: vec![],
        }
    }
}

/// Why the command line did not give flags to run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagsError {
    /// `-h`/`--help`: print this on stdout and exit 0.
    #[error("{0}")]
    Help(String),
    /// `--version` or `--version=raw`: print this on stdout and exit 0.
    #[error("{0}")]
    Version(String),
    /// Unknown flag, positional argument, missing value (clap's message).
    #[error("{0}")]
    Syntax(String),
    /// A value the flag's type refuses (pflag's message form).
    #[error("invalid argument {value:?} for \"--{flag}\" flag: {message}")]
    Value {
        flag: &'static str,
        value: String,
        message: String,
    },
    /// A flag kubelet-rs cannot honour safely, set to something other than its default.
    #[error("flag --{flag}={value:?} is not supported by kubelet-rs: {reason}")]
    Refused {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl FlagsError {
    /// Help or version text: not an error, exit 0.
    pub fn is_info(&self) -> bool {
        matches!(self, FlagsError::Help(_) | FlagsError::Version(_))
    }
}

/// `--version`'s output: kubeadm's preflight matches it against
/// `^\s*Kubernetes v((0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-0-9a-zA-Z_\.+]*)?)\s*$`.
pub fn version_text() -> String {
    format!("Kubernetes {}", kubelet_core::nodestatus::KUBELET_VERSION)
}

/// `--version=raw`'s output, in the form of Go's `%#v` of upstream's `version.Info`.
pub fn raw_version_text() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        a => a,
    };
    format!(
        "version.Info{{Major:\"1\", Minor:\"20\", GitVersion:\"{}\", GitCommit:\"\", GitTreeState:\"\", BuildDate:\"\", GoVersion:\"\", Compiler:\"rustc\", Platform:\"{}/{arch}\"}}",
        kubelet_core::nodestatus::KUBELET_VERSION,
        std::env::consts::OS
    )
}

/// Whether a kind's flag takes a value only after `=` (bare means true).
fn optional_value(kind: Kind) -> bool {
    matches!(kind, Kind::Bool | Kind::Version)
}

fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "",
        Kind::Str => "string",
        Kind::Int32 => "int32",
        Kind::Int64 => "int",
        Kind::Uint64 => "uint",
        Kind::Float => "float",
        Kind::Duration => "duration",
        Kind::Ip => "ip",
        Kind::StrSlice => "strings",
        Kind::Map(MapKind::Eq | MapKind::Langle | MapKind::Labels) => "mapStringString",
        Kind::Map(MapKind::Bool) => "mapStringBool",
        Kind::Map(MapKind::Colon) => "colonSeparatedMultimapStringString",
        Kind::Taints => "[]api.Taint",
        Kind::Version => "version",
        Kind::Level => "Level",
        Kind::ModuleSpec => "moduleSpec",
        Kind::TraceLocation => "traceLocation",
        Kind::Severity => "severity",
    }
}

fn help_line(s: &FlagSpec) -> String {
    let mut h = s.help.to_string();
    if !s.default.is_empty() {
        h.push_str(&format!(" (default {})", s.default));
    }
    if let Some(d) = s.deprecated {
        h.push_str(&format!(" (DEPRECATED: {d})"));
    }
    match s.target {
        Target::Ignored(why) => h.push_str(&format!(" [kubelet-rs: no effect; {why}]")),
        Target::Refuse(why) => h.push_str(&format!(
            " [kubelet-rs: only the default is accepted; {why}]"
        )),
        _ => {}
    }
    h
}

/// The command line as a clap command (for help, and later man pages and completions).
pub fn command() -> clap::Command {
    let mut cmd = clap::Command::new("kubelet")
        .about(
            "kubelet-rs: the Kubernetes node agent (upstream 1.20.2's flags and KubeletConfiguration)",
        )
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .max_term_width(120);
    for s in table::TABLE {
        let mut a = clap::Arg::new(s.name)
            .long(s.name)
            .action(clap::ArgAction::Append)
            .help(help_line(s));
        if let Some(c) = s.short {
            a = a.short(c);
        }
        a = if optional_value(s.kind) {
            a.num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_name("true|false")
        } else {
            a.num_args(1)
                .allow_hyphen_values(true)
                .value_name(type_name(s.kind))
        };
        if s.kind == Kind::Version {
            a = a.value_name("true|false|raw");
        }
        cmd = cmd.arg(a);
    }
    cmd
}

/// pflag's `WordSepNormalizeFunc`: `_` in a flag name is `-`. Values (after `=`, or the
/// argument after a flag that takes one) are left alone, as is everything after `--`.
fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            out.push(a);
            out.extend(it.by_ref());
            break;
        }
        let takes_next = if let Some(long) = s.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let name = name.replace('_', "-");
            let next = value.is_none() && spec(&name).is_some_and(|f| !optional_value(f.kind));
            out.push(match value {
                Some(v) => format!("--{name}={v}").into(),
                None => format!("--{name}").into(),
            });
            next
        } else {
            out.push(a.clone());
            s == "-v"
        };
        if takes_next && let Some(v) = it.next() {
            out.push(v);
        }
    }
    out
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "True" | "TRUE" | "1" | "t" | "T" => Ok(true),
        "false" | "False" | "FALSE" | "0" | "f" | "F" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// Go's `strconv.ParseInt(s, 0, _)` before its range check: a sign, then decimal, `0x`, `0o`,
/// `0b` or a leading `0` for octal, with `_` between digits of a prefixed number.
fn parse_go_integer(s: &str, func: &str) -> Result<i128, String> {
    let bad = || format!("strconv.{func}: parsing {s:?}: invalid syntax");
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(b) = lower.strip_prefix("0x") {
        (16, b)
    } else if let Some(b) = lower.strip_prefix("0o") {
        (8, b)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (2, b)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() || (radix == 10 && body.contains('_')) || body.starts_with(['+', '-', '_']) {
        return Err(bad());
    }
    let body: String = body.chars().filter(|c| *c != '_').collect();
    let magnitude = i128::from_str_radix(&body, radix).map_err(|_| bad())?;
    Ok(if neg { -magnitude } else { magnitude })
}

fn parse_go_int(s: &str, bits: u32) -> Result<i64, String> {
    let v = parse_go_integer(s, "ParseInt")?;
    let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
    if v < min || v > max {
        return Err(format!(
            "strconv.ParseInt: parsing {s:?}: value out of range"
        ));
    }
    i64::try_from(v).map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

fn parse_go_uint(s: &str) -> Result<u64, String> {
    if s.starts_with(['-', '+']) {
        return Err(format!("strconv.ParseUint: parsing {s:?}: invalid syntax"));
    }
    let v = parse_go_integer(s, "ParseUint")?;
    u64::try_from(v).map_err(|_| format!("strconv.ParseUint: parsing {s:?}: value out of range"))
}

/// pflag's string slice: a CSV record ("" is the empty list).
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    if s.is_empty() {
        return Ok(vec![]);
    }
    let mut out = vec![];
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start && !quoted => quoted = true,
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                    if chars.peek().is_some_and(|c| *c != ',') {
                        return Err(format!("parse error: extraneous \" in field {s:?}"));
                    }
                }
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            '"' => return Err(format!("parse error: bare \" in non-quoted field {s:?}")),
            c => cur.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(format!("parse error: extraneous or missing \" in {s:?}"));
    }
    out.push(cur);
    Ok(out)
}

/// One map flag use merged into `into` (pflag/component-base semantics).
fn merge_map(kind: MapKind, raw: &str, into: &mut Map<String, Value>) -> Result<(), String> {
    for pair in raw.split(',').filter(|p| !p.is_empty()) {
        let sep = match kind {
            MapKind::Eq | MapKind::Bool | MapKind::Labels => '=',
            MapKind::Langle => '<',
            MapKind::Colon => ':',
        };
        let Some((k, v)) = pair.split_once(sep) else {
            if kind == MapKind::Labels {
                into.insert(pair.trim().into(), Value::String(String::new()));
                continue;
            }
            let what = if kind == MapKind::Bool {
                "bool".to_string()
            } else {
                "string".to_string()
            };
            return Err(format!("malformed pair, expect string{sep}{what}"));
        };
        let (k, v) = (k.trim().to_string(), v.trim());
        match kind {
            MapKind::Bool => {
                let b =
                    parse_go_bool(v).map_err(|e| format!("invalid value of {k}: {v}, err: {e}"))?;
                into.insert(k, Value::Bool(b));
            }
            MapKind::Colon => {
                let e = into.entry(k).or_insert_with(|| Value::Array(vec![]));
                if let Value::Array(a) = e {
                    a.push(Value::String(v.into()));
                }
            }
            _ => {
                into.insert(k, Value::String(v.into()));
            }
        }
    }
    Ok(())
}

fn parse_severity(s: &str) -> Result<(), String> {
    if ["INFO", "WARNING", "ERROR", "FATAL"].contains(&s.to_ascii_uppercase().as_str()) {
        return Ok(());
    }
    s.parse::<i32>()
        .map(|_| ())
        .map_err(|_| format!("unknown severity {s:?}"))
}

fn parse_trace_location(s: &str) -> Result<(), String> {
    if s.is_empty() || s == ":0" {
        return Ok(());
    }
    let bad = || "syntax error: expect file.go:234".to_string();
    let (file, line) = s.split_once(':').ok_or_else(bad)?;
    if line.contains(':') || !file.contains('.') {
        return Err(bad());
    }
    line.parse::<i64>().map(|_| ()).map_err(|_| bad())
}

fn parse_module_spec(s: &str) -> Result<(), String> {
    for pat in s.split(',').filter(|p| !p.is_empty()) {
        let bad =
            || format!("syntax error: expect comma-separated list of filename=N, got {pat:?}");
        let (p, n) = pat.split_once('=').ok_or_else(bad)?;
        if p.is_empty() || n.is_empty() || n.contains('=') {
            return Err(bad());
        }
        n.parse::<i32>().map_err(|_| bad())?;
    }
    Ok(())
}

/// A scalar flag value as JSON, or why it is not one of the flag's kind.
fn scalar(kind: Kind, raw: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::Bool => Value::Bool(parse_go_bool(raw)?),
        Kind::Int32 => Value::from(parse_go_int(raw, 32)?),
        Kind::Int64 => Value::from(parse_go_int(raw, 64)?),
        Kind::Uint64 => Value::from(parse_go_uint(raw)?),
        Kind::Float => {
            let f: f64 = raw
                .parse()
                .map_err(|_| format!("strconv.ParseFloat: parsing {raw:?}: invalid syntax"))?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| format!("{raw:?} is not a finite number"))?
        }
        Kind::Duration => Value::String(format_go_duration(
            parse_go_duration(raw).map_err(|e| e.to_string())?,
        )),
        Kind::Ip => {
            raw.parse::<IpAddr>()
                .map_err(|_| format!("{raw:?} is not a valid IP address"))?;
            Value::String(raw.into())
        }
        Kind::Level => Value::from(
            raw.parse::<i32>()
                .map_err(|_| format!("strconv.ParseInt: parsing {raw:?}: invalid syntax"))?,
        ),
        Kind::Severity => {
            parse_severity(raw)?;
            Value::String(raw.into())
        }
        Kind::TraceLocation => {
            parse_trace_location(raw)?;
            Value::String(raw.into())
        }
        Kind::ModuleSpec => {
            parse_module_spec(raw)?;
            Value::String(raw.into())
        }
        Kind::Version => {
            if raw == "raw" {
                Value::String("raw".into())
            } else {
                Value::Bool(parse_go_bool(raw)?)
            }
        }
        Kind::Taints => {
            let taints: Vec<Value> = if raw.is_empty() {
                vec![]
            } else {
                raw.split(',')
                    .map(|t| parse_taint(t).map(|_| Value::String(t.into())))
                    .collect::<Result<_, _>>()?
            };
            Value::Array(taints)
        }
        Kind::Str | Kind::StrSlice | Kind::Map(_) => Value::String(raw.into()),
    })
}

/// A flag's value after one more use: scalars replace, slices and maps accumulate.
fn accumulate(kind: Kind, prev: Option<Value>, raw: &str) -> Result<Value, String> {
    match kind {
        Kind::StrSlice => {
            let mut list = match prev {
                Some(Value::Array(a)) => a,
                _ => vec![],
            };
            list.extend(csv_fields(raw)?.into_iter().map(Value::String));
            Ok(Value::Array(list))
        }
        Kind::Map(m) => {
            let mut map = match prev {
                Some(Value::Object(o)) => o,
                _ => Map::new(),
            };
            merge_map(m, raw, &mut map)?;
            Ok(Value::Object(map))
        }
        k => scalar(k, raw),
    }
}

/// Whether a flag's final value is its default (for flags that only act when changed).
fn is_default(s: &FlagSpec, v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b == (s.default == "true"),
        Value::String(x) => x == s.default,
        Value::Number(n) => {
            n.to_string() == s.default || (s.default.is_empty() && n.as_f64() == Some(0.0))
        }
        Value::Array(a) => a.is_empty() && s.default.is_empty(),
        Value::Object(o) => o.is_empty() && s.default.is_empty(),
        Value::Null => true,
    }
}

fn some_nonempty(v: &str) -> Option<String> {
    Some(v.to_string()).filter(|v| !v.is_empty())
}

fn set_field(f: &mut KubeletFlags, field: Field, raw: &str, v: &Value) {
    let b = v.as_bool().unwrap_or(false);
    match field {
        Field::Config => f.config = some_nonempty(raw),
        Field::Kubeconfig => f.kubeconfig = some_nonempty(raw),
        Field::BootstrapKubeconfig => f.bootstrap_kubeconfig = some_nonempty(raw),
        Field::CertDir => f.cert_dir = some_nonempty(raw),
        Field::RootDir => f.root_dir = raw.into(),
        Field::HostnameOverride => f.hostname_override = some_nonempty(raw),
        Field::NodeIp => f.node_ip = some_nonempty(raw),
        Field::NodeLabels => f.node_labels.push(raw.into()),
        Field::RegisterNode => f.register_node = b,
        Field::RegisterWithTaints => {
            f.register_with_taints = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
        }
        Field::RegisterSchedulable => f.register_schedulable = b,
        Field::ContainerRuntime => f.container_runtime = raw.into(),
        Field::ContainerRuntimeEndpoint => f.container_runtime_endpoint = raw.into(),
        Field::ImageServiceEndpoint => f.image_service_endpoint = some_nonempty(raw),
        Field::LockFile => f.lock_file = some_nonempty(raw),
        Field::ExitOnLockContention => f.exit_on_lock_contention = b,
        Field::Verbosity => {
            f.verbosity = v.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(0)
        }
        Field::Vmodule => f.vmodule = raw.into(),
        Field::MaximumDeadContainers => {
            f.maximum_dead_containers = v.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(-1)
        }
        Field::MaximumDeadContainersPerContainer => {
            f.maximum_dead_containers_per_container =
                v.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(1)
        }
        Field::MinimumContainerTtlDuration => {
            f.minimum_container_ttl_duration =
                crate::parse_go_duration(raw).unwrap_or(std::time::Duration::ZERO)
        }
    }
}

/// Parses the kubelet's arguments (those after the program name) as upstream's kubelet does.
///
/// Errors, in upstream's order: a syntax or value error; then `--help`, then `--version`
/// (returned as [`FlagsError::Help`]/[`FlagsError::Version`], to print and exit 0); then a
/// flag kubelet-rs refuses.
pub fn parse<I, T>(args: I) -> Result<Parsed, FlagsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args = normalize(args.into_iter().map(Into::into).collect());
    let matches = command()
        .try_get_matches_from(args)
        .map_err(|e| FlagsError::Syntax(e.to_string().trim_end().to_string()))?;
    // Every use of every flag, in command-line order.
    let mut uses: Vec<(usize, &'static FlagSpec, String)> = vec![];
    for s in table::TABLE {
        let (Some(values), Some(indices)) = (matches.get_raw(s.name), matches.indices_of(s.name))
        else {
            continue;
        };
        for (v, i) in values.zip(indices) {
            uses.push((i, s, v.to_string_lossy().into_owned()));
        }
    }
    uses.sort_by_key(|(i, _, _)| *i);

    let mut flags = KubeletFlags::default();
    let mut overlay: Vec<Overlay> = vec![];
    let mut warnings = vec![];
    let mut warned = BTreeSet::new();
    let mut last: BTreeMap<&'static str, (&'static FlagSpec, Value, String)> = BTreeMap::new();
    for (_, s, raw) in uses {
        let prev = last.remove(s.name).map(|(_, v, _)| v);
        let value = accumulate(s.kind, prev, &raw).map_err(|message| FlagsError::Value {
            flag: s.name,
            value: raw.clone(),
            message,
        })?;
        if let Some(d) = s.deprecated
            && warned.insert(s.name)
        {
            warnings.push(format!("Flag --{} has been deprecated, {d}", s.name));
        }
        match s.target {
            Target::Config(path) => {
                overlay.retain(|o| o.flag != s.name);
                overlay.push(Overlay {
                    flag: s.name,
                    path,
                    value: value.clone(),
                });
            }
            Target::Flag(field) => set_field(&mut flags, field, &raw, &value),
            _ => {}
        }
        last.insert(s.name, (s, value, raw));
    }

    if last
        .get("help")
        .is_some_and(|(_, v, _)| v.as_bool() == Some(true))
    {
        return Err(FlagsError::Help(command().render_long_help().to_string()));
    }
    match last.get("version").map(|(_, v, _)| v) {
        Some(Value::String(r)) if r == "raw" => {
            return Err(FlagsError::Version(raw_version_text()));
        }
        Some(Value::Bool(true)) => return Err(FlagsError::Version(version_text())),
        _ => {}
    }
    for (s, v, raw) in last.values() {
        match s.target {
            Target::Refuse(reason) if !is_default(s, v) => {
                return Err(FlagsError::Refused {
                    flag: s.name,
                    value: raw.clone(),
                    reason,
                });
            }
            Target::Ignored(why) if !is_default(s, v) => {
                warnings.push(format!(
                    "flag --{} has no effect in kubelet-rs: {why}",
                    s.name
                ));
            }
            _ => {}
        }
    }
    Ok(Parsed {
        flags,
        overlay,
        warnings,
    })
}

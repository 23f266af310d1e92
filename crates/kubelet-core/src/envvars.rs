//! Container environment (upstream `makeEnvironmentVariables`, `expansion`, service links):
//! pure functions over the pod and the ConfigMaps, Secrets and Services it refers to, which
//! the caller fetched.

use crate::quantity::parse_milli;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use std::collections::{BTreeMap, HashMap};

/// Expands `$(VAR)` from `lookup`; `$$` is a literal `$`; an unknown `$(VAR)` stays as written.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            match b[i + 1] {
                b'$' => {
                    out.push_str(&input[last..i]);
                    out.push('$');
                    i += 2;
                    last = i;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        out.push_str(&input[last..i]);
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        last = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&input[last..]);
    out
}

/// Upstream's `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || "-._".contains(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// What the pod's environment may refer to, fetched beforehand. `None`: not found.
#[derive(Debug, Default)]
pub struct EnvSources {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
    /// Services of the pod's namespace, and the master `kubernetes` service.
    pub services: Vec<Service>,
    pub master_namespace: String,
    /// Node allocatable, for resourceFieldRef limits that are not set.
    pub allocatable: BTreeMap<String, String>,
    pub host_ip: String,
    pub pod_ips: Vec<String>,
}

/// Names of the ConfigMaps and Secrets the container's env refers to.
pub fn referenced(c: &Container) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secs) = (vec![], vec![]);
    for f in c.env_from.iter().flatten() {
        cms.extend(f.config_map_ref.as_ref().map(|r| r.name.clone()));
        secs.extend(f.secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value_from {
            cms.extend(v.config_map_key_ref.as_ref().map(|r| r.name.clone()));
            secs.extend(v.secret_key_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    cms.sort();
    cms.dedup();
    secs.sort();
    secs.dedup();
    (cms, secs)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Env {
    pub vars: Vec<(String, String)>,
    /// Warnings upstream records as `InvalidEnvironmentVariableNames` events.
    pub warnings: Vec<String>,
}

fn env_name(s: &str) -> String {
    s.to_uppercase().replace('-', "_")
}

/// Docker-link-style variables for services (upstream `envvars.FromServices`).
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut out = vec![];
    for s in services {
        let Some(spec) = &s.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = env_name(s.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        if let Some(p) = ports.first() {
            out.push((format!("{name}_SERVICE_PORT"), p.port.to_string()));
        }
        for p in ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        if let Some(p) = ports.first() {
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            out.push((format!("{name}_PORT"), format!("{proto}://{ip}:{}", p.port)));
        }
        for p in ports {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", proto.to_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

/// Why a container's environment (or a downwardAPI file) cannot be made; the text is
/// upstream's, as the CreateContainerConfigError or FailedMount message shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("Unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error(transparent)]
    Quantity(#[from] crate::quantity::QuantityError),
    #[error("invalid divisor {0:?}")]
    InvalidDivisor(String),
    /// `kind` is the API's plural: configmaps, secrets.
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    /// `kind` is ConfigMap or Secret.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        kind: &'static str,
        key: String,
        namespace: String,
        name: String,
    },
}

pub fn field_value(pod: &Pod, path: &str, src: &EnvSources) -> Result<String, EnvError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = keyed("metadata.labels['", m.labels.as_ref()) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", m.annotations.as_ref()) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => src.host_ip.clone(),
        "status.podIP" => src.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => src.pod_ips.join(","),
        other => return Err(EnvError::UnsupportedFieldPath(other.into())),
    })
}

/// A container resource in the divisor's units, rounded up (upstream
/// `ExtractContainerResourceValue` after `MergeContainerResourceLimits`): cpu by millicores,
/// memory, ephemeral-storage and hugepages by whole units. A divisor left unset, or sent as
/// the zero quantity by Go clients, means 1. An unset or zero cpu, memory or
/// ephemeral-storage limit is the node's allocatable.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    src: &EnvSources,
) -> Result<String, EnvError> {
    let unsupported = || EnvError::UnsupportedResource(resource.into());
    let (kind, name) = resource.split_once('.').ok_or_else(unsupported)?;
    let by_milli = match name {
        "cpu" => true,
        "memory" | "ephemeral-storage" => false,
        n if n.starts_with("hugepages-") => false,
        _ => return Err(unsupported()),
    };
    let res = c.resources.as_ref();
    let set = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(unsupported()),
    }
    .and_then(|m| m.get(name))
    .map(|q| q.0.as_str());
    let quantity = |q: &str| parse_milli(q).map_err(EnvError::from);
    let mut value = set.map(quantity).transpose()?.unwrap_or(0);
    let merges = kind == "limits" && !name.starts_with("hugepages-");
    if value == 0
        && merges
        && let Some(a) = src.allocatable.get(name)
    {
        value = quantity(a)?;
    }
    let mut d = divisor.map(quantity).transpose()?.unwrap_or(0);
    if d == 0 {
        d = 1000;
    }
    // Quantity.Value rounds up to whole units; MilliValue is what parse_milli gives.
    let whole = |m: i128| (m + 999).div_euclid(1000);
    let (v, d) = if by_milli {
        (value, d)
    } else {
        (whole(value), whole(d))
    };
    if d <= 0 {
        return Err(EnvError::InvalidDivisor(divisor.unwrap_or_default().into()));
    }
    Ok(((v + d - 1).div_euclid(d)).to_string())
}

/// The container's environment in upstream's order of precedence: envFrom, then env (each
/// value expanded against what is defined so far and the service variables), then service
/// variables not otherwise defined. `Err` is the CreateContainerConfigError message.
pub fn container_env(pod: &Pod, c: &Container, src: &EnvSources) -> Result<Env, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env = Env::default();
    let enable_links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let services: Vec<Service> = src
        .services
        .iter()
        .filter(|s| {
            let s_ns = s.metadata.namespace.as_deref().unwrap_or_default();
            (enable_links && s_ns == ns)
                || (s_ns == src.master_namespace
                    && s.metadata.name.as_deref() == Some("kubernetes"))
        })
        .cloned()
        .collect();
    let mut service_vars: BTreeMap<String, String> = service_env(&services).into_iter().collect();
    let mut tmp: BTreeMap<String, String> = BTreeMap::new();
    let missing = |kind: &'static str, name: &str| EnvError::NotFound {
        kind,
        name: name.into(),
    };

    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let (data, kind, name, optional): (Vec<(String, String)>, &str, String, bool) =
            if let Some(r) = &f.config_map_ref {
                let cm = src.config_maps.get(&r.name).cloned().flatten();
                let data = cm.map(|cm| cm.data.unwrap_or_default().into_iter().collect());
                match data {
                    Some(d) => (d, "configMap", r.name.clone(), false),
                    None if r.optional == Some(true) => continue,
                    None => return Err(missing("configmaps", &r.name)),
                }
            } else if let Some(r) = &f.secret_ref {
                let sec = src.secrets.get(&r.name).cloned().flatten();
                let data = sec.map(|s| {
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect()
                });
                match data {
                    Some(d) => (d, "secret", r.name.clone(), false),
                    None if r.optional == Some(true) => continue,
                    None => return Err(missing("secrets", &r.name)),
                }
            } else {
                continue;
            };
        let _ = optional;
        let mut invalid = vec![];
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if !is_env_var_name(&k) {
                invalid.push(k);
                continue;
            }
            tmp.insert(k, v);
        }
        if !invalid.is_empty() {
            invalid.sort();
            env.warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }

    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) if !v.is_empty() => {
                let (t, s) = (&tmp, &service_vars);
                expand(v, &|name| t.get(name).or_else(|| s.get(name)).cloned())
            }
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, src)?
                } else if let Some(r) = &from.resource_field_ref {
                    resource_value(
                        c,
                        &r.resource,
                        r.divisor.as_ref().map(|q| q.0.as_str()),
                        src,
                    )?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match src.config_maps.get(&r.name).cloned().flatten() {
                        None if optional => continue,
                        None => return Err(missing("configmaps", &r.name)),
                        Some(cm) => match cm.data.and_then(|d| d.get(&r.key).cloned()) {
                            Some(v) => v,
                            None if optional => continue,
                            None => {
                                return Err(EnvError::MissingKey {
                                    kind: "ConfigMap",
                                    key: r.key.clone(),
                                    namespace: ns.clone(),
                                    name: r.name.clone(),
                                });
                            }
                        },
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match src.secrets.get(&r.name).cloned().flatten() {
                        None if optional => continue,
                        None => return Err(missing("secrets", &r.name)),
                        Some(s) => match s.data.and_then(|d| d.get(&r.key).cloned()) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::MissingKey {
                                    kind: "Secret",
                                    key: r.key.clone(),
                                    namespace: ns.clone(),
                                    name: r.name.clone(),
                                });
                            }
                        },
                    }
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        service_vars.remove(&e.name);
        tmp.insert(e.name.clone(), value);
    }
    env.vars = tmp.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.vars.extend(
        service_vars
            .into_iter()
            .filter(|(k, _)| !tmp.contains_key(k)),
    );
    Ok(env)
}

/// Command and args with `$(VAR)` expanded from the container's final environment.
pub fn expand_command(c: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let look = |n: &str| map.get(n).map(|v| v.to_string());
    let ex = |v: &Option<Vec<String>>| v.iter().flatten().map(|s| expand(s, &look)).collect();
    (ex(&c.command), ex(&c.args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvFromSource, EnvVar, EnvVarSource, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn look(n: &str) -> Option<String> {
        match n {
            "A" => Some("1".into()),
            "B" => Some("x$(A)".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion_rules() {
        assert_eq!(expand("$(A)-$(B)", &look), "1-x$(A)");
        assert_eq!(expand("$$(A)", &look), "$(A)");
        assert_eq!(expand("$(MISSING)", &look), "$(MISSING)");
        assert_eq!(expand("$A $ $(", &look), "$A $ $(");
        assert_eq!(expand("a$$b", &look), "a$b");
        assert_eq!(expand("", &look), "");
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": []}
        }))
        .unwrap()
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from(name: &str, src: serde_json::Value) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(serde_json::from_value::<EnvVarSource>(src).unwrap()),
        }
    }

    fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn sources_and_precedence() {
        let mut src = EnvSources {
            host_ip: "192.0.2.2".into(),
            pod_ips: vec!["10.88.0.9".into()],
            ..Default::default()
        };
        src.config_maps.insert(
            "cfg".into(),
            Some(cm(
                "cfg",
                &[("MODE", "prod"), ("bad key", "x"), ("LEVEL", "3")],
            )),
        );
        src.config_maps.insert("gone".into(), None);
        src.allocatable.insert("memory".into(), "4Gi".into());
        let c = Container {
            name: "c".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(
                    serde_json::from_value(serde_json::json!({"name": "cfg"})).unwrap(),
                ),
                prefix: Some("CFG_".into()),
                ..Default::default()
            }]),
            env: Some(vec![
                var("CFG_MODE", "dev-$(CFG_LEVEL)"),
                from(
                    "POD",
                    serde_json::json!({"fieldRef": {"fieldPath": "metadata.name"}}),
                ),
                from(
                    "APP",
                    serde_json::json!({"fieldRef": {"fieldPath": "metadata.labels['app']"}}),
                ),
                from(
                    "IP",
                    serde_json::json!({"fieldRef": {"fieldPath": "status.podIP"}}),
                ),
                from(
                    "MEM",
                    serde_json::json!({"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}),
                ),
                from(
                    "OPT",
                    serde_json::json!({"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}),
                ),
            ]),
            ..Default::default()
        };
        let env = container_env(&pod(), &c, &src).unwrap();
        let m: HashMap<_, _> = env.vars.iter().cloned().collect();
        assert_eq!(m["CFG_MODE"], "dev-3", "env overrides envFrom and expands");
        assert_eq!(m["CFG_LEVEL"], "3");
        assert_eq!(m["POD"], "p");
        assert_eq!(m["APP"], "web");
        assert_eq!(m["IP"], "10.88.0.9");
        assert_eq!(m["MEM"], "4096", "unset limit defaults to node allocatable");
        assert!(!m.contains_key("OPT"));
        assert_eq!(env.warnings.len(), 1);
        assert!(
            env.warnings[0].starts_with("Keys [CFG_bad key] from the EnvFrom configMap ns/cfg")
        );

        let bad = Container {
            name: "c".into(),
            env: Some(vec![from(
                "X",
                serde_json::json!({"configMapKeyRef": {"name": "cfg", "key": "nope"}}),
            )]),
            ..Default::default()
        };
        assert_eq!(
            container_env(&pod(), &bad, &src).unwrap_err().to_string(),
            "couldn't find key nope in ConfigMap ns/cfg"
        );
        let bad = Container {
            name: "c".into(),
            env: Some(vec![from(
                "X",
                serde_json::json!({"secretKeyRef": {"name": "s", "key": "k"}}),
            )]),
            ..Default::default()
        };
        assert_eq!(
            container_env(&pod(), &bad, &src).unwrap_err().to_string(),
            "secrets \"s\" not found"
        );
    }

    #[test]
    fn cpu_rounds_up_in_divisor_units() {
        let c: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "resources": {"requests": {"cpu": "250m"}}}),
        )
        .unwrap();
        let src = EnvSources::default();
        assert_eq!(resource_value(&c, "requests.cpu", None, &src).unwrap(), "1");
        assert_eq!(
            resource_value(&c, "requests.cpu", Some("1m"), &src).unwrap(),
            "250"
        );
        assert!(resource_value(&c, "bogus", None, &src).is_err());
        assert_eq!(
            resource_value(&c, "requests.nvidia.com/gpu", None, &src)
                .unwrap_err()
                .to_string(),
            "Unsupported container resource : requests.nvidia.com/gpu"
        );
    }

    /// Go clients send a divisor they left unset as the zero quantity.
    #[test]
    fn zero_divisor_means_one_and_units_follow_upstream() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {
                "requests": {"cpu": "250m", "memory": "1500m", "ephemeral-storage": "1Ki"},
                "limits": {"memory": "0"}
            }
        }))
        .unwrap();
        let mut src = EnvSources::default();
        src.allocatable.insert("cpu".into(), "2".into());
        src.allocatable.insert("memory".into(), "4Gi".into());
        src.allocatable
            .insert("ephemeral-storage".into(), "10Gi".into());
        let v = |r: &str, d: Option<&str>| resource_value(&c, r, d, &src).unwrap();
        assert_eq!(v("requests.cpu", Some("0")), "1");
        assert_eq!(v("requests.cpu", Some("1m")), "250");
        assert_eq!(v("requests.cpu", Some("0m")), "1");
        // Memory counts whole bytes, rounded up: 1.5 bytes is 2.
        assert_eq!(v("requests.memory", Some("0")), "2");
        assert_eq!(v("requests.memory", Some("1m")), "2");
        assert_eq!(v("requests.ephemeral-storage", None), "1024");
        assert_eq!(v("requests.ephemeral-storage", Some("1Ki")), "1");
        // Unset, and zero, limits are the node's allocatable.
        assert_eq!(v("limits.cpu", Some("0")), "2");
        assert_eq!(v("limits.cpu", Some("1m")), "2000");
        assert_eq!(v("limits.memory", Some("1Mi")), "4096");
        assert_eq!(v("limits.ephemeral-storage", Some("1Gi")), "10");
        // Hugepages are never merged with allocatable.
        assert_eq!(v("limits.hugepages-2Mi", None), "0");
        assert_eq!(v("requests.memory", Some("1Gi")), "1");
    }

    #[test]
    fn service_links() {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("my-db".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.0.0.5".into()),
                ports: Some(vec![ServicePort {
                    name: Some("sql".into()),
                    port: 5432,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let vars: HashMap<_, _> = service_env(&[svc]).into_iter().collect();
        assert_eq!(vars["MY_DB_SERVICE_HOST"], "10.0.0.5");
        assert_eq!(vars["MY_DB_SERVICE_PORT"], "5432");
        assert_eq!(vars["MY_DB_SERVICE_PORT_SQL"], "5432");
        assert_eq!(vars["MY_DB_PORT"], "tcp://10.0.0.5:5432");
        assert_eq!(vars["MY_DB_PORT_5432_TCP_ADDR"], "10.0.0.5");
        assert_eq!(vars["MY_DB_PORT_5432_TCP_PROTO"], "tcp");
    }

    #[test]
    fn commands_expand() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c", "command": ["echo", "$(A)"], "args": ["$$(A)", "$(Z)"]})).unwrap();
        let (cmd, args) = expand_command(&c, &[("A".into(), "1".into())]);
        assert_eq!(cmd, vec!["echo", "1"]);
        assert_eq!(args, vec!["$(A)", "$(Z)"]);
    }
}

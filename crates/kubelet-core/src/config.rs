//! Pod sources and their merge (upstream `pkg/kubelet/config`; not the KubeletConfiguration,
//! which is the `kubelet-config` crate): static pod manifests decoded and defaulted as
//! upstream's `common.go` does, each source's full sets merged into adds, updates and
//! removes (`config.go`), and which pods are static or mirror pods (`pod/mirror_client.go`).
//!
//! A static pod's UID is upstream's, bit for bit (`upstream_uid`): the MD5 of go-spew's print
//! of the internal `core.Pod`, so a pod started by the upstream kubelet keeps its UID.

use k8s_openapi::api::core::v1::{Pod, Toleration};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";

/// The largest manifest read (upstream `maxConfigLength`).
pub const MAX_MANIFEST_BYTES: u64 = 10 << 20;

/// Where a pod came from (`kubernetes.io/config.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    File,
    Http,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Http => "http",
            Source::Api => "api",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    #[error("could not parse: {0}")]
    Syntax(String),
    #[error("{0}")]
    Kind(String),
    #[error("invalid pod: [{}]", .0.join(", "))]
    Invalid(Vec<String>),
}

/// Parses YAML or JSON into a JSON value, refusing anything but a mapping.
fn to_json(bytes: &[u8]) -> Result<serde_json::Value, ManifestError> {
    let v = crate::yaml::bytes_to_json(bytes).map_err(|e| ManifestError::Syntax(e.to_string()))?;
    if !v.is_object() {
        return Err(ManifestError::Syntax("expected a mapping".into()));
    }
    Ok(v)
}

fn kind_of(v: &serde_json::Value) -> (Option<&str>, Option<&str>) {
    (
        v.get("apiVersion").and_then(|a| a.as_str()),
        v.get("kind").and_then(|k| k.as_str()),
    )
}

fn pod_from(v: serde_json::Value) -> Result<Pod, ManifestError> {
    match kind_of(&v) {
        (Some("v1"), Some("Pod")) => {}
        (a, k) => {
            return Err(ManifestError::Kind(format!(
                "expected apiVersion v1 and kind Pod, got {} {}",
                a.unwrap_or("<none>"),
                k.unwrap_or("<none>")
            )));
        }
    }
    serde_json::from_value(v).map_err(|e| ManifestError::Syntax(e.to_string()))
}

/// One pod from a manifest file (upstream `tryDecodeSinglePod`).
pub fn decode_pod(bytes: &[u8]) -> Result<Pod, ManifestError> {
    pod_from(to_json(bytes)?)
}

/// A Pod or a PodList, as the HTTP source accepts.
pub fn decode_pods(bytes: &[u8]) -> Result<Vec<Pod>, ManifestError> {
    let v = to_json(bytes)?;
    if kind_of(&v) == (Some("v1"), Some("PodList")) {
        let items = v
            .get("items")
            .and_then(|i| i.as_array())
            .cloned()
            .unwrap_or_default();
        return items
            .into_iter()
            .map(|mut i| {
                // List items may leave out their own kind.
                if let Some(o) = i.as_object_mut() {
                    o.entry("apiVersion").or_insert("v1".into());
                    o.entry("kind").or_insert("Pod".into());
                }
                pod_from(i)
            })
            .collect();
    }
    Ok(vec![pod_from(v)?])
}

/// Upstream's v1 defaulting of a decoded pod (`SetObjectDefaults_Pod`, 1.20), all of it: the
/// static pod's UID hashes the defaulted pod, and a static pod runs as the same pod posted to
/// the API would. (Rounding resource lists to milli-units shows only in the UID's print.)
pub fn v1_defaults(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    // SetDefaults_Pod: requests default to limits.
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if let Some(r) = c.resources.as_mut()
            && let Some(limits) = r.limits.clone()
        {
            let req = r.requests.get_or_insert_with(BTreeMap::new);
            for (k, v) in limits {
                req.entry(k).or_insert(v);
            }
        }
    }
    spec.enable_service_links.get_or_insert(true);
    // SetDefaults_PodSpec.
    default_str(&mut spec.dns_policy, "ClusterFirst");
    default_str(&mut spec.restart_policy, "Always");
    if spec.host_network == Some(true) {
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            for p in c.ports.iter_mut().flatten() {
                if p.host_port.unwrap_or(0) == 0 {
                    p.host_port = Some(p.container_port);
                }
            }
        }
    }
    spec.security_context.get_or_insert_with(Default::default);
    spec.termination_grace_period_seconds.get_or_insert(30);
    default_str(&mut spec.scheduler_name, "default-scheduler");
    for v in spec.volumes.iter_mut().flatten() {
        volume_defaults(v);
    }
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        container_defaults(c);
    }
    for e in spec.ephemeral_containers.iter_mut().flatten() {
        // An ephemeral container shares a container's defaults field for field.
        let Ok(mut c) = serde_json::to_value(&*e)
            .and_then(serde_json::from_value::<k8s_openapi::api::core::v1::Container>)
        else {
            continue;
        };
        container_defaults(&mut c);
        if let Ok(d) = serde_json::to_value(&c).and_then(serde_json::from_value) {
            let target = e.target_container_name.take();
            *e = d;
            e.target_container_name = target;
        }
    }
}

fn container_defaults(c: &mut k8s_openapi::api::core::v1::Container) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        c.image_pull_policy = Some(default_pull_policy(c.image.as_deref().unwrap_or("")).into());
    }
    default_str(&mut c.termination_message_path, "/dev/termination-log");
    default_str(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        default_str(&mut p.protocol, "TCP");
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            default_str(&mut f.api_version, "v1");
        }
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_int(&mut p.timeout_seconds, 1);
        default_int(&mut p.period_seconds, 10);
        default_int(&mut p.success_threshold, 1);
        default_int(&mut p.failure_threshold, 3);
        if let Some(h) = p.http_get.as_mut() {
            http_get_defaults(h);
        }
    }
    if let Some(l) = c.lifecycle.as_mut() {
        for h in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
            if let Some(h) = h.http_get.as_mut() {
                http_get_defaults(h);
            }
        }
    }
}

fn http_get_defaults(h: &mut k8s_openapi::api::core::v1::HTTPGetAction) {
    if h.path.as_deref().is_none_or(str::is_empty) {
        h.path = Some("/".into());
    }
    if h.scheme.as_deref().is_none_or(str::is_empty) {
        h.scheme = Some("HTTP".into());
    }
}

/// `Always` for `:latest` or no tag at all, as upstream's `SetDefaults_Container`.
fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

fn volume_defaults(v: &mut k8s_openapi::api::core::v1::Volume) {
    // A volume that names no source is an emptyDir.
    let no_source = serde_json::to_value(&*v)
        .ok()
        .and_then(|j| j.as_object().map(|o| o.keys().all(|k| k == "name")))
        .unwrap_or(false);
    if no_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(h) = v.host_path.as_mut() {
        h.type_.get_or_insert_with(String::new);
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(0o644);
    }
    if let Some(i) = v.iscsi.as_mut()
        && i.iscsi_interface.as_deref().is_none_or(str::is_empty)
    {
        i.iscsi_interface = Some("default".into());
    }
    if let Some(r) = v.rbd.as_mut() {
        for (f, d) in [
            (&mut r.pool, "rbd"),
            (&mut r.user, "admin"),
            (&mut r.keyring, "/etc/ceph/keyring"),
        ] {
            if f.as_deref().is_none_or(str::is_empty) {
                *f = Some(d.into());
            }
        }
    }
    if let Some(d) = v.downward_api.as_mut() {
        d.default_mode.get_or_insert(0o644);
        for i in d.items.iter_mut().flatten() {
            if let Some(f) = i.field_ref.as_mut() {
                default_str(&mut f.api_version, "v1");
            }
        }
    }
    if let Some(c) = v.config_map.as_mut() {
        c.default_mode.get_or_insert(0o644);
    }
    if let Some(a) = v.azure_disk.as_mut() {
        a.caching_mode.get_or_insert_with(|| "ReadWrite".into());
        a.kind.get_or_insert_with(|| "Shared".into());
        a.fs_type.get_or_insert_with(|| "ext4".into());
        a.read_only.get_or_insert(false);
    }
    if let Some(p) = v.projected.as_mut() {
        p.default_mode.get_or_insert(0o644);
        for s in p.sources.iter_mut().flatten() {
            for i in s
                .downward_api
                .as_mut()
                .and_then(|d| d.items.as_mut())
                .into_iter()
                .flatten()
            {
                if let Some(f) = i.field_ref.as_mut() {
                    default_str(&mut f.api_version, "v1");
                }
            }
            if let Some(t) = s.service_account_token.as_mut() {
                t.expiration_seconds.get_or_insert(3600);
            }
        }
    }
    if let Some(s) = v.scale_io.as_mut() {
        for (f, d) in [
            (&mut s.storage_mode, "ThinProvisioned"),
            (&mut s.fs_type, "xfs"),
        ] {
            if f.as_deref().is_none_or(str::is_empty) {
                *f = Some(d.into());
            }
        }
    }
    if let Some(spec) = v
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        spec.spec
            .volume_mode
            .get_or_insert_with(|| "Filesystem".into());
    }
}

/// Go's `if x == "" { x = d }`.
fn default_str(f: &mut Option<String>, d: &str) {
    if f.as_deref().is_none_or(str::is_empty) {
        *f = Some(d.into());
    }
}

/// Go's `if x == 0 { x = d }` (also through a nil pointer).
fn default_int<T: Default + PartialEq + From<u8>>(f: &mut Option<T>, d: T) {
    if f.as_ref().is_none_or(|v| *v == T::default()) {
        *f = Some(d);
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The checks of upstream's `ValidatePodCreate` that a manifest most often fails, with its
/// field paths and words.
pub fn validate(pod: &Pod) -> Result<(), ManifestError> {
    let mut errs = vec![];
    let m = &pod.metadata;
    match m.name.as_deref() {
        None | Some("") => {
            errs.push("metadata.name: Required value: name or generateName is required".into())
        }
        Some(n) if !is_dns_subdomain(n) => errs.push(format!(
            "metadata.name: Invalid value: {n:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )),
        _ => {}
    }
    if let Some(ns) = m.namespace.as_deref().filter(|ns| !ns.is_empty())
        && !is_dns_label(ns)
    {
        errs.push(format!(
            "metadata.namespace: Invalid value: {ns:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        ));
    }
    let Some(spec) = &pod.spec else {
        errs.push("spec: Required value".into());
        return Err(ManifestError::Invalid(errs));
    };
    if spec.containers.is_empty() {
        errs.push("spec.containers: Required value".into());
    }
    let mut names = BTreeSet::new();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("spec.initContainers", c))
        .enumerate()
        .chain(
            spec.containers
                .iter()
                .map(|c| ("spec.containers", c))
                .enumerate(),
        );
    for (i, (field, c)) in all {
        if !is_dns_label(&c.name) {
            errs.push(format!(
                "{field}[{i}].name: Invalid value: {:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                c.name
            ));
        } else if !names.insert(c.name.clone()) {
            errs.push(format!("{field}[{i}].name: Duplicate value: {:?}", c.name));
        }
        if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            errs.push(format!("{field}[{i}].image: Required value"));
        }
    }
    if let Some(p) = spec.restart_policy.as_deref()
        && !["Always", "OnFailure", "Never"].contains(&p)
    {
        errs.push(format!(
            "spec.restartPolicy: Unsupported value: {p:?}: supported values: \"Always\", \"OnFailure\", \"Never\""
        ));
    }
    let mut vols = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if !vols.insert(v.name.as_str()) {
            errs.push(format!(
                "spec.volumes[{i}].name: Duplicate value: {:?}",
                v.name
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ManifestError::Invalid(errs))
    }
}

/// A static pod's UID, from the decoded and defaulted pod before it is renamed: upstream's
/// own (`upstream_uid`), so a node switched from the upstream kubelet keeps its static pods;
/// for the rare manifest that cannot be printed as upstream does (a set timestamp, raw managed
/// fields, a quantity past int64's fast path), the MD5 of its canonical JSON.
pub fn static_pod_uid(pod: &Pod) -> String {
    match upstream_uid::upstream_uid(pod) {
        Ok(uid) => uid,
        Err(upstream_uid::Unsupported(why)) => {
            use md5::Digest;
            let _ = why;
            let json = serde_json::to_vec(pod).unwrap_or_default();
            let digest = md5::Md5::digest(&json);
            digest.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// Upstream `applyDefaults`: a decoded manifest becomes this node's pod. Validation follows.
pub fn apply_defaults(pod: &mut Pod, source: Source, node: &str) -> Result<(), ManifestError> {
    v1_defaults(pod);
    if pod.metadata.uid.as_deref().is_none_or(str::is_empty) {
        pod.metadata.uid = Some(static_pod_uid(pod));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    // A manifest without a name is named after its UID, as upstream.
    let name = match pod.metadata.name.as_deref() {
        None | Some("") => uid.clone(),
        Some(n) => n.to_string(),
    };
    pod.metadata.name = Some(format!("{name}-{}", node.to_lowercase()));
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some("default".into());
    }
    let ann = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(CONFIG_HASH.into(), uid);
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.into());
        if source == Source::File {
            // Static pods outlive a NoExecute taint (upstream adds this to file pods only).
            spec.tolerations
                .get_or_insert_with(Vec::new)
                .push(Toleration {
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    ..Default::default()
                });
        }
    }
    pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    validate(pod)
}

/// Decodes, defaults and validates one manifest for `node`.
pub fn static_pod(bytes: &[u8], source: Source, node: &str) -> Result<Pod, ManifestError> {
    let mut pod = decode_pod(bytes)?;
    apply_defaults(&mut pod, source, node)?;
    Ok(pod)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// A pod from a file or URL (upstream `IsStaticPod`). The merge stamps the source on every
/// pod, API ones included, so an API pod cannot claim to be static.
pub fn is_static_pod(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE).is_some_and(|s| s != Source::Api.as_str())
}

/// The API server's copy of a static pod (upstream `IsMirrorPod`): never run.
pub fn is_mirror_pod(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

/// `namespace/name`, the key static and mirror pods share.
pub fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether `mirror` is the current mirror of `static_pod` (upstream `IsMirrorPodOf`).
pub fn is_mirror_pod_of(mirror: &Pod, static_pod: &Pod) -> bool {
    full_name(mirror) == full_name(static_pod)
        && annotation(mirror, CONFIG_MIRROR).is_some()
        && annotation(mirror, CONFIG_MIRROR) == annotation(static_pod, CONFIG_HASH)
}

/// The mirror pod to create for a static pod (upstream `CreateMirrorPod`): a copy carrying
/// the hash as `config.mirror`, owned by the Node.
pub fn mirror_pod_for(static_pod: &Pod, node: &str, node_uid: &str) -> Pod {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    let mut annotations = static_pod.metadata.annotations.clone().unwrap_or_default();
    let hash = annotations.get(CONFIG_HASH).cloned().unwrap_or_default();
    annotations.insert(CONFIG_MIRROR.into(), hash);
    Pod {
        metadata: ObjectMeta {
            name: static_pod.metadata.name.clone(),
            namespace: static_pod.metadata.namespace.clone(),
            labels: static_pod.metadata.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.into(),
                uid: node_uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: static_pod.spec.clone(),
        status: None,
    }
}

/// What to do about one static pod's mirror.
#[derive(Debug, Clone, PartialEq)]
pub enum MirrorAction {
    Create(Box<Pod>),
    /// Delete (grace 0, UID precondition) a stale or orphaned mirror.
    Delete {
        namespace: String,
        name: String,
        uid: String,
    },
}

fn delete_of(mirror: &Pod) -> MirrorAction {
    MirrorAction::Delete {
        namespace: mirror.metadata.namespace.clone().unwrap_or_default(),
        name: mirror.metadata.name.clone().unwrap_or_default(),
        uid: mirror.metadata.uid.clone().unwrap_or_default(),
    }
}

/// Mirrors to delete and create so that each static pod has exactly its own (upstream
/// syncPod's mirror step plus the orphaned-mirror clean-up). `node_uid` is `None` while the
/// Node is not registered (or is being deleted): nothing is created then.
pub fn decide_mirrors(
    statics: &[&Pod],
    mirrors: &[&Pod],
    node: &str,
    node_uid: Option<&str>,
) -> Vec<MirrorAction> {
    let mut out = vec![];
    let by_name: BTreeMap<String, &Pod> = statics.iter().map(|p| (full_name(p), *p)).collect();
    let mut kept = BTreeSet::new();
    for m in mirrors {
        match by_name.get(&full_name(m)) {
            Some(s) if is_mirror_pod_of(m, s) && m.metadata.deletion_timestamp.is_none() => {
                kept.insert(full_name(m));
            }
            // Another incarnation's, being deleted through the API, or with no static pod.
            _ => out.push(delete_of(m)),
        }
    }
    if let Some(uid) = node_uid {
        for (name, s) in &by_name {
            if !kept.contains(name) {
                out.push(MirrorAction::Create(Box::new(mirror_pod_for(s, node, uid))));
            }
        }
    }
    out
}

/// Pods of one source: a new full set from the source becomes these changes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    /// New pods, and pods whose spec, labels or annotations changed.
    pub apply: Vec<Pod>,
    pub remove: Vec<Pod>,
    /// Pods left out: a second pod of the same full name (upstream's `FailedValidation`).
    pub duplicates: Vec<(Pod, String)>,
}

/// The pods of the file and HTTP sources (upstream `podStorage`), keyed by UID, and which
/// configured sources have sent a first set.
#[derive(Debug, Default, Clone)]
pub struct PodStorage {
    pods: BTreeMap<Source, BTreeMap<String, Pod>>,
    seen: BTreeSet<Source>,
}

/// Annotations the merge itself sets; a change in them is not a change of the pod.
const LOCAL_ANNOTATIONS: [&str; 3] = [CONFIG_SOURCE, CONFIG_MIRROR, CONFIG_SEEN];

fn same_pod(a: &Pod, b: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut p = p.clone();
        p.status = None;
        if let Some(a) = p.metadata.annotations.as_mut() {
            a.retain(|k, _| !LOCAL_ANNOTATIONS.contains(&k.as_str()));
        }
        p
    };
    strip(a) == strip(b)
}

/// Stamps the merge's annotations on a pod of `source`; `seen` is when it was first seen.
pub fn stamp(pod: &mut Pod, source: Source, seen: &str) {
    let ann = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(CONFIG_SOURCE.into(), source.as_str().into());
    ann.entry(CONFIG_SEEN.into()).or_insert_with(|| seen.into());
}

impl PodStorage {
    /// A full set from `source` at `now` (RFC 3339, for `config.seen`).
    pub fn set(&mut self, source: Source, pods: Vec<Pod>, now: &str) -> Changes {
        self.seen.insert(source);
        let old = self.pods.remove(&source).unwrap_or_default();
        let mut new: BTreeMap<String, Pod> = BTreeMap::new();
        let mut names = BTreeSet::new();
        let mut changes = Changes::default();
        for mut pod in pods {
            let name = full_name(&pod);
            if !names.insert(name.clone()) {
                let msg = format!(
                    "Error validating pod {}_{}({}) from {} due to duplicate pod name {:?}, ignoring",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.uid.as_deref().unwrap_or_default(),
                    source.as_str(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                changes.duplicates.push((pod, msg));
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if let Some(a) = pod.metadata.annotations.as_mut() {
                a.remove(CONFIG_SEEN);
            }
            match old.get(&uid) {
                Some(prev) => {
                    let seen = annotation(prev, CONFIG_SEEN).unwrap_or(now).to_string();
                    stamp(&mut pod, source, &seen);
                    if !same_pod(prev, &pod) {
                        changes.apply.push(pod.clone());
                    }
                }
                None => {
                    stamp(&mut pod, source, now);
                    changes.apply.push(pod.clone());
                }
            }
            new.insert(uid, pod);
        }
        for (uid, pod) in old {
            if !new.contains_key(&uid) {
                changes.remove.push(pod);
            }
        }
        self.pods.insert(source, new);
        changes
    }

    /// A source that is not merged here (the API's) has sent its first list.
    pub fn mark_seen(&mut self, source: Source) {
        self.seen.insert(source);
    }

    /// Whether every source in `configured` has sent its first set (upstream
    /// `SeenAllSources`).
    pub fn seen_all(&self, configured: &[Source]) -> bool {
        configured.iter().all(|s| self.seen.contains(s))
    }

    pub fn pods(&self, source: Source) -> impl Iterator<Item = &Pod> {
        self.pods.get(&source).into_iter().flat_map(|m| m.values())
    }
}

pub mod upstream_uid;

#[cfg(test)]
mod tests;

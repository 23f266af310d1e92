//! Pod sources and their merge (upstream `pkg/kubelet/config`; not the KubeletConfiguration,
//! which is the `kubelet-config` crate): static pod manifests decoded and defaulted as
//! upstream's `common.go` does, each source's full sets merged into adds, updates and
//! removes (`config.go`), and which pods are static or mirror pods (`pod/mirror_client.go`).
//!
//! One deviation: a static pod's UID is the MD5 of the decoded pod's canonical JSON, where
//! upstream hashes Go's debug print of its internal types. The UID has the same shape and
//! the same property (it changes with the manifest and not with the node), but a pod
//! started by the upstream kubelet is not adopted under the same UID.

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
    let v: serde_json::Value =
        serde_yaml::from_slice(bytes).map_err(|e| ManifestError::Syntax(e.to_string()))?;
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

/// The API server's v1 defaults for the fields the kubelet reads (upstream
/// `SetObjectDefaults_Pod`), so a static pod runs as the same pod posted to the API would.
pub fn v1_defaults(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.enable_service_links.get_or_insert(true);
    spec.security_context.get_or_insert_with(Default::default);
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        if c.image_pull_policy.is_none() {
            let tag = c
                .image
                .as_deref()
                .and_then(|i| i.rsplit('/').next())
                .and_then(|last| last.split_once(':').map(|(_, t)| t.to_string()));
            let latest = tag.is_none_or(|t| t == "latest");
            let digest = c.image.as_deref().is_some_and(|i| i.contains('@'));
            c.image_pull_policy = Some(
                if latest && !digest {
                    "Always"
                } else {
                    "IfNotPresent"
                }
                .into(),
            );
        }
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy
            .get_or_insert_with(|| "File".into());
        for p in c.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
        }
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

/// A static pod's UID: MD5 (hex) of the decoded and defaulted pod before it is renamed, so
/// it changes with the manifest and not with the node or the file's path.
pub fn static_pod_uid(pod: &Pod) -> String {
    use md5::Digest;
    let json = serde_json::to_vec(pod).unwrap_or_default();
    let digest = md5::Md5::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
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

#[cfg(test)]
mod tests;

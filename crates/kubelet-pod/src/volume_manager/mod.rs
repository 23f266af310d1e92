//! Sets up a pod's volumes before its containers start and tears them down after it ends
//! (upstream `pkg/kubelet/volumemanager` with the in-tree plugins of `pkg/volume`). The pod
//! worker calls [`VolumeManager::mount_pod`] on every sync, which also refreshes the contents
//! of configMap, secret, downwardAPI and projected volumes; [`VolumeManager::cleanup_orphans`]
//! removes what is left of pods the kubelet no longer knows, also after a restart.

use crate::credentialprovider::SecretSource;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use kubelet_api::events::{Recorder, WARNING, pod_ref};
use kubelet_cri::api;
use kubelet_host::mount::{Mounter, mount_points_under};
use kubelet_volume::payload::{self, Fetched, Payload};
use kubelet_volume::{
    CONFIG_MAP, DOWNWARD_API, EMPTY_DIR, PROJECTED, SECRET, VolumeError, atomic_writer, hostpath,
    subpath, volume_dir,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Why a pod's volumes are not (or not yet) set up or torn down; the text is what the
/// FailedMount event or the pod's status says.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Source(#[from] crate::credentialprovider::SourceError),
    #[error("cannot get {kind} {namespace}/{name}: no API server (standalone mode)")]
    Standalone {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("the pod's directory is being cleaned up; retrying")]
    CleaningUp,
    #[error("reading the mount table: {0}")]
    MountTable(#[source] std::io::Error),
    #[error("unmounted volumes=[{}]", .0.join(" "))]
    Unmounted(Vec<String>),
    #[error("{} is still mounted", .0.display())]
    StillMounted(PathBuf),
    #[error("removing {}: {source}", .path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    NoVolume { volume: String, container: String },
    #[error("failed to prepare subPath for volumeMount {volume:?} of container {container:?}")]
    SubPath { volume: String, container: String },
    #[error("invalid MountPropagation mode: {0:?}")]
    Propagation(String),
    #[error("volume plugin for {0:?} is not supported by this kubelet")]
    Unsupported(String),
    #[error("failed to fetch token: {0}")]
    Token(#[source] crate::credentialprovider::SourceError),
}

/// A token is renewed once it is older than this share of its lifetime (upstream's 80 %),
/// or older than a day.
const TOKEN_RENEW_AT: f64 = 0.8;
const TOKEN_MAX_AGE_SECS: i64 = 24 * 3600;
/// ServiceAccountTokenProjection's default expirationSeconds.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    namespace: String,
    service_account: String,
    audience: String,
    seconds: i64,
    pod_uid: String,
}

#[derive(Debug, Clone)]
struct Token {
    token: String,
    issued_unix: i64,
    expires_unix: i64,
}

impl Token {
    fn needs_renewal(&self, now_unix: i64) -> bool {
        let ttl = (self.expires_unix - self.issued_unix).max(0) as f64;
        let age = (now_unix - self.issued_unix) as f64;
        now_unix >= self.expires_unix
            || age > ttl * TOKEN_RENEW_AT
            || age > TOKEN_MAX_AGE_SECS as f64
    }
}

#[derive(Debug)]
pub struct VolumeManager {
    pub root_dir: PathBuf,
    pub mounter: Arc<dyn Mounter>,
    /// ConfigMaps, Secrets and tokens; `None` in standalone mode.
    pub sources: Option<Arc<dyn SecretSource>>,
    pub recorder: Recorder,
    /// For the downward API: node allocatable (default limits) and the node IP.
    pub allocatable: BTreeMap<String, String>,
    pub host_ip: String,
    pub clock: kubelet_core::clock::SharedClock,
    /// Watches of the ConfigMaps and Secrets the pods use; `None` in standalone mode.
    pub objects: Option<kubelet_api::object_manager::ObjectManager>,
    tokens: Mutex<HashMap<TokenKey, Token>>,
    /// Pods whose sources changed since their volumes were last refreshed.
    dirty: Mutex<HashSet<String>>,
    /// Pods whose volumes are set up (`true`) or whose directory the orphan clean-up is
    /// removing (`false`): the one excludes the other.
    claims: Mutex<HashMap<String, bool>>,
}

/// Ends a clean-up claim.
struct Release<'a>(&'a VolumeManager, &'a str);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut c = self.0.claims.lock().unwrap_or_else(|e| e.into_inner());
        if c.get(self.1) == Some(&false) {
            c.remove(self.1);
        }
    }
}

/// A token kept earlier, with its lifetime read from the JWT's `iat` and `exp` claims. Read
/// only from the kubelet's own store, never from the volume the container sees, and without
/// following a link.
fn token_on_disk(path: &Path) -> Option<Token> {
    use base64::Engine;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .ok()?;
    let mut token = String::new();
    f.by_ref().take(64 * 1024).read_to_string(&mut token).ok()?;
    let claims = token.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    Some(Token {
        issued_unix: claims.get("iat")?.as_i64()?,
        expires_unix: claims.get("exp")?.as_i64()?,
        token,
    })
}

/// Keeps a token in the kubelet's store (root only, written whole), so a restart can reuse it.
fn store_token(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

/// Volumes the kubelet fills from API objects: upstream mounts them read-only, always.
fn api_data(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// The plugin directory of a volume that lives under the pod directory; `None` for hostPath
/// and for kinds this kubelet does not support.
fn plugin_of(v: &Volume) -> Option<&'static str> {
    if v.empty_dir.is_some() {
        Some(EMPTY_DIR)
    } else if v.config_map.is_some() {
        Some(CONFIG_MAP)
    } else if v.secret.is_some() {
        Some(SECRET)
    } else if v.downward_api.is_some() {
        Some(DOWNWARD_API)
    } else if v.projected.is_some() {
        Some(PROJECTED)
    } else {
        None
    }
}

/// The volume source's field name, for the message about an unsupported kind.
fn kind_of(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|o| o.keys().find(|k| k.as_str() != "name").cloned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn propagation(m: Option<&str>) -> Result<i32, MountError> {
    Ok(match m {
        None | Some("None") => api::MountPropagation::PropagationPrivate as i32,
        Some("HostToContainer") => api::MountPropagation::PropagationHostToContainer as i32,
        Some("Bidirectional") => api::MountPropagation::PropagationBidirectional as i32,
        Some(other) => return Err(MountError::Propagation(other.into())),
    })
}

impl VolumeManager {
    pub fn new(
        root_dir: PathBuf,
        mounter: Arc<dyn Mounter>,
        sources: Option<Arc<dyn SecretSource>>,
        recorder: Recorder,
        clock: kubelet_core::clock::SharedClock,
    ) -> Self {
        VolumeManager {
            root_dir,
            mounter,
            sources,
            recorder,
            allocatable: BTreeMap::new(),
            host_ip: String::new(),
            clock,
            objects: None,
            tokens: Mutex::default(),
            dirty: Mutex::default(),
            claims: Mutex::default(),
        }
    }

    /// A source of the pod's changed: refresh its volumes at the next sync.
    pub fn mark_dirty(&self, uid: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string());
    }

    /// Whether a source of the pod changed since the last call.
    pub fn take_dirty(&self, uid: &str) -> bool {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid)
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(uid)
    }

    /// Where the volume is on the host.
    pub fn host_path(&self, pod: &Pod, v: &Volume) -> Option<PathBuf> {
        if let Some(h) = &v.host_path {
            return Some(PathBuf::from(&h.path));
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        plugin_of(v).map(|p| volume_dir(&self.root_dir, uid, p, &v.name))
    }

    /// Claims a pod directory for the orphan clean-up; `false` when its volumes are being set
    /// up (a worker has the pod).
    fn claim_for_cleanup(&self, uid: &str) -> bool {
        let mut c = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        match c.get(uid) {
            Some(true) => false,
            _ => {
                c.insert(uid.to_string(), false);
                true
            }
        }
    }

    /// Sets up (or refreshes) every volume of the pod. Each failure is a `FailedMount` event;
    /// `Err` names the volumes not ready, and the containers must not start.
    pub async fn mount_pod(&self, pod: &Pod) -> Result<(), MountError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        {
            let mut c = self.claims.lock().unwrap_or_else(|e| e.into_inner());
            if c.get(uid) == Some(&false) {
                return Err(MountError::CleaningUp);
            }
            c.insert(uid.to_string(), true);
        }
        if let Some(o) = &self.objects {
            o.register_pod(pod);
        }
        let vols = volumes(pod);
        if vols.is_empty() {
            return Ok(());
        }
        let mounted: HashSet<PathBuf> = self
            .mounter
            .mount_points()
            .map_err(MountError::MountTable)?
            .into_iter()
            .collect();
        let mut failed = vec![];
        for v in vols {
            // A volume set up before keeps serving its old contents when a refresh fails.
            let was_set_up = self.host_path(pod, v).is_some_and(|d| {
                v.host_path.is_none() && std::fs::symlink_metadata(d.join("..data")).is_ok()
            });
            if let Err(e) = self.set_up(pod, v, &mounted).await {
                debug!(volume = %v.name, error = %e, "volume set-up failed");
                self.recorder.emit(
                    pod_ref(pod, None),
                    WARNING,
                    "FailedMount",
                    format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name),
                );
                if !was_set_up {
                    failed.push(v.name.clone());
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(MountError::Unmounted(failed))
        }
    }

    async fn set_up(
        &self,
        pod: &Pod,
        v: &Volume,
        mounted: &HashSet<PathBuf>,
    ) -> Result<(), MountError> {
        if let Some(h) = &v.host_path {
            return Ok(hostpath::check_type(
                Path::new(&h.path),
                h.type_.as_deref(),
            )?);
        }
        let Some(dir) = self.host_path(pod, v) else {
            return Err(MountError::Unsupported(kind_of(v)));
        };
        let fresh = !dir.exists();
        if fresh {
            std::fs::create_dir_all(&dir).map_err(VolumeError::io("creating", &dir))?;
        }
        let gid = fs_group(pod);
        if let Some(e) = &v.empty_dir {
            let memory = e.medium.as_deref() == Some("Memory");
            if memory && !mounted.contains(&dir) {
                let size = e
                    .size_limit
                    .as_ref()
                    .and_then(|q| kubelet_core::quantity::parse_milli(&q.0).ok())
                    .map(|m| (m / 1000).max(0) as u64)
                    .filter(|s| *s > 0);
                self.mounter
                    .mount_tmpfs(&dir, size)
                    .map_err(VolumeError::io("mounting tmpfs at", &dir))?;
            }
            if fresh || (memory && !mounted.contains(&dir)) {
                // Every user of the pod may write here (upstream's 0777).
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(VolumeError::io("chmod", &dir))?;
                if let Some(g) = gid {
                    atomic_writer::set_ownership(&dir, g, false)?;
                }
            }
            return Ok(());
        }
        // Secrets, the downward API and projections never touch the disk (tmpfs).
        let in_memory = v.config_map.is_none();
        if in_memory && !mounted.contains(&dir) {
            self.mounter
                .mount_tmpfs(&dir, None)
                .map_err(VolumeError::io("mounting tmpfs at", &dir))?;
        }
        let payload = self.payload(pod, v).await?;
        let changed = atomic_writer::write(&dir, &payload, gid, self.clock.now())?;
        if changed {
            debug!(volume = %v.name, files = payload.len(), "volume contents written");
        }
        Ok(())
    }

    fn env_sources(&self) -> kubelet_core::envvars::EnvSources {
        kubelet_core::envvars::EnvSources {
            allocatable: self.allocatable.clone(),
            host_ip: self.host_ip.clone(),
            ..Default::default()
        }
    }

    fn source(
        &self,
        kind: &'static str,
        ns: &str,
        name: &str,
    ) -> Result<&dyn SecretSource, MountError> {
        self.sources
            .as_deref()
            .ok_or_else(|| MountError::Standalone {
                kind,
                namespace: ns.into(),
                name: name.into(),
            })
    }

    async fn payload(&self, pod: &Pod, v: &Volume) -> Result<Payload, MountError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(c) = &v.config_map {
            let obj = self
                .source("configmap", ns, &c.name)?
                .get_config_map(ns, &c.name)
                .await?;
            return payload::config_map(
                &c.name,
                c.items.as_deref(),
                c.default_mode,
                c.optional == Some(true),
                obj.as_ref(),
            )
            .map_err(MountError::from);
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let obj = self
                .source("secret", ns, &name)?
                .get_secret(ns, &name)
                .await?;
            return payload::secret(
                &name,
                s.items.as_deref(),
                s.default_mode,
                s.optional == Some(true),
                obj.as_ref(),
            )
            .map_err(MountError::from);
        }
        if let Some(d) = &v.downward_api {
            return payload::downward_api(
                pod,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode,
                &self.env_sources(),
            )
            .map_err(MountError::from);
        }
        if let Some(p) = &v.projected {
            let mut f = Fetched::default();
            for (i, s) in p.sources.iter().flatten().enumerate() {
                if let Some(c) = &s.config_map {
                    let obj = self
                        .source("configmap", ns, &c.name)?
                        .get_config_map(ns, &c.name)
                        .await?;
                    f.config_maps.insert(c.name.clone(), obj);
                } else if let Some(c) = &s.secret {
                    let obj = self
                        .source("secret", ns, &c.name)?
                        .get_secret(ns, &c.name)
                        .await?;
                    f.secrets.insert(c.name.clone(), obj);
                } else if let Some(t) = &s.service_account_token {
                    let tok = self
                        .token(pod, t.audience.as_deref(), t.expiration_seconds)
                        .await?;
                    f.tokens.insert(i, tok);
                }
            }
            return payload::projected(pod, p, &f, &self.env_sources()).map_err(MountError::from);
        }
        Ok(Payload::new())
    }

    /// Where the kubelet keeps a pod's token, outside every volume.
    fn token_path(&self, key: &TokenKey) -> PathBuf {
        let id = format!("{}\0{}\0{}", key.service_account, key.audience, key.seconds);
        self.pod_dir(&key.pod_uid)
            .join("plugins")
            .join("kubelet-rs~tokens")
            .join(format!("{:016x}", kubelet_core::hash::fnv1a(id.as_bytes())))
    }

    /// A token for the pod's service account, from the cache while it is young enough. After
    /// a restart the cache is seeded from the kubelet's own token store, so a restart does not
    /// rotate every pod's token.
    async fn token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        seconds: Option<i64>,
    ) -> Result<String, MountError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = TokenKey {
            namespace: ns.clone(),
            service_account: sa.clone(),
            audience: audience.unwrap_or_default().to_string(),
            seconds: seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        let now = self.clock.now_unix_ns() / 1_000_000_000;
        let in_memory = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let cached = in_memory.or_else(|| {
            let t = token_on_disk(&self.token_path(&key))?;
            self.tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), t.clone());
            Some(t)
        });
        if let Some(t) = &cached
            && !t.needs_renewal(now)
        {
            return Ok(t.token.clone());
        }
        let src = self.source("token for service account", &ns, &sa)?;
        let got = src
            .request_token(
                &ns,
                &sa,
                audience,
                key.seconds,
                pod.metadata.name.as_deref().unwrap_or_default(),
                &key.pod_uid,
            )
            .await;
        match got {
            Ok((token, expires_unix)) => {
                info!(service_account = %sa, "service account token issued");
                let t = Token {
                    token: token.clone(),
                    issued_unix: now,
                    expires_unix,
                };
                let stored = self.token_path(&key);
                if let Err(e) = store_token(&stored, &token) {
                    warn!(path = %stored.display(), error = %e, "keeping the token failed");
                }
                self.tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, t);
                Ok(token)
            }
            // Keep serving a still valid token while the API server is away.
            Err(e) => match cached.filter(|t| now < t.expires_unix) {
                Some(t) => {
                    warn!(error = %e, "renewing the service account token failed");
                    Ok(t.token)
                }
                None => Err(MountError::Token(e)),
            },
        }
    }

    /// The CRI mounts of one container: its volumeMounts, with subPaths bind-mounted from a
    /// descriptor checked to stay inside the volume. `Err` is the CreateContainerConfigError.
    pub fn container_mounts(
        &self,
        pod: &Pod,
        c: &Container,
        env: &[(String, String)],
    ) -> Result<Vec<api::Mount>, MountError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let mut out = vec![];
        for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
            let v = volumes(pod)
                .iter()
                .find(|v| v.name == m.name)
                .ok_or_else(|| MountError::NoVolume {
                    volume: m.name.clone(),
                    container: c.name.clone(),
                })?;
            let mut host = self.host_path(pod, v).ok_or_else(|| MountError::NoVolume {
                volume: m.name.clone(),
                container: c.name.clone(),
            })?;
            let sub = match (&m.sub_path, &m.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => {
                    let vars: HashMap<&str, &str> =
                        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    Some(kubelet_core::envvars::expand(e, &|k| {
                        vars.get(k).map(|v| v.to_string())
                    }))
                }
                _ => None,
            };
            if let Some(sub) = sub {
                let target = self
                    .pod_dir(uid)
                    .join("volume-subpaths")
                    .join(&m.name)
                    .join(&c.name)
                    .join(i.to_string());
                host = self.bind_subpath(&host, &sub, &target).map_err(|e| {
                    // The detail may describe the host's files: keep it in the log.
                    warn!(volume = %m.name, container = %c.name, error = %e, "subPath refused");
                    MountError::SubPath {
                        volume: m.name.clone(),
                        container: c.name.clone(),
                    }
                })?;
            }
            out.push(api::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.to_string_lossy().into_owned(),
                // API data is never writable by the container (CVE-2017-1002102).
                readonly: m.read_only == Some(true) || api_data(v),
                selinux_relabel: false,
                propagation: propagation(m.mount_propagation.as_deref())?,
            });
        }
        Ok(out)
    }

    fn bind_subpath(
        &self,
        volume: &Path,
        sub: &str,
        target: &Path,
    ) -> Result<PathBuf, VolumeError> {
        let (fd, is_dir) = subpath::open(volume, sub)?;
        // A restarted container mounts afresh: the old bind may show an older file.
        if self
            .mounter
            .mount_points()
            .map_err(VolumeError::io("reading mounts", target))?
            .iter()
            .any(|p| p == target)
        {
            self.mounter
                .unmount(target)
                .map_err(VolumeError::io("unmounting", target))?;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(VolumeError::io("creating", parent))?;
        }
        if !target.exists() {
            if is_dir {
                std::fs::create_dir(target).map_err(VolumeError::io("creating", target))?;
            } else {
                std::fs::File::create(target).map_err(VolumeError::io("creating", target))?;
            }
        }
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        self.mounter
            .bind(&proc_path, target, false)
            .map_err(VolumeError::io("bind-mounting", target))?;
        drop(fd);
        Ok(target.to_path_buf())
    }

    /// Unmounts and removes every volume of a pod. `Err` while anything is still mounted: the
    /// pod directory is then left alone, since deleting through a mount would delete data.
    pub fn unmount_pod(&self, uid: &str) -> Result<(), MountError> {
        let dir = self.pod_dir(uid);
        {
            let mut c = self.claims.lock().unwrap_or_else(|e| e.into_inner());
            if c.get(uid) == Some(&true) {
                c.remove(uid);
            }
        }
        if let Some(o) = &self.objects {
            o.unregister_pod(uid);
        }
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| k.pod_uid != uid);
        let points =
            mount_points_under(self.mounter.as_ref(), &dir).map_err(MountError::MountTable)?;
        for p in &points {
            if let Err(e) = self.mounter.unmount(p) {
                warn!(path = %p.display(), error = %e, "unmount failed");
            }
        }
        let left =
            mount_points_under(self.mounter.as_ref(), &dir).map_err(MountError::MountTable)?;
        if let Some(p) = left.first() {
            return Err(MountError::StillMounted(p.clone()));
        }
        for sub in ["volumes", "volume-subpaths", "plugins"] {
            let d = dir.join(sub);
            // Never through a mount the table did not show.
            if let Err(source) = kubelet_host::fs::remove_all_one_fs(&d) {
                return Err(MountError::Remove { path: d, source });
            }
        }
        if !points.is_empty() {
            debug!(uid, mounts = points.len(), "pod volumes torn down");
        }
        // Gone once nothing else of the pod's is left in it.
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }

    /// Whether the pod's volumes are gone (nothing mounted, no volume directory): upstream's
    /// `podVolumesExist` negated, part of `podResourcesAreReclaimed`.
    pub fn volumes_reclaimed(&self, uid: &str) -> bool {
        let dir = self.pod_dir(uid);
        mount_points_under(self.mounter.as_ref(), &dir).is_ok_and(|m| m.is_empty())
            && !dir.join("volumes").exists()
    }

    /// Tears down pod directories of pods not in `active` (deleted while the kubelet was
    /// down, or whose clean-up failed earlier).
    pub fn cleanup_orphans(&self, active: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(self.root_dir.join("pods")) else {
            return;
        };
        for e in entries.flatten() {
            let uid = e.file_name().to_string_lossy().into_owned();
            if active.contains(&uid) {
                continue;
            }
            // A pod given to a worker since `active` was taken sets its volumes up: leave it.
            if !self.claim_for_cleanup(&uid) {
                continue;
            }
            let result = self.unmount_pod(&uid);
            let _release = Release(self, &uid);
            match result {
                Ok(()) => {
                    let dir = self.pod_dir(&uid);
                    match kubelet_host::fs::remove_all_one_fs(&dir) {
                        Ok(()) => info!(uid, "orphaned pod directory removed"),
                        Err(e) => warn!(uid, error = %e, "removing orphaned pod directory failed"),
                    }
                }
                Err(e) => warn!(uid, error = %e, "orphaned pod volumes not yet torn down"),
            }
        }
    }

    /// The root directory as a shared mount, so mountPropagation works (upstream does this at
    /// start-up too).
    pub fn prepare_root(&self) {
        if let Err(e) = self.mounter.make_rshared(&self.root_dir) {
            warn!(dir = %self.root_dir.display(), error = %e, "making the root directory rshared failed; mountPropagation will not work");
        }
    }
}

/// How often the housekeeping looks for orphaned pod directories.
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests;

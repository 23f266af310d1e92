//! TLS bootstrap's file side (upstream `pkg/kubelet/certificate/bootstrap/bootstrap.go`,
//! `LoadClientConfig` with `rotateCertificates: true`): whether the kubeconfig still holds a
//! usable client certificate, and, when it does not, the kubeconfig written at once to point
//! at `kubelet-client-current.pem`, which the certificate manager then fills through a CSR
//! sent with the bootstrap credentials.

use super::CertError;
use super::pki::load_pair;
use base64::Engine;
use k8s_openapi::jiff::Timestamp;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// How the written kubeconfig trusts the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// `certificate-authority`: a file path.
    File(PathBuf),
    /// `certificate-authority-data`: PEM bytes.
    Data(Vec<u8>),
    None,
}

/// The cluster stanza taken over from the bootstrap kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub server: String,
    pub ca: CaSource,
    pub insecure_skip_tls_verify: bool,
}

/// What to do with `--kubeconfig` (upstream `LoadClientConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Connect with the kubeconfig as it is.
    UseExisting,
    /// Write the kubeconfig with [`write_kubeconfig`] and request a client certificate with
    /// the bootstrap kubeconfig's credentials.
    Bootstrap,
}

fn kubeconfig_err(message: impl std::fmt::Display) -> CertError {
    CertError::Parse {
        what: "kubeconfig",
        message: message.to_string(),
    }
}

/// The current context's cluster and user.
fn current(kc: &Kubeconfig) -> Result<(Option<&Cluster>, Option<&AuthInfo>), CertError> {
    let name = kc
        .current_context
        .as_deref()
        .ok_or_else(|| kubeconfig_err("no current-context"))?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| kubeconfig_err(format!("context {name:?} not found")))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.as_ref());
    let user = ctx.user.as_deref().and_then(|u| {
        kc.auth_infos
            .iter()
            .find(|a| a.name == u)
            .and_then(|a| a.auth_info.as_ref())
    });
    Ok((cluster, user))
}

/// The client certificate and key files the kubeconfig's current user names (none when it
/// embeds them, or on any error): the store's fallback.
pub fn client_files(path: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let Ok(kc) = read(path) else {
        return (None, None);
    };
    match current(&kc) {
        Ok((_, Some(a))) => (
            a.client_certificate.as_ref().map(PathBuf::from),
            a.client_key.as_ref().map(PathBuf::from),
        ),
        _ => (None, None),
    }
}

fn read(path: &Path) -> Result<Kubeconfig, CertError> {
    Kubeconfig::read_from(path).map_err(kubeconfig_err)
}

fn b64(s: &str) -> Result<Vec<u8>, CertError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(kubeconfig_err)
}

/// The bootstrap kubeconfig's server and CA (relative paths resolved against its directory).
pub fn cluster_from_kubeconfig(path: &Path) -> Result<ClusterInfo, CertError> {
    let kc = read(path)?;
    let (cluster, _) = current(&kc)?;
    let cluster = cluster.ok_or_else(|| kubeconfig_err("the current context has no cluster"))?;
    let ca = match (
        &cluster.certificate_authority,
        &cluster.certificate_authority_data,
    ) {
        (Some(f), _) if !f.is_empty() => CaSource::File(f.into()),
        (_, Some(d)) if !d.is_empty() => CaSource::Data(b64(d)?),
        _ => CaSource::None,
    };
    Ok(ClusterInfo {
        server: cluster.server.clone().unwrap_or_default(),
        ca,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
    })
}

/// The client certificate and key of the current user: inline data wins over files, as in
/// client-go.
fn client_material(auth: &AuthInfo) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let cert = match (&auth.client_certificate_data, &auth.client_certificate) {
        (Some(d), _) => b64(d)?,
        (None, Some(f)) => std::fs::read(f).map_err(kubeconfig_err)?,
        (None, None) => return Err(kubeconfig_err("no client certificate")),
    };
    // The key data is a SecretString; its serde form is the only public way to read it.
    let key_data = serde_json::to_value(auth)
        .ok()
        .and_then(|v| v.get("client-key-data")?.as_str().map(str::to_string));
    let key = match (key_data, &auth.client_key) {
        (Some(d), _) => b64(&d)?,
        (None, Some(f)) => std::fs::read(f).map_err(kubeconfig_err)?,
        (None, None) => return Err(kubeconfig_err("no client key")),
    };
    Ok((cert, key))
}

/// The pair embedded in the kubeconfig (kubeadm init's `kubelet.conf`), for the manager's
/// `bootstrap` pair; `None` when the user names files or has no certificate.
pub fn embedded_pair(path: &Path) -> Option<(Vec<u8>, Vec<u8>)> {
    let kc = read(path).ok()?;
    let (_, auth) = current(&kc).ok()?;
    let auth = auth?;
    auth.client_certificate_data.as_ref()?;
    client_material(auth).ok()
}

/// Upstream `isClientConfigStillValid`: the file loads, its client pair loads, and no
/// certificate of the chain has expired at `now`.
pub fn kubeconfig_still_valid(path: &Path, now: Timestamp) -> bool {
    if !path.exists() {
        return false;
    }
    let r = (|| {
        let kc = read(path)?;
        let (_, auth) = current(&kc)?;
        let (c, k) = client_material(auth.ok_or_else(|| kubeconfig_err("no user"))?)?;
        let pair = load_pair(&c, &k)?;
        if pair.expires < now {
            return Err(kubeconfig_err(format!(
                "part of the existing client certificate expired at {}",
                pair.expires
            )));
        }
        Ok::<_, CertError>(())
    })();
    match r {
        Ok(()) => true,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "the kubeconfig's client certificate is not usable");
            false
        }
    }
}

/// Upstream `LoadClientConfig` (rotation on): without a bootstrap kubeconfig, or with a
/// kubeconfig that is still valid, use it; else bootstrap.
pub fn decide(kubeconfig: &Path, bootstrap_present: bool, now: Timestamp) -> Decision {
    if !bootstrap_present {
        return Decision::UseExisting;
    }
    if kubeconfig_still_valid(kubeconfig, now) {
        info!("current kubeconfig file contents are still valid, no bootstrap necessary");
        return Decision::UseExisting;
    }
    Decision::Bootstrap
}

/// Upstream `writeKubeconfigFromBootstrapping`: cluster `default-cluster`, user
/// `default-auth` whose certificate and key are both `pem_path`, context `default-context`
/// (namespace `default`). Written whole, mode 0600.
pub fn write_kubeconfig(
    path: &Path,
    cluster: &ClusterInfo,
    pem_path: &Path,
) -> Result<(), CertError> {
    let (ca_file, ca_data) = match &cluster.ca {
        CaSource::File(f) => (Some(f.to_string_lossy().into_owned()), None),
        CaSource::Data(d) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(d)),
        ),
        CaSource::None => (None, None),
    };
    let pem = pem_path.to_string_lossy().into_owned();
    let kc = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: "default-cluster".into(),
            cluster: Some(Cluster {
                server: Some(cluster.server.clone()),
                insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.then_some(true),
                certificate_authority: ca_file,
                certificate_authority_data: ca_data,
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "default-auth".into(),
            auth_info: Some(AuthInfo {
                client_certificate: Some(pem.clone()),
                client_key: Some(pem),
                ..Default::default()
            }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: "default-context".into(),
            context: Some(Context {
                cluster: "default-cluster".into(),
                user: Some("default-auth".into()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some("default-context".into()),
        ..Default::default()
    };
    let yaml = kubelet_core::yaml::to_string(&kc).map_err(kubeconfig_err)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
            what: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    super::write_atomic(path, yaml.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pki::tests::{TestCa, issue, tmpdir, ts};
    use crate::certificate::store::FileStore;
    use kubelet_core::certificate::client_template;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_as_upstream_from_a_bootstrap_kubeconfig() {
        let dir = tmpdir("bootstrap-write");
        std::fs::write(dir.join("ca.crt"), "CA").unwrap();
        let boot = dir.join("bootstrap-kubelet.conf");
        std::fs::write(
            &boot,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority: ca.crt\ncontexts:\n- name: tls-bootstrap-token-user@kubernetes\n  context:\n    cluster: kubernetes\n    user: tls-bootstrap-token-user\ncurrent-context: tls-bootstrap-token-user@kubernetes\nusers:\n- name: tls-bootstrap-token-user\n  user:\n    token: abcdef.0123456789abcdef\n",
        )
        .unwrap();
        let cluster = cluster_from_kubeconfig(&boot).unwrap();
        assert_eq!(cluster.server, "https://10.0.0.1:6443");
        assert_eq!(cluster.ca, CaSource::File(dir.join("ca.crt")));
        assert!(!cluster.insecure_skip_tls_verify);

        let out = dir.join("etc/kubelet.conf");
        let pem = dir.join("pki/kubelet-client-current.pem");
        write_kubeconfig(&out, &cluster, &pem).unwrap();
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let v = kubelet_core::yaml::to_json(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let want = kubelet_core::yaml::to_json(&format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: default-cluster\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority: {ca}\nusers:\n- name: default-auth\n  user:\n    client-certificate: {pem}\n    client-key: {pem}\ncontexts:\n- name: default-context\n  context:\n    cluster: default-cluster\n    user: default-auth\n    namespace: default\ncurrent-context: default-context\n",
            ca = dir.join("ca.crt").display(),
            pem = pem.display()
        ))
        .unwrap();
        assert_eq!(v, want);

        // CA data is carried as data.
        let with_data = ClusterInfo {
            server: "https://s".into(),
            ca: CaSource::Data(b"PEM".to_vec()),
            insecure_skip_tls_verify: false,
        };
        write_kubeconfig(&out, &with_data, &pem).unwrap();
        assert_eq!(cluster_from_kubeconfig(&out).unwrap(), with_data);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn validity_and_decision() {
        let dir = tmpdir("bootstrap-valid");
        let ca = TestCa::new();
        let kubeconfig = dir.join("kubelet.conf");
        let now = ts("2026-06-01T00:00:00Z");
        assert!(!kubeconfig_still_valid(&kubeconfig, now));
        assert_eq!(decide(&kubeconfig, false, now), Decision::UseExisting);
        assert_eq!(decide(&kubeconfig, true, now), Decision::Bootstrap);

        // Written by bootstrap, before the certificate exists: not valid yet.
        let store = FileStore::new("kubelet-client", &dir, None, None).unwrap();
        let cluster = ClusterInfo {
            server: "https://s".into(),
            ca: CaSource::None,
            insecure_skip_tls_verify: true,
        };
        write_kubeconfig(&kubeconfig, &cluster, &store.current_path()).unwrap();
        assert_eq!(decide(&kubeconfig, true, now), Decision::Bootstrap);
        assert!(embedded_pair(&kubeconfig).is_none());

        let (c, k) = issue(
            &ca,
            &client_template("a"),
            ts("2026-01-01T00:00:00Z"),
            ts("2027-01-01T00:00:00Z"),
        );
        store.update(c.as_bytes(), k.as_bytes(), now).unwrap();
        assert!(kubeconfig_still_valid(&kubeconfig, now));
        assert_eq!(decide(&kubeconfig, true, now), Decision::UseExisting);
        // Expired.
        assert!(!kubeconfig_still_valid(
            &kubeconfig,
            ts("2027-01-02T00:00:00Z")
        ));
        assert!(embedded_pair(&kubeconfig).is_none());

        // Embedded data (kubeadm init's kubelet.conf).
        let e = base64::engine::general_purpose::STANDARD;
        let inline = dir.join("inline.conf");
        std::fs::write(
            &inline,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://s\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
                e.encode(&c),
                e.encode(&k)
            ),
        )
        .unwrap();
        assert!(kubeconfig_still_valid(&inline, now));
        assert_eq!(
            embedded_pair(&inline),
            Some((c.clone().into_bytes(), k.clone().into_bytes()))
        );

        // A key of another pair, or garbage: not valid.
        let (_, other_key) = issue(&ca, &client_template("a"), now, now);
        std::fs::write(
            &inline,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://s\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
                e.encode(&c),
                e.encode(&other_key)
            ),
        )
        .unwrap();
        assert!(!kubeconfig_still_valid(&inline, now));
        std::fs::write(&inline, ":: not yaml").unwrap();
        assert!(!kubeconfig_still_valid(&inline, now));
        assert_eq!(decide(&inline, true, now), Decision::Bootstrap);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

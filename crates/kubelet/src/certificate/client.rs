//! The node's client certificate at start-up (upstream `server.go` `buildKubeletClientConfig`
//! with `rotateCertificates: true`): bootstrapped through a CSR with the bootstrap
//! kubeconfig's credentials when `--kubeconfig` holds no usable one, then rotated before it
//! expires. The API clients present whatever the manager published last.

use super::CertError;
use super::bootstrap::{
    Decision, client_files, cluster_from_kubeconfig, decide, embedded_pair, write_kubeconfig,
};
use super::manager::{CertificateManager, ClientFn, Config, fixed_template, random_fraction};
use super::store::FileStore;
use async_trait::async_trait;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kubelet_api::api::WatchStream;
use kubelet_api::client::ClientCertificate;
use kubelet_api::{ApiClient, ApiError, CsrClient};
use kubelet_core::certificate::{CLIENT, client_template};
use kubelet_core::clock::SharedClock;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tracing::{info, warn};

/// Why the client certificate could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientCertError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("bootstrap kubeconfig {path}: {message}")]
    Bootstrap { path: String, message: String },
    #[error(
        "--bootstrap-kubeconfig with rotateCertificates: false is not supported (upstream's blocking bootstrap is not built); set rotateCertificates: true, as kubeadm does"
    )]
    NoRotation,
}

/// A rotating client certificate, ready to hand to the API clients.
#[derive(Debug)]
pub struct ClientCert {
    pub current: ClientCertificate,
    /// Spawn it once the node's client is in `node_client`.
    pub manager: CertificateManager,
    /// The node's own main client, for CSRs once it has a certificate.
    pub node_client: Arc<OnceLock<ApiClient>>,
}

/// Before the node's client exists (never, once the manager runs).
#[derive(Debug)]
struct NotReady;

#[async_trait]
impl CsrClient for NotReady {
    async fn create_csr(
        &self,
        _csr: &CertificateSigningRequest,
    ) -> kubelet_api::error::Result<CertificateSigningRequest> {
        Err(ApiError::status(
            503,
            "NotReady",
            "the API client is not ready",
        ))
    }

    fn watch_csr(&self, _name: &str) -> WatchStream<CertificateSigningRequest> {
        use futures::StreamExt;
        futures::stream::once(async {
            Err(ApiError::status(
                503,
                "NotReady",
                "the API client is not ready",
            ))
        })
        .boxed()
    }
}

/// A plain client from the bootstrap kubeconfig (a bootstrap token, usually).
async fn bootstrap_client(path: &Path, qps: f64, burst: u32) -> Result<ApiClient, ClientCertError> {
    let err = |message: String| ClientCertError::Bootstrap {
        path: path.display().to_string(),
        message,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    let client = kube::Client::try_from(config).map_err(|e| err(e.to_string()))?;
    Ok(ApiClient::new(client, qps, burst))
}

/// Where the client configuration lives: `--kubeconfig`, `--bootstrap-kubeconfig`,
/// `--cert-dir`.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    pub kubeconfig: &'a Path,
    pub bootstrap: Option<&'a Path>,
    pub cert_dir: &'a Path,
}

/// Sets up the client certificate for `--kubeconfig`, or says there is nothing to do (no
/// rotation and no bootstrap: the kubeconfig is used as it is). `qps`/`burst` limit the
/// bootstrap client.
pub async fn setup(
    paths: Paths<'_>,
    rotate: bool,
    node: &str,
    clock: SharedClock,
    qps: f64,
    burst: u32,
) -> Result<Option<ClientCert>, ClientCertError> {
    let Paths {
        kubeconfig,
        bootstrap,
        cert_dir,
    } = paths;
    let decision = decide(kubeconfig, bootstrap.is_some(), clock.now());
    if !rotate {
        return match decision {
            Decision::UseExisting => Ok(None),
            Decision::Bootstrap => Err(ClientCertError::NoRotation),
        };
    }
    std::fs::create_dir_all(cert_dir).map_err(|source| CertError::Io {
        what: "creating",
        path: cert_dir.to_path_buf(),
        source,
    })?;
    // Also kept when not bootstrapping now: a pair that expires later is replaced with the
    // bootstrap credentials, as upstream's.
    // (kubeadm join deletes the bootstrap kubeconfig once joined: not needed then.)
    let boot = match bootstrap {
        Some(b) if decision == Decision::Bootstrap || b.exists() => {
            match bootstrap_client(b, qps, burst).await {
                Ok(c) => Some(c),
                Err(e) if decision == Decision::Bootstrap => return Err(e),
                Err(e) => {
                    warn!(error = %e, "the bootstrap kubeconfig is not usable; not kept for later");
                    None
                }
            }
        }
        _ => None,
    };
    let (mut embedded, mut files) = (None, (None, None));
    match (decision, bootstrap) {
        (Decision::Bootstrap, Some(b)) => {
            let cluster = cluster_from_kubeconfig(b)?;
            let store = FileStore::new(CLIENT.store_prefix, cert_dir, None, None)?;
            write_kubeconfig(kubeconfig, &cluster, &store.current_path())?;
            info!(kubeconfig = %kubeconfig.display(), bootstrap = %b.display(), "no usable client certificate: bootstrapping one through a CSR");
        }
        _ => {
            embedded = embedded_pair(kubeconfig);
            files = client_files(kubeconfig);
        }
    }
    let store = FileStore::new(CLIENT.store_prefix, cert_dir, files.0, files.1)?;
    let node_client: Arc<OnceLock<ApiClient>> = Arc::default();
    let client: ClientFn = {
        let node_client = node_client.clone();
        Arc::new(move |current| -> Arc<dyn CsrClient> {
            match (&boot, current, node_client.get()) {
                // No certificate yet: the bootstrap credentials ask for one.
                (Some(b), None, _) => Arc::new(b.clone()),
                (_, _, Some(n)) => Arc::new(n.clone()),
                (Some(b), _, None) => Arc::new(b.clone()),
                (None, _, None) => Arc::new(NotReady),
            }
        })
    };
    let manager = CertificateManager::new(Config {
        profile: CLIENT,
        template: fixed_template(client_template(node)),
        store,
        client,
        clock,
        bootstrap: embedded.take(),
        jitter: random_fraction,
    });
    Ok(Some(ClientCert {
        current: manager.subscribe(),
        manager,
        node_client,
    }))
}

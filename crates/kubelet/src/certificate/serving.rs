//! The serving certificate with `serverTLSBootstrap` (upstream `pkg/kubelet/certificate/
//! kubelet.go` `NewKubeletServerCertificateManager`): requested through a CSR for signer
//! `kubernetes.io/kubelet-serving` with the node's addresses as SANs, stored as
//! `kubelet-server-*.pem` in `--cert-dir`, rotated like the client's. Someone must approve
//! these CSRs (the controller-manager does not); until then 10250's handshakes fail, as
//! upstream's.

use super::CertError;
use super::manager::{CertificateManager, ClientFn, Config, random_fraction};
use super::store::FileStore;
use k8s_openapi::api::core::v1::NodeAddress;
use kubelet_api::{ApiClient, CsrClient};
use kubelet_core::certificate::{SERVING, serving_template};
use kubelet_core::clock::SharedClock;
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// 10250's certificate: the manager's current pair at each handshake (none: the handshake
/// fails). Connections keep the pair of their handshake.
#[derive(Debug)]
pub struct ServingCert(watch::Receiver<Option<Arc<CertifiedKey>>>);

impl rustls::server::ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.borrow().clone()
    }
}

/// Starts the serving certificate manager; `files` (tlsCertFile, tlsPrivateKeyFile) serve
/// until the first CSR is issued.
#[allow(clippy::too_many_arguments)]
pub fn start(
    node: &str,
    addresses: &[NodeAddress],
    cert_dir: &Path,
    files: Option<(&str, &str)>,
    client: &ApiClient,
    clock: SharedClock,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) -> Result<Arc<dyn rustls::server::ResolvesServerCert>, CertError> {
    std::fs::create_dir_all(cert_dir).map_err(|source| CertError::Io {
        what: "creating",
        path: cert_dir.to_path_buf(),
        source,
    })?;
    let store = FileStore::new(
        SERVING.store_prefix,
        cert_dir,
        files.map(|(c, _)| PathBuf::from(c)),
        files.map(|(_, k)| PathBuf::from(k)),
    )?;
    let client = client.clone();
    let client: ClientFn = Arc::new(move |_| -> Arc<dyn CsrClient> { Arc::new(client.clone()) });
    // The addresses are read once at start; a template with none waits.
    let (_tx, template) = watch::channel(serving_template(node, addresses));
    let manager = CertificateManager::new(Config {
        profile: SERVING,
        template,
        store,
        client,
        clock,
        bootstrap: None,
        jitter: random_fraction,
    });
    let current = manager.subscribe();
    tasks.spawn("serving certificate", manager.run(cancel.child_token()));
    Ok(Arc::new(ServingCert(current)))
}

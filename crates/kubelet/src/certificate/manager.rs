//! The certificate manager (upstream `client-go/util/certificate/certificate_manager.go`): one
//! task per certificate kind that keeps a pair in the [`FileStore`], publishes it to TLS, and
//! replaces it through a CSR at 70–90 % of its lifetime, at once when it has none or the pair
//! does not match the template, and once after a bootstrap pair.
//!
//! Left out: upstream's `exitAfter` watchdog (the transport's job, wired elsewhere) and the
//! server-health bookkeeping (`updateServerError`), which only feeds that watchdog.

use super::CertError;
use super::pki::{Pair, generate_csr};
use super::store::FileStore;
use kubelet_api::CsrClient;
use kubelet_api::certificate::csr::{CsrError, request_certificate, wait_for_certificate};
use kubelet_core::certificate::{CsrProfile, Template, rotation_deadline, satisfies};
use kubelet_core::clock::SharedClock;
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Upstream `certificateWaitTimeout`.
const CERTIFICATE_WAIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Upstream's back-off after a failed rotation: 2 s doubling, 5 tries, then every 32 s.
const BACKOFF_START: Duration = Duration::from_secs(2);
const BACKOFF_STEPS: u32 = 5;
const POLL_AFTER_BACKOFF: Duration = Duration::from_secs(32);

/// The CSR client to use given the current pair: bootstrap credentials while there is none,
/// the node's own afterwards (upstream `ClientsetFn`).
pub type ClientFn = Arc<dyn Fn(Option<&CertifiedKey>) -> Arc<dyn CsrClient> + Send + Sync>;

/// What one manager needs.
pub struct Config {
    pub profile: CsrProfile,
    /// What to ask for. `None` waits (serving, until the Node's addresses are known); a new
    /// value interrupts a wait or a pending CSR, as upstream's dynamic template does.
    pub template: watch::Receiver<Option<Template>>,
    pub store: FileStore,
    pub client: ClientFn,
    pub clock: SharedClock,
    /// A pair from the kubeconfig (kubeadm's embedded one), stored and rotated at once when
    /// the store has none of its own.
    pub bootstrap: Option<(Vec<u8>, Vec<u8>)>,
    /// Uniform in [0, 1), drawn for each deadline; [`random_fraction`] outside tests.
    pub jitter: fn() -> f64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("profile", &self.profile)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A template that never changes (the client certificate's).
pub fn fixed_template(t: Template) -> watch::Receiver<Option<Template>> {
    watch::channel(Some(t)).1
}

/// A fraction from the system's secure RNG (0.5 if it fails, which ring says it does not).
pub fn random_fraction() -> f64 {
    let mut b = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, thiserror::Error)]
enum RotateError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// See the module docs. Build it with [`CertificateManager::new`], take receivers with
/// [`subscribe`](Self::subscribe), then spawn [`run`](Self::run).
#[derive(Debug)]
pub struct CertificateManager {
    cfg: Config,
    current: Option<Pair>,
    /// Rotate at once regardless of the deadline (after a bootstrap pair).
    force: bool,
    tx: watch::Sender<Option<Arc<CertifiedKey>>>,
}

impl CertificateManager {
    /// Loads the store's pair (or stores the bootstrap one) and publishes it at once, so TLS
    /// has it before the task runs.
    pub fn new(mut cfg: Config) -> Self {
        // An expired pair counts as none (upstream `Current`): the bootstrap credentials, if
        // any, ask for the next one.
        let now = cfg.clock.now();
        let mut current = cfg.store.current().filter(|p| p.expires > now);
        let mut force = false;
        if current.is_none()
            && let Some((c, k)) = cfg.bootstrap.take()
        {
            match cfg.store.update(&c, &k, cfg.clock.now()) {
                Ok(p) => {
                    info!(
                        prefix = cfg.profile.store_prefix,
                        "stored the bootstrap certificate; rotating it at once"
                    );
                    current = Some(p);
                    force = true;
                }
                Err(e) => warn!(error = %e, "ignoring the bootstrap certificate"),
            }
        }
        let (tx, _) = watch::channel(current.as_ref().map(|p| p.certified.clone()));
        CertificateManager {
            cfg,
            current,
            force,
            tx,
        }
    }

    /// The pair in use, `None` until one is issued; changes after every rotation.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<CertifiedKey>>> {
        self.tx.subscribe()
    }

    /// How long to wait before rotating (upstream `nextRotationDeadline`).
    fn until_rotation(&self, t: &Template) -> Duration {
        let Some(p) = &self.current else {
            return Duration::ZERO;
        };
        if self.force {
            return Duration::ZERO;
        }
        if !satisfies(t, &p.info) {
            info!(
                prefix = self.cfg.profile.store_prefix,
                "the certificate does not match the template; rotating"
            );
            return Duration::ZERO;
        }
        let deadline = rotation_deadline(p.info.not_before, p.info.not_after, (self.cfg.jitter)());
        info!(prefix = self.cfg.profile.store_prefix, %deadline, expires = %p.info.not_after, "certificate rotation deadline");
        let left = deadline.duration_since(self.cfg.clock.now());
        Duration::try_from(left).unwrap_or(Duration::ZERO)
    }

    /// One rotation (upstream `rotateCerts`): new key, CSR, wait, store.
    async fn rotate(&self, t: &Template) -> Result<Pair, RotateError> {
        let profile = &self.cfg.profile;
        let (csr_pem, key_pem) = generate_csr(t)?;
        let now = self.cfg.clock.now();
        let live = self.current.as_ref().filter(|p| p.expires > now);
        let client = (self.cfg.client)(live.map(|p| &*p.certified));
        let csr = request_certificate(
            &*client,
            csr_pem.as_bytes(),
            profile.signer_name,
            profile.usages,
        )
        .await?;
        info!(csr = %csr.name, signer = profile.signer_name, "requested a certificate");
        let cert = wait_for_certificate(&*client, &csr, CERTIFICATE_WAIT_TIMEOUT).await?;
        // Small local writes; done inline as upstream does.
        Ok(self
            .cfg
            .store
            .update(&cert, key_pem.as_bytes(), self.cfg.clock.now())?)
    }

    /// Rotates until it works: 2 s back-off doubling (10 % jitter) for 5 tries, then every
    /// 32 s (upstream `ExponentialBackoff` then `PollInfinite`).
    async fn rotate_with_backoff(&self, t: &Template) -> Pair {
        let mut delay = BACKOFF_START;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            match self.rotate(t).await {
                Ok(p) => return p,
                Err(e) => {
                    warn!(prefix = self.cfg.profile.store_prefix, attempt, error = %e, "certificate rotation failed")
                }
            }
            let pause = if attempt < BACKOFF_STEPS {
                let d = delay.mul_f64(1.0 + 0.1 * (self.cfg.jitter)());
                delay *= 2;
                d
            } else {
                POLL_AFTER_BACKOFF
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// The manager's loop, until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut templates = self.cfg.template.clone();
        loop {
            let Some(t) = templates.borrow_and_update().clone() else {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = changed(&mut templates) => continue,
                }
            };
            let wait = self.until_rotation(&t);
            if !wait.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = changed(&mut templates) => continue,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let pair = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = changed(&mut templates) => continue,
                p = self.rotate_with_backoff(&t) => p,
            };
            info!(prefix = self.cfg.profile.store_prefix, serial = %pair.info.serial, expires = %pair.info.not_after, "rotated the certificate");
            self.tx.send_replace(Some(pair.certified.clone()));
            self.current = Some(pair);
            self.force = false;
        }
    }
}

/// A template change; never, once the sender is gone (a fixed template).
async fn changed(rx: &mut watch::Receiver<Option<Template>>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pki::cert_info;
    use crate::certificate::pki::tests::{TestCa, issue, tmpdir};
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use kubelet_api::fake::FakeApi;
    use kubelet_core::certificate::{CLIENT, SERVING, client_template, serving_template};
    use kubelet_core::clock::Clock;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// Wall time that moves with tokio's paused clock.
    #[derive(Debug)]
    struct TokioClock {
        base: Timestamp,
        start: Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> Timestamp {
            self.base + SignedDuration::try_from(self.start.elapsed()).unwrap()
        }
    }

    struct Harness {
        api: FakeApi,
        ca: TestCa,
        clock: Arc<TokioClock>,
        /// Whether each CSR client was asked for with a current pair.
        asked_with_cert: Arc<Mutex<Vec<bool>>>,
        dir: std::path::PathBuf,
    }

    impl Harness {
        fn new(name: &str) -> Self {
            Harness {
                api: FakeApi::new(),
                ca: TestCa::new(),
                clock: Arc::new(TokioClock {
                    base: "2026-01-01T00:00:00Z".parse().unwrap(),
                    start: Instant::now(),
                }),
                asked_with_cert: Arc::default(),
                dir: tmpdir(name),
            }
        }

        fn store(&self, prefix: &str) -> FileStore {
            FileStore::new(prefix, &self.dir, None, None).unwrap()
        }

        fn config(
            &self,
            profile: CsrProfile,
            template: watch::Receiver<Option<Template>>,
        ) -> Config {
            let (api, asked) = (self.api.clone(), self.asked_with_cert.clone());
            Config {
                profile,
                template,
                store: self.store(profile.store_prefix),
                client: Arc::new(move |cur| {
                    asked.lock().unwrap().push(cur.is_some());
                    Arc::new(api.clone())
                }),
                clock: self.clock.clone(),
                bootstrap: None,
                jitter: || 0.5,
            }
        }

        /// Waits for the `n`th CSR and returns it (the newest: names grow with each).
        async fn csr(&self, n: usize) -> CertificateSigningRequest {
            self.api.wait_for(|s| s.csrs.len() >= n).await;
            self.api.state().csrs.values().last().unwrap().clone()
        }

        /// Issues the CSR for [now − 5 min, now + 55 min], as the signer backdates.
        fn approve(&self, csr: &CertificateSigningRequest) {
            let now = self.clock.now();
            let pem = self.ca.sign(
                std::str::from_utf8(&csr.spec.request.0).unwrap(),
                now - SignedDuration::from_mins(5),
                now + SignedDuration::from_mins(55),
            );
            self.api
                .approve_csr(csr.metadata.name.as_deref().unwrap(), Some(pem.as_bytes()));
        }
    }

    fn published(
        rx: &watch::Receiver<Option<Arc<CertifiedKey>>>,
    ) -> kubelet_core::certificate::CertInfo {
        let ck = rx.borrow().clone().unwrap();
        cert_info(ck.cert[0].as_ref()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn bootstrap_then_rotation_at_the_deadline() {
        let h = Harness::new("mgr-bootstrap");
        let m =
            CertificateManager::new(h.config(CLIENT, fixed_template(client_template("node-a"))));
        let mut rx = m.subscribe();
        assert!(rx.borrow().is_none());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(m.run(cancel.clone()));

        let csr = h.csr(1).await;
        assert_eq!(csr.metadata.generate_name.as_deref(), Some("csr-"));
        assert!(csr.metadata.name.as_deref().unwrap().starts_with("csr-"));
        assert_eq!(
            csr.spec.signer_name,
            "kubernetes.io/kube-apiserver-client-kubelet"
        );
        assert_eq!(
            csr.spec.usages.as_deref().unwrap(),
            ["digital signature", "key encipherment", "client auth"]
        );
        assert_eq!(csr.spec.expiration_seconds, None);
        {
            use rustls::pki_types::pem::PemObject;
            use x509_parser::prelude::FromDer;
            let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(
                &csr.spec.request.0,
            )
            .unwrap();
            let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(
                der.as_ref(),
            )
            .unwrap();
            assert_eq!(
                req.certification_request_info.subject.to_string(),
                "O=system:nodes, CN=system:node:node-a"
            );
            let spki = &req.certification_request_info.subject_pki;
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .unwrap()
                .as_oid()
                .unwrap();
            assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7", "P-256");
        }
        h.approve(&csr);
        rx.changed().await.unwrap();
        let first = published(&rx);
        assert_eq!(first.common_name, "system:node:node-a");
        let cur = h.dir.join("kubelet-client-current.pem");
        let stored = std::fs::read(&cur).unwrap();
        let pair = crate::certificate::pki::load_pair(&stored, &stored).unwrap();
        assert_eq!(pair.info, first);
        assert_eq!(*h.asked_with_cert.lock().unwrap(), [false]);

        // Valid for 60 min from 5 min ago: with jitter 0.5 the deadline is 80 %, 43 min away.
        let issued = Instant::now();
        let csr2 = h.csr(2).await;
        assert_eq!(issued.elapsed(), Duration::from_secs(43 * 60));
        assert_eq!(*h.asked_with_cert.lock().unwrap(), [false, true]);
        h.approve(&csr2);
        rx.changed().await.unwrap();
        let second = published(&rx);
        assert_ne!(second.serial, first.serial);
        let stored = std::fs::read(&cur).unwrap();
        assert_eq!(
            crate::certificate::pki::load_pair(&stored, &stored)
                .unwrap()
                .info,
            second
        );

        cancel.cancel();
        task.await.unwrap();
        std::fs::remove_dir_all(&h.dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn denied_backs_off_then_polls() {
        let h = Harness::new("mgr-denied");
        let m =
            CertificateManager::new(h.config(CLIENT, fixed_template(client_template("node-a"))));
        let mut rx = m.subscribe();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(m.run(cancel.clone()));
        let mut last = Instant::now();
        let mut gaps = Vec::new();
        for n in 1..=7 {
            let csr = h.csr(n).await;
            gaps.push(last.elapsed().as_millis());
            last = Instant::now();
            h.api
                .deny_csr(csr.metadata.name.as_deref().unwrap(), "Nope", "no");
        }
        // jitter 0.5 → +5 % on the exponential steps.
        assert_eq!(gaps, [0, 2100, 4200, 8400, 16800, 32000, 32000]);
        let csr = h.csr(8).await;
        h.approve(&csr);
        rx.changed().await.unwrap();
        assert_eq!(published(&rx).common_name, "system:node:node-a");
        cancel.cancel();
        task.await.unwrap();
        std::fs::remove_dir_all(&h.dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_mismatching_pair_is_replaced_at_once() {
        let h = Harness::new("mgr-mismatch");
        let now = h.clock.now();
        let (c, k) = issue(
            &h.ca,
            &client_template("old-name"),
            now,
            now + SignedDuration::from_hours(1),
        );
        h.store("kubelet-client")
            .update(c.as_bytes(), k.as_bytes(), now)
            .unwrap();
        let m =
            CertificateManager::new(h.config(CLIENT, fixed_template(client_template("node-a"))));
        let rx = m.subscribe();
        // The old pair is served until the new one comes.
        assert_eq!(published(&rx).common_name, "system:node:old-name");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(m.run(cancel.clone()));
        let t0 = Instant::now();
        h.csr(1).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);
        // With its own (old) pair, the node's client is used.
        assert_eq!(*h.asked_with_cert.lock().unwrap(), [true]);
        cancel.cancel();
        task.await.unwrap();
        std::fs::remove_dir_all(&h.dir).unwrap();
    }

    /// An expired pair in the store counts as none: it is not served, and the CSR goes out
    /// with the bootstrap credentials (as upstream's `Current` returns nil then).
    #[tokio::test(start_paused = true)]
    async fn an_expired_pair_is_replaced_through_the_bootstrap_client() {
        let h = Harness::new("mgr-expired");
        let now = h.clock.now();
        let (c, k) = issue(
            &h.ca,
            &client_template("node-a"),
            now - SignedDuration::from_hours(2),
            now - SignedDuration::from_hours(1),
        );
        h.store("kubelet-client")
            .update(c.as_bytes(), k.as_bytes(), now)
            .unwrap();
        let m =
            CertificateManager::new(h.config(CLIENT, fixed_template(client_template("node-a"))));
        let rx = m.subscribe();
        assert!(rx.borrow().is_none(), "an expired pair is not served");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(m.run(cancel.clone()));
        h.csr(1).await;
        assert_eq!(*h.asked_with_cert.lock().unwrap(), [false]);
        cancel.cancel();
        task.await.unwrap();
        std::fs::remove_dir_all(&h.dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_bootstrap_pair_is_stored_and_rotated() {
        let h = Harness::new("mgr-embedded");
        let now = h.clock.now();
        let (c, k) = issue(
            &h.ca,
            &client_template("node-a"),
            now,
            now + SignedDuration::from_hours(24 * 365),
        );
        let mut cfg = h.config(CLIENT, fixed_template(client_template("node-a")));
        cfg.bootstrap = Some((c.into_bytes(), k.into_bytes()));
        let m = CertificateManager::new(cfg);
        let mut rx = m.subscribe();
        let first = published(&rx);
        assert!(h.dir.join("kubelet-client-current.pem").exists());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(m.run(cancel.clone()));
        let t0 = Instant::now();
        let csr = h.csr(1).await;
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "rotated at once although valid for a year"
        );
        h.approve(&csr);
        rx.changed().await.unwrap();
        assert_ne!(published(&rx).serial, first.serial);
        cancel.cancel();
        task.await.unwrap();
        std::fs::remove_dir_all(&h.dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn serving_waits_for_addresses_and_follows_them() {
        let h = Harness::new("mgr-serving");
        let (tx, templates) = watch::channel(None);
        let m = CertificateManager::new(h.config(SERVING, templates));
        let mut rx = m.subscribe();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(m.run(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(h.api.count("create_csr"), 0, "no addresses, no CSR");

        let addr = |a: &str| k8s_openapi::api::core::v1::NodeAddress {
            type_: "InternalIP".into(),
            address: a.into(),
        };
        tx.send_replace(serving_template("node-a", &[addr("10.0.0.1")]));
        let csr = h.csr(1).await;
        assert_eq!(csr.spec.signer_name, "kubernetes.io/kubelet-serving");
        assert_eq!(csr.spec.usages.as_deref().unwrap()[2], "server auth");
        h.approve(&csr);
        rx.changed().await.unwrap();
        assert_eq!(
            published(&rx).ip_addresses,
            vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(h.dir.join("kubelet-server-current.pem").exists());

        // A new address: a new CSR at once, long before the deadline.
        let t0 = Instant::now();
        tx.send_replace(serving_template(
            "node-a",
            &[addr("10.0.0.1"), addr("10.0.0.2")],
        ));
        let csr = h.csr(2).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);
        h.approve(&csr);
        rx.changed().await.unwrap();
        assert_eq!(published(&rx).ip_addresses.len(), 2);
        cancel.cancel();
        task.await.unwrap();
        std::fs::remove_dir_all(&h.dir).unwrap();
    }
}

//! Hostile clients on 10250 cannot take the node down: a flood of bearer tokens the API server
//! has never issued (each one a TokenReview) runs while the heartbeat keeps its schedule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kubelet_e2e::{client, node_name};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// The floods run one at a time: one would displace the other's connections.
static ONE_FLOOD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Accepts whatever certificate the kubelet shows: the test is the attacker here.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One request with a fresh random token; the status code, or 0 when the connection failed.
async fn bogus_request(tls: &tokio_rustls::TlsConnector, n: usize) -> u16 {
    let Ok(tcp) = tokio::net::TcpStream::connect("127.0.0.1:10250").await else {
        return 0;
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(mut s) = tls.connect(name, tcp).await else {
        return 0;
    };
    let token = format!("bogus-{n}-{:x}", rand_u64(n));
    let req = format!(
        "GET /pods HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    match tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut head)).await {
        Ok(Ok(_)) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn rand_u64(n: usize) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(n);
    h.finish()
}

fn renew_time(l: &Lease) -> Option<k8s_openapi::jiff::Timestamp> {
    l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn token_flood_does_not_starve_the_heartbeat() {
    let _one = ONE_FLOOD.lock().await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let c = client().await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(c);
    let node = node_name();

    const TOTAL: usize = 3000;
    const WORKERS: usize = 50;
    let next = Arc::new(AtomicUsize::new(0));
    let unauthorized = Arc::new(AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (tls, next, unauthorized) = (tls.clone(), next.clone(), unauthorized.clone());
        flood.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= TOTAL {
                    return;
                }
                if bogus_request(&tls, n).await == 401 {
                    unauthorized.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Watch the heartbeat while the flood runs, and for at least two renewal periods.
    let start = Instant::now();
    let mut renewals = vec![];
    let mut last = None;
    let mut polls = 0;
    while !(flood.is_empty() && start.elapsed() > Duration::from_secs(25)) {
        let l = leases.get(&node).await.unwrap();
        let t = renew_time(&l);
        if t != last {
            renewals.push(Instant::now());
            last = t;
        }
        let n = nodes.get(&node).await.unwrap();
        assert!(
            ready(&n),
            "node went NotReady during the flood: {:?}",
            n.status
        );
        polls += 1;
        // Reap finished workers without blocking the watch.
        while flood.try_join_next().is_some() {}
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "flood did not finish"
        );
    }
    let gaps: Vec<Duration> = renewals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.len() >= 2,
        "renewals seen: {} in {polls} polls",
        renewals.len()
    );
    // Renewed every 10 s (leaseDuration 40 s / 4): a gap past 13 s is a missed beat.
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(13)),
        "lease renewals late during the flood: {gaps:?}"
    );
    let refused = unauthorized.load(Ordering::Relaxed);
    assert!(
        refused >= TOTAL * 9 / 10,
        "only {refused} of {TOTAL} answered 401"
    );
}

fn kubelet_open_fds() -> usize {
    let pid = kubelet_e2e::kubelet_pid().unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn curl_code(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 3000 connections that never say a word: the kubelet keeps at most its cap of them open,
/// displacing the oldest idle ones, and /healthz and the API keep answering.
#[tokio::test]
async fn idle_connection_flood_is_bounded() {
    let _one = ONE_FLOOD.lock().await;
    // This process needs a descriptor per connection it holds.
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(hard) = lim.maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
    let before = kubelet_open_fds();
    let mut idle = Vec::new();
    for _ in 0..3000 {
        match tokio::net::TcpStream::connect("127.0.0.1:10250").await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connecting: {e} after {}", idle.len()),
        }
    }
    let dir = kubelet_e2e::env("KRS_CLUSTER_DIR");
    let (cert, key) = (
        format!("{dir}/pki/admin.crt"),
        format!("{dir}/pki/admin.key"),
    );
    let t0 = Instant::now();
    let api = curl_code(&[
        "--cert",
        &cert,
        "--key",
        &key,
        "https://127.0.0.1:10250/pods",
    ]);
    assert_eq!(api, "200", "the API during the flood");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(curl_code(&["http://127.0.0.1:10248/healthz"]), "200");
    let during = kubelet_open_fds();
    assert!(
        during < before + 1024 + 64,
        "the kubelet holds {during} descriptors (from {before}) for 3000 idle connections"
    );
    drop(idle);
}

//! The 10250 server over real TLS: client certificates, tokens, authorization, logs, and
//! hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kubelet_server::auth::{
    AccessReviewer, Attributes, Authenticator, Authorizer, TokenReviewer, UserInfo,
};
use kubelet_server::{HostError, HostInterface, ServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(cn: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        Pki {
            ca: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// (cert PEM, key PEM)
    fn issue(&self, sans: &[&str], cn: &str, org: Option<&str>, client: bool) -> (String, String) {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[derive(Debug)]
struct Host {
    log: PathBuf,
}

#[async_trait::async_trait]
impl HostInterface for Host {
    fn node_name(&self) -> String {
        "n1".into()
    }
    fn healthz(&self) -> Result<(), String> {
        Ok(())
    }
    async fn pods(&self) -> Vec<Pod> {
        vec![
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": "web", "namespace": "default"}}),
            )
            .unwrap(),
        ]
    }
    async fn log_path(
        &self,
        _ns: &str,
        pod: &str,
        _c: &str,
        _previous: bool,
    ) -> Result<PathBuf, HostError> {
        if pod == "web" {
            Ok(self.log.clone())
        } else {
            Err(HostError::not_found(format!(
                "pod {pod:?} does not exist\n"
            )))
        }
    }
    async fn container_running(&self, _: &str, _: &str, _: &str) -> bool {
        false
    }
}

#[derive(Debug)]
struct Reviews;

#[async_trait::async_trait]
impl TokenReviewer for Reviews {
    async fn review(&self, token: &str) -> Result<Option<UserInfo>, String> {
        match token {
            "alice-token" => Ok(Some(UserInfo {
                name: "alice".into(),
                uid: String::new(),
                groups: vec![],
            })),
            "bob-token" => Ok(Some(UserInfo {
                name: "bob".into(),
                uid: String::new(),
                groups: vec![],
            })),
            _ => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl AccessReviewer for Reviews {
    async fn allowed(&self, user: &UserInfo, attrs: &Attributes) -> Result<bool, String> {
        Ok(user.name != "bob" && attrs.resource == "nodes" && attrs.name == "n1")
    }
}

struct Fixture {
    addr: SocketAddr,
    pki: Pki,
    cancel: CancellationToken,
    dir: PathBuf,
}

async fn start() -> Fixture {
    let pki = Pki::new("test-ca");
    let (cert, key) = pki.issue(&["localhost"], "n1", None, false);
    let dir = std::env::temp_dir().join(format!(
        "krs-server-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("0.log");
    std::fs::write(&log, "2026-11-24T10:00:00.000000000Z stdout F hello\n2026-11-24T10:00:01.000000000Z stdout F world\n").unwrap();
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        cert_pem: cert.into_bytes(),
        key_pem: key.into_bytes(),
        client_ca_pem: Some(pki.ca.pem().into_bytes()),
    };
    let bound = kubelet_server::bind(&cfg).await.unwrap();
    let addr = bound.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let authn = Arc::new(Authenticator::new(
        false,
        Some(Arc::new(Reviews)),
        Duration::from_secs(60),
    ));
    let authz = Arc::new(Authorizer::new(
        Some(Arc::new(Reviews)),
        Duration::from_secs(60),
        Duration::from_secs(5),
    ));
    tokio::spawn(kubelet_server::serve(
        bound,
        Arc::new(Host { log }),
        authn,
        authz,
        cancel.clone(),
    ));
    Fixture {
        addr,
        pki,
        cancel,
        dir,
    }
}

async fn get(
    f: &Fixture,
    path: &str,
    client_cert: Option<(String, String)>,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(f.pki.ca.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client_cert {
        Some((c, k)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header("host", "localhost");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn authentication_and_authorization() {
    let f = start().await;
    // No credentials at all.
    assert_eq!(
        get(&f, "/pods", None, None).await.unwrap(),
        (401, "Unauthorized".to_string())
    );
    // A node certificate from our CA.
    let node = f
        .pki
        .issue(&[], "system:node:n1", Some("system:nodes"), true);
    let (code, body) = get(&f, "/pods", Some(node), None).await.unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("\"kind\":\"PodList\"") && body.contains("\"web\""),
        "{body}"
    );
    // A certificate from another CA is refused in the handshake.

    let other = Pki::new("other-ca").issue(&[], "admin", Some("system:masters"), true);
    match get(&f, "/pods", Some(other), None).await {
        Err(_) => {}
        Ok((code, _)) => panic!("a foreign client certificate was accepted: {code}"),
    }
    // Tokens: valid, invalid, and valid but not allowed.
    assert_eq!(
        get(&f, "/healthz", None, Some("alice-token"))
            .await
            .unwrap(),
        (200, "ok".to_string())
    );
    assert_eq!(
        get(&f, "/healthz", None, Some("forged")).await.unwrap().0,
        401
    );
    assert_eq!(
        get(&f, "/stats/summary", None, Some("bob-token"))
            .await
            .unwrap(),
        (
            403,
            "Forbidden (user=bob, verb=get, resource=nodes, subresource=stats)".to_string()
        )
    );
    f.cancel.cancel();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[tokio::test]
async fn logs_and_hostile_paths() {
    let f = start().await;
    let t = Some("alice-token");
    assert_eq!(
        get(&f, "/containerLogs/default/web/app", None, t)
            .await
            .unwrap(),
        (200, "hello\nworld\n".to_string())
    );
    assert_eq!(
        get(&f, "/containerLogs/default/web/app?tailLines=1", None, t)
            .await
            .unwrap()
            .1,
        "world\n"
    );
    assert_eq!(
        get(
            &f,
            "/containerLogs/default/web/app?timestamps=true&limitBytes=36",
            None,
            t
        )
        .await
        .unwrap()
        .1,
        "2026-11-24T10:00:00.000000000Z hello"
    );
    assert_eq!(
        get(&f, "/containerLogs/default/web/app?tailLines=-1", None, t)
            .await
            .unwrap()
            .0,
        400
    );
    assert_eq!(
        get(&f, "/containerLogs/default/nope/app", None, t)
            .await
            .unwrap(),
        (404, "pod \"nope\" does not exist\n".to_string())
    );
    for bad in [
        "/containerLogs/default/..%2F..%2Fetc/app",
        "/containerLogs/default/web/..",
        "/containerLogs/default/web%2F..%2F../app",
    ] {
        let (code, _) = get(&f, bad, None, t).await.unwrap();
        assert!(code == 400 || code == 404, "{bad}: {code}");
    }
    assert_eq!(get(&f, "/no/such/endpoint", None, t).await.unwrap().0, 404);
    // An oversized request head is refused, not buffered without bound.
    let huge = "a".repeat(100 * 1024);
    if let Ok((code, _)) = get(&f, "/pods", None, Some(&huge)).await {
        assert_eq!(code, 431);
    }
    f.cancel.cancel();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let f = start().await;
    // A client that connects and never says anything: the handshake times out server-side.
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "connection still open after the handshake deadline: {r:?}"
    );
    f.cancel.cancel();
    let _ = std::fs::remove_dir_all(&f.dir);
}

//! The 10250 server over real TLS: client certificates, tokens, authorization, logs, and
//! hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use kubelet_server::ServerConfig;
use kubelet_server::auth::{
    AccessReviewer, Attributes, Authenticator, Authorizer, TokenReviewer, UserInfo,
};
use kubelet_server::testing::TestHost;
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

/// The test host, with a fake runtime streaming server that switches protocols and echoes.
async fn host(log: PathBuf) -> Arc<TestHost> {
    Arc::new(TestHost {
        stream: Some(fake_stream_server().await),
        ..TestHost::new(log)
    })
}

/// Answers one upgrade per connection with 101 and then echoes, as a streaming server would
/// after its handshake; a request for /refuse gets 403.
async fn fake_stream_server() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                if head.contains("/refuse") {
                    let _ = s
                        .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
                        .await;
                    return;
                }
                // Credentials meant for the kubelet must not reach the runtime.
                let leaked = head.to_ascii_lowercase().contains("authorization");
                let _ = s.write_all(format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n{}", if leaked { "LEAK" } else { "" }).as_bytes()).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[derive(Debug)]
struct Reviews;

#[async_trait::async_trait]
impl TokenReviewer for Reviews {
    async fn review(
        &self,
        token: &str,
    ) -> Result<Option<UserInfo>, kubelet_server::auth::BoxError> {
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
    async fn allowed(
        &self,
        user: &UserInfo,
        attrs: &Attributes,
    ) -> Result<bool, kubelet_server::auth::BoxError> {
        Ok(user.name != "bob" && attrs.resource == "nodes" && attrs.name == "n1")
    }
}

struct Fixture {
    addr: SocketAddr,
    pki: Pki,
    cancel: CancellationToken,
    dir: PathBuf,
}

impl Fixture {
    /// Stops the server and removes the log directory.
    fn stop(self) {
        self.cancel.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
        min_version: String::new(),
        cipher_suites: vec![],
        addr: "127.0.0.1:0".parse().unwrap(),
        cert_pem: cert.into_bytes(),
        key_pem: key.into_bytes(),
        cert_resolver: None,
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
        host(log).await,
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

/// A TLS connection to the server that trusts the fixture's CA, with `client_cert` if any.
async fn connect(
    f: &Fixture,
    client_cert: Option<(String, String)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
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
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

async fn get(
    f: &Fixture,
    path: &str,
    client_cert: Option<(String, String)>,
    token: Option<&str>,
) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
    let tls = connect(f, client_cert).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header("host", "localhost");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
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
    f.stop();
}

#[tokio::test]
async fn logs_and_hostile_paths() {
    let f = start().await;
    let t = Some("alice-token");
    // The status and body of `default/web/app`'s log with `query`, as alice.
    let logs = async |query: &str| {
        let path = format!("/containerLogs/default/web/app{query}");
        get(&f, &path, None, t).await.unwrap()
    };
    assert_eq!(logs("").await, (200, "hello\nworld\n".to_string()));
    assert_eq!(logs("?tailLines=1").await.1, "world\n");
    assert_eq!(
        logs("?timestamps=true&limitBytes=36").await.1,
        "2026-11-24T10:00:00.000000000Z hello"
    );
    // Upstream's answers to a query that fails validation, and to one it cannot decode.
    assert_eq!(
        logs("?tailLines=-1").await,
        (422, r#"{"message": "Invalid request."}"#.to_string())
    );
    assert_eq!(
        logs("?limitBytes=many").await,
        (400, r#"{"message": "Unable to decode query."}"#.to_string())
    );
    // The legacy `tail` parameter.
    assert_eq!(logs("?tail=1").await.1, "world\n");
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
    f.stop();
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
    f.stop();
}

/// Sends a raw request over TLS and returns the whole response head and what follows, read
/// until `want` appears or the server closes.
async fn raw(f: &Fixture, request: &str, send_after: &[u8], want: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect(f, None).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut sent = false;
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = tls.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if text.contains(want) {
                break;
            }
            if !sent && text.contains("\r\n\r\n") && !send_after.is_empty() {
                tls.write_all(send_after).await.unwrap();
                sent = true;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn exec_upgrades_are_spliced_to_the_runtime() {
    let f = start().await;
    let upgrade = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer alice-token\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
        )
    };
    // The runtime's 101 comes back, then bytes flow both ways.
    let got = raw(
        &f,
        &upgrade("/exec/default/web/app?command=sh&command=-c&input=1&output=1"),
        b"ping",
        "ping",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 101"), "{got}");
    assert!(
        got.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{got}"
    );
    assert!(
        !got.contains("LEAK"),
        "the bearer token reached the runtime: {got}"
    );
    assert!(got.ends_with("ping"), "{got}");
    // A runtime refusal is passed on, so that clients can fall back.
    let got = raw(
        &f,
        &upgrade("/exec/default/web/app?command=refuse&output=1"),
        b"",
        "nope",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    // Bad requests never reach the runtime.
    for (path, code, body) in [
        (
            "/exec/default/web/app?command=ls",
            "400",
            "you must specify at least 1 of stdin, stdout, stderr",
        ),
        (
            "/exec/default/nope/app?command=ls&output=1",
            "404",
            "pod does not exist",
        ),
        (
            "/exec/default/..%2Fx/app?command=ls&output=1",
            "400",
            "invalid pod name",
        ),
        ("/portForward/default/web?port=99999", "400", "invalid port"),
    ] {
        let got = raw(&f, &upgrade(path), b"", body).await;
        assert!(
            got.starts_with(&format!("HTTP/1.1 {code}")) && got.contains(body),
            "{path}: {got}"
        );
    }
    // Without an upgrade there is nothing to proxy.
    let plain = "POST /exec/default/web/app?command=ls&output=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer alice-token\r\nContent-Length: 0\r\n\r\n";
    let got = raw(&f, plain, b"", "Upgrade request required").await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // Unauthenticated: refused before anything else.
    let anon = "POST /exec/default/web/app?command=ls&output=1 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n";
    let got = raw(&f, anon, b"", "Unauthorized").await;
    assert!(got.starts_with("HTTP/1.1 401"), "{got}");
    f.stop();
}

#[tokio::test]
async fn read_only_port_serves_the_safe_subset_without_auth() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::env::temp_dir().join(format!("krs-ro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(kubelet_server::server::serve_read_only(
        listener,
        host(dir.join("0.log")).await,
        cancel.clone(),
    ));
    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let pods = get("/pods").await;
    assert!(
        pods.starts_with("HTTP/1.1 200") && pods.contains("\"web\""),
        "{pods}"
    );
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    // Logs and streaming need the authenticated port.
    for path in [
        "/containerLogs/default/web/app",
        "/exec/default/web/app?command=ls&output=1",
        "/portForward/default/web",
    ] {
        let r = get(path).await;
        assert!(r.starts_with("HTTP/1.1 404"), "{path}: {r}");
    }
    cancel.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

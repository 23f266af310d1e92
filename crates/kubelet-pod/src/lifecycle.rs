//! Container lifecycle hooks, postStart and preStop (upstream `pkg/kubelet/lifecycle`):
//! `exec` through CRI ExecSync, `httpGet` as a plain HTTP GET to the pod. The HTTP client
//! here also serves the prober, which speaks HTTPS too.

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_cri::RuntimeService;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How much of an HTTP hook's answer we read, at most.
const MAX_BODY: usize = 10 * 1024;

/// A port a hook or probe names that the container does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid port {0}")]
    Invalid(i32),
    #[error("couldn't find port: {name} in {container}")]
    NotFound { name: String, container: String },
}

/// Why the kubelet's own HTTP GET (hooks, probes) failed; the text is the probe's output.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    ServerName(#[from] rustls::pki_types::InvalidDnsNameError),
    #[error("tls: {0}")]
    Tls(#[source] std::io::Error),
    #[error("tls client: {0}")]
    TlsConfig(rustls::Error),
    #[error("malformed HTTP response")]
    Malformed,
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    /// A hook without a host and a pod without an IP (upstream's words, without its dump of
    /// the pod status).
    #[error("failed to find networking container")]
    NoNetwork,
    /// Go's client timeout, in its words.
    #[error("context deadline exceeded (Client.Timeout exceeded while awaiting headers)")]
    Timeout(Duration),
}

/// A lifecycle hook that failed, in upstream's words (the FailedPostStartHook and
/// FailedPreStopHook events).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(
        "Exec lifecycle hook ({cmd:?}) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: \"\""
    )]
    Exec {
        cmd: Vec<String>,
        container: String,
        pod: String,
        error: kubelet_cri::CriError,
    },
    #[error(
        "Exec lifecycle hook ({cmd:?}) for Container {container:?} in Pod {pod:?} failed - error: command '{}' exited with {code}: {output}, message: {output:?}",
        cmd.join(" ")
    )]
    ExecExit {
        cmd: Vec<String>,
        container: String,
        pod: String,
        code: i32,
        output: String,
    },
    #[error(
        "Http lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {error}"
    )]
    Http {
        path: String,
        container: String,
        pod: String,
        error: HttpError,
    },
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("Cannot run handler: no handler specified")]
    NoHandler,
}

pub(crate) use kubelet_core::format::pod_desc;

/// An httpGet action's headers as name/value pairs.
pub(crate) fn header_pairs(g: &HTTPGetAction) -> Vec<(String, String)> {
    g.http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect()
}

/// Resolves a port given by number or by the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, PortError> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(PortError::Invalid(*n)),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| PortError::NotFound {
                    name: name.clone(),
                    container: c.name.clone(),
                })
        }
    }
}

/// The hook's GET (upstream 1.20's `runHTTPHandler`, through Go's default client): no
/// headers of the hook's own (1.20 ignores `httpHeaders`), Go's `User-Agent` and
/// `Accept-Encoding: gzip`; any answer counts as success. The status line is returned.
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<String, HttpError> {
    let defaults = [("User-Agent", "Go-http-client/1.1")];
    let tail = [("Accept-Encoding", "gzip")];
    let r = get(false, host, port, path, &[], &defaults, &tail, timeout).await?;
    Ok(format!("HTTP/1.1 {}", r.status))
}

/// What a GET answered: the status, a redirect's target, and the start of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-custom-header` is `X-Custom-Header`.
fn canonical_header(name: &str) -> String {
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return name.to_string();
    }
    let mut up = true;
    name.chars()
        .map(|c| {
            let c = if up {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            up = c == '-';
            c
        })
        .collect()
}

/// The request's header lines in the order Go's client writes them: Host (the user's Host
/// header, else `host:port`, IPv6 bracketed), User-Agent (the user's first, else the
/// default; an empty one is left out), the rest sorted by name (defaults for names the user
/// did not give; a given empty `Accept` drops it, as upstream's prober), then what Go's
/// transport adds (`tail`: `Connection: close`, `Accept-Encoding: gzip`).
pub fn request_headers(
    host: &str,
    port: u16,
    user: &[(String, String)],
    defaults: &[(&str, &str)],
    tail: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in user {
        by.entry(canonical_header(k)).or_default().push(v.clone());
    }
    for (k, v) in defaults {
        if !by.contains_key(*k) {
            by.insert((*k).to_string(), vec![(*v).to_string()]);
        } else if *k == "Accept"
            && by
                .get(*k)
                .and_then(|v| v.first())
                .is_some_and(String::is_empty)
        {
            by.remove(*k);
        }
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let first = |k: &str, by: &mut std::collections::BTreeMap<String, Vec<String>>| {
        by.remove(k).and_then(|v| v.into_iter().next())
    };
    let mut out = vec![(
        "Host".to_string(),
        first("Host", &mut by)
            .filter(|h| !h.is_empty())
            .unwrap_or(authority),
    )];
    if let Some(ua) = first("User-Agent", &mut by).filter(|u| !u.is_empty()) {
        out.push(("User-Agent".into(), ua));
    }
    for k in [
        "Content-Length",
        "Transfer-Encoding",
        "Trailer",
        "Connection",
    ] {
        by.remove(k);
    }
    for (k, vs) in by {
        out.extend(vs.into_iter().map(|v| (k.clone(), v)));
    }
    out.extend(
        tail.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
    );
    out
}

/// One GET over TCP or, with `tls`, TLS, with hyper's HTTP/1.1 client: the headers as
/// [`request_headers`] orders them, at most [`MAX_BODY`] of the body read, and the connection
/// dropped then (a keep-alive server is not waited for).
#[allow(clippy::too_many_arguments)]
pub async fn get(
    tls: bool,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    defaults: &[(&str, &str)],
    tail: &[(&str, &str)],
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let fut = async {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let mut req = http::Request::get(path);
        for (k, v) in request_headers(host, port, headers, defaults, tail) {
            if k.contains(['\r', '\n']) || v.contains(['\r', '\n']) {
                return Err(HttpError::InvalidHeader(k));
            }
            req = req.header(k, v);
        }
        let req = req.body(http_body_util::Empty::<hyper::body::Bytes>::new())?;
        let s = TcpStream::connect((host, port)).await?;
        if !tls {
            return exchange(s, req).await;
        }
        let name = ServerName::try_from(host.to_string())?;
        let s = tls_connector()?
            .connect(name, s)
            .await
            .map_err(HttpError::Tls)?;
        exchange(s, req).await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    s: S,
    req: http::Request<http_body_util::Empty<hyper::body::Bytes>>,
) -> Result<HttpResponse, HttpError> {
    use http_body_util::BodyExt;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(hyper_util::rt::TokioIo::new(s))
        .await?;
    // The connection is driven beside the request and dropped with it.
    let driver = tokio::spawn(conn);
    let _stop = AbortOnDrop(driver.abort_handle());
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = res.into_body();
    let mut buf = Vec::new();
    while buf.len() < MAX_BODY {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            // A body cut short still leaves the answer.
            Some(Err(_)) | None => break,
        }
    }
    buf.truncate(MAX_BODY);
    Ok(HttpResponse {
        status,
        location,
        body: String::from_utf8_lossy(&buf).into_owned(),
    })
}

struct AbortOnDrop(tokio::task::AbortHandle);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Upstream's probes skip certificate verification (InsecureSkipVerify): a probe checks
/// that the server answers, not who it is. Signatures are still checked, so the handshake
/// itself is sound.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client for HTTPS probes, built once.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, HttpError> {
    static CONNECTOR: OnceLock<Result<tokio_rustls::TlsConnector, rustls::Error>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
                .with_no_client_auth();
            Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
        })
        .clone()
        .map_err(HttpError::TlsConfig)
}

/// Runs a hook handler; the error is upstream's message.
pub async fn run(
    rt: &dyn RuntimeService,
    pod: &Pod,
    c: &Container,
    container_id: &str,
    pod_ip: Option<&str>,
    h: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), HookError> {
    if let Some(exec) = &h.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let out = match rt.exec_sync(container_id, cmd.clone(), timeout).await {
            Ok(out) => out,
            Err(error) => {
                return Err(HookError::Exec {
                    cmd,
                    container: c.name.clone(),
                    pod: pod_desc(pod),
                    error,
                });
            }
        };
        if out.exit_code != 0 {
            let output = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            return Err(HookError::ExecExit {
                cmd,
                container: c.name.clone(),
                pod: pod_desc(pod),
                code: out.exit_code,
                output,
            });
        }
        return Ok(());
    }
    if let Some(g) = &h.http_get {
        let path = g.path.clone().unwrap_or_default();
        let fail = |error| HookError::Http {
            path: path.clone(),
            container: c.name.clone(),
            pod: pod_desc(pod),
            error,
        };
        let host = match g.host.as_deref().filter(|h| !h.is_empty()).or(pod_ip) {
            Some(h) => h.to_string(),
            None => return Err(fail(HttpError::NoNetwork)),
        };
        // An empty named port is port 80 (upstream's runHTTPHandler).
        let port = match &g.port {
            IntOrString::String(s) if s.is_empty() => 80,
            p => resolve_port(p, c)?,
        };
        return match http_get(&host, port, &path, timeout).await {
            Ok(_) => Ok(()),
            Err(error) => Err(fail(error)),
        };
    }
    if let Some(sl) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(sl.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    Err(HookError::NoHandler)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn ports_by_name_or_number() {
        let c = Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &c).is_err());
    }

    #[tokio::test]
    async fn http_hook_against_a_local_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let r = http_get("127.0.0.1", port, "hook", Duration::from_secs(5)).await;
        assert!(
            r.unwrap().starts_with("HTTP/1.1 500"),
            "any answer is success for hooks"
        );
        // Go's default client, as upstream 1.20's hook runner uses it.
        assert_eq!(
            server.await.unwrap(),
            format!(
                "GET /hook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
            )
        );
        // nothing listening: an error, not a hang
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = l.local_addr().unwrap().port();
        drop(l);
        assert!(
            http_get("127.0.0.1", closed, "/", Duration::from_secs(5))
                .await
                .is_err()
        );
        // A probe's header with a line break is refused, not sent.
        assert!(matches!(
            get(
                false,
                "127.0.0.1",
                closed,
                "/",
                &[("a\r\nb".into(), "x".into())],
                &[],
                &[],
                Duration::from_millis(100)
            )
            .await,
            Err(HttpError::InvalidHeader(_))
        ));
    }
}

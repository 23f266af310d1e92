//! TLS listener, request authentication and authorization, and routing.

use crate::auth::{Authenticator, Authorizer, UserInfo, attributes, user_from_cert};
use crate::logs::LogOptions;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
pub use axum::http::StatusCode;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use k8s_openapi::api::core::v1::Pod;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path}: {message}")]
    Pem {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A request the kubelet cannot serve, with its HTTP status.
#[derive(Debug, Clone)]
pub struct HostError {
    pub status: StatusCode,
    pub message: String,
}

impl HostError {
    pub fn not_found(message: impl Into<String>) -> Self {
        HostError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        HostError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for HostError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

/// What the server asks of the kubelet.
#[async_trait::async_trait]
pub trait HostInterface: Send + Sync + std::fmt::Debug + 'static {
    fn node_name(&self) -> String;
    /// The kubelet's clock (for `sinceSeconds`).
    fn now(&self) -> jiff::Timestamp;
    fn healthz(&self) -> Result<(), crate::auth::BoxError>;
    /// The pods bound to this node, as the kubelet knows them.
    async fn pods(&self) -> Vec<Pod>;
    /// The log file of a container (the previous run's with `previous`).
    async fn log_path(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<PathBuf, HostError>;
    async fn container_running(&self, namespace: &str, pod: &str, container: &str) -> bool;
    /// The runtime's streaming URL for an exec in the container (CRI Exec). `uid`, when the
    /// path names one, must match the pod's.
    async fn exec_url(
        &self,
        _namespace: &str,
        _pod: &str,
        _uid: Option<&str>,
        _container: &str,
        _cmd: Vec<String>,
        _opts: crate::StreamOptions,
    ) -> Result<String, HostError> {
        Err(HostError::not_found("404 page not found\n"))
    }
    /// The runtime's streaming URL for attaching to the container (CRI Attach).
    async fn attach_url(
        &self,
        _namespace: &str,
        _pod: &str,
        _uid: Option<&str>,
        _container: &str,
        _opts: crate::StreamOptions,
    ) -> Result<String, HostError> {
        Err(HostError::not_found("404 page not found\n"))
    }
    /// The runtime's streaming URL for port forwarding into the pod (CRI PortForward).
    async fn port_forward_url(
        &self,
        _namespace: &str,
        _pod: &str,
        _uid: Option<&str>,
        _ports: Vec<i32>,
    ) -> Result<String, HostError> {
        Err(HostError::not_found("404 page not found\n"))
    }
    /// `enableDebuggingHandlers`: when false, exec, attach, portForward, run, containerLogs,
    /// runningpods, pprof and logs answer 405, as upstream.
    fn debugging_handlers(&self) -> bool {
        true
    }
    /// `streamingConnectionIdleTimeout`: an exec, attach or port-forward stream with no
    /// traffic either way for this long is closed.
    fn streaming_idle_timeout(&self) -> Duration {
        Duration::from_secs(4 * 3600)
    }
    /// The configuration in effect (`/configz`), as upstream: `{"kubeletconfig": {...}}`.
    async fn configz(&self) -> Result<serde_json::Value, HostError> {
        Err(HostError::not_found("404 page not found\n"))
    }
    /// The pods the runtime is running (`/runningpods/`): names, UIDs and containers only.
    async fn running_pods(&self) -> Vec<Pod> {
        vec![]
    }
    /// A metrics page: `""` for `/metrics`, `"resource"`, `"probes"`; the text and its
    /// content type.
    async fn metrics(&self, _which: &str) -> Result<(String, &'static str), HostError> {
        Err(HostError::not_found("404 page not found\n"))
    }
    /// The summary API's JSON (`/stats/summary`).
    async fn stats_summary(
        &self,
        _only_cpu_and_memory: bool,
    ) -> Result<serde_json::Value, HostError> {
        Err(HostError::not_found("404 page not found\n"))
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// A certificate chosen at each handshake (serverTLSBootstrap's rotated one); when set,
    /// `cert_pem` and `key_pem` are not used.
    pub cert_resolver: Option<Arc<dyn rustls::server::ResolvesServerCert>>,
    /// Client certificates are verified against this CA; none: no client certificates.
    pub client_ca_pem: Option<Vec<u8>>,
    /// tlsMinVersion ("" for the default, TLS 1.2).
    pub min_version: String,
    /// tlsCipherSuites, Go's names; empty for rustls' defaults.
    pub cipher_suites: Vec<String>,
}

/// The TLS 1.2 suites of `names` (Go's names), and all of TLS 1.3's, which Go does not let
/// one configure either. A name we cannot serve is an error, not silently dropped.
fn cipher_suites(names: &[String]) -> Result<Vec<rustls::SupportedCipherSuite>, ServerError> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut out = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    for n in names {
        let s = match n.as_str() {
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            }
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            }
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
            | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            }
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"
            | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            }
            "TLS_AES_128_GCM_SHA256"
            | "TLS_AES_256_GCM_SHA384"
            | "TLS_CHACHA20_POLY1305_SHA256" => {
                continue;
            }
            other => {
                return Err(ServerError::Tls(format!(
                    "tlsCipherSuites: {other:?} is not supported (only ECDHE with AES-GCM or ChaCha20-Poly1305)"
                )));
            }
        };
        if !out.iter().any(|x| x.suite() == s.suite()) {
            out.push(s);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct AppState {
    host: Arc<dyn HostInterface>,
    authn: Arc<Authenticator>,
    authz: Arc<Authorizer>,
    /// Ends the streaming sessions when the server stops.
    cancel: CancellationToken,
}

/// The identity a verified client certificate gave the connection.
#[derive(Debug, Clone)]
struct Peer(Option<UserInfo>);

pub fn tls_config(cfg: &ServerConfig) -> Result<rustls::ServerConfig, ServerError> {
    let pair = || -> Result<_, ServerError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cfg.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ServerError::Pem {
                what: "certificate",
                path: "tlsCertFile".into(),
                message: e.to_string(),
            })?;
        let key = PrivateKeyDer::from_pem_slice(&cfg.key_pem).map_err(|e| ServerError::Pem {
            what: "private key",
            path: "tlsPrivateKeyFile".into(),
            message: e.to_string(),
        })?;
        Ok((certs, key))
    };
    let mut provider = rustls::crypto::ring::default_provider();
    if !cfg.cipher_suites.is_empty() {
        provider.cipher_suites = cipher_suites(&cfg.cipher_suites)?;
    }
    let provider = Arc::new(provider);
    let versions: &[&'static rustls::SupportedProtocolVersion] = match cfg.min_version.as_str() {
        "" | "VersionTLS10" | "VersionTLS11" | "VersionTLS12" => {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        }
        "VersionTLS13" => &[&rustls::version::TLS13],
        other => {
            return Err(ServerError::Tls(format!(
                "tlsMinVersion: unknown version {other:?}"
            )));
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = match &cfg.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|e| ServerError::Pem {
                    what: "client CA",
                    path: "clientCAFile".into(),
                    message: e.to_string(),
                })?;
                roots.add(c).map_err(|e| ServerError::Tls(e.to_string()))?;
            }
            // Clients without a certificate may still present a token.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut tls = match &cfg.cert_resolver {
        // Existing connections keep their session; new handshakes get the current pair.
        Some(r) => builder.with_cert_resolver(r.clone()),
        None => {
            let (certs, key) = pair()?;
            builder
                .with_single_cert(certs, key)
                .map_err(|e| ServerError::Tls(e.to_string()))?
        }
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

pub fn router(
    host: Arc<dyn HostInterface>,
    authn: Arc<Authenticator>,
    authz: Arc<Authorizer>,
    cancel: CancellationToken,
) -> Router {
    let debugging = host.debugging_handlers();
    let state = AppState {
        host,
        authn,
        authz,
        cancel,
    };
    let app = default_routes()
        .route("/runningpods/", get(running_pods))
        .route("/configz", get(configz))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        );
    STREAM_ROUTES
        .iter()
        .fold(app, |app, (path, kind)| {
            app.route(path, stream_route(*kind))
        })
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            debug_gate(debugging, req, next)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// The paths upstream serves only with `enableDebuggingHandlers`.
const DEBUG_PATHS: &[&str] = &[
    "/run/",
    "/exec/",
    "/attach/",
    "/portForward/",
    "/containerLogs/",
    "/runningpods/",
    "/debug/pprof/",
    "/logs/",
];

/// After authentication and authorization (as upstream's filter chain), a disabled debugging
/// endpoint answers 405.
async fn debug_gate(enabled: bool, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !enabled && DEBUG_PATHS.iter().any(|p| path.starts_with(p)) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            "Debug endpoints are disabled.\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// Anonymous access with no authorization webhook: everything is allowed.
pub(crate) fn allow_all() -> (Arc<Authenticator>, Arc<Authorizer>) {
    (
        Arc::new(Authenticator::new(true, None, Duration::from_secs(1))),
        Arc::new(Authorizer::new(
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )),
    )
}

/// The read-only API (`readOnlyPort`, upstream `ListenAndServeKubeletReadOnlyServer`): the
/// default handlers only (health, pods, stats, metrics), with no authentication, and none of
/// the debugging ones (logs, exec, attach, port-forward).
pub fn read_only_router(host: Arc<dyn HostInterface>) -> Router {
    let (authn, authz) = allow_all();
    let state = AppState {
        host,
        authn,
        authz,
        cancel: CancellationToken::new(),
    };
    default_routes().with_state(state)
}

/// Upstream's default handlers (health, pods, stats, metrics), which both ports serve, and
/// its 404 for any other path.
fn default_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/{check}", get(healthz_one))
        .route("/pods", get(pods))
        .route("/pods/", get(pods))
        .route("/stats/summary", get(stats_summary).post(stats_summary))
        .route("/metrics", get(metrics))
        .route("/metrics/{which}", get(metrics_sub))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
}

/// Serves the read-only API over plain HTTP until cancelled, with the same bounds on slow
/// or oversized requests as the secure port.
pub async fn serve_read_only(
    listener: tokio::net::TcpListener,
    host: Arc<dyn HostInterface>,
    cancel: CancellationToken,
) {
    let app = read_only_router(host);
    let max = crate::listener::MAX_SMALL_CONNECTIONS;
    accept_loop(&listener, max, &cancel, |tcp, remote, slot| {
        let app = app.clone();
        let cancel = slot.cancel.clone();
        async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    slot.mark_active();
                    app.clone().oneshot(req.map(Body::new))
                });
            let conn = http1().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            until_cancelled(conn, remote, &cancel).await;
        }
    })
    .await;
}

/// Runs `handle` on each connection accepted until `cancel` fires, at most `max` at once;
/// then gives the open ones 5 s to finish.
async fn accept_loop<F, Fut>(
    listener: &tokio::net::TcpListener,
    max: usize,
    cancel: &CancellationToken,
    handle: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr, Arc<crate::listener::Slot>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let conns = tokio_util::task::TaskTracker::new();
    let open = crate::listener::Connections::new(max);
    while let Some((tcp, remote, slot)) = crate::listener::accept(listener, &open, cancel).await {
        conns.spawn(handle(tcp, remote, Arc::new(slot)));
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), conns.wait()).await;
}

/// HTTP/1 with bounds on slow or oversized request heads, the same on every port.
fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    b
}

/// Drives a connection until it ends or its slot is cancelled (the server stops, or a newer
/// connection displaces it while idle).
async fn until_cancelled(
    conn: impl std::future::Future<Output = hyper::Result<()>>,
    remote: SocketAddr,
    cancel: &CancellationToken,
) {
    tokio::select! {
        r = conn => if let Err(e) = r { debug!(%remote, error = %e, "connection ended with an error") },
        _ = cancel.cancelled() => {}
    }
}

/// The most header bytes a request may carry (hyper bounds its read buffer too).
const MAX_HEADER_BYTES: usize = 32 * 1024;

async fn authenticate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large",
        )
            .into_response();
    }
    let peer = req.extensions().get::<Peer>().and_then(|p| p.0.clone());
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(user) = st.authn.authenticate(peer.as_ref(), authorization).await else {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    };
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let attrs = attributes(
        req.method().as_str(),
        req.uri().path(),
        upgrade,
        &st.host.node_name(),
    );
    if !st.authz.allowed(&user, &attrs).await {
        let msg = format!(
            "Forbidden (user={}, verb={}, resource={}, subresource={})",
            user.name, attrs.verb, attrs.resource, attrs.subresource
        );
        return (StatusCode::FORBIDDEN, msg).into_response();
    }
    next.run(req).await
}

/// Upstream's healthz checks: ping and log always pass; syncloop is the kubelet's own.
fn health_checks(st: &AppState) -> Vec<(&'static str, Result<(), crate::auth::BoxError>)> {
    vec![
        ("ping", Ok(())),
        ("log", Ok(())),
        ("syncloop", st.host.healthz()),
    ]
}

/// `/healthz`, as upstream's healthz handler: "ok", or each check's verdict (reasons withheld)
/// with a 500; `?verbose` lists them on success too.
async fn healthz(
    State(st): State<AppState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let checks = health_checks(&st);
    let failed = checks.iter().any(|(_, r)| r.is_err());
    if !failed && !q.contains_key("verbose") {
        return "ok".into_response();
    }
    let mut body = String::new();
    for (name, r) in &checks {
        match r {
            Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
            Err(e) => {
                warn!(check = name, error = %e, "healthz check failed");
                body.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
    }
    if failed {
        body.push_str("healthz check failed\n");
        (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
    } else {
        body.push_str("healthz check passed\n");
        body.into_response()
    }
}

/// `/healthz/{check}`: one check, with its reason when it fails.
async fn healthz_one(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    match health_checks(&st).into_iter().find(|(n, _)| *n == name) {
        Some((_, Ok(()))) => "ok".into_response(),
        Some((_, Err(e))) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal server error: {e}\n"),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

/// A JSON body, as `application/json`.
fn json(v: &serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn pod_list(items: Vec<Pod>) -> Response {
    json(
        &serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
    )
}

async fn configz(State(st): State<AppState>) -> Result<Response, HostError> {
    Ok(json(&st.host.configz().await?))
}

async fn running_pods(State(st): State<AppState>) -> Response {
    pod_list(st.host.running_pods().await)
}

async fn pods(State(st): State<AppState>) -> Response {
    pod_list(st.host.pods().await)
}

/// One metrics page with the content type the host gives it.
async fn metrics_page(st: &AppState, which: &str) -> Result<Response, HostError> {
    let (text, ct) = st.host.metrics(which).await?;
    Ok(([(header::CONTENT_TYPE, ct)], text).into_response())
}

async fn metrics(State(st): State<AppState>) -> Result<Response, HostError> {
    metrics_page(&st, "").await
}

async fn metrics_sub(
    State(st): State<AppState>,
    Path(which): Path<String>,
) -> Result<Response, HostError> {
    if !matches!(which.as_str(), "resource" | "probes" | "cadvisor") {
        return Err(HostError::not_found("404 page not found\n"));
    }
    metrics_page(&st, &which).await
}

async fn stats_summary(
    State(st): State<AppState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, HostError> {
    // As upstream: only the exact value "true" selects the short form.
    let only = q.get("only_cpu_and_memory").is_some_and(|v| v == "true");
    Ok(json(&st.host.stats_summary(only).await?))
}

type Q = Query<Vec<(String, String)>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Exec,
    Attach,
    PortForward,
}

/// The streaming endpoints, each with and without the pod's UID.
const STREAM_ROUTES: [(&str, StreamKind); 6] = [
    ("/exec/{namespace}/{pod}/{container}", StreamKind::Exec),
    (
        "/exec/{namespace}/{pod}/{uid}/{container}",
        StreamKind::Exec,
    ),
    ("/attach/{namespace}/{pod}/{container}", StreamKind::Attach),
    (
        "/attach/{namespace}/{pod}/{uid}/{container}",
        StreamKind::Attach,
    ),
    ("/portForward/{namespace}/{pod}", StreamKind::PortForward),
    (
        "/portForward/{namespace}/{pod}/{uid}",
        StreamKind::PortForward,
    ),
];

/// The names in a streaming path; `uid` and `container` are absent from some routes.
#[derive(Debug, serde::Deserialize)]
struct StreamPath {
    namespace: String,
    pod: String,
    uid: Option<String>,
    // Port-forward paths name no container.
    #[serde(default)]
    container: String,
}

/// GET and POST on one streaming route (upstream accepts both).
fn stream_route(kind: StreamKind) -> MethodRouter<AppState> {
    let handler = move |State(st): State<AppState>,
                        Path(p): Path<StreamPath>,
                        Query(q): Q,
                        req: Request| stream(st, kind, p, q, req);
    get(handler).post(handler)
}

async fn stream(
    st: AppState,
    kind: StreamKind,
    p: StreamPath,
    q: Vec<(String, String)>,
    req: Request,
) -> Response {
    let StreamPath {
        namespace: ns,
        pod,
        uid,
        container,
    } = p;
    let names = [("namespace", &ns), ("pod", &pod)];
    let container_name = [("container", &container)];
    let checked = names.iter().chain(
        container_name
            .iter()
            .filter(|_| kind != StreamKind::PortForward),
    );
    for (what, v) in checked {
        if !valid_name(v) {
            return HostError::bad_request(format!("invalid {what} name {v:?}")).into_response();
        }
    }
    if uid
        .as_deref()
        .is_some_and(|u| !valid_name(&u.to_ascii_lowercase()))
    {
        return HostError::bad_request("invalid pod UID").into_response();
    }
    let url = match kind {
        StreamKind::PortForward => {
            let ports = match crate::streaming::ports(&q) {
                Ok(p) => p,
                Err(e) => return HostError::bad_request(e.to_string()).into_response(),
            };
            if !crate::streaming::is_upgrade(&req) {
                return HostError::bad_request("Upgrade request required").into_response();
            }
            st.host
                .port_forward_url(&ns, &pod, uid.as_deref(), ports)
                .await
        }
        StreamKind::Exec | StreamKind::Attach => {
            let opts = match crate::streaming::stream_options(&q) {
                Ok(o) => o,
                Err(e) => return HostError::bad_request(e.to_string()).into_response(),
            };
            // Checked before asking the runtime, so a plain request opens no session.
            if !crate::streaming::is_upgrade(&req) {
                return HostError::bad_request("Upgrade request required").into_response();
            }
            if kind == StreamKind::Exec {
                let cmd = crate::streaming::command(&q);
                st.host
                    .exec_url(&ns, &pod, uid.as_deref(), &container, cmd, opts)
                    .await
            } else {
                st.host
                    .attach_url(&ns, &pod, uid.as_deref(), &container, opts)
                    .await
            }
        }
    };
    match url {
        Ok(url) => {
            let idle = st.host.streaming_idle_timeout();
            crate::streaming::proxy(req, &url, st.cancel.clone(), idle).await
        }
        Err(e) => e.into_response(),
    }
}

/// DNS-1123 subdomain: what a namespace, pod or container name can be.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

async fn container_logs(
    State(st): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    query: Result<Query<LogOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HostError> {
    for (what, v) in [("namespace", &ns), ("pod", &pod), ("container", &container)] {
        if !valid_name(v) {
            return Err(HostError::bad_request(format!("invalid {what} name {v:?}")));
        }
    }
    // Upstream's bodies for a query it cannot decode or that fails validation.
    let opts = query
        .ok()
        .and_then(|Query(o)| o.normalize().ok())
        .ok_or_else(|| HostError::bad_request(r#"{"message": "Unable to decode query."}"#))?;
    opts.validate().map_err(|_| HostError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: r#"{"message": "Invalid request."}"#.into(),
    })?;
    let path = st
        .host
        .log_path(&ns, &pod, &container, opts.previous == Some(true))
        .await?;
    let ropts = opts.read_options(st.host.now());
    // Upstream has started its 200 response by now: later errors are its body.
    let opened = open_log(&path, ropts.tail).await.map_err(|e| HostError {
        status: StatusCode::OK,
        message: e.to_string(),
    })?;
    let reader = kubelet_cri::logs::LogReader::new(opened, ropts);
    let content_type = [(header::CONTENT_TYPE, "text/plain")];
    let follow = opts.follow == Some(true);
    // Streams what the file holds, then (following) what is appended, until the container
    // stops or the client goes away; memory stays bounded whatever the log's size.
    let stream = futures::stream::unfold(Some(reader), move |reader| {
        let st = st.clone();
        let (ns, pod, container) = (ns.clone(), pod.clone(), container.clone());
        let path = path.clone();
        async move {
            let mut r = reader?;
            loop {
                match r.next().await {
                    Ok(Some(out)) => return Some((Ok::<_, std::io::Error>(out), Some(r))),
                    Ok(None) if !follow || r.done() => return None,
                    Ok(None) => {}
                    Err(e) => {
                        debug!(error = %e, "reading a container log");
                        return None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                // Rotated: the runtime now writes a new file at the path; go on there.
                if let Some(new) = rotated(r.inner(), &path).await {
                    r.switch(new);
                    continue;
                }
                if !st.host.container_running(&ns, &pod, &container).await {
                    // Whatever was written before it stopped.
                    return match r.next().await {
                        Ok(Some(out)) => Some((Ok(out), None)),
                        _ => None,
                    };
                }
            }
        }
    });
    Ok((content_type, Body::from_stream(stream)).into_response())
}

/// A container log that cannot be opened, in upstream's words (the body of its 200).
#[derive(Debug, thiserror::Error)]
enum OpenLogError {
    #[error("failed to try resolving symlinks in path {path:?}: lstat {path}: {errno}")]
    Resolve { path: String, errno: String },
    #[error("failed to open log file {path:?}: open {path}: {errno}")]
    Open { path: String, errno: String },
    #[error("failed to tail {lines} lines of log file {path:?}: {source}")]
    Tail {
        lines: u64,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Opens the log at the start of its last `tail` lines, with upstream's error texts.
async fn open_log(
    path: &std::path::Path,
    tail: Option<u64>,
) -> Result<tokio::fs::File, OpenLogError> {
    let shown = path.display().to_string();
    let real = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| OpenLogError::Resolve {
            path: shown.clone(),
            errno: go_errno(&e),
        })?;
    let file = tokio::fs::File::open(&real)
        .await
        .map_err(|e| OpenLogError::Open {
            path: shown.clone(),
            errno: go_errno(&e),
        })?;
    let Some(lines) = tail else {
        return Ok(file);
    };
    kubelet_cri::logs::seek_to_tail(file, lines)
        .await
        .map_err(|source| OpenLogError::Tail {
            lines,
            path: shown,
            source,
        })
}

/// An IO error as Go prints it ("no such file or directory").
fn go_errno(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s);
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The file now at `path`, when it is no longer the one `f` has open (the log was rotated).
async fn rotated(f: &tokio::fs::File, path: &std::path::Path) -> Option<tokio::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let open = f.metadata().await.ok()?;
    let now = tokio::fs::metadata(path).await.ok()?;
    if (open.dev(), open.ino()) == (now.dev(), now.ino()) {
        return None;
    }
    tokio::fs::File::open(path).await.ok()
}

/// Serves until cancelled. Handshakes and request heads are bounded in time and size, so a
/// slow or hostile client holds a connection but never the server.
/// A bound listener with its TLS settings, so that start-up can fail with a clear error
/// before anything is served.
pub struct Bound {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("listener", &self.listener)
            .finish()
    }
}

impl Bound {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

pub async fn bind(cfg: &ServerConfig) -> Result<Bound, ServerError> {
    let tls = tls_config(cfg)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| ServerError::Listen {
            addr: cfg.addr,
            source,
        })?;
    Ok(Bound { listener, acceptor })
}

pub async fn serve(
    bound: Bound,
    host: Arc<dyn HostInterface>,
    authn: Arc<Authenticator>,
    authz: Arc<Authorizer>,
    cancel: CancellationToken,
) {
    let Bound { listener, acceptor } = bound;
    let app = router(host, authn, authz, cancel.clone());
    let max = crate::listener::MAX_API_CONNECTIONS;
    accept_loop(&listener, max, &cancel, |tcp, remote, slot| {
        let acceptor = acceptor.clone();
        let app = app.clone();
        let cancel = slot.cancel.clone();
        async move {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
            let tls = match tokio::select! {
                r = handshake => r,
                // Displaced by a newer connection while still idle.
                _ = cancel.cancelled() => return,
            } {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| user_from_cert(c));
            let peer = Peer(user);
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    slot.mark_active();
                    req.extensions_mut().insert(peer.clone());
                    app.clone().oneshot(req.map(Body::new))
                },
            );
            let conn = http1()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .with_upgrades();
            until_cancelled(conn, remote, &cancel).await;
        }
    })
    .await;
}

#[cfg(test)]
mod tests;

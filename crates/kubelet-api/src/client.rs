//! The API client: kube's client plus client-side rate limiting with upstream's semantics
//! (`kubeAPIQPS` tokens per second, bursts of `kubeAPIBurst`).

use crate::error::ApiError;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket; `acquire` reserves a token and sleeps until it is due, so callers are
/// served in order without polling.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimiter {
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            qps,
            burst,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
            })),
        }
    }

    /// How long the caller must wait for its token (zero when one is at hand).
    fn reserve(&self) -> Duration {
        // A QPS of 0 means no limit, as for upstream's eventRecordQPS.
        if self.qps <= 0.0 {
            return Duration::ZERO;
        }
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.qps).min(self.burst);
        b.last = now;
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-b.tokens / self.qps).unwrap_or(Duration::MAX)
        }
    }

    /// Gives back a reserved token that was not used.
    fn refund(&self) {
        if self.qps <= 0.0 {
            return;
        }
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        b.tokens = (b.tokens + 1.0).min(self.burst);
    }

    /// Waits for a token. Cancel-safe: a caller dropped while waiting gives its token back,
    /// so abandoned requests do not delay the ones behind them.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if wait.is_zero() {
            return;
        }
        let guard = Refund(Some(self));
        tokio::time::sleep(wait).await;
        guard.keep();
    }

    /// Like [`acquire`](Self::acquire), but gives up (and keeps nothing) when the wait would
    /// be longer than `max_wait`.
    pub async fn acquire_within(&self, max_wait: Duration) -> bool {
        let wait = self.reserve();
        if wait > max_wait {
            self.refund();
            return false;
        }
        if !wait.is_zero() {
            let guard = Refund(Some(self));
            tokio::time::sleep(wait).await;
            guard.keep();
        }
        true
    }
}

/// Refunds a reservation unless kept.
struct Refund<'a>(Option<&'a RateLimiter>);

impl Refund<'_> {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Refund<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.0 {
            l.refund();
        }
    }
}

/// The kube client and its limiter. Every request waits for a token first; a client with
/// `max_wait` refuses instead of waiting longer than that (the 10250 reviewers' budget).
#[derive(Clone)]
pub struct ApiClient {
    pub(crate) client: kube::Client,
    pub limiter: RateLimiter,
    max_wait: Option<Duration>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl ApiClient {
    pub fn new(client: kube::Client, qps: f64, burst: u32) -> Self {
        ApiClient {
            client,
            limiter: RateLimiter::new(qps, burst),
            max_wait: None,
        }
    }

    /// Another client on the same connection, with a budget of its own.
    pub fn with_limits(&self, qps: f64, burst: u32) -> Self {
        ApiClient::new(self.client.clone(), qps, burst)
    }

    /// Requests that would wait longer than `max_wait` for a token fail with `Throttled`.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Waits for this request's token.
    pub(crate) async fn throttle(&self) -> Result<(), ApiError> {
        match self.max_wait {
            None => {
                self.limiter.acquire().await;
                Ok(())
            }
            Some(max) if self.limiter.acquire_within(max).await => Ok(()),
            Some(_) => Err(ApiError::Throttled("client request budget exhausted")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_paces() {
        let l = RateLimiter::new(5.0, 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            l.acquire().await;
        }
        assert_eq!(Instant::now(), t0, "a full burst is free");
        l.acquire().await;
        let waited = Instant::now() - t0;
        assert!(
            waited >= Duration::from_millis(199) && waited <= Duration::from_millis(201),
            "{waited:?}"
        );
        for _ in 0..5 {
            l.acquire().await;
        }
        let waited = Instant::now() - t0;
        assert!(waited >= Duration::from_millis(1199), "{waited:?}");
    }

    /// Callers that give up while waiting return their tokens: the one who stays is served
    /// as if they had never asked.
    #[tokio::test(start_paused = true)]
    async fn cancelled_waits_give_their_tokens_back() {
        let l = RateLimiter::new(5.0, 1);
        l.acquire().await;
        // 100 callers queue up (20 s of tokens at 5 QPS), then are cancelled.
        for _ in 0..100 {
            let _ = tokio::time::timeout(Duration::from_millis(1), l.acquire()).await;
        }
        let t0 = Instant::now();
        l.acquire().await;
        let waited = Instant::now() - t0;
        assert!(waited <= Duration::from_millis(200), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_waits_refuse_and_keep_nothing() {
        let l = RateLimiter::new(1.0, 1);
        assert!(l.acquire_within(Duration::ZERO).await);
        for _ in 0..50 {
            assert!(!l.acquire_within(Duration::from_millis(500)).await);
        }
        // The refusals took nothing: one second later a token is there.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.acquire_within(Duration::ZERO).await);
    }
}

/// The client certificate a rotating transport presents: whatever the certificate manager
/// published last, read at every TLS handshake (upstream's `GetClientCertificate`).
pub type ClientCertificate =
    tokio::sync::watch::Receiver<Option<std::sync::Arc<rustls::sign::CertifiedKey>>>;

#[derive(Debug)]
struct CurrentCertificate(ClientCertificate);

impl rustls::client::ResolvesClientCert for CurrentCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        self.0.borrow().clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Connections made under one client certificate: cancelled when the next one is
/// published, which ends them (upstream's `CloseAll` on rotation), so every request and
/// watch moves to the new certificate at once. A connection made before the first
/// certificate (anonymous, during bootstrap) ends the same way.
#[derive(Debug, Clone)]
struct Generations(Arc<Mutex<tokio_util::sync::CancellationToken>>);

impl Generations {
    fn current(&self) -> tokio_util::sync::CancellationToken {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Follows `cert` until its sender goes: each change ends the current generation.
    fn follow(cert: ClientCertificate) -> Self {
        let g = Generations(Arc::default());
        let me = g.clone();
        let mut cert = cert;
        tokio::spawn(async move {
            while cert.changed().await.is_ok() {
                let old = std::mem::take(&mut *me.0.lock().unwrap_or_else(|e| e.into_inner()));
                old.cancel();
                tracing::info!("client certificate rotated: closing the API connections");
            }
        });
        g
    }
}

/// A connector whose connections end with their generation.
#[derive(Debug, Clone)]
struct Closing<C> {
    inner: C,
    generations: Generations,
}

impl<C> tower::Service<hyper::Uri> for Closing<C>
where
    C: tower::Service<hyper::Uri>,
    C::Future: Send + 'static,
{
    type Response = ClosingIo<C::Response>;
    type Error = C::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let ended = Box::pin(self.generations.current().cancelled_owned());
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            Ok(ClosingIo {
                inner: connecting.await?,
                ended,
            })
        })
    }
}

/// A connection that fails its reads and writes once its generation has ended.
struct ClosingIo<T> {
    inner: T,
    ended: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl<T> ClosingIo<T> {
    fn check(&mut self, cx: &mut std::task::Context<'_>) -> std::io::Result<()> {
        match self.ended.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the client certificate was rotated",
            )),
            std::task::Poll::Pending => Ok(()),
        }
    }
}

use std::future::Future as _;

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for ClosingIo<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for ClosingIo<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: hyper_util::client::legacy::connect::Connection>
    hyper_util::client::legacy::connect::Connection for ClosingIo<T>
{
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.inner.connected()
    }
}

/// A kube client whose TLS client certificate comes from `cert` at each new connection, so
/// a rotated certificate is used without a restart; connections made under the previous
/// one are closed. The kubeconfig's own certificate, if any, is ignored.
pub fn rotating_client(
    mut config: kube::Config,
    cert: ClientCertificate,
) -> Result<kube::Client, kube::Error> {
    use kube::client::ConfigExt;
    if let Some(p) = &config.proxy_url {
        // kube's own client refuses it too (no proxy support is built in).
        return Err(kube::Error::ProxyProtocolUnsupported {
            proxy_url: Box::new(p.clone()),
        });
    }
    let a = &mut config.auth_info;
    a.client_certificate = None;
    a.client_certificate_data = None;
    a.client_key = None;
    a.client_key_data = None;
    let mut tls = config.rustls_client_config()?;
    tls.client_auth_cert_resolver = Arc::new(CurrentCertificate(cert.clone()));
    // A resumed session keeps the identity of the handshake it came from (anonymous, or an
    // old certificate): every connection makes a full handshake with the current pair.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| kube::Error::Service(format!("tls-server-name {name:?}: {e}").into()))?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = https.enable_http1().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let connector = Closing {
        inner: connector,
        generations: Generations::follow(cert),
    };
    let http_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    // As kube's own stack: 429/503/504 retried with back-off, impersonation headers.
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .layer(crate::rest_metrics::RestMetricsLayer::new(
            &config.cluster_url,
        ))
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

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

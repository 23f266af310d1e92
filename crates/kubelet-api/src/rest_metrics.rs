//! client-go's REST client metrics for the kubelet's API clients (component-base
//! `restclient`): `rest_client_requests_total{code,method,host}` and
//! `rest_client_request_duration_seconds{verb,url}`, the URL templated as client-go's
//! `finalURLTemplate` does (namespace and name replaced, query values `{value}`), so the
//! series' cardinality stays bounded. A tower layer under kube's client, one sample per
//! attempt (a retried request counts twice, as in client-go).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 10))
}

/// The process-wide families (rendered with the kubelet's `/metrics`).
#[derive(Debug)]
pub struct RestClientMetrics {
    pub requests: Family<Labels, Counter>,
    pub duration: Family<Labels, Histogram, fn() -> Histogram>,
}

pub static REST_CLIENT: LazyLock<RestClientMetrics> = LazyLock::new(|| RestClientMetrics {
    requests: Family::default(),
    duration: Family::new_with_constructor(latency_histogram),
});

/// client-go's `finalURLTemplate` over a full request URI.
pub fn url_template(uri: &http::Uri) -> String {
    let mut base = String::new();
    if let (Some(s), Some(a)) = (uri.scheme_str(), uri.authority()) {
        base = format!("{s}://{a}");
    }
    let path = uri.path();
    let mut segments: Vec<String> = path.split('/').map(str::to_string).collect();
    let templated = if segments.len() <= 2 {
        path.to_string()
    } else {
        let index = match segments[1].as_str() {
            "api" => Some(3),
            "apis" => Some(4),
            _ => None,
        };
        match index {
            None => "/{prefix}".to_string(),
            Some(index) => {
                let rest = segments.len().saturating_sub(index);
                let status = |s: &str| s == "finalize" || s == "status";
                if rest == 2 {
                    segments[index + 1] = "{name}".into();
                } else if rest == 3 {
                    if status(&segments[index + 2]) {
                        segments[index + 1] = "{name}".into();
                    } else {
                        segments[index + 1] = "{namespace}".into();
                    }
                } else if rest >= 4 {
                    segments[index + 1] = "{namespace}".into();
                    if !status(&segments[index + 3]) {
                        segments[index + 3] = "{name}".into();
                    }
                }
                segments.join("/")
            }
        }
    };
    // Go's url.URL.String() escapes the braces; query keys sorted, values `{value}`.
    let mut out = format!(
        "{base}{}",
        templated.replace('{', "%7B").replace('}', "%7D")
    );
    if templated == "/{prefix}" {
        return out;
    }
    if let Some(q) = uri.query() {
        let mut keys: Vec<&str> = q
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if !keys.is_empty() {
            out.push('?');
            out.push_str(
                &keys
                    .iter()
                    .map(|k| format!("{k}=%7Bvalue%7D"))
                    .collect::<Vec<_>>()
                    .join("&"),
            );
        }
    }
    out
}

/// The layer, for a client of the API server at `cluster_url` (kube's stack may hand it
/// requests with the path only).
#[derive(Debug, Clone)]
pub struct RestMetricsLayer {
    base: Option<http::Uri>,
}

impl RestMetricsLayer {
    pub fn new(cluster_url: &http::Uri) -> Self {
        Self {
            base: Some(cluster_url.clone()),
        }
    }
}

impl<S> tower::Layer<S> for RestMetricsLayer {
    type Service = RestMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RestMetrics {
            inner,
            base: self.base.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestMetrics<S> {
    inner: S,
    base: Option<http::Uri>,
}

impl<S, B, R> tower::Service<http::Request<B>> for RestMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let verb = req.method().as_str().to_string();
        let full = match (req.uri().authority(), &self.base) {
            (None, Some(b)) => {
                let mut parts = req.uri().clone().into_parts();
                parts.scheme = b.scheme().cloned();
                parts.authority = b.authority().cloned();
                http::Uri::from_parts(parts).unwrap_or_else(|_| req.uri().clone())
            }
            _ => req.uri().clone(),
        };
        let host = full
            .authority()
            .map_or_else(|| "none".to_string(), |a| a.as_str().to_string());
        let url = url_template(&full);
        // client-go observes no latency for watches (they last as long as they last).
        let watch = full
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let start = tokio::time::Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "<error>".to_string(),
            };
            let m = &*REST_CLIENT;
            m.requests
                .get_or_create(&vec![
                    ("code".to_string(), code),
                    ("host".to_string(), host),
                    ("method".to_string(), verb.clone()),
                ])
                .inc();
            if !watch {
                m.duration
                    .get_or_create(&vec![("url".to_string(), url), ("verb".to_string(), verb)])
                    .observe(start.elapsed().as_secs_f64());
            }
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(u: &str) -> String {
        url_template(&u.parse().unwrap_or_else(|e| panic!("{u}: {e}")))
    }

    #[test]
    fn urls_are_templated_as_client_go_does() {
        let h = "https://127.0.0.1:6443";
        assert_eq!(
            t(&format!(
                "{h}/api/v1/namespaces/kube-system/pods/etcd-n1/status"
            )),
            format!("{h}/api/v1/namespaces/%7Bnamespace%7D/pods/%7Bname%7D/status")
        );
        assert_eq!(
            t(&format!("{h}/api/v1/nodes/n1/status")),
            format!("{h}/api/v1/nodes/%7Bname%7D/status")
        );
        assert_eq!(
            t(&format!("{h}/api/v1/nodes/n1")),
            format!("{h}/api/v1/nodes/%7Bname%7D")
        );
        assert_eq!(
            t(&format!("{h}/api/v1/namespaces/default/events")),
            format!("{h}/api/v1/namespaces/%7Bnamespace%7D/events")
        );
        assert_eq!(
            t(&format!(
                "{h}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"
            )),
            format!("{h}/apis/coordination.k8s.io/v1/namespaces/%7Bnamespace%7D/leases/%7Bname%7D")
        );
        assert_eq!(
            t(&format!(
                "{h}/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=true&resourceVersion=5"
            )),
            format!(
                "{h}/api/v1/pods?fieldSelector=%7Bvalue%7D&resourceVersion=%7Bvalue%7D&watch=%7Bvalue%7D"
            )
        );
        assert_eq!(t(&format!("{h}/version")), format!("{h}/version"));
        assert_eq!(
            t(&format!("{h}/healthz/etcd/x")),
            format!("{h}/%7Bprefix%7D")
        );
    }

    #[tokio::test]
    async fn each_attempt_is_counted() {
        use tower::{Layer, Service, ServiceExt};
        let inner = tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(404)
                    .body(())
                    .unwrap_or_default(),
            )
        });
        let base: http::Uri = "https://10.9.8.7:6443".parse().unwrap_or_default();
        let mut svc = RestMetricsLayer::new(&base).layer(inner);
        // As kube's stack hands it over: the path only.
        let req = http::Request::get("/api/v1/nodes/x")
            .body(())
            .unwrap_or_default();
        let Ok(ready) = svc.ready().await;
        let res = ready.call(req).await;
        assert!(res.is_ok());
        let labels = vec![
            ("code".to_string(), "404".to_string()),
            ("host".to_string(), "10.9.8.7:6443".to_string()),
            ("method".to_string(), "GET".to_string()),
        ];
        assert_eq!(REST_CLIENT.requests.get_or_create(&labels).get(), 1);
        let url = vec![
            (
                "url".to_string(),
                "https://10.9.8.7:6443/api/v1/nodes/%7Bname%7D".to_string(),
            ),
            ("verb".to_string(), "GET".to_string()),
        ];
        assert!(
            REST_CLIENT.duration.get(&url).is_some(),
            "no latency series for the templated URL"
        );
    }
}

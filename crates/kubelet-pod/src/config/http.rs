//! The HTTP source (upstream `pkg/kubelet/config/http.go`): `staticPodURL` fetched every
//! `httpCheckFrequency` with `staticPodURLHeader`, its body a Pod or a PodList.
//!
//! As upstream: a status other than 200 or a body that does not decode changes nothing; an
//! empty body is an empty set; a body identical to the last one is not sent again.

use super::SourceUpdate;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use kubelet_core::config::{MAX_MANIFEST_BYTES, Source, apply_defaults, decode_pods};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Upstream's client timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpSourceError {
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    #[error("{0}")]
    Request(String),
    #[error("{url}: {status}")]
    Status { url: String, status: u16 },
    #[error("failed to decode the pods from {0}: {1}")]
    Decode(String, String),
}

#[derive(Debug)]
pub struct HttpSource {
    pub url: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub node: String,
    pub period: Duration,
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

fn client() -> Client {
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        // No system CA roots: http:// still works, https:// fails each fetch with the reason.
        Err(e) => {
            warn!(error = %e, "no system CA roots for staticPodURL");
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        }
    };
    let https = builder.https_or_http().enable_http1().build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

impl HttpSource {
    /// One fetch: `None` when the body is the same as `last`.
    async fn fetch(
        &self,
        client: &Client,
        last: &mut Option<Bytes>,
    ) -> Result<Option<Vec<k8s_openapi::api::core::v1::Pod>>, HttpSourceError> {
        let uri: hyper::Uri = self
            .url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| {
                HttpSourceError::Url(self.url.clone(), e.to_string())
            })?;
        let mut req = hyper::Request::get(uri);
        for (k, vs) in &self.headers {
            for v in vs {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| HttpSourceError::Url(self.url.clone(), e.to_string()))?;
        let resp = tokio::time::timeout(TIMEOUT, client.request(req))
            .await
            .map_err(|_| HttpSourceError::Request(format!("{}: timed out", self.url)))?
            .map_err(|e| HttpSourceError::Request(format!("{}: {e}", self.url)))?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(HttpSourceError::Status {
                url: self.url.clone(),
                status: resp.status().as_u16(),
            });
        }
        let body = tokio::time::timeout(
            TIMEOUT,
            Limited::new(resp.into_body(), MAX_MANIFEST_BYTES as usize).collect(),
        )
        .await
        .map_err(|_| HttpSourceError::Request(format!("{}: timed out", self.url)))?
        .map_err(|e| HttpSourceError::Request(format!("{}: reading the body: {e}", self.url)))?
        .to_bytes();
        if last.as_ref() == Some(&body) {
            return Ok(None);
        }
        if body.is_empty() {
            *last = Some(body);
            return Ok(Some(vec![]));
        }
        let mut pods = decode_pods(&body)
            .map_err(|e| HttpSourceError::Decode(self.url.clone(), e.to_string()))?;
        for p in &mut pods {
            apply_defaults(p, Source::Http, &self.node)
                .map_err(|e| HttpSourceError::Decode(self.url.clone(), e.to_string()))?;
        }
        *last = Some(body);
        Ok(Some(pods))
    }

    pub async fn run(self, tx: mpsc::Sender<SourceUpdate>, cancel: CancellationToken) {
        let client = client();
        let mut last = None;
        let mut failures = 0u32;
        loop {
            match self.fetch(&client, &mut last).await {
                Ok(Some(pods)) => {
                    failures = 0;
                    let set = SourceUpdate::Set(Source::Http, pods);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = tx.send(set) => if r.is_err() { return },
                    }
                }
                Ok(None) => failures = 0,
                Err(e) => {
                    failures += 1;
                    // Quieter once it keeps failing, as upstream.
                    if failures <= 3 {
                        warn!(error = %e, "reading static pods from the URL failed");
                    } else {
                        debug!(error = %e, "reading static pods from the URL failed");
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }
}

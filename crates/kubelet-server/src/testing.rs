//! A host for tests and the fuzzers: one pod, `default/web`, whose container `app` logs to
//! a file the test gives.

use crate::auth::BoxError;
use crate::{HostError, HostInterface, StreamOptions};
use k8s_openapi::api::core::v1::Pod;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct TestHost {
    /// The log of `default/web/app`.
    pub log: PathBuf,
    /// What `container_running` answers: whether a followed log goes on.
    pub running: bool,
    /// A runtime streaming server that `exec_url` points at; none: exec is not served.
    pub stream: Option<SocketAddr>,
}

impl TestHost {
    /// A host whose container has stopped and that serves no exec.
    pub fn new(log: PathBuf) -> Self {
        TestHost {
            log,
            running: false,
            stream: None,
        }
    }
}

#[async_trait::async_trait]
impl HostInterface for TestHost {
    fn now(&self) -> jiff::Timestamp {
        kubelet_core::clock::system().now()
    }
    fn node_name(&self) -> String {
        "n1".into()
    }
    fn healthz(&self) -> Result<(), BoxError> {
        Ok(())
    }
    async fn pods(&self) -> Vec<Pod> {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("default".into());
        vec![pod]
    }
    async fn log_path(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        _previous: bool,
    ) -> Result<PathBuf, HostError> {
        if (ns, pod) != ("default", "web") {
            return Err(HostError::not_found(format!(
                "pod {pod:?} does not exist\n"
            )));
        }
        if container != "app" {
            return Err(HostError::not_found(format!(
                "container {container:?} not found in pod {pod:?}\n"
            )));
        }
        Ok(self.log.clone())
    }
    async fn container_running(&self, _: &str, _: &str, _: &str) -> bool {
        self.running
    }
    async fn exec_url(
        &self,
        ns: &str,
        pod: &str,
        _uid: Option<&str>,
        _container: &str,
        cmd: Vec<String>,
        _opts: StreamOptions,
    ) -> Result<String, HostError> {
        let Some(stream) = self.stream else {
            return Err(HostError::not_found("404 page not found\n"));
        };
        if (ns, pod) != ("default", "web") {
            return Err(HostError::not_found("pod does not exist"));
        }
        Ok(format!("http://{stream}/{}", cmd.join("-")))
    }
}

/// The API's router for `host`, with anonymous access allowed and every request authorized.
pub fn open_router(host: Arc<dyn HostInterface>) -> axum::Router {
    let (authn, authz) = crate::server::allow_all();
    crate::server::router(host, authn, authz, CancellationToken::new())
}

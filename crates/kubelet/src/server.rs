//! The kubelet's side of the 10250 API (upstream `Kubelet` as `server.HostInterface`), and
//! the webhook authenticator and authorizer backed by TokenReview and SubjectAccessReview.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kubelet_core::runtime::ContainerState;
use kubelet_pod::kuberuntime::RuntimeManager;
use kubelet_pod::pleg::PlegHealth;
use kubelet_pod::pod_workers::PodWorkers;
use kubelet_server::auth::{AccessReviewer, Attributes, TokenReviewer, UserInfo};
use kubelet_server::{HostError, HostInterface};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub struct KubeletHost {
    pub node_name: String,
    pub workers: PodWorkers,
    pub runtime: Arc<RuntimeManager>,
    pub pleg: PlegHealth,
    pub stats: Arc<kubelet_pod::stats::StatsProvider>,
    /// The configuration in effect, for /configz.
    pub config: serde_json::Value,
    /// `enableDebuggingHandlers`.
    pub debugging_handlers: bool,
    /// `streamingConnectionIdleTimeout`.
    pub streaming_idle_timeout: std::time::Duration,
}

#[async_trait::async_trait]
impl HostInterface for KubeletHost {
    fn now(&self) -> k8s_openapi::jiff::Timestamp {
        self.runtime.clock.now()
    }

    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    fn healthz(&self) -> Result<(), kubelet_server::auth::BoxError> {
        Ok(self.pleg.check().map_err(PlegFailed)?)
    }

    fn debugging_handlers(&self) -> bool {
        self.debugging_handlers
    }

    fn streaming_idle_timeout(&self) -> std::time::Duration {
        self.streaming_idle_timeout
    }

    async fn pods(&self) -> Vec<Pod> {
        self.workers.pods()
    }

    async fn configz(&self) -> Result<serde_json::Value, HostError> {
        Ok(serde_json::json!({ "kubeletconfig": self.config }))
    }

    async fn running_pods(&self) -> Vec<Pod> {
        let rt = &self.runtime.rt;
        let running = kubelet_cri::api::ContainerFilter {
            state: Some(kubelet_cri::api::ContainerStateValue {
                state: kubelet_cri::api::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        let Ok(containers) = rt.list_containers(Some(running)).await else {
            return vec![];
        };
        let mut pods: std::collections::BTreeMap<String, Pod> = Default::default();
        for c in containers {
            let Some(r) = kubelet_core::labels::PodRef::from_labels(&c.labels) else {
                continue;
            };
            let p = pods.entry(r.uid.clone()).or_insert_with(|| Pod {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(r.name.clone()),
                    namespace: Some(r.namespace.clone()),
                    uid: Some(r.uid.clone()),
                    ..Default::default()
                },
                spec: Some(Default::default()),
                status: Some(Default::default()),
            });
            if let Some(spec) = p.spec.as_mut() {
                spec.containers.push(k8s_openapi::api::core::v1::Container {
                    name: c.metadata.map(|m| m.name).unwrap_or_default(),
                    image: c.image.map(|i| i.image),
                    ..Default::default()
                });
            }
        }
        pods.into_values().collect()
    }

    async fn metrics(&self, which: &str) -> Result<(String, &'static str), HostError> {
        const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
        let m = &kubelet_pod::metrics::METRICS;
        Ok(match which {
            "" => (m.render(), TEXT),
            "probes" => (m.render_probes(), TEXT),
            "resource" => {
                let s = self.stats.summary(&self.workers.pods(), true).await;
                if let Err(e) = &s {
                    tracing::warn!(error = %e, "resource metrics: no summary");
                }
                (kubelet_core::stats::resource_metrics(s.as_ref().ok()), TEXT)
            }
            "cadvisor" => {
                let pods = self.workers.pods();
                let s = self.stats.summary(&pods, false).await;
                match s {
                    Ok(s) => (
                        kubelet_core::stats::cadvisor_metrics(
                            &s,
                            &pods,
                            &self.runtime.cfg.cgroup_layout,
                            self.runtime.cfg.cgroup_driver,
                        ),
                        TEXT,
                    ),
                    Err(e) => {
                        return Err(HostError {
                            status: kubelet_server::server::StatusCode::INTERNAL_SERVER_ERROR,
                            message: format!("Internal Error: {e}"),
                        });
                    }
                }
            }
            _ => return Err(HostError::not_found("404 page not found\n")),
        })
    }

    async fn stats_summary(
        &self,
        only_cpu_and_memory: bool,
    ) -> Result<serde_json::Value, HostError> {
        let internal = |m: &dyn std::fmt::Display| HostError {
            status: kubelet_server::server::StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("Internal Error: {m}"),
        };
        let s = self
            .stats
            .summary(&self.workers.pods(), only_cpu_and_memory)
            .await
            .map_err(|e| internal(&e))?;
        serde_json::to_value(s).map_err(|e| internal(&e))
    }

    async fn log_path(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<PathBuf, HostError> {
        let p = self
            .workers
            .pod_by_name(namespace, pod)
            .ok_or_else(|| HostError::not_found(format!("pod {pod:?} does not exist")))?;
        let spec = p.spec.as_ref();
        let known = spec.is_some_and(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .map(|c| &c.name)
                .chain(s.ephemeral_containers.iter().flatten().map(|c| &c.name))
                .any(|n| n == container)
        });
        if !known {
            return Err(HostError::not_found(format!(
                "container {container:?} not found in pod {pod:?}"
            )));
        }
        // The status the kubelet last computed, else the API's (just after a restart).
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let status = self
            .workers
            .cached_status(&uid)
            .or_else(|| p.status.clone())
            .unwrap_or_default();
        let id = kubelet_core::logs::log_container_id(pod, &status, container, previous)
            .map_err(|e| HostError::bad_request(e.to_string()))?;
        // Upstream has started its 200 response by now: later errors are its body.
        let st = self.runtime.rt.container_status(&id).await.map_err(|e| {
            tracing::debug!(%id, error = %e, "no container status for its logs");
            HostError {
                status: kubelet_server::server::StatusCode::OK,
                message: format!(
                    "unable to retrieve container logs for {}://{id}",
                    self.runtime.runtime_name
                ),
            }
        })?;
        Ok(PathBuf::from(st.log_path))
    }

    async fn exec_url(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
        container: &str,
        cmd: Vec<String>,
        o: kubelet_server::StreamOptions,
    ) -> Result<String, HostError> {
        let id = self
            .running_container(namespace, pod, uid, container)
            .await?;
        self.container_stream(id, o, Some(cmd)).await
    }

    async fn attach_url(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
        container: &str,
        o: kubelet_server::StreamOptions,
    ) -> Result<String, HostError> {
        let id = self
            .running_container(namespace, pod, uid, container)
            .await?;
        self.container_stream(id, o, None).await
    }

    async fn port_forward_url(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
        ports: Vec<i32>,
    ) -> Result<String, HostError> {
        let status = self.streaming_target(namespace, pod, uid).await?;
        let sandbox = status
            .sandboxes
            .iter()
            .filter(|s| s.ready)
            .max_by_key(|s| s.created_at)
            .ok_or_else(|| HostError::not_found("pod does not exist"))?;
        self.runtime
            .rt
            .port_forward(kubelet_cri::api::PortForwardRequest {
                pod_sandbox_id: sandbox.id.clone(),
                port: ports,
            })
            .await
            .map_err(runtime_error)
    }

    async fn container_running(&self, namespace: &str, pod: &str, container: &str) -> bool {
        let Some(p) = self.workers.pod_by_name(namespace, pod) else {
            return false;
        };
        let uid = p.metadata.uid.clone().unwrap_or_default();
        self.runtime
            .pod_status(&uid)
            .await
            .ok()
            .and_then(|s| {
                s.find(container)
                    .map(|c| c.state == ContainerState::Running)
            })
            .unwrap_or(false)
    }
}

impl KubeletHost {
    /// The pod's runtime state, for a streaming request naming it (and perhaps its UID).
    async fn streaming_target(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
    ) -> Result<kubelet_core::runtime::PodStatus, HostError> {
        let p = self
            .workers
            .pod_by_name(namespace, pod)
            .filter(|p| uid.is_none_or(|u| p.metadata.uid.as_deref() == Some(u)))
            .ok_or_else(|| HostError::not_found("pod does not exist"))?;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        self.runtime.pod_status(&uid).await.map_err(runtime_error)
    }

    async fn running_container(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
        container: &str,
    ) -> Result<String, HostError> {
        let status = self.streaming_target(namespace, pod, uid).await?;
        status
            .containers
            .iter()
            .find(|c| c.name == container && c.state == ContainerState::Running)
            .map(|c| c.id.clone())
            .ok_or_else(|| HostError::not_found(format!("container not found ({container:?})")))
    }

    /// The runtime's streaming URL for an exec of `cmd` in a container, or for attaching to
    /// it when there is no command.
    async fn container_stream(
        &self,
        container_id: String,
        o: kubelet_server::StreamOptions,
        cmd: Option<Vec<String>>,
    ) -> Result<String, HostError> {
        let rt = &self.runtime.rt;
        let url = match cmd {
            Some(cmd) => {
                rt.exec(kubelet_cri::api::ExecRequest {
                    container_id,
                    cmd,
                    tty: o.tty,
                    stdin: o.stdin,
                    stdout: o.stdout,
                    stderr: o.stderr,
                })
                .await
            }
            None => {
                rt.attach(kubelet_cri::api::AttachRequest {
                    container_id,
                    stdin: o.stdin,
                    tty: o.tty,
                    stdout: o.stdout,
                    stderr: o.stderr,
                })
                .await
            }
        };
        url.map_err(runtime_error)
    }
}

fn runtime_error(e: kubelet_cri::CriError) -> HostError {
    HostError {
        status: if e.is_not_found() {
            axum_status(404)
        } else {
            axum_status(500)
        },
        message: e.message(),
    }
}

fn axum_status(code: u16) -> kubelet_server::server::StatusCode {
    kubelet_server::server::StatusCode::from_u16(code)
        .unwrap_or(kubelet_server::server::StatusCode::INTERNAL_SERVER_ERROR)
}

/// TokenReview and SubjectAccessReview for the 10250 API, on a client and budget of their
/// own: at most `MAX_REVIEWS` at once (a request waits `SLOT_WAIT` for a slot), and a
/// request that would wait longer than `MAX_REVIEW_WAIT` for the budget is refused, so a
/// flood of bogus tokens costs the API server a bounded rate, is answered quickly, and never
/// delays the kubelet's other requests.
#[derive(Debug, Clone)]
pub struct ApiReviewers {
    /// A client whose requests wait at most [`MAX_REVIEW_WAIT`] for a token.
    api: Arc<dyn kubelet_api::Reviewer>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Every slot for a review stayed taken for [`SLOT_WAIT`].
#[derive(Debug, thiserror::Error)]
#[error("too many reviews in flight")]
pub struct ReviewsBusy;

/// The syncloop health check's failure, in upstream's words.
#[derive(Debug, thiserror::Error)]
#[error("pleg failed: {0}")]
pub struct PlegFailed(#[source] pub kubelet_pod::pleg::PlegUnhealthy);

pub const MAX_REVIEWS: usize = 8;
pub const SLOT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
pub const MAX_REVIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl ApiReviewers {
    pub fn new(api: kubelet_api::ApiClient) -> Self {
        ApiReviewers {
            api: Arc::new(api.with_max_wait(MAX_REVIEW_WAIT)),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_REVIEWS)),
        }
    }

    /// A slot among the reviews in flight, or an error when none comes in time.
    async fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ReviewsBusy> {
        tokio::time::timeout(SLOT_WAIT, self.slots.acquire())
            .await
            .map_err(|_| ReviewsBusy)?
            .map_err(|_| ReviewsBusy)
    }
}

#[async_trait::async_trait]
impl TokenReviewer for ApiReviewers {
    async fn review(
        &self,
        token: &str,
    ) -> Result<Option<UserInfo>, kubelet_server::auth::BoxError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let _slot = self.admit().await?;
        let r = self.api.token_review(&review).await?;
        let status = r.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let u = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: u.username.unwrap_or_default(),
            uid: u.uid.unwrap_or_default(),
            groups: u.groups.unwrap_or_default(),
        }))
    }
}

#[async_trait::async_trait]
impl AccessReviewer for ApiReviewers {
    async fn allowed(
        &self,
        user: &UserInfo,
        attrs: &Attributes,
    ) -> Result<bool, kubelet_server::auth::BoxError> {
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.clone()),
                    resource: Some(attrs.resource.clone()),
                    subresource: Some(attrs.subresource.clone()),
                    name: Some(attrs.name.clone()),
                    version: Some("v1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let _slot = self.admit().await?;
        let r = self.api.access_review(&sar).await?;
        Ok(r.status.is_some_and(|s| s.allowed))
    }
}

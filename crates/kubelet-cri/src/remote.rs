//! CRI over gRPC on a unix socket (containerd 1.6), with a deadline on every call.

use crate::api::{
    self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
};
use crate::{CriError, Result, RuntimeEvent, RuntimeService};
use async_trait::async_trait;
use cri_api::containerd::events as ev;
use futures::stream::{BoxStream, StreamExt};
use hyper_util::rt::TokioIo;
use prost::Message;
use std::future::Future;
use std::time::Duration;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Upstream's CRI message size limit.
const MAX_MSG: usize = 16 * 1024 * 1024;
/// containerd namespace the CRI plugin uses.
const K8S_NAMESPACE: &str = "k8s.io";

#[derive(Debug, Clone)]
pub struct RemoteRuntime {
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
    events: ev::events_client::EventsClient<Channel>,
    timeout: Duration,
}

/// Accepts `unix:///path`, `unix:/path` or a bare path, as upstream's flag does.
pub fn socket_path(endpoint: &str) -> Result<String> {
    let p = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if p.is_empty()
        || !p.starts_with('/')
        || endpoint.contains("://") && !endpoint.starts_with("unix://")
    {
        return Err(CriError::Endpoint {
            endpoint: endpoint.into(),
            reason: "only unix sockets with absolute paths are supported".into(),
        });
    }
    Ok(p.to_string())
}

impl RemoteRuntime {
    /// Connects lazily: the channel (re)connects on demand, so a runtime restart heals by itself.
    pub fn connect(endpoint: &str, timeout: Duration) -> Result<Self> {
        let path = socket_path(endpoint)?;
        let channel = Endpoint::from_static("http://[::1]:0")
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }));
        Ok(RemoteRuntime {
            rt: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_MSG),
            img: ImageServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_MSG),
            events: ev::events_client::EventsClient::new(channel),
            timeout,
        })
    }

    fn req<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        r
    }
}

async fn call<T>(
    op: &'static str,
    timeout: Duration,
    f: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, f).await {
        Err(_) => Err(CriError::Timeout { op, timeout }),
        Ok(Err(s)) => Err(CriError::rpc(op, s)),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

fn decode_event(env: ev::Envelope) -> Option<RuntimeEvent> {
    let any = env.event?;
    let name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
    match name {
        "containerd.events.TaskExit" => {
            let e = ev::TaskExit::decode(any.value.as_slice()).ok()?;
            // Exits of exec'd processes carry their own id; only the init process matters.
            (e.id.is_empty() || e.id == e.container_id).then_some(RuntimeEvent::Exited {
                container_id: e.container_id,
                exit_status: e.exit_status,
            })
        }
        "containerd.events.TaskStart" => {
            let e = ev::TaskStart::decode(any.value.as_slice()).ok()?;
            Some(RuntimeEvent::Started {
                container_id: e.container_id,
            })
        }
        "containerd.events.TaskOOM" => {
            let e = ev::TaskOom::decode(any.value.as_slice()).ok()?;
            Some(RuntimeEvent::Oom {
                container_id: e.container_id,
            })
        }
        _ => None,
    }
}

#[async_trait]
impl RuntimeService for RemoteRuntime {
    async fn version(&self) -> Result<api::VersionResponse> {
        let mut c = self.rt.clone();
        call(
            "Version",
            self.timeout,
            c.version(self.req(
                api::VersionRequest {
                    version: "v1".into(),
                },
                self.timeout,
            )),
        )
        .await
    }

    async fn status(&self) -> Result<api::StatusResponse> {
        let mut c = self.rt.clone();
        call(
            "Status",
            self.timeout,
            c.status(self.req(api::StatusRequest { verbose: false }, self.timeout)),
        )
        .await
    }

    async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String> {
        let mut c = self.rt.clone();
        let r = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler,
        };
        Ok(call(
            "RunPodSandbox",
            self.timeout,
            c.run_pod_sandbox(self.req(r, self.timeout)),
        )
        .await?
        .pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut c = self.rt.clone();
        let r = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        call(
            "StopPodSandbox",
            self.timeout,
            c.stop_pod_sandbox(self.req(r, self.timeout)),
        )
        .await
        .map(|_| ())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut c = self.rt.clone();
        let r = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        call(
            "RemovePodSandbox",
            self.timeout,
            c.remove_pod_sandbox(self.req(r, self.timeout)),
        )
        .await
        .map(|_| ())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let mut c = self.rt.clone();
        let r = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        call(
            "PodSandboxStatus",
            self.timeout,
            c.pod_sandbox_status(self.req(r, self.timeout)),
        )
        .await?
        .status
        .ok_or(CriError::Missing {
            op: "PodSandboxStatus",
            what: "status",
        })
    }

    async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        let mut c = self.rt.clone();
        let r = api::ListPodSandboxRequest { filter };
        Ok(call(
            "ListPodSandbox",
            self.timeout,
            c.list_pod_sandbox(self.req(r, self.timeout)),
        )
        .await?
        .items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.rt.clone();
        let r = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(call(
            "CreateContainer",
            self.timeout,
            c.create_container(self.req(r, self.timeout)),
        )
        .await?
        .container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.rt.clone();
        let r = api::StartContainerRequest {
            container_id: id.into(),
        };
        call(
            "StartContainer",
            self.timeout,
            c.start_container(self.req(r, self.timeout)),
        )
        .await
        .map(|_| ())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let mut c = self.rt.clone();
        let r = api::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout.as_secs() as i64,
        };
        // The runtime may take the whole grace period before it kills.
        let deadline = timeout + self.timeout;
        call(
            "StopContainer",
            deadline,
            c.stop_container(self.req(r, deadline)),
        )
        .await
        .map(|_| ())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut c = self.rt.clone();
        let r = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        call(
            "RemoveContainer",
            self.timeout,
            c.remove_container(self.req(r, self.timeout)),
        )
        .await
        .map(|_| ())
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let mut c = self.rt.clone();
        let r = api::ReopenContainerLogRequest {
            container_id: id.into(),
        };
        call(
            "ReopenContainerLog",
            self.timeout,
            c.reopen_container_log(self.req(r, self.timeout)),
        )
        .await
        .map(|_| ())
    }

    async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        let mut c = self.rt.clone();
        let r = api::ListContainersRequest { filter };
        Ok(call(
            "ListContainers",
            self.timeout,
            c.list_containers(self.req(r, self.timeout)),
        )
        .await?
        .containers)
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let mut c = self.rt.clone();
        let r = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        call(
            "ContainerStatus",
            self.timeout,
            c.container_status(self.req(r, self.timeout)),
        )
        .await?
        .status
        .ok_or(CriError::Missing {
            op: "ContainerStatus",
            what: "status",
        })
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse> {
        let mut c = self.rt.clone();
        let r = api::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs() as i64,
        };
        let deadline = timeout + self.timeout;
        call("ExecSync", deadline, c.exec_sync(self.req(r, deadline))).await
    }

    async fn pod_sandbox_pid(&self, id: &str) -> Result<Option<u32>> {
        let mut c = self.rt.clone();
        let r = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        let info = call(
            "PodSandboxStatus",
            self.timeout,
            c.pod_sandbox_status(self.req(r, self.timeout)),
        )
        .await?
        .info;
        // containerd: {"info": "{\"pid\": 1234, ...}"}
        Ok(info
            .get("info")
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| v.get("pid")?.as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0))
    }

    async fn exec(&self, req: api::ExecRequest) -> Result<String> {
        let mut c = self.rt.clone();
        Ok(
            call("Exec", self.timeout, c.exec(self.req(req, self.timeout)))
                .await?
                .url,
        )
    }

    async fn attach(&self, req: api::AttachRequest) -> Result<String> {
        let mut c = self.rt.clone();
        Ok(call(
            "Attach",
            self.timeout,
            c.attach(self.req(req, self.timeout)),
        )
        .await?
        .url)
    }

    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String> {
        let mut c = self.rt.clone();
        Ok(call(
            "PortForward",
            self.timeout,
            c.port_forward(self.req(req, self.timeout)),
        )
        .await?
        .url)
    }

    async fn list_container_stats(
        &self,
        filter: Option<api::ContainerStatsFilter>,
    ) -> Result<Vec<api::ContainerStats>> {
        let mut c = self.rt.clone();
        let r = api::ListContainerStatsRequest { filter };
        Ok(call(
            "ListContainerStats",
            self.timeout,
            c.list_container_stats(self.req(r, self.timeout)),
        )
        .await?
        .stats)
    }

    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        let mut c = self.img.clone();
        let r = api::ImageFsInfoRequest {};
        Ok(call(
            "ImageFsInfo",
            self.timeout,
            c.image_fs_info(self.req(r, self.timeout)),
        )
        .await?
        .image_filesystems)
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        let mut c = self.img.clone();
        let r = api::ListImagesRequest { filter: None };
        Ok(call(
            "ListImages",
            self.timeout,
            c.list_images(self.req(r, self.timeout)),
        )
        .await?
        .images)
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        let mut c = self.img.clone();
        let r = api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                annotations: Default::default(),
            }),
            verbose: false,
        };
        Ok(call(
            "ImageStatus",
            self.timeout,
            c.image_status(self.req(r, self.timeout)),
        )
        .await?
        .image)
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        let mut c = self.img.clone();
        let r = api::PullImageRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                annotations: Default::default(),
            }),
            auth,
            sandbox_config,
        };
        // Pulls are long by nature; upstream gives them no deadline beyond the runtime's own.
        let deadline = self.timeout * 5;
        Ok(
            call("PullImage", deadline, c.pull_image(self.req(r, deadline)))
                .await?
                .image_ref,
        )
    }

    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent>>> {
        let mut c = self.events.clone();
        let mut r = tonic::Request::new(ev::SubscribeRequest {
            filters: vec![
                format!("namespace=={K8S_NAMESPACE},topic==\"/tasks/exit\""),
                format!("namespace=={K8S_NAMESPACE},topic==\"/tasks/start\""),
                format!("namespace=={K8S_NAMESPACE},topic==\"/tasks/oom\""),
            ],
        });
        if let Ok(v) = K8S_NAMESPACE.parse() {
            r.metadata_mut().insert("containerd-namespace", v);
        }
        let stream = call("Events.Subscribe", self.timeout, c.subscribe(r)).await?;
        Ok(stream
            .filter_map(|item| async move {
                match item {
                    Ok(env) => decode_event(env).map(Ok),
                    Err(s) => Some(Err(CriError::rpc("Events.Subscribe", s))),
                }
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(socket_path("unix:///run/c.sock").unwrap(), "/run/c.sock");
        assert_eq!(socket_path("/run/c.sock").unwrap(), "/run/c.sock");
        assert!(socket_path("tcp://1.2.3.4:1").is_err());
        assert!(socket_path("unix://relative").is_err());
        assert!(socket_path("").is_err());
    }

    #[test]
    fn decodes_task_exit() {
        let e = ev::TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 4,
            exit_status: 3,
            exited_at: None,
        };
        let env = ev::Envelope {
            timestamp: None,
            namespace: "k8s.io".into(),
            topic: "/tasks/exit".into(),
            event: Some(cri_api::prost_types::Any {
                type_url: "containerd.events.TaskExit".into(),
                value: e.encode_to_vec(),
            }),
        };
        assert_eq!(
            decode_event(env),
            Some(RuntimeEvent::Exited {
                container_id: "c1".into(),
                exit_status: 3
            })
        );
        let exec = ev::TaskExit {
            container_id: "c1".into(),
            id: "exec-1".into(),
            pid: 5,
            exit_status: 0,
            exited_at: None,
        };
        let env = ev::Envelope {
            timestamp: None,
            namespace: "k8s.io".into(),
            topic: "/tasks/exit".into(),
            event: Some(cri_api::prost_types::Any {
                type_url: "containerd.events.TaskExit".into(),
                value: exec.encode_to_vec(),
            }),
        };
        assert_eq!(decode_event(env), None);
    }
}

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

/// One unary call on a clone of `$self.$client` (tonic's methods take `&mut self`), with the
/// deadline both sent to the runtime and enforced here; it defaults to the configured timeout.
/// A macro because every method has its own request and response types.
macro_rules! unary {
    ($self:ident.$client:ident.$method:ident($msg:expr), $op:literal) => {
        unary!($self.$client.$method($msg), $op, $self.timeout)
    };
    ($self:ident.$client:ident.$method:ident($msg:expr), $op:literal, $deadline:expr) => {{
        let deadline = $deadline;
        let mut client = $self.$client.clone();
        call($op, deadline, client.$method($self.req($msg, deadline))).await
    }};
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

    /// PodSandboxStatus; `verbose` adds the runtime's `info` map.
    async fn sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<api::PodSandboxStatusResponse> {
        let r = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose,
        };
        unary!(self.rt.pod_sandbox_status(r), "PodSandboxStatus")
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

/// A *Status reply without its status.
fn no_status(op: &'static str) -> CriError {
    CriError::Missing { op, what: "status" }
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
        let r = api::VersionRequest {
            version: "v1".into(),
        };
        unary!(self.rt.version(r), "Version")
    }

    async fn status(&self) -> Result<api::StatusResponse> {
        let r = api::StatusRequest { verbose: false };
        unary!(self.rt.status(r), "Status")
    }

    async fn status_info(&self) -> Result<std::collections::HashMap<String, String>> {
        let r = api::StatusRequest { verbose: true };
        Ok(unary!(self.rt.status(r), "Status")?.info)
    }

    async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String> {
        let r = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler,
        };
        Ok(unary!(self.rt.run_pod_sandbox(r), "RunPodSandbox")?.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let r = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        unary!(self.rt.stop_pod_sandbox(r), "StopPodSandbox").map(drop)
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let r = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        unary!(self.rt.remove_pod_sandbox(r), "RemovePodSandbox").map(drop)
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let resp = self.sandbox_status(id, false).await?;
        resp.status.ok_or(no_status("PodSandboxStatus"))
    }

    async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        let r = api::ListPodSandboxRequest { filter };
        Ok(unary!(self.rt.list_pod_sandbox(r), "ListPodSandbox")?.items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let r = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(unary!(self.rt.create_container(r), "CreateContainer")?.container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let r = api::StartContainerRequest {
            container_id: id.into(),
        };
        unary!(self.rt.start_container(r), "StartContainer").map(drop)
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let r = api::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout.as_secs() as i64,
        };
        // The runtime may take the whole grace period before it kills.
        let deadline = timeout + self.timeout;
        unary!(self.rt.stop_container(r), "StopContainer", deadline).map(drop)
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let r = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        unary!(self.rt.remove_container(r), "RemoveContainer").map(drop)
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let r = api::ReopenContainerLogRequest {
            container_id: id.into(),
        };
        unary!(self.rt.reopen_container_log(r), "ReopenContainerLog").map(drop)
    }

    async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        let r = api::ListContainersRequest { filter };
        Ok(unary!(self.rt.list_containers(r), "ListContainers")?.containers)
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let r = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let resp = unary!(self.rt.container_status(r), "ContainerStatus")?;
        resp.status.ok_or(no_status("ContainerStatus"))
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse> {
        let r = api::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs() as i64,
        };
        unary!(self.rt.exec_sync(r), "ExecSync", timeout + self.timeout)
    }

    async fn pod_sandbox_pid(&self, id: &str) -> Result<Option<u32>> {
        let info = self.sandbox_status(id, true).await?.info;
        // containerd: {"info": "{\"pid\": 1234, ...}"}
        Ok(info
            .get("info")
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| v.get("pid")?.as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0))
    }

    async fn exec(&self, req: api::ExecRequest) -> Result<String> {
        Ok(unary!(self.rt.exec(req), "Exec")?.url)
    }

    async fn attach(&self, req: api::AttachRequest) -> Result<String> {
        Ok(unary!(self.rt.attach(req), "Attach")?.url)
    }

    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String> {
        Ok(unary!(self.rt.port_forward(req), "PortForward")?.url)
    }

    async fn list_container_stats(
        &self,
        filter: Option<api::ContainerStatsFilter>,
    ) -> Result<Vec<api::ContainerStats>> {
        let r = api::ListContainerStatsRequest { filter };
        Ok(unary!(self.rt.list_container_stats(r), "ListContainerStats")?.stats)
    }

    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        let r = api::ImageFsInfoRequest {};
        Ok(unary!(self.img.image_fs_info(r), "ImageFsInfo")?.image_filesystems)
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        let r = api::ListImagesRequest { filter: None };
        Ok(unary!(self.img.list_images(r), "ListImages")?.images)
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        let r = api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                annotations: Default::default(),
            }),
            verbose: false,
        };
        Ok(unary!(self.img.image_status(r), "ImageStatus")?.image)
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let r = api::RemoveImageRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                annotations: Default::default(),
            }),
        };
        unary!(self.img.remove_image(r), "RemoveImage")?;
        Ok(())
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        let r = api::PullImageRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                annotations: Default::default(),
            }),
            auth,
            sandbox_config,
        };
        // Pulls are long by nature; upstream gives them no deadline beyond the runtime's own.
        Ok(unary!(self.img.pull_image(r), "PullImage", self.timeout * 5)?.image_ref)
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

    /// containerd's envelope for the exit of process `id` in container c1.
    fn task_exit(id: &str, exit_status: u32) -> ev::Envelope {
        let e = ev::TaskExit {
            container_id: "c1".into(),
            id: id.into(),
            pid: 4,
            exit_status,
            exited_at: None,
        };
        ev::Envelope {
            timestamp: None,
            namespace: "k8s.io".into(),
            topic: "/tasks/exit".into(),
            event: Some(cri_api::prost_types::Any {
                type_url: "containerd.events.TaskExit".into(),
                value: e.encode_to_vec(),
            }),
        }
    }

    #[test]
    fn decodes_task_exit() {
        assert_eq!(
            decode_event(task_exit("c1", 3)),
            Some(RuntimeEvent::Exited {
                container_id: "c1".into(),
                exit_status: 3
            })
        );
        // An exec'd process exiting is not the container exiting.
        assert_eq!(decode_event(task_exit("exec-1", 0)), None);
    }
}
